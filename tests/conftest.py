"""Fixtures: a scripted Milvus gRPC server on loopback, and every facade test run three ways."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from pymilvus import MilvusClient

import flushkit
from flushkit._standalone import Standalone, Standalones
from flushkit.testing import MilvusTestServer

RUNTIMES = ("blocking", "asyncio", "trio")


@pytest.fixture(scope="session")
def milvus_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalones]:
    """Real Milvus 2.3.5 standalone servers, one at a time, stopped at the end."""
    pytest.importorskip(
        "milvus", reason="the milvus package (the standalone server) is not installed"
    )
    servers = Standalones(tmp_path_factory.mktemp("milvus"))
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture
def milvus_server(milvus_servers: Standalones) -> Standalone:
    """A real server with authorization on (token ``root:Milvus``)."""
    return milvus_servers.get(authorization=True)


@pytest.fixture
def fake(milvus_test_server: MilvusTestServer) -> MilvusTestServer:
    """flushkit.testing's scripted server (the plugin's fixture), fresh for this test."""
    return milvus_test_server


@pytest.fixture
def client(fake: MilvusTestServer) -> Iterator[MilvusClient]:
    milvus = MilvusClient(uri=fake.uri)
    yield milvus
    milvus.close()


@pytest.fixture
def spans() -> Any:
    """An in-memory span exporter; its tracer provider is ``spans.provider``."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    exporter.provider = provider  # type: ignore[attr-defined]
    return exporter


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


FlushCall = Callable[..., flushkit.FlushResult]


def flush_in(runtime: str, client: Any, **flusher_options: Any) -> FlushCall:
    """A blocking callable that flushes with a new flusher, run the ``runtime`` way."""
    if runtime == "blocking":
        flusher = flushkit.Flusher(client, **flusher_options)
        return flusher.flush
    async_flusher = flushkit.AsyncFlusher(client, **flusher_options)

    def flush(*args: Any, **kwargs: Any) -> flushkit.FlushResult:
        async def main() -> flushkit.FlushResult:
            return await async_flusher.flush(*args, **kwargs)

        return anyio.run(main, backend=runtime)

    return flush


@pytest.fixture
def flush(runtime: str, client: MilvusClient) -> FlushCall:
    """``flush(...)`` through the default chain, blocking, under asyncio or under trio."""
    return flush_in(runtime, client)


def replace_channel(client: MilvusClient) -> None:
    """Make pymilvus replace the client's channel, as it does when it reconnects."""
    handler = client._handler
    if hasattr(handler, "reconnect"):  # pymilvus >= 3.0
        handler.reconnect()
    else:  # older pymilvus swaps the channel in its connection manager's recovery
        import grpc

        handler._channel = grpc.insecure_channel(handler._address)
