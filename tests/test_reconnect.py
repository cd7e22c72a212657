"""After the server restarts, or sends GOAWAY, the next flush succeeds."""

from __future__ import annotations

import time

import pytest
from pymilvus import MilvusClient

from flushkit.testing import MilvusTestServer

from .helpers import flush_in


def test_next_flush_after_a_server_restart_succeeds(runtime, milvus_test_server, client):
    flush = flush_in(runtime, client)
    assert flush("docs", timeout=5.0).status.ok
    milvus_test_server.restart()
    assert flush("docs", timeout=5.0).status.ok
    milvus_test_server.stop()
    milvus_test_server.start()
    assert flush(["docs", "images"], timeout=5.0, wait=True).persisted


@pytest.mark.parametrize("runtime", ["blocking", "asyncio", "trio"])
def test_too_many_pings_goaway_never_surfaces(runtime):
    """Milvus Lite sends "too_many_pings" GOAWAYs to pymilvus's idle keepalive pings after
    a few minutes; here a server with a stricter policy and a client pinging every 200 ms
    provoke it in about a second."""
    strict = {
        "grpc.http2.min_ping_interval_without_data_ms": 300_000,
        "grpc.http2.max_ping_strikes": 1,
        "grpc.keepalive_permit_without_calls": 0,
    }
    with MilvusTestServer(grpc_options=strict) as server:
        client = MilvusClient(
            uri=server.uri,
            token=f"goaway-{runtime}",
            grpc_options={"grpc.keepalive_time_ms": 200, "grpc.keepalive_timeout_ms": 1000},
        )
        try:
            flush = flush_in(runtime, client)
            assert flush("docs", timeout=5.0).status.ok
            time.sleep(2.5)  # idle: pings, strikes, GOAWAY
            for _ in range(3):
                assert flush("docs", timeout=5.0).status.ok
        finally:
            client.close()
