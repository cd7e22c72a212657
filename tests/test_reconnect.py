"""After the server restarts, or sends GOAWAY, the next flush succeeds."""

from __future__ import annotations

import time

import grpc
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
    """Milvus Lite sends "too_many_pings" GOAWAYs to pymilvus's keepalive pings after a
    few minutes; here a server with a stricter policy and a client pinging every 200 ms
    provoke one within seconds. The channel's connectivity shows it arrived: the ready
    connection goes idle (nothing else closes it here: the server keeps serving), and
    every flush, those around it included, succeeds, the last ones on a new connection."""
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
        states: list[grpc.ChannelConnectivity] = []
        channel = client._handler._channel  # pymilvus's channel (see test_pymilvus_internals)
        channel.subscribe(states.append, try_to_connect=False)
        try:
            flush = flush_in(runtime, client)
            sent = 0
            deadline = time.monotonic() + 30.0
            while grpc.ChannelConnectivity.IDLE not in states:  # until a GOAWAY closed it
                assert time.monotonic() < deadline, f"no GOAWAY: the channel stayed {states}"
                for _ in range(4):  # bursts of calls: each after a pause pings the server
                    assert flush("docs", timeout=5.0).status.ok
                    sent += 1
                pause = time.monotonic() + 3.0
                while grpc.ChannelConnectivity.IDLE not in states and time.monotonic() < pause:
                    time.sleep(0.01)
            for _ in range(3):
                assert flush("docs", timeout=5.0).status.ok
                sent += 1
            assert states[0] is grpc.ChannelConnectivity.READY
            closed = states.index(grpc.ChannelConnectivity.IDLE)
            deadline = time.monotonic() + 10.0  # the callbacks arrive on a thread of gRPC's
            while grpc.ChannelConnectivity.READY not in states[closed:]:
                assert time.monotonic() < deadline, f"never ready again: {states}"
                time.sleep(0.01)
            assert len(server.flush_calls) == sent  # every flush answered, none surfaced
        finally:
            channel.unsubscribe(states.append)
            client.close()
