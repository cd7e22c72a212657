"""``flushkit bench``: flush latency against any Milvus URI, through flushkit.

Measures ``--calls`` flushes of one collection with ``--concurrency`` callers (threads
for ``blocking``, tasks under ``asyncio`` and ``trio``), with or without ``--wait``, and
prints percentiles (p50, p90, p99, max) and throughput; ``--json`` for machines and
``--plot FILE.png`` for a latency CDF (needs matplotlib: ``pip install 'flushkit[bench]'``).
Long runs show a progress bar (tqdm when installed, else a plain line on stderr).

Concurrent flushes of the collection coalesce (share Flush RPCs) as they do in any
service using flushkit; the report counts the coalesced calls. ``--no-coalesce``
removes the coalescing middleware, so that every call sends its own RPC.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import anyio

from ._async import AsyncFlusher
from ._blocking import Flusher
from ._exceptions import FlushError
from ._middleware import CoalescingMiddleware, default_middleware
from ._models import FlushResult
from ._validation import check_name


@dataclass(frozen=True)
class BenchReport:
    runtime: str
    calls: int
    concurrency: int
    wait: bool
    coalesce: bool
    coalesced: int
    errors: dict[str, int]
    seconds: float
    throughput: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(math.ceil(fraction * len(sorted_values)) - 1, 0)
    return sorted_values[rank]


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self._bar: Any = None
        self._done = 0
        self._total = total
        self._enabled = enabled
        self._lock = threading.Lock()
        self._shown = 0.0
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, unit="flush", file=sys.stderr)
            except ImportError:
                pass

    def step(self) -> None:
        if not self._enabled:
            return
        with self._lock:
            self._done += 1
            if self._bar is not None:
                self._bar.update(1)
            elif time.monotonic() - self._shown > 0.5 or self._done == self._total:
                self._shown = time.monotonic()
                print(f"\r{self._done}/{self._total} flushes", end="", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._enabled:
            print(file=sys.stderr)


def run_bench(
    client: Any,
    collection: str,
    *,
    calls: int,
    concurrency: int,
    runtime: str,
    wait: bool,
    timeout: float | None,
    coalesce: bool = True,
    progress: bool = False,
) -> tuple[BenchReport, list[float]]:
    """Flush ``collection`` ``calls`` times; the report and every latency in seconds."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    coalesced = 0
    bar = _Progress(calls, progress)

    def record(started: float, outcome: FlushResult | FlushError) -> None:
        nonlocal coalesced
        latencies.append(time.perf_counter() - started)
        coalesced += outcome.coalesced
        if isinstance(outcome, FlushError):
            errors[type(outcome).__name__] = errors.get(type(outcome).__name__, 0) + 1
        bar.step()

    middleware = [
        layer
        for layer in default_middleware()
        if coalesce or not isinstance(layer, CoalescingMiddleware)
    ]
    started = time.perf_counter()
    if runtime == "blocking":
        _bench_threads(
            Flusher(client, timeout=timeout, middleware=middleware),
            collection,
            calls,
            concurrency,
            wait,
            record,
        )
    else:
        _bench_tasks(
            AsyncFlusher(client, timeout=timeout, middleware=middleware),
            collection,
            calls,
            concurrency,
            wait,
            record,
            runtime,
        )
    seconds = time.perf_counter() - started
    bar.close()
    ordered = sorted(latencies)
    report = BenchReport(
        runtime=runtime,
        calls=calls,
        concurrency=concurrency,
        wait=wait,
        coalesce=coalesce,
        coalesced=coalesced,
        errors=errors,
        seconds=seconds,
        throughput=calls / seconds if seconds else math.nan,
        p50_ms=percentile(ordered, 0.50) * 1000,
        p90_ms=percentile(ordered, 0.90) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
        max_ms=(ordered[-1] if ordered else math.nan) * 1000,
    )
    return report, latencies


Record = Callable[[float, "FlushResult | FlushError"], None]


def _bench_threads(
    flusher: Flusher, collection: str, calls: int, concurrency: int, wait: bool, record: Record
) -> None:
    counter = iter(range(calls))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            began = time.perf_counter()
            try:
                record(began, flusher.flush(collection, wait=wait))
            except FlushError as exc:
                record(began, exc)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for _ in range(concurrency):
            pool.submit(worker)


