"""Flushes of one collection on a rate-limited real server: flushkit vs pymilvus.

Two scenarios (``--scenario``):

* ``burst``: 64 callers released together, on a server that admits one Flush a second
  (``flushRate.max=1``), as described below;
* ``arrivals``: 64 callers arriving one every 0.3 s (about 20 s), on a server with
  Milvus's default rate, one Flush every 10 s (``flushRate.max=0.1``), each call with
  ``timeout=30`` (pymilvus: ``timeout=30`` per call), after the server's bucket has
  refilled and with flushkit knowing nothing of the rate beforehand.

Starts the embedded Milvus 2.3.5 standalone server (the ``milvus`` package) with its flush
rate limit on: ``quotaAndLimits.flushRate.enabled=true`` and ``flushRate.max=1`` (one
Flush per second; its token bucket admits two back to back, then one a second). Milvus
2.3.9 and newer also limit each collection, by default to one Flush every 10 s
(``flushRate.collection.max=0.1``); 2.3.5 has only the server-wide limit used here.

Both clients reach the server through a counting gRPC proxy on loopback
(:class:`CountingProxy`, benchmarks/_proxy.py): it forwards every RPC byte for byte and
counts the Flush RPCs and the ones the server answered "rate limit exceeded" (code 8 / RateLimit).

Each round, after fresh rows are inserted and the token bucket has refilled:

* flushkit: 64 callers flush the collection at once (threads for the blocking
  ``Flusher``, tasks under asyncio and under trio for ``AsyncFlusher``), default chain;
* pymilvus: 64 threads call ``MilvusClient.flush`` at once (its default retries on rate
  limiting, ``timeout=--pymilvus-timeout`` each).

Reports per run: errors by type, Flush RPCs sent, rate-limited answers, coalesced calls,
and the median and slowest call, as JSON with ``--json``.

    python benchmarks/coalescing_rate_limit.py [--rounds 2] [--callers 64] [--json FILE]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import structlog
from pymilvus import MilvusClient

import flushkit
from flushkit._tools.standalone import standalone

try:
    from _proxy import CountingProxy
except ModuleNotFoundError as missing:  # imported by path (tests/): benchmarks/ is not on sys.path
    if missing.name != "_proxy":
        raise
    import importlib.util

    _spec = importlib.util.spec_from_file_location("_proxy", Path(__file__).with_name("_proxy.py"))
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["_proxy"] = _module
    _spec.loader.exec_module(_module)
    CountingProxy = _module.CountingProxy

RATE_LIMIT = {"quotaAndLimits.flushRate.enabled": "true", "quotaAndLimits.flushRate.max": "1"}
#: Milvus's default per-collection limit (2.3.9+), as the 2.3.5 server's server-wide one.
DEFAULT_RATE_LIMIT = {
    "quotaAndLimits.flushRate.enabled": "true",
    "quotaAndLimits.flushRate.max": "0.1",
}
#: The server's window at DEFAULT_RATE_LIMIT: its bucket is full again after this long.
DEFAULT_WINDOW = 10.0
COLLECTION = "events"


def at_once(callers: int, call: Callable[[], Any], runtime: str = "blocking") -> list[Any]:
    """Run ``call`` from ``callers`` threads (or tasks) released together; each outcome
    is ``(seconds, result or exception)``."""
    return arriving(callers, 0.0, call, runtime)


def arriving(
    callers: int, spacing: float, call: Callable[[], Any], runtime: str = "blocking"
) -> list[Any]:
    """Start ``call`` from ``callers`` threads (or tasks), one every ``spacing`` seconds
    (0: released together by a barrier); each outcome is ``(seconds, result or
    exception)``."""
    outcomes: list[Any] = []
    began = time.monotonic()

    def outcome_of(started: float, outcome: Any) -> None:
        outcomes.append((time.perf_counter() - started, outcome))

    if runtime == "blocking":
        barrier = threading.Barrier(callers) if not spacing else None

        def one() -> None:
            if barrier is not None:
                barrier.wait()
            started = time.perf_counter()
            try:
                outcome_of(started, call())
            except Exception as exc:
                outcome_of(started, exc)

        threads = []
        for i in range(callers):
            time.sleep(max(0.0, began + i * spacing - time.monotonic()))
            threads.append(threading.Thread(target=one))
            threads[-1].start()
        for thread in threads:
            thread.join()
        return outcomes

    async def main() -> None:
        async def one(i: int) -> None:
            await anyio.sleep(max(0.0, began + i * spacing - time.monotonic()))
            started = time.perf_counter()
            try:
                outcome_of(started, await call())
            except Exception as exc:
                outcome_of(started, exc)

        async with anyio.create_task_group() as tasks:
            for i in range(callers):
                tasks.start_soon(one, i)

    anyio.run(main, backend=runtime)
    return outcomes


def flushkit_call(client: MilvusClient, runtime: str, **options: Any) -> Callable[[], Any]:
    """One flush of COLLECTION through a flusher of ``client`` (a coroutine function for
    the async runtimes)."""
    if runtime == "blocking":
        flusher = flushkit.Flusher(client, timeout=30.0)
        return lambda: flusher.flush(COLLECTION, **options)
    async_flusher = flushkit.AsyncFlusher(client, timeout=30.0)
    return lambda: async_flusher.flush(COLLECTION, **options)


def summary(outcomes: list[Any], counts: Counter[str]) -> dict[str, Any]:
    errors = Counter(type(o).__name__ for _, o in outcomes if isinstance(o, Exception))
    seconds = sorted(s for s, _ in outcomes)
    results = [o for _, o in outcomes if isinstance(o, flushkit.FlushResult)]
    return {
        "callers": len(outcomes),
        "errors": dict(errors),
        "flush_rpcs": counts["flush_rpcs"],
        "rate_limited_answers": counts["rate_limited"],
        "coalesced_calls": sum(r.coalesced for r in results),
        "retried_calls": sum(r.attempts > 1 for r in results),
        "paced_calls": sum(r.paced > 0 for r in results),
        "median_ms": round(statistics.median(seconds) * 1000, 1),
        "max_ms": round(seconds[-1] * 1000, 1),
    }


def run_flushkit(client: MilvusClient, callers: int, runtime: str) -> list[Any]:
    return at_once(callers, flushkit_call(client, runtime, wait=True), runtime)


def run_pymilvus(client: MilvusClient, callers: int, timeout: float) -> list[Any]:
    return at_once(callers, lambda: client.flush(COLLECTION, timeout=timeout))


def refill(seconds: float = 3.0) -> None:
    """Let the server's token bucket fill up again between runs."""
    time.sleep(seconds)


