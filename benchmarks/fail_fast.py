"""How fast a call fails when its budget cannot reach its collection's next slot.

Against flushkit.testing's server with a Milvus-like flush rate limit (one Flush every
10 s per collection): one admitted flush, then ``--calls`` flushes with a 2 s budget,
each of which must raise ``RateLimitedError`` at once, sending nothing. Prints the median
and slowest time per runtime (blocking, asyncio, trio).

    python benchmarks/fail_fast.py [--calls 200]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import anyio
import structlog
from pymilvus import MilvusClient

import flushkit
from flushkit.testing import MilvusTestServer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures: dict[str, dict[str, float | int]] = {}
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    with MilvusTestServer() as server:
        server.limit_flush_rate(0.1)
        client = MilvusClient(uri=server.uri)
        for runtime in ("blocking", "asyncio", "trio"):
            name = f"docs_{runtime}"
            seconds = measure(client, runtime, name, args.calls)
            sent = sum(name in call.request.collection_names for call in server.flush_calls)
            print(
                f"{runtime:<8} median {statistics.median(seconds) * 1000:.3f} ms, "
                f"slowest {max(seconds) * 1000:.3f} ms, Flush RPCs sent {sent} "
                f"(the admitted one only)"
            )
            figures[runtime] = {
                "calls": args.calls,
                "failed_fast": len(seconds),
                "median_ms": statistics.median(seconds) * 1000,
                "slowest_ms": max(seconds) * 1000,
                "flush_rpcs": sent,
            }
        client.close()
    if args.json:
        report = {"calls": args.calls, "runtimes": figures}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def measure(client: MilvusClient, runtime: str, name: str, calls: int) -> list[float]:
    seconds: list[float] = []
    if runtime == "blocking":
        flusher = flushkit.Flusher(client, flush_interval=10.0)
        flusher.flush(name, timeout=5.0)
        for _ in range(calls):
            started = time.perf_counter()
            try:
                flusher.flush(name, timeout=2.0)
            except flushkit.RateLimitedError:
                seconds.append(time.perf_counter() - started)
        return seconds

    async def run() -> None:
        flusher = flushkit.AsyncFlusher(client, flush_interval=10.0)
        await flusher.flush(name, timeout=5.0)
        for _ in range(calls):
            started = time.perf_counter()
            try:
                await flusher.flush(name, timeout=2.0)
            except flushkit.RateLimitedError:
                seconds.append(time.perf_counter() - started)

    anyio.run(run, backend=runtime)
    return seconds


if __name__ == "__main__":
    raise SystemExit(main())
