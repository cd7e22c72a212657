"""flushkit's pytest plugin (registered through the ``pytest11`` entry point).

Fixtures:

* ``milvus_test_server``: a :class:`flushkit.testing.MilvusTestServer`, started once per
  test session and stopped at its end, with fresh scripts and records for each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..testing import MilvusTestServer


@pytest.fixture(scope="session")
def _flushkit_milvus_test_server() -> Iterator[MilvusTestServer]:
    with MilvusTestServer() as server:
        yield server


@pytest.fixture
def milvus_test_server(
    _flushkit_milvus_test_server: MilvusTestServer,
) -> Iterator[MilvusTestServer]:
    """The session's scripted Milvus server, with fresh scripts and records."""
    server = _flushkit_milvus_test_server
    if server._server is None:  # a test stopped it
        server.start()
    server.reset()  # flushkit forgets what it learned of the server too
    yield server
    server.reset()
