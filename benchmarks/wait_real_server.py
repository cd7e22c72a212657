"""wait=True latency: flushkit against pymilvus ``MilvusClient.flush`` on a real server.

Starts the embedded Milvus 2.3.5 standalone server (the ``milvus`` package), then runs
both clients on the same server, interleaved round by round with alternating order:

* idle: a collection with nothing new to flush;
* after inserts: each client flushes its own collection right after the same number of
  fresh rows was inserted into it.

and, as a third column, the server's own floor: a bare Flush RPC, then GetFlushState
polled every 1 ms until it first says flushed (what no client can beat). Every RPC goes
through a counting proxy on loopback, so the GetFlushState RPCs per wait are counted too.

Reports the median of each, the ratios flushkit / pymilvus and flushkit / floor, and the
median GetFlushState RPCs per wait. On an idle collection the server reports a flush
persisted at its next channel checkpoint, which comes about every 200 ms, so one flush
takes about 200 ms or about 400 ms depending on when it lands, whoever polls: the
medians of all samples flip between those two modes with the mix of samples, so the
ratio to the floor is also reported within each mode (samples under and over 300 ms).

    python benchmarks/wait_real_server.py [--idle-rounds 12] [--insert-rounds 6] [--rows 2000]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from coalescing_rate_limit import CountingProxy
from pymilvus import MilvusClient
from pymilvus.grpc_gen import milvus_pb2

import flushkit
from flushkit._tools.standalone import standalone


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def insert(client: MilvusClient, name: str, rows: int, start: int) -> None:
    data = [{"id": start + i, "vector": [0.1, 0.2, 0.3, i / rows]} for i in range(rows)]
    client.insert(name, data)


def floor(client: MilvusClient, name: str) -> None:
    """A bare Flush RPC, then GetFlushState every 1 ms until it says flushed."""
    channel = client._handler._channel
    flush = channel.unary_unary(
        "/milvus.proto.milvus.MilvusService/Flush",
        request_serializer=milvus_pb2.FlushRequest.SerializeToString,
        response_deserializer=milvus_pb2.FlushResponse.FromString,
    )
    state = channel.unary_unary(
        "/milvus.proto.milvus.MilvusService/GetFlushState",
        request_serializer=milvus_pb2.GetFlushStateRequest.SerializeToString,
        response_deserializer=milvus_pb2.GetFlushStateResponse.FromString,
    )
    metadata = (("dbname", "default"),)
    response = flush(milvus_pb2.FlushRequest(collection_names=[name]), metadata=metadata)
    poll = milvus_pb2.GetFlushStateRequest(
        segmentIDs=response.coll_segIDs[name].data if name in response.coll_segIDs else (),
        flush_ts=response.coll_flush_ts[name],
        collection_name=name,
    )
    while not state(poll, metadata=metadata).flushed:
        time.sleep(0.001)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-rounds", type=int, default=12)
    parser.add_argument("--insert-rounds", type=int, default=6)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    who_runs = ("pymilvus", "flushkit", "floor")
    cases = ("idle", "inserts")
    samples: dict[str, list[float]] = {f"{c} {w}": [] for c in cases for w in who_runs}
    polls: dict[str, list[int]] = {"idle": [], "inserts": []}
    with tempfile.TemporaryDirectory() as tmp, standalone(Path(tmp)) as server:
        proxy = CountingProxy(server.uri.removeprefix("http://")).__enter__()
        client = MilvusClient(uri=proxy.uri)
        flusher = flushkit.Flusher(client, timeout=120.0)
        for name in ("idle", *(f"by_{who}" for who in who_runs)):
            client.create_collection(name, dimension=4)
        insert(client, "idle", 100, 0)
        client.flush("idle")

        runs: dict[str, Callable[[str], object]] = {
            "pymilvus": lambda name: client.flush(name, timeout=120.0),
            "flushkit": lambda name: flusher.flush(name, wait=True),
            "floor": lambda name: floor(client, name),
        }

        def measure(case: str, who: str, name: str) -> None:
            proxy.take()
            samples[f"{case} {who}"].append(timed(lambda: runs[who](name)))
            if who == "flushkit":
                polls[case].append(proxy.take()["GetFlushState"])

        for i in range(args.idle_rounds):
            for who in who_runs[i % 3 :] + who_runs[: i % 3]:  # rotating order
                measure("idle", who, "idle")
        for i in range(args.insert_rounds):
            for who in who_runs[i % 3 :] + who_runs[: i % 3]:
                name = f"by_{who}"
                insert(client, name, args.rows, (i + 1) * 10 * args.rows)
                measure("inserts", who, name)
        client.close()
        proxy.__exit__(None, None, None)

    report: dict[str, dict[str, float]] = {}
    print(f"Milvus 2.3.5 standalone, wait until persisted; {args.rows} rows per insert round")
    print(f"{'case':<18} {'n':>3} {'median ms':>10}")
    for case, values in samples.items():
        report[case] = {"n": len(values), "median_ms": statistics.median(values) * 1000}
        print(f"{case:<18} {len(values):>3} {report[case]['median_ms']:>10.1f}")
    for case in ("idle", "inserts"):
        mine = report[f"{case} flushkit"]["median_ms"]
        report[f"{case} ratio"] = {
            "flushkit/pymilvus": mine / report[f"{case} pymilvus"]["median_ms"],
            "flushkit/floor": mine / report[f"{case} floor"]["median_ms"],
            "flushkit GetFlushState RPCs per wait (median)": statistics.median(polls[case]),
        }
        print(case, {k: round(v, 3) for k, v in report[f"{case} ratio"].items()})
    for mode, within in (("under 300 ms", lambda v: v < 0.3), ("over 300 ms", lambda v: v >= 0.3)):
        medians = {}
        for who in who_runs:
            values = [v for v in samples[f"idle {who}"] if within(v)]
            if values:
                medians[who] = {"n": len(values), "median_ms": statistics.median(values) * 1000}
        if "flushkit" in medians and "floor" in medians:
            medians["flushkit/floor"] = {
                "ratio": medians["flushkit"]["median_ms"] / medians["floor"]["median_ms"]
            }
        report[f"idle, {mode}"] = medians  # type: ignore[assignment]
        print(f"idle, {mode}:", medians)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
