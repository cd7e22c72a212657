"""A trio script: write to Milvus Lite, flush with ``wait=True``, print the result.

Under ``trio.run``, ``flushkit.AsyncFlusher`` takes the blocking ``MilvusClient`` (grpc.aio
is asyncio's); the flush holds no thread while in flight, and a trio cancel scope around
it is its budget. The script creates its collection if missing, inserts rows, flushes
them until persisted, prints the FlushResult's parts, and drops the collection if it
created it.

Run (needs Milvus Lite and trio: ``pip install -e '.[demo]'``)::

    python examples/trio_script.py
    python examples/trio_script.py --uri http://localhost:19530 --token root:Milvus
"""

from __future__ import annotations

import argparse
import random

import trio
from pymilvus import MilvusClient

import flushkit

COLLECTION = "examples_trio_script"
DIM = 4


async def main(uri, token, rows):
    client = MilvusClient(uri=uri, token=token)
    created = not client.has_collection(COLLECTION)
    if created:
        client.create_collection(COLLECTION, dimension=DIM)
    try:
        data = [{"id": i, "vector": [random.random() for _ in range(DIM)]} for i in range(rows)]
        inserted = client.insert(COLLECTION, data)["insert_count"]
        print(f"inserted {inserted} rows into {COLLECTION}")
        async with flushkit.AsyncFlusher(client) as flusher:
            with trio.fail_after(60):  # the cancel scope is the flush's deadline
                result = await flusher.flush(COLLECTION, wait=True)
        print(f"status: {result.status.error_code} (ok={result.status.ok})")
        print(f"persisted: {result.persisted}")
        print(f"sealed segments: {dict(result.coll_segIDs)}")  # Milvus Lite names none
        print(f"flush timestamps: {dict(result.coll_flush_ts)}")
        print(f"satisfied by: {result.satisfied_by}, attempts: {result.attempts}")
        print(f"elapsed: {result.elapsed:.3f} s, persisting {result.persisting:.3f} s")
        stats = client.get_collection_stats(COLLECTION)
        print(f"row_count: {stats['row_count']}")
    finally:
        if created:
            client.drop_collection(COLLECTION)
        client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", default="./examples.db", help="Milvus Lite file or server URI")
    parser.add_argument("--token", default="", help="e.g. root:Milvus for a server")
    parser.add_argument("--rows", type=int, default=100, choices=range(1, 100001), metavar="N")
    args = parser.parse_args()
    trio.run(main, args.uri, args.token, args.rows)
