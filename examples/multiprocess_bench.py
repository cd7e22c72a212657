"""Several processes flushing one collection, each through its own client and Flusher.

Each process (multiprocessing, spawn) makes ``--calls`` flushes from ``--threads`` threads;
the parent prints per process the p50/p99 latency and how many calls were paced (waited for
the collection's next slot), coalesced (shared a Flush RPC) or covered (another process's
Flush persisted them). Milvus Lite serves one process per .db file, so by default the
parent starts ``flushkit.testing.MilvusTestServer`` (a scripted Milvus on loopback)
admitting ``--rate`` Flush/s per collection, as Milvus's proxy does; ``--uri`` points at a
real server instead. Needs flushkit alone (``pip install -e .``)::

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
    """One process: its own client and flusher; each call's numbers, for the parent."""
    client = MilvusClient(uri=uri, token=token)
    flusher = flushkit.Flusher(client)

    def call(_):
        r = flusher.flush(COLLECTION, timeout=60.0)
        return r.elapsed * 1000, r.paced > 0, r.coalesced, r.satisfied_by == "covered"

    try:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(call, range(calls)))
    finally:
        client.close()


def run(uri, token, args):
    with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
        jobs = [(uri, token, args.calls, args.threads)] * args.processes
        per_process = pool.starmap(worker, jobs)
    print(ROW.format("process", "calls", "p50 ms", "p99 ms", "paced", "coalesced", "covered"))
    for n, calls in enumerate(per_process):
        ms = sorted(call[0] for call in calls)
        p50, p99 = (f"{ms[math.ceil(q * len(ms)) - 1]:.1f}" for q in (0.5, 0.99))  # nearest rank
        paced, coalesced, covered = (sum(call[i] for call in calls) for i in (1, 2, 3))
        print(ROW.format(n, len(calls), p50, p99, paced, coalesced, covered))
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
            server.limit_flush_rate(args.rate or None)
            run(server.uri, "", args)
            flushes, throttled = len(server.flush_calls), len(server.throttled_calls)
            print(f"server: {flushes} Flush RPCs, {throttled} throttled")
        return
    admin = MilvusClient(uri=args.uri, token=args.token)
    created = not admin.has_collection(COLLECTION)
    if created:  # the test server above knows every collection; a real one needs it made
        admin.create_collection(COLLECTION, dimension=8)
    try:
        run(args.uri, args.token, args)
    finally:
        if created:
            admin.drop_collection(COLLECTION)
        admin.close()


if __name__ == "__main__":
    main()
