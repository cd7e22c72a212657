"""``flushkit demo``: the main job end to end, on Milvus Lite or the embedded server.

Creates a collection, inserts rows, flushes through the full default chain (blocking,
under asyncio, and under trio when it is installed) with readable structlog output and
each finished span printed, shows the result, flushes from 16 concurrent tasks that share
Flush RPCs (coalescing), and cleans up after itself.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio

from .._chain import Middleware
from .._client import AsyncFlusher, Flusher
from .._exceptions import FlushError
from .._models import FlushResult
from ..middleware import LoggingMiddleware, TracingMiddleware, default_middleware

_PRINTING = (LoggingMiddleware, TracingMiddleware)

COLLECTION = "flushkit_demo"
LITE_FILE = "flushkit_demo.db"


def run_demo(*, use_server: bool, rows: int) -> int:
    with _milvus(use_server) as (client, where):
        print(f"flushkit demo on {where}")
        try:
            _run(client, rows)
        finally:
            if client.has_collection(COLLECTION):
                client.drop_collection(COLLECTION)
            client.close()
    print("cleaned up; done")
    return 0


@contextlib.contextmanager
def _milvus(use_server: bool) -> Iterator[tuple[Any, str]]:
    from pymilvus import MilvusClient

    if use_server:
        from .standalone import standalone

        base = Path(tempfile.mkdtemp(prefix="flushkit-demo-"))
        try:
            with standalone(base) as server:
                yield MilvusClient(uri=server.uri), f"the embedded Milvus server at {server.uri}"
        finally:
            shutil.rmtree(base, ignore_errors=True)
        return
    path = Path.cwd() / LITE_FILE
    try:
        yield MilvusClient(str(path)), f"Milvus Lite ({path})"
    finally:
        with contextlib.suppress(Exception):
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(str(path))
        for leftover in path.parent.glob(f"*{LITE_FILE}*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def _chain() -> list[Middleware]:
    """The default chain, with a local tracer provider that prints each finished span."""
    if importlib.util.find_spec("opentelemetry.sdk") is None:
        print("(pip install opentelemetry-sdk to see the spans too)")
        return default_middleware()
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class PrintSpans(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            for span in spans:
                took = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
                attributes = " ".join(k + "=" + str(v) for k, v in (span.attributes or {}).items())
                print(
                    f"span {span.name!r} {span.kind.name} {took:.1f} ms "
                    f"status={span.status.status_code.name} {attributes}"
                )
            return SpanExportResult.SUCCESS

    provider = TracerProvider()  # the demo's own: never installed globally
    provider.add_span_processor(SimpleSpanProcessor(PrintSpans()))
    return default_middleware(tracer_provider=provider)


def _run(client: Any, rows: int) -> None:
    if client.has_collection(COLLECTION):
        client.drop_collection(COLLECTION)
    client.create_collection(COLLECTION, dimension=8)
    client.insert(COLLECTION, [{"id": i, "vector": [(i % 7) / 7.0] * 8} for i in range(rows)])
    print(f"inserted {rows} rows into {COLLECTION!r}")
    chain = _chain()

    flusher = Flusher(client, timeout=60.0, middleware=chain)
    _show("blocking", flusher.flush(COLLECTION, wait=True))

    async def flush_with_async_client() -> FlushResult:
        # an asyncio service's own AsyncMilvusClient: flushkit runs on its grpc.aio channel
        from pymilvus import AsyncMilvusClient

        async_client = AsyncMilvusClient(
            uri=client._config.uri, token=client._config.token, db_name=client._config.db_name
        )
        try:
            async with AsyncFlusher(async_client, timeout=60.0, middleware=chain) as flusher:
                return await flusher.flush([COLLECTION], wait=True)
        finally:
            await async_client.close()

    _show("asyncio", anyio.run(flush_with_async_client))  # AsyncMilvusClient

    async def flush_async() -> FlushResult:  # a blocking client under an event loop
        async with AsyncFlusher(client, timeout=60.0, middleware=chain) as async_flusher:
            return await async_flusher.flush([COLLECTION], wait=True)

    if importlib.util.find_spec("trio"):
        _show("trio", anyio.run(flush_async, backend="trio"))

    async def flush_together(callers: int) -> list[FlushResult]:
        # quiet: the default chain without the printing middlewares
        quiet = [m for m in default_middleware() if not isinstance(m, _PRINTING)]
        results: list[FlushResult] = []
        async with AsyncFlusher(client, timeout=60.0, middleware=quiet) as together:

            async def one() -> None:
                results.append(await together.flush(COLLECTION))

            async with anyio.create_task_group() as tasks:
                for _ in range(callers):
                    tasks.start_soon(one)
        return results

    together = anyio.run(flush_together, 16)
    print(
        f"16 concurrent flushes (asyncio tasks): {sum(r.status.ok for r in together)} OK, "
        f"{sum(r.coalesced for r in together)} shared a Flush RPC with others (coalesced)"
    )

    try:
        flusher.flush("no_such_collection", timeout=10.0)
    except FlushError as exc:
        print(f"a missing collection raises {type(exc).__name__}: {exc}")
    else:
        print("a missing collection: Milvus Lite reports success (a real server raises)")
    stats = client.get_collection_stats(COLLECTION)
    print(f"collection statistics after the flush: {stats}")


def _show(runtime: str, result: FlushResult) -> None:
    segments = {name: list(ids) for name, ids in result.coll_segIDs.items()}
    print(
        f"{runtime:>8}: {result.status.error_code}, persisted={result.persisted}, "
        f"{result.elapsed * 1000:.1f} ms, sealed segments {segments}",
        file=sys.stdout,
    )
