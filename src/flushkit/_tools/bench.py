"""``flushkit bench``: flush latency against any Milvus URI, through flushkit.

Measures ``--calls`` flushes of one collection with ``--concurrency`` callers (threads
for ``blocking``, tasks under ``asyncio`` and ``trio``), with or without ``--wait``, and
prints percentiles (p50, p90, p99, max) and throughput; ``--json`` for machines and
``--plot FILE.png`` for a latency CDF (needs matplotlib: ``pip install 'flushkit[bench]'``).
Long runs show a progress bar (tqdm when installed, else a plain line on stderr).

Concurrent flushes of the collection coalesce (share Flush RPCs) as they do in any
service using flushkit; the report counts the coalesced calls. ``--no-coalesce``
removes the coalescing middleware, so that every call sends its own RPC.

``--against pymilvus`` also measures pymilvus's own ``MilvusClient.flush`` (always in
threads, and it always waits until persisted) with as many calls at the same
concurrency, alternating with flushkit in blocks so that the machine's noise touches
both; its failures are counted as flushkit's are.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio

from .._client import AsyncFlusher, Flusher
from .._exceptions import FlushError
from .._models import FlushResult, check_name
from ..middleware import CoalescingMiddleware, default_middleware

#: What ``--against`` can measure beside flushkit.
AGAINST = ("pymilvus",)
#: How the callers run.
RUNTIMES = ("blocking", "asyncio", "trio")
#: With ``--against``, each side runs its calls in this many blocks, taking turns.
BLOCKS = 10


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
    library: str = "flushkit"


@dataclass(frozen=True)
class Measured:
    """One side of a run: its report, its name in the picture, every latency in seconds."""

    report: BenchReport
    label: str
    latencies: list[float]


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


class _Outcomes:
    """The latency and outcome of every call of one side of a run (from any thread)."""

    def __init__(self, bar: _Progress) -> None:
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.coalesced = 0
        self.seconds = 0.0
        self._bar = bar
        self._lock = threading.Lock()

    def record(self, started: float, outcome: object) -> None:
        """A call that began at ``started`` (``time.perf_counter``) ended with ``outcome``."""
        elapsed = time.perf_counter() - started
        with self._lock:
            self.latencies.append(elapsed)
            if isinstance(outcome, (FlushResult, FlushError)):
                self.coalesced += outcome.coalesced
            if isinstance(outcome, BaseException):
                name = type(outcome).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
        self._bar.step()

    def timed(self, block: Callable[[], None]) -> None:
        """Run ``block``, adding its seconds to this side's."""
        began = time.perf_counter()
        block()
        self.seconds += time.perf_counter() - began

    def report(self, library: str, **settings: Any) -> BenchReport:
        ordered = sorted(self.latencies)
        calls = len(ordered)
        return BenchReport(
            library=library,
            calls=calls,
            coalesced=self.coalesced,
            errors=dict(self.errors),
            seconds=self.seconds,
            throughput=calls / self.seconds if self.seconds else math.nan,
            p50_ms=percentile(ordered, 0.50) * 1000,
            p90_ms=percentile(ordered, 0.90) * 1000,
            p99_ms=percentile(ordered, 0.99) * 1000,
            max_ms=(ordered[-1] if ordered else math.nan) * 1000,
            **settings,
        )


Record = Callable[[float, object], None]
Block = Callable[[int], None]


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
    against: str | None = None,
) -> list[Measured]:
    """Flush ``collection`` ``calls`` times through flushkit, and with ``against`` as many
    times through pymilvus, the two taking turns in blocks; flushkit's side first."""
    sides = 2 if against else 1
    bar = _Progress(calls * sides, progress)
    ours, theirs = _Outcomes(bar), _Outcomes(bar)
    flushkit_block = _flushkit_block(
        client, collection, runtime, concurrency, wait, timeout, coalesce, ours.record
    )
    pymilvus_block = _pymilvus_block(client, collection, concurrency, timeout, theirs.record)
    for size in block_sizes(calls, concurrency, BLOCKS if against else 1):
        ours.timed(functools.partial(flushkit_block, size))
        if against:
            theirs.timed(functools.partial(pymilvus_block, size))
    bar.close()
    measured = [
        Measured(
            ours.report(
                "flushkit", runtime=runtime, concurrency=concurrency, wait=wait, coalesce=coalesce
            ),
            flushkit_label(runtime, concurrency, wait),
            ours.latencies,
        )
    ]
    if against:
        measured.append(
            Measured(
                theirs.report(
                    "pymilvus",
                    runtime="blocking",
                    concurrency=concurrency,
                    wait=True,
                    coalesce=False,
                ),
                pymilvus_label(concurrency),
                theirs.latencies,
            )
        )
    return measured