def _bench_tasks(
    flusher: AsyncFlusher,
    collection: str,
    calls: int,
    concurrency: int,
    wait: bool,
    record: Record,
    backend: str,
) -> None:
    counter = iter(range(calls))

    async def worker() -> None:
        for _ in counter:
            began = time.perf_counter()
            try:
                record(began, await flusher.flush(collection, wait=wait))
            except FlushError as exc:
                record(began, exc)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)

    anyio.run(main, backend=backend)


def plot_cdf(path: str, latencies: Sequence[float], title: str) -> None:
    """Write the latency CDF to ``path`` (``check_plot_can_be_written`` said it can)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(value * 1000 for value in latencies)
    fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(ordered, fractions)
    axes.set_xscale("log")
    axes.set_xlabel("flush latency (ms, log scale)")
    axes.set_ylabel("fraction of calls")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--collection",
        default="flushkit_bench",
        help="the collection to flush; it must exist unless --create (default: %(default)s)",
    )
    parser.add_argument(
        "--create",
        action="store_true",
        help="create the collection first if it is missing, and drop it afterwards",
    )
    parser.add_argument(
        "--calls", type=int, default=1000, help="flushes to measure (default: %(default)s)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="callers flushing at the same time (default: %(default)s)",
    )
    parser.add_argument(
        "--runtime",
        choices=["blocking", "asyncio", "trio"],
        default="blocking",
        help="threads (blocking) or tasks (asyncio, trio) as callers (default: %(default)s)",
    )
    parser.add_argument("--wait", action="store_true", help="wait until persisted")
    parser.add_argument(
        "--no-coalesce",
        dest="coalesce",
        action="store_false",
        help="every call sends its own Flush RPC (no coalescing middleware)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="write a latency CDF to this image file (needs matplotlib: "
        "pip install 'flushkit[bench]')",
    )


def check_arguments(args: argparse.Namespace) -> None:
    """Raise ``ValueError`` for a bench argument that would fail, before any work."""
    check_name("collection name", args.collection)
    check_at_least_one("--calls", args.calls)
    check_at_least_one("--concurrency", args.concurrency)
    if args.plot is not None:
        check_plot_can_be_written(args.plot)


def check_at_least_one(option: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{option} must be an integer of at least 1, not {value}")


def check_plot_can_be_written(path: str) -> None:
    """matplotlib is installed, knows the file's format, and its directory is writable."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install 'flushkit[bench]'") from None
    suffix = os.path.splitext(path)[1].lstrip(".").lower()
    if suffix and suffix not in FigureCanvasBase.get_supported_filetypes():
        raise ValueError(f"--plot {path!r}: matplotlib cannot write .{suffix} files")
    check_directory_is_writable("--plot", path)


def check_directory_is_writable(option: str, path: str) -> None:
    """The directory that will hold the file ``path`` exists and is writable."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"{option} {path!r}: the directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise ValueError(f"{option} {path!r}: the directory {directory} is not writable")


def bench_command(args: argparse.Namespace, client: Any) -> int:
    """Run the bench that ``check_arguments`` accepted; the exit code."""
    created = args.create and not client.has_collection(args.collection)
    if created:
        client.create_collection(args.collection, dimension=4)
    try:
        report, latencies = run_bench(
            client,
            args.collection,
            calls=args.calls,
            concurrency=args.concurrency,
            runtime=args.runtime,
            wait=args.wait,
            timeout=args.timeout,
            coalesce=args.coalesce,
            progress=args.calls >= 2000 and not args.json,
        )
    finally:
        if created:
            client.drop_collection(args.collection)
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print(
            f"{report.calls} flushes, {report.runtime}, concurrency {report.concurrency}"
            f"{', wait' if report.wait else ''}: {report.seconds:.2f} s, "
            f"{report.throughput:.0f} flushes/s"
        )
        print(
            f"latency ms: p50 {report.p50_ms:.3f}  p90 {report.p90_ms:.3f}  "
            f"p99 {report.p99_ms:.3f}  max {report.max_ms:.3f}"
        )
        if report.coalesced:
            print(f"coalesced: {report.coalesced} calls shared a Flush RPC with others")
        if report.errors:
            print(f"errors: {report.errors}")
    if args.plot:
        plot_cdf(
            args.plot, latencies, f"flushkit {report.runtime}, concurrency {report.concurrency}"
        )
    return 0 if not report.errors else 1
