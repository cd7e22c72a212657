"""flushkit's pytest plugin (registered through the ``pytest11`` entry point).

Fixtures:

* ``milvus_test_server``: a :class:`flushkit.testing.MilvusTestServer`, started once per
  test session and stopped at its end, with fresh scripts and records for each test.

pytest imports this module in every run of every project that installs flushkit: it
imports nothing of flushkit's (nor grpc, nor pymilvus) until a fixture is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ..testing import MilvusTestServer


@pytest.fixture(scope="session")
def _flushkit_milvus_test_server() -> Iterator[MilvusTestServer]:
    from ..testing import MilvusTestServer

    with MilvusTestServer() as server:
        yield server


@pytest.fixture
def milvus_test_server(
    _flushkit_milvus_test_server: MilvusTestServer,
) -> Iterator[MilvusTestServer]:
    """The session's scripted Milvus server, with fresh scripts and records. What
    flushkit learned of the server belongs to each pymilvus client: make a new
    ``MilvusClient`` per test for a fresh start."""
    server = _flushkit_milvus_test_server
    if server._server is None:  # a test stopped it
        server.start()
    server.reset()
    yield server
    server.reset()
