"""wait=True latency: flushkit against pymilvus ``MilvusClient.flush`` on a real server.

Starts the embedded Milvus 2.3.5 standalone server (the ``milvus`` package), then runs
both clients on the same server, interleaved round by round with alternating order:

* idle: a collection with nothing new to flush;
* after inserts: each client flushes its own collection right after the same number of
  fresh rows was inserted into it.

Reports the median of each, and the ratio flushkit / pymilvus of the medians.

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
from pymilvus import MilvusClient

import flushkit
from flushkit._standalone import standalone


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def insert(client: MilvusClient, name: str, rows: int, start: int) -> None:
    data = [{"id": start + i, "vector": [0.1, 0.2, 0.3, i / rows]} for i in range(rows)]
    client.insert(name, data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-rounds", type=int, default=12)
    parser.add_argument("--insert-rounds", type=int, default=6)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    samples: dict[str, list[float]] = {
        "idle pymilvus": [],
        "idle flushkit": [],
        "inserts pymilvus": [],
        "inserts flushkit": [],
    }
    with tempfile.TemporaryDirectory() as tmp, standalone(Path(tmp)) as server:
        client = MilvusClient(uri=server.uri)
        flusher = flushkit.Flusher(client, timeout=120.0)
        for name in ("idle", "by_pymilvus", "by_flushkit"):
            client.create_collection(name, dimension=4)
        insert(client, "idle", 100, 0)
        client.flush("idle")

        runs = {
            "pymilvus": lambda name: client.flush(name, timeout=120.0),
            "flushkit": lambda name: flusher.flush(name, wait=True),
        }
        for i in range(args.idle_rounds):
            order = ["pymilvus", "flushkit"] if i % 2 == 0 else ["flushkit", "pymilvus"]
            for who in order:
                samples[f"idle {who}"].append(timed(lambda who=who: runs[who]("idle")))
        for i in range(args.insert_rounds):
            order = ["pymilvus", "flushkit"] if i % 2 == 0 else ["flushkit", "pymilvus"]
            for who in order:
                name = f"by_{who}"
                insert(client, name, args.rows, (i + 1) * 10 * args.rows)
                samples[f"inserts {who}"].append(timed(lambda who=who, n=name: runs[who](n)))
        client.close()

    report = {}
    print(f"Milvus 2.3.5 standalone, wait until persisted; {args.rows} rows per insert round")
    print(f"{'case':<18} {'n':>3} {'median ms':>10}")
    for case, values in samples.items():
        report[case] = {"n": len(values), "median_ms": statistics.median(values) * 1000}
        print(f"{case:<18} {len(values):>3} {report[case]['median_ms']:>10.1f}")
    for case in ("idle", "inserts"):
        ratio = report[f"{case} flushkit"]["median_ms"] / report[f"{case} pymilvus"]["median_ms"]
        report[f"{case} ratio"] = {"flushkit/pymilvus": ratio}
        print(f"{case:<18} ratio flushkit/pymilvus = {ratio:.3f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
