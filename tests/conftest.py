"""Fixtures: a scripted Milvus gRPC server on loopback, and every facade test run three ways.

Fixtures only: helpers the test modules share live in helpers.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymilvus import MilvusClient

from flushkit._tools.standalone import Standalone, Standalones
from flushkit.testing import MilvusTestServer

from .helpers import RUNTIMES, FlushCall, close_aio_services, flush_in


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The real server's tests first, otherwise in the order collected: they are the long
    ones (server starts, rate windows), so under pytest-xdist (the README's ``-n 4``) the
    quick tests fill the other workers around them instead of trailing after them."""
    items.sort(key=lambda item: item.get_closest_marker("server") is None)


@pytest.fixture(autouse=True)
def _aio_services_closed() -> Iterator[None]:
    """The AsyncMilvusClients that ``flush_in("aio", ...)`` kept open, closed after the test."""
    yield
    close_aio_services()


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


@pytest.fixture
def flush(runtime: str, client: MilvusClient) -> FlushCall:
    """``flush(...)`` through the default chain, blocking, under asyncio or under trio."""
    return flush_in(runtime, client)
