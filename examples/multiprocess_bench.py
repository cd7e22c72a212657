"""Several processes flushing one collection, each through its own client and Flusher.

Each process (multiprocessing, spawn) has its own ``MilvusClient`` and ``Flusher`` and
makes ``--calls`` flushes from ``--threads`` threads; the parent prints per process the
p50/p99 latency and how many calls were paced (waited for the collection's next slot),
coalesced (shared a Flush RPC) or covered (another process's Flush persisted them).

Milvus Lite serves one process per .db file, so by default the parent starts
``flushkit.testing.MilvusTestServer`` (a scripted Milvus on loopback) throttled to
``--rate`` Flush per second per collection, as Milvus's proxy does; ``--uri`` points at a
real server instead. Needs only flushkit itself (``pip install -e .``)::

    python examples/multiprocess_bench.py --processes 4 --calls 20 --rate 5
    python examples/multiprocess_bench.py --uri http://localhost:19530 --token root:Milvus
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
from concurrent.futures import ThreadPoolExecutor

from pymilvus import MilvusClient

import flushkit
from flushkit.testing import MilvusTestServer

COLLECTION = "examples_multiprocess_bench"
ROW = "{:>7} {:>5} {:>8} {:>8} {:>5} {:>9} {:>7}"


def worker(uri, token, calls, threads):
    """One process: its own client and flusher; the results' numbers, for the parent."""
    client = MilvusClient(uri=uri, token=token)
    flusher = flushkit.Flusher(client)
    try:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda _: flusher.flush(COLLECTION, timeout=60.0), [0] * calls))
    finally:
        flusher.close()
        client.close()
    return [(r.elapsed, r.paced > 0, r.coalesced, r.satisfied_by == "covered") for r in results]


def percentile(values, q):
    """The nearest-rank percentile: a value some call took."""
    return f"{sorted(values)[math.ceil(q / 100 * len(values)) - 1]:.1f}"


def run(uri, token, args):
    context = multiprocessing.get_context("spawn")
    jobs = [(uri, token, args.calls, args.threads)] * args.processes
    with context.Pool(args.processes) as pool:
        per_process = pool.starmap(worker, jobs)
    print(ROW.format("process", "calls", "p50 ms", "p99 ms", "paced", "coalesced", "covered"))
    for n, rows in enumerate(per_process):
        ms = [row[0] * 1000 for row in rows]
        paced, coalesced, covered = (sum(row[i] for row in rows) for i in (1, 2, 3))
        p50, p99 = percentile(ms, 50), percentile(ms, 99)
        print(ROW.format(n, len(rows), p50, p99, paced, coalesced, covered))
    print(f"total calls: {sum(map(len, per_process))}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", help="a Milvus server (default: a MilvusTestServer here)")
    parser.add_argument("--token", default="", help="e.g. root:Milvus")
    parser.add_argument("--processes", type=int, default=4, choices=range(1, 65), metavar="N")
    parser.add_argument("--calls", type=int, default=20, choices=range(1, 10001), metavar="N")
    parser.add_argument("--threads", type=int, default=2, help="threads per process")
    parser.add_argument("--rate", type=float, default=5.0, help="test server's Flush/s (0: off)")
    args = parser.parse_args()
    if args.uri is None:
        with MilvusTestServer() as server:
            if args.rate > 0:
                server.limit_flush_rate(args.rate)
            run(server.uri, "", args)
            flushes, throttled = len(server.flush_calls), len(server.throttled_calls)
            print(f"server: {flushes} Flush RPCs, {throttled} throttled")
        return
    admin = MilvusClient(uri=args.uri, token=args.token)
    created = not admin.has_collection(COLLECTION)
    if created:
        admin.create_collection(COLLECTION, dimension=8)
    try:
        run(args.uri, args.token, args)
    finally:
        if created:
            admin.drop_collection(COLLECTION)
        admin.close()


if __name__ == "__main__":
    main()