VARIANTS = ("flushkit-blocking", "flushkit-asyncio", "flushkit-trio", "pymilvus")


def each_variant(
    uri: str,
    rounds: int,
    prepare: Callable[[MilvusClient, int], None],
    run_variant: Callable[[MilvusClient, str], list[Any]],
) -> dict[str, list[dict[str, Any]]]:
    """Every variant ``rounds`` times, through a counting proxy to the server at ``uri``:
    ``prepare(client, round)`` before each run, then ``run_variant(fresh, variant)`` on a
    client of its own (flushkit's pacing belongs to a client: each run starts knowing
    nothing of the server's rate, as a new process would)."""
    runs: dict[str, list[dict[str, Any]]] = {}
    with CountingProxy(uri.removeprefix("http://")) as proxy:
        client = MilvusClient(uri=proxy.uri)
        try:
            if not client.has_collection(COLLECTION):
                client.create_collection(COLLECTION, dimension=4)
            for round_ in range(rounds):
                for variant in VARIANTS:
                    prepare(client, round_)
                    proxy.take()
                    # a client of its own: flushkit starts knowing nothing of the rate
                    fresh = MilvusClient(uri=proxy.uri)
                    try:
                        outcomes = run_variant(fresh, variant)
                    finally:
                        fresh.close()
                    runs.setdefault(variant, []).append(summary(outcomes, proxy.take()))
                    print(variant, runs[variant][-1], file=sys.stderr)
        finally:
            client.close()
    return runs


def measure(uri: str, *, rounds: int, callers: int, pymilvus_timeout: float) -> dict[str, Any]:
    """The burst: every variant ``rounds`` times against the server at ``uri``."""

    def prepare(client: MilvusClient, round_: int) -> None:
        rows = [{"id": round_ * 1000 + i, "vector": [0.1, 0.2, 0.3, 0.4]} for i in range(100)]
        client.insert(COLLECTION, rows)
        refill()

    def run_variant(client: MilvusClient, variant: str) -> list[Any]:
        if variant == "pymilvus":
            return run_pymilvus(client, callers, pymilvus_timeout)
        return run_flushkit(client, callers, variant.split("-")[1])

    runs = each_variant(uri, rounds, prepare, run_variant)
    return {"scenario": "burst", "rate_limit": RATE_LIMIT, "callers": callers, "runs": runs}


def measure_arrivals(
    uri: str, *, rounds: int, callers: int, spacing: float, pymilvus_timeout: float
) -> dict[str, Any]:
    """Every variant ``rounds`` times: callers arriving one every ``spacing`` seconds, on
    a server at DEFAULT_RATE_LIMIT whose bucket has refilled before each run."""

    def prepare(client: MilvusClient, round_: int) -> None:
        client.insert(COLLECTION, [{"id": round_, "vector": [0.1, 0.2, 0.3, 0.4]}])
        refill(DEFAULT_WINDOW + 1)

    def run_variant(client: MilvusClient, variant: str) -> list[Any]:
        if variant == "pymilvus":
            call = functools.partial(client.flush, COLLECTION, timeout=pymilvus_timeout)
            return arriving(callers, spacing, call)
        runtime = variant.split("-")[1]
        return arriving(callers, spacing, flushkit_call(client, runtime), runtime)

    runs = each_variant(uri, rounds, prepare, run_variant)
    return {
        "scenario": "arrivals",
        "rate_limit": DEFAULT_RATE_LIMIT,
        "callers": callers,
        "spacing_s": spacing,
        "runs": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=["burst", "arrivals"], default="burst")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--spacing", type=float, default=0.3, help="arrivals: seconds apart")
    parser.add_argument(
        "--pymilvus-timeout", type=float, help="default: 10 (burst), 30 (arrivals)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
    limit = RATE_LIMIT if args.scenario == "burst" else DEFAULT_RATE_LIMIT
    with tempfile.TemporaryDirectory() as base, standalone(Path(base), **limit) as server:
        if args.scenario == "burst":
            report = measure(
                server.uri,
                rounds=args.rounds,
                callers=args.callers,
                pymilvus_timeout=args.pymilvus_timeout or 10.0,
            )
        else:
            report = measure_arrivals(
                server.uri,
                rounds=args.rounds,
                callers=args.callers,
                spacing=args.spacing,
                pymilvus_timeout=args.pymilvus_timeout or 30.0,
            )
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
