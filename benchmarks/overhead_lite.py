"""Per-call overhead of flushkit's default chain over the bare Flush RPC, on Milvus Lite.

Paired and interleaved: each round calls every variant once, in a rotating order, so the
noise of this shared machine hits all of them alike; the figure reported is the median of
the per-round differences against the bare RPC (and the ratio of medians).

    python benchmarks/overhead_lite.py [--rounds 2000] [--repeats 3] [--json out.json]

Variants:
  bare        the Flush RPC on the MilvusClient's own channel, nothing else
  pymilvus    pymilvus's own stub (its interceptors), no retry decorator or waiting
  flushkit    Flusher with the default chain (structlog filtering below WARNING, no
              OpenTelemetry SDK: the quiet production set-up)
  no-coalesce Flusher with the default chain minus CoalescingMiddleware: what
              coalescing costs a call that has no one to share with
  no-chain    Flusher with an empty chain: the facade and transport alone
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from pymilvus import MilvusClient
from pymilvus.grpc_gen import milvus_pb2

import flushkit
from flushkit._grpc.pymilvus import MilvusConnection

COLLECTION = "bench"


def variants(client: MilvusClient) -> dict[str, Callable[[], object]]:
    connection = MilvusConnection(client)
    channel = connection.channel()
    bare_stub = channel.unary_unary(
        "/milvus.proto.milvus.MilvusService/Flush",
        request_serializer=milvus_pb2.FlushRequest.SerializeToString,
        response_deserializer=milvus_pb2.FlushResponse.FromString,
        _registered_method=True,
    )
    metadata = connection.metadata("default")
    request = milvus_pb2.FlushRequest(db_name="default", collection_names=[COLLECTION])
    pymilvus_stub = client._handler._stub
    flusher = flushkit.Flusher(client, timeout=10.0)
    bare_flusher = flushkit.Flusher(client, timeout=10.0, middleware=[])
    alone = [
        m for m in flushkit.default_middleware() if not isinstance(m, flushkit.CoalescingMiddleware)
    ]
    alone_flusher = flushkit.Flusher(client, timeout=10.0, middleware=alone)
    return {
        "bare": lambda: bare_stub(request, timeout=10.0, metadata=metadata),
        "pymilvus": lambda: pymilvus_stub.Flush(request, timeout=10.0, metadata=metadata),
        "flushkit": lambda: flusher.flush(COLLECTION),
        "no-coalesce": lambda: alone_flusher.flush(COLLECTION),
        "no-chain": lambda: bare_flusher.flush(COLLECTION, timeout=10.0),
    }


def measure(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    names = list(calls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter
    for i in range(rounds):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            call = calls[name]
            started = clock()
            call()
            samples[name].append(clock() - started)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    with tempfile.TemporaryDirectory() as tmp:
        client = MilvusClient(str(Path(tmp) / "bench.db"))
        client.create_collection(COLLECTION, dimension=4)
        calls = variants(client)
        measure(calls, 200)  # warm up
        report: dict[str, dict[str, float]] = {}
        runs = [measure(calls, args.rounds) for _ in range(args.repeats)]
        client.close()

    print(f"Milvus Lite, {args.repeats} x {args.rounds} interleaved rounds")
    print(f"{'variant':<10} {'median us':>10} {'paired diff us':>15} {'ratio':>7}")
    for name in calls:
        medians = [statistics.median(run[name]) * 1e6 for run in runs]
        diffs = [
            statistics.median(a - b for a, b in zip(run[name], run["bare"], strict=True)) * 1e6
            for run in runs
        ]
        ratios = [statistics.median(run[name]) / statistics.median(run["bare"]) for run in runs]
        report[name] = {
            "median_us": statistics.median(medians),
            "paired_diff_us": statistics.median(diffs),
            "ratio": statistics.median(ratios),
            "paired_diff_us_per_repeat": diffs,  # type: ignore[dict-item]
        }
        print(
            f"{name:<10} {report[name]['median_us']:>10.1f} "
            f"{report[name]['paired_diff_us']:>+15.1f} {report[name]['ratio']:>7.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
