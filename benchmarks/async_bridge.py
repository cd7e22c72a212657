"""The async bridge's two mechanisms, each against itself switched off, in one run.

1. Keeping gRPC's completion thread between consecutive futures
   (``flushkit._grpc.completion_thread``): one caller flushing one call after another, in
   alternating blocks with the linger on and off (``LINGER = 0``); median latency per
   call and the threads started per block.
2. One event-loop wake-up per burst (``flushkit._grpc.wakeups``): 64 callers of one collection
   with the default chain (coalescing: one shared Flush answers dozens of waiters at
   once), in alternating runs with the batched wake-ups and with one thread-safe call per
   waiter; calls per second.

    python benchmarks/async_bridge.py [--server lite|standalone] [--blocks 8] [--calls 250]
        [--runs 4] [--seconds 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import structlog
from _servers import server
from pymilvus import MilvusClient

import flushkit
from flushkit._grpc import completion_thread as _completion_thread
from flushkit._grpc import transport as _transport
from flushkit._grpc import wakeups as _wakeups

COLLECTION = "bridge"
BACKENDS = ("asyncio", "trio")


class ThreadStarts:
    """Counts ``threading.Thread.start`` calls while installed."""

    def __init__(self) -> None:
        self.count = 0
        self._original = threading.Thread.start

    def __enter__(self) -> ThreadStarts:
        original = self._original

        def start(thread: threading.Thread) -> None:
            self.count += 1
            original(thread)

        threading.Thread.start = start  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        threading.Thread.start = self._original  # type: ignore[method-assign]


def consecutive(client: MilvusClient, backend: str, blocks: int, calls: int) -> dict[str, Any]:
    flusher = flushkit.AsyncFlusher(client)
    samples: dict[str, list[float]] = {"on": [], "off": []}
    starts = {"on": 0, "off": 0}
    linger = _completion_thread.LINGER

    async def main() -> None:
        for block in range(blocks):
            for mode in ("on", "off") if block % 2 else ("off", "on"):
                _completion_thread.LINGER = linger if mode == "on" else 0.0
                await flusher.flush(COLLECTION)
                await anyio.sleep(0.01)  # the previous block's linger is over
                with ThreadStarts() as started:
                    for _ in range(calls):
                        began = time.perf_counter()
                        await flusher.flush(COLLECTION)
                        samples[mode].append(time.perf_counter() - began)
                starts[mode] += started.count

    try:
        anyio.run(main, backend=backend)
    finally:
        _completion_thread.LINGER = linger
    return {
        f"linger {mode}": {
            "median_us": statistics.median(samples[mode]) * 1e6,
            "threads_started": starts[mode],
            "calls": len(samples[mode]),
        }
        for mode in ("on", "off")
    }


def one_call_per_waiter(event: anyio.Event) -> Callable[[], None]:
    """The wake-up before batching: one thread-safe call per waiter."""
    loop = asyncio._get_running_loop()
    if loop is not None:
        call_soon = loop.call_soon_threadsafe
    else:
        call_soon = sys.modules["trio"].lowlevel.current_trio_token().run_sync_soon

    def wake() -> None:
        with contextlib.suppress(RuntimeError):
            call_soon(event.set)

    return wake


def bursts(client: MilvusClient, backend: str, runs: int, seconds: float) -> dict[str, Any]:
    flusher = flushkit.AsyncFlusher(client)
    rates: dict[str, list[float]] = {"batched": [], "per waiter": []}
    batched = _wakeups.threadsafe_setter

    async def callers() -> float:
        stop = time.monotonic() + seconds
        count = 0

        async def caller() -> None:
            nonlocal count
            while time.monotonic() < stop:
                await flusher.flush(COLLECTION)
                count += 1

        async with anyio.create_task_group() as tg:
            for _ in range(64):
                tg.start_soon(caller)
        return count / seconds

    try:
        for run in range(runs):
            for mode in ("batched", "per waiter") if run % 2 else ("per waiter", "batched"):
                setter = batched if mode == "batched" else one_call_per_waiter
                _transport.threadsafe_setter = setter  # type: ignore[assignment]
                rates[mode].append(anyio.run(callers, backend=backend))
    finally:
        _transport.threadsafe_setter = batched
    return {
        mode: {"median_calls_per_s": statistics.median(values), "runs": values}
        for mode, values in rates.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["lite", "standalone"], default="lite")
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--calls", type=int, default=250)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    report: dict[str, Any] = {"server": args.server}
    with tempfile.TemporaryDirectory() as tmp, server(args.server, Path(tmp)) as client:
        client.create_collection(COLLECTION, dimension=4)
        for backend in BACKENDS:
            report[f"{backend} consecutive"] = consecutive(client, backend, args.blocks, args.calls)
            report[f"{backend} 64 coalescing callers"] = bursts(
                client, backend, args.runs, args.seconds
            )
    for section, rows in report.items():
        if section == "server":
            continue
        for name, row in rows.items():
            figures = ", ".join(
                f"{key} {value:.1f}" if isinstance(value, float) else f"{key} {value}"
                for key, value in row.items()
                if key != "runs"
            )
            print(f"{args.server} {section}, {name}: {figures}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