def block_sizes(calls: int, concurrency: int, blocks: int) -> list[int]:
    """``calls`` cut into at most ``blocks`` blocks, none smaller than ``concurrency``
    (but the last)."""
    size = max(concurrency, math.ceil(calls / blocks))
    return [min(size, calls - start) for start in range(0, calls, size)]


def flushkit_label(runtime: str, concurrency: int, wait: bool) -> str:
    if runtime == "blocking":
        return f"flushkit Flusher, {count(concurrency, 'thread')}, wait={wait}"
    return f"flushkit AsyncFlusher, {count(concurrency, runtime + ' task')}, wait={wait}"


def pymilvus_label(concurrency: int) -> str:
    return f"pymilvus MilvusClient.flush, {count(concurrency, 'thread')}, always waits"


def count(n: int, thing: str) -> str:
    """``1 thread``, ``2 threads``."""
    return f"{n} {thing}{'' if n == 1 else 's'}"


def _flushkit_block(
    client: Any,
    collection: str,
    runtime: str,
    concurrency: int,
    wait: bool,
    timeout: float | None,
    coalesce: bool,
    record: Record,
) -> Block:
    """A function that flushes ``collection`` through flushkit the given number of times."""
    middleware = [
        layer
        for layer in default_middleware()
        if coalesce or not isinstance(layer, CoalescingMiddleware)
    ]
    if runtime == "blocking":
        flusher = Flusher(client, timeout=timeout, middleware=middleware)
        flush = functools.partial(flusher.flush, collection, wait=wait)
        return functools.partial(
            _in_threads, flush, concurrency=concurrency, record=record, failure=FlushError
        )
    async_flusher = AsyncFlusher(client, timeout=timeout, middleware=middleware)
    async_flush = functools.partial(async_flusher.flush, collection, wait=wait)
    return functools.partial(
        _in_tasks, async_flush, concurrency=concurrency, record=record, backend=runtime
    )


def _pymilvus_block(
    client: Any, collection: str, concurrency: int, timeout: float | None, record: Record
) -> Block:
    """A function that flushes ``collection`` through ``client.flush`` in threads the given
    number of times; any exception is a counted failure, and pymilvus's own logs of it
    (a traceback each) are kept quiet."""
    flush = functools.partial(client.flush, collection_name=collection, timeout=timeout)

    def block(calls: int) -> None:
        with _quiet_pymilvus_logs():
            _in_threads(flush, calls, concurrency=concurrency, record=record, failure=Exception)

    return block


@contextlib.contextmanager
def _quiet_pymilvus_logs() -> Iterator[None]:
    logger = logging.getLogger("pymilvus")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _in_threads(
    call: Callable[[], object],
    calls: int,
    *,
    concurrency: int,
    record: Record,
    failure: type[Exception],
) -> None:
    """``call()`` ``calls`` times from ``concurrency`` threads; ``failure`` is an outcome."""
    counter = iter(range(calls))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            began = time.perf_counter()
            try:
                outcome = call()
            except failure as exc:
                outcome = exc
            record(began, outcome)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        workers = [pool.submit(worker) for _ in range(concurrency)]
    for done in workers:
        done.result()  # anything else than ``failure`` is a bug: raise it


def _in_tasks(
    call: Callable[[], Any],
    calls: int,
    *,
    concurrency: int,
    record: Record,
    backend: str,
) -> None:
    """``await call()`` ``calls`` times from ``concurrency`` tasks; a FlushError is an
    outcome."""
    counter = iter(range(calls))

    async def worker() -> None:
        for _ in counter:
            began = time.perf_counter()
            try:
                outcome = await call()
            except FlushError as exc:
                outcome = exc
            record(began, outcome)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)

    anyio.run(main, backend=backend)


# The picture

Curve = tuple[str, Sequence[float]]  # a label, and latencies in seconds


