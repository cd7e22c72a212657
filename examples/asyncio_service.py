"""An asyncio service that flushes after its writes, through one shared AsyncFlusher.

``--requests`` simulated requests arrive within 20 ms; each inserts a few rows with
pymilvus's ``AsyncMilvusClient`` and flushes with ``wait=True``, so its rows are persisted
before it answers. One ``flushkit.AsyncFlusher`` serves them all, so concurrent flushes
share Flush RPCs (``result.coalesced``). The collection is created if missing, and dropped
at the end if this script created it.

Run (Milvus Lite in ./examples.db by default: ``pip install -e '.[lite]'`` or ``'.[demo]'``;
a server needs flushkit alone)::

    python examples/asyncio_service.py --requests 20
    python examples/asyncio_service.py --uri http://localhost:19530 --token root:Milvus
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections import Counter

from pymilvus import AsyncMilvusClient, MilvusClient

import flushkit

COLLECTION = "examples_asyncio_service"
DIM = 8


async def handle_request(client, flusher, request_id, rows_per_request):
    """One request: write some rows, then have them persisted before answering."""
    await asyncio.sleep(random.uniform(0, 0.02))  # requests arrive a little apart
    rows = [
        {"id": request_id * 1000 + i, "vector": [random.random() for _ in range(DIM)]}
        for i in range(rows_per_request)
    ]
    await client.insert(COLLECTION, rows)
    return await flusher.flush(COLLECTION, timeout=30.0, wait=True)


async def serve(args):
    client = AsyncMilvusClient(uri=args.uri, token=args.token)
    try:
        async with flushkit.AsyncFlusher(client) as flusher:
            calls = [handle_request(client, flusher, n, args.rows) for n in range(args.requests)]
            return await asyncio.gather(*calls)
    finally:
        await client.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default="./examples.db", help="Milvus Lite file or server URI")
    parser.add_argument("--token", default="", help="e.g. root:Milvus for a server")
    parser.add_argument("--requests", type=int, default=20, choices=range(1, 1001), metavar="N")
    parser.add_argument("--rows", type=int, default=3, help="rows each request inserts")
    args = parser.parse_args()

    # Schema changes through the blocking client: Milvus Lite lacks the AllocTimestamp RPC
    # that AsyncMilvusClient.create_collection waits with.
    admin = MilvusClient(uri=args.uri, token=args.token)
    created = not admin.has_collection(COLLECTION)
    if created:
        admin.create_collection(COLLECTION, dimension=DIM)
    try:
        results = asyncio.run(serve(args))
        ok, persisted = sum(r.status.ok for r in results), sum(r.persisted for r in results)
        print(f"requests: {len(results)}, flushes OK: {ok}, persisted: {persisted}")
        coalesced = sum(r.coalesced for r in results)
        print(f"coalesced: {coalesced} of {len(results)} flushes shared a Flush RPC")
        how = Counter(r.satisfied_by for r in results)
        print("satisfied by: " + ", ".join(f"{k}={v}" for k, v in sorted(how.items())))
        print(f"slowest flush: {max(r.elapsed for r in results) * 1000:.1f} ms")
        stats = admin.get_collection_stats(COLLECTION)
        print(f"rows in {COLLECTION}: {stats['row_count']}")
    finally:
        if created:
            admin.drop_collection(COLLECTION)
        admin.close()


if __name__ == "__main__":
    main()
