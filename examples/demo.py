"""flushkit's main job, end to end on Milvus Lite: create a collection, insert rows, flush
through the default chain (blocking, then under asyncio and trio if installed), and show
the result and the logs. Cleans up after itself.

    python examples/demo.py [PATH.db]
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import tempfile
from pathlib import Path

import anyio
import structlog
from pymilvus import MilvusClient

import flushkit

COLLECTION = "flushkit_demo"


def main() -> int:
    # An application configures logging; flushkit, a library, never does.
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    )
    with tempfile.TemporaryDirectory(prefix="flushkit-demo-") as tmp:
        path = sys.argv[1] if len(sys.argv) > 1 else str(Path(tmp) / "demo.db")
        print(f"Milvus Lite database: {path}")
        client = MilvusClient(path)
        try:
            run(client)
        finally:
            if client.has_collection(COLLECTION):
                client.drop_collection(COLLECTION)
            client.close()
    return 0


def run(client: MilvusClient) -> None:
    if client.has_collection(COLLECTION):
        client.drop_collection(COLLECTION)
    client.create_collection(COLLECTION, dimension=8)
    rows = [{"id": i, "vector": [float(i % 7) / 7] * 8} for i in range(1000)]
    client.insert(COLLECTION, rows)
    print(f"inserted {len(rows)} rows into {COLLECTION!r}")

    flusher = flushkit.Flusher(client, timeout=30.0)
    result = flusher.flush(COLLECTION, wait=True)
    show("blocking", result)

    async def flush_async() -> flushkit.FlushResult:
        async with flushkit.AsyncFlusher(client, timeout=30.0) as async_flusher:
            return await async_flusher.flush([COLLECTION], wait=True)

    show("asyncio", anyio.run(flush_async))
    if importlib.util.find_spec("trio"):
        show("trio", anyio.run(flush_async, backend="trio"))

    try:
        flusher.flush("no_such_collection", timeout=5.0)
    except flushkit.FlushError as exc:  # Milvus Lite treats this as success; servers don't
        print(f"no_such_collection: {type(exc).__name__}: {exc}")
    else:
        print("no_such_collection: Milvus Lite reports success for a missing collection")
    stats = client.get_collection_stats(COLLECTION)
    print(f"collection statistics after the flush: {stats}")


def show(runtime: str, result: flushkit.FlushResult) -> None:
    segments = {name: list(ids) for name, ids in result.coll_segIDs.items()}
    print(
        f"{runtime:>8}: status={result.status.error_code} persisted={result.persisted} "
        f"elapsed={result.elapsed * 1000:.1f} ms segments={segments}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