def plot_cdf(path: str, curves: Sequence[Curve], title: str, caption: str) -> None:
    """Write the latency CDFs to ``path`` (``check_plot_can_be_written`` said it can)."""
    import matplotlib.pyplot as plt

    figure = cdf_figure(curves, title, caption)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def cdf_figure(curves: Sequence[Curve], title: str, caption: str) -> Any:
    """A figure of each curve's latency CDF with its p50 and p99 marked, on a log axis
    with plain millisecond ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 6))
    every_ordered_ms = [sorted(value * 1000 for value in latencies) for _, latencies in curves]
    lowest = min(ordered[0] for ordered in every_ordered_ms)
    highest = max(ordered[-1] for ordered in every_ordered_ms)
    set_latency_axes(axes, latency_ticks(lowest, highest))
    for index, ((label, _), ordered) in enumerate(zip(curves, every_ordered_ms, strict=True)):
        fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
        (line,) = axes.step(ordered, fractions, where="post", label=label, linewidth=1.5)
        for row, (name, fraction) in enumerate(MARKED_PERCENTILES):
            value = percentile(ordered, fraction)
            height = 0.03 + 0.065 * (row * len(curves) + index)  # labels never on each other
            mark_percentile(axes, name, value, fraction, line.get_color(), height)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=9, frameon=False)
    figure.suptitle(title)
    axes.set_title(caption, fontsize=9)
    figure.tight_layout()
    return figure


MARKED_PERCENTILES = (("p50", 0.50), ("p99", 0.99))


def set_latency_axes(axes: Any, ticks: Sequence[float]) -> None:
    """Latency on a log x axis with plain ms ticks; the share of calls on the y axis."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator, PercentFormatter

    axes.set_xscale("log")
    axes.set_xlim(ticks[0], ticks[-1])
    axes.xaxis.set_major_locator(FixedLocator(ticks))
    axes.xaxis.set_major_formatter(FuncFormatter(plain_ms))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_ylim(0, 1.04)
    axes.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    axes.set_xlabel("flush latency (ms, log scale)")
    axes.set_ylabel("calls done within that latency")
    axes.grid(True, alpha=0.3)


def mark_percentile(
    axes: Any, name: str, value: float, fraction: float, color: Any, height: float
) -> None:
    """A dot on the curve, a dotted line down to the x axis, and ``name`` with ``value``
    in ms beside that line at ``height`` (a fraction of the axes' height)."""
    axes.plot([value], [fraction], "o", color=color, markersize=5)
    axes.vlines(value, 0, fraction, colors=color, linestyles=":", linewidth=1)
    start, end = axes.get_xlim()
    near_the_right = math.log(value / start) > 0.8 * math.log(end / start)
    axes.annotate(
        f"{name} {ms_text(value)} ms",
        (value, height),
        xycoords=("data", "axes fraction"),
        xytext=(-4 if near_the_right else 4, 0),
        textcoords="offset points",
        ha="right" if near_the_right else "left",
        va="bottom",
        color=color,
        fontsize=9,
        bbox={
            "boxstyle": "round,pad=0.15",
            "facecolor": "white",
            "edgecolor": "none",
            "alpha": 0.8,
        },
    )


def plain_ms(value: float, _position: object = None) -> str:
    """A tick's milliseconds as a plain number: 0.05, 0.43, 2, 12, 1500 (never 2x10^0)."""
    text = ms_text(value, digits=2)
    return text.rstrip("0").rstrip(".") if "." in text else text


def ms_text(value: float, digits: int = 3) -> str:
    """Milliseconds as a plain number of at least ``digits`` significant digits."""
    if value <= 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(value)))
    return f"{value:.{decimals}f}"


def latency_ticks(low_ms: float, high_ms: float) -> list[float]:
    """Ticks for a log axis over the data: its ends rounded outwards to two significant
    digits, and between them the densest of the series 1-1.5-2-3-4-5-6-7-8, 1-2-3-5-7,
    1-2-5, 1 (times powers of ten) that gives at most 7, none crowding the ends."""
    start = _two_digits(max(low_ms, 1e-6), math.floor)
    end = max(_two_digits(high_ms, math.ceil), start * 1.5)
    gap = (end / start) ** (1 / 12)
    for mantissas in ((1, 1.5, 2, 3, 4, 5, 6, 7, 8), (1, 2, 3, 5, 7), (1, 2, 5), (1,)):
        powers = range(math.floor(math.log10(start)), math.ceil(math.log10(end)) + 1)
        candidates = [m * 10.0**power for power in powers for m in mantissas]
        between = [tick for tick in candidates if start * gap < tick < end / gap]
        if len(between) <= 7:
            break
    return [start, *between, end]


def _two_digits(value: float, rounding: Callable[[float], int]) -> float:
    scale = 10.0 ** (math.floor(math.log10(value)) - 1)
    return rounding(value / scale) * scale


