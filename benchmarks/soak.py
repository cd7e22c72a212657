"""Soak: many flushes from concurrent async callers against flushkit.testing's server
with random faults. None may hang, every outcome must be a documented one, and resident
memory must stay flat.

    python benchmarks/soak.py [--calls 10000] [--concurrency 64] [--backend asyncio|trio]
                              [--faults-only]

The server throttles Flush as Milvus does, one per collection every ``1 / RATE`` seconds
(its real limiter: each throttled answer is Milvus's rate-limit status), so flushkit's
pacing and coalescing run under load as in production: a call whose budget cannot reach
its collection's next slot fails at once with RateLimitedError. ``--faults-only`` turns
the limiter off to compare versions on the scripted faults alone.

tests/test_soak.py runs a shortened form of the same function in CI.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import grpc
import structlog
from pymilvus import MilvusClient

import flushkit
from flushkit.testing import MilvusTestServer, abort, delay, flushed, hang, ok, status

TIMEOUT = 0.5
#: A call still running this long past its budget counts as hung (and is cancelled). Only a
#: hang is checked here; how far past their budget calls end is fault_overrun.py's figure.
HANG_GUARD = 5.0
#: Admitted Flushes per collection per second: a slot every 0.2 s, within a call's budget.
RATE = 5.0
DOCUMENTED = (
    flushkit.FlushTimeoutError,
    flushkit.RateLimitedError,
    flushkit.ServiceUnavailableError,
    flushkit.CollectionNotFoundError,
    flushkit.ServerError,
)


@dataclass
class Report:
    calls: int
    seconds: float
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    undocumented: list[str] = field(default_factory=list)
    hung: int = 0
    coalesced: int = 0
    #: Throttled answers to the Flush RPCs of the calls (each counted by its sender).
    throttled: int = 0
    calls_left: int = 0
    slowest: float = 0.0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def script_faults(server: MilvusTestServer, calls: int, rng: random.Random) -> None:
    unavailable = status(2, 1, "service unavailable", retriable=True)
    choices: list[tuple[float, Any]] = [
        (0.50, lambda: ok()),
        (0.15, lambda: delay(rng.uniform(0.005, 0.05))),
        (0.10, lambda: unavailable),
        (0.08, lambda: abort(grpc.StatusCode.UNAVAILABLE, "dropped")),
        (0.03, lambda: hang()),
        (0.05, lambda: status(100, 4, "collection not found")),
        (0.04, lambda: abort(grpc.StatusCode.INTERNAL, "boom")),
        (0.05, lambda: delay(TIMEOUT * 2)),
    ]
    weights = [weight for weight, _ in choices]
    makers = [make for _, make in choices]
    # retries draw more behaviours than calls: script twice as many
    server.script_flush(*(rng.choices(makers, weights)[0]() for _ in range(calls * 2)))
    server.script_flush_state(*(flushed(rng.random() < 0.7) for _ in range(calls)))


def run_soak(
    calls: int = 10_000,
    concurrency: int = 64,
    backend: str = "asyncio",
    seed: int = 1,
    faults_only: bool = False,
) -> Report:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    rng = random.Random(seed)
    with MilvusTestServer() as server:
        client = MilvusClient(uri=server.uri, token=f"soak-{time.monotonic_ns()}")
        script_faults(server, calls, rng)
        if not faults_only:
            server.limit_flush_rate(RATE)
        flusher = flushkit.AsyncFlusher(
            client,
            timeout=TIMEOUT,
            middleware=flushkit.default_middleware(retry=flushkit.RetryPolicy(initial=0.02)),
        )
        report = Report(calls=calls, seconds=0.0)
        waits = [rng.random() < 0.2 for _ in range(calls)]
        todo = iter(range(calls))

        async def caller() -> None:
            for i in todo:
                started = time.monotonic()
                with anyio.move_on_after(TIMEOUT + HANG_GUARD) as guard:
                    try:
                        result = await flusher.flush(f"c{i % 50}", wait=waits[i])
                        report.outcomes["success"] += 1
                        report.coalesced += getattr(result, "coalesced", False)
                        report.throttled += getattr(result, "throttled", 0)
                    except DOCUMENTED as exc:
                        report.outcomes[type(exc).__name__] += 1
                        report.coalesced += getattr(exc, "coalesced", False)
                        report.throttled += getattr(exc, "throttled", 0)
                    except BaseException as exc:
                        if isinstance(exc, anyio.get_cancelled_exc_class()):
                            raise
                        report.undocumented.append(repr(exc))
                if guard.cancelled_caught:
                    report.hung += 1
                report.slowest = max(report.slowest, time.monotonic() - started)
                if i % 500 == 0:
                    server.clear_calls()  # the test server's records are not flushkit's
                if i == calls // 5:
                    report.rss_start_mb = rss_mb()

        async def main() -> None:
            async with anyio.create_task_group() as tg:
                for _ in range(concurrency):
                    tg.start_soon(caller)

        started = time.monotonic()
        anyio.run(main, backend=backend)
        report.seconds = time.monotonic() - started
        report.rss_end_mb = rss_mb()
        time.sleep(0.2)  # abandoned shared RPCs end on gRPC's thread
        report.calls_left = calls_left()
        client.close()
    structlog.reset_defaults()
    return report


def calls_left() -> int:
    """flushkit's per-call scheduler objects (turns, tickets, rounds) still alive once
    every call has ended: none, unless a call failed to give up its places."""
    gc.collect()
    kinds = {"Turn", "Ticket", "Round"}
    return sum(
        1
        for thing in gc.get_objects()
        if type(thing).__name__ in kinds and type(thing).__module__ == "flushkit._scheduler"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--faults-only", action="store_true", help="no rate limiter")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    report = run_soak(args.calls, args.concurrency, args.backend, faults_only=args.faults_only)
    print(
        f"{report.calls} flushes, {args.concurrency} callers, {args.backend}: "
        f"{report.seconds:.1f} s, {report.calls / report.seconds:.0f} calls/s"
    )
    print(f"outcomes: {dict(report.outcomes)}")
    print(
        f"coalesced calls: {report.coalesced}  throttled answers: {report.throttled}  "
        f"calls left: {report.calls_left}"
    )
    print(
        f"undocumented: {len(report.undocumented)}  hung: {report.hung}  "
        f"slowest call: {report.slowest * 1000:.0f} ms (budget {TIMEOUT * 1000:.0f} ms)"
    )
    print(f"resident memory: {report.rss_start_mb:.1f} MiB at 20% -> {report.rss_end_mb:.1f} MiB")
    if args.json:
        figures = {
            "calls": report.calls,
            "concurrency": args.concurrency,
            "backend": args.backend,
            "faults_only": args.faults_only,
            "budget_s": TIMEOUT,
            "seconds": report.seconds,
            "calls_per_s": report.calls / report.seconds,
            "outcomes": dict(sorted(report.outcomes.items())),
            "coalesced": report.coalesced,
            "throttled": report.throttled,
            "calls_left": report.calls_left,
            "undocumented": len(report.undocumented),
            "hung": report.hung,
            "slowest_ms": report.slowest * 1000,
            "rss_start_mb": report.rss_start_mb,
            "rss_end_mb": report.rss_end_mb,
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if not report.undocumented and not report.hung else 1


if __name__ == "__main__":
    raise SystemExit(main())