def server_of(uri: str) -> str:
    """``uri`` shown without what may be a secret: no user info, query or fragment."""
    if "://" not in uri:
        return uri if uri.endswith(".db") else uri.rpartition("@")[2]  # a file, or host:port
    parts = urlsplit(uri)
    path = "" if "@" in parts.path else parts.path
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{path}"


def caption_of(args: argparse.Namespace) -> str:
    """The run's settings, for the picture: never a credential."""
    how = [
        f"runtime {args.runtime}",
        f"{args.calls} calls{' each' if args.against else ''}",
        f"concurrency {args.concurrency}",
        f"wait {'on' if args.wait else 'off'}",
        f"coalescing {'on' if args.coalesce else 'off'}",
        f"timeout {args.timeout:g} s",
    ]
    lines = [f"server {server_of(args.uri)} · collection {args.collection}", " · ".join(how)]
    if args.against:
        lines.append(f"{args.against} in threads, taking turns with flushkit in blocks")
    return "\n".join(lines)


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
        "--calls", type=at_least_one, default=1000, help="flushes to measure (default: %(default)s)"
    )
    parser.add_argument(
        "--concurrency",
        type=at_least_one,
        default=1,
        help="callers flushing at the same time (default: %(default)s)",
    )
    callers = "threads (blocking) or tasks (asyncio, trio) as callers (default: %(default)s)"
    parser.add_argument("--runtime", choices=RUNTIMES, default="blocking", help=callers)
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
        help="write a latency CDF to this image file, p50 and p99 marked, the settings in its "
        "caption (needs matplotlib: pip install 'flushkit[bench]')",
    )
    parser.add_argument(
        "--against",
        choices=AGAINST,
        default=None,
        help="also measure pymilvus's MilvusClient.flush (in threads; it always waits until "
        "persisted) with as many calls at the same concurrency, taking turns with flushkit in "
        "blocks, and report and plot both",
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
        raise ValueError(f"{option}: must be an integer of at least 1, not {value}")


def at_least_one(text: str) -> int:
    """A count option's argparse type: an integer (its range is checked after parsing,
    by ``check_at_least_one``, in the same words)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an integer of at least 1, not {text!r}"
        ) from None


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
    """Run the bench that ``check_arguments`` accepted; the exit code (1 if a flushkit call
    failed: pymilvus's failures are only counted)."""
    created = args.create and not client.has_collection(args.collection)
    if created:
        client.create_collection(args.collection, dimension=4)
    try:
        measured = run_bench(
            client,
            args.collection,
            calls=args.calls,
            concurrency=args.concurrency,
            runtime=args.runtime,
            wait=args.wait,
            timeout=args.timeout,
            coalesce=args.coalesce,
            progress=args.calls >= 2000 and not args.json,
            against=args.against,
        )
    finally:
        if created:
            client.drop_collection(args.collection)
    if args.json:
        print(json.dumps(report_as_json(measured), indent=2))
    else:
        print_report(measured, args)
    if args.plot:
        libraries = " vs ".join(side.report.library for side in measured)
        curves = [(side.label, side.latencies) for side in measured]
        plot_cdf(args.plot, curves, f"Flush latency, {libraries}", caption_of(args))
    return 0 if not measured[0].report.errors else 1


def report_as_json(measured: Sequence[Measured]) -> dict[str, Any]:
    """flushkit's report, with the other side's under ``against``."""
    report = asdict(measured[0].report)
    if len(measured) > 1:
        report["against"] = asdict(measured[1].report)
    return report


def print_report(measured: Sequence[Measured], args: argparse.Namespace) -> None:
    each = " each" if len(measured) > 1 else ""
    print(
        f"{args.calls} flushes{each}, {args.runtime}, concurrency {args.concurrency}"
        f"{', wait' if args.wait else ''}{'' if args.coalesce else ', no coalescing'}"
    )
    print(f"{'':9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}{'s':>8}{'flushes/s':>11}")
    for side in measured:
        r = side.report
        print(
            f"{r.library:9}{r.p50_ms:9.3f}{r.p90_ms:9.3f}{r.p99_ms:9.3f}{r.max_ms:9.3f}"
            f"{r.seconds:8.2f}{r.throughput:11.0f}"
        )
    for side in measured:
        r = side.report
        if r.coalesced:
            print(f"{r.library} coalesced: {r.coalesced} calls shared a Flush RPC with others")
        if r.errors:
            print(f"{r.library} errors: {r.errors}")
    if len(measured) > 1:
        print(f"against: {measured[1].label}, taking turns with flushkit in blocks")
        if not args.wait:
            print("(pymilvus's flush always waits until persisted: add --wait to compare alike)")
