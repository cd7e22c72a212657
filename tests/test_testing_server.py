"""The scripted Milvus server itself, through raw gRPC stubs and pymilvus's MilvusClient."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any, TypeAlias

import grpc
import pytest
from pymilvus import MilvusClient
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

from flushkit.testing import MilvusTestServer, abort, delay, flushed, hang, ok, status

Stub: TypeAlias = Any  # milvus_pb2_grpc.MilvusServiceStub; pymilvus ships no type hints


@pytest.fixture
def server(fake: MilvusTestServer) -> MilvusTestServer:
    """conftest's session-wide server, reset for this test."""
    return fake


@pytest.fixture
def stub(server: MilvusTestServer) -> Iterator[Stub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield milvus_pb2_grpc.MilvusServiceStub(channel)


def flush_request(*names: str, db_name: str = "") -> milvus_pb2.FlushRequest:
    return milvus_pb2.FlushRequest(db_name=db_name, collection_names=names)


def state_request(name: str = "docs") -> milvus_pb2.GetFlushStateRequest:
    return milvus_pb2.GetFlushStateRequest(collection_name=name, segmentIDs=[1001], flush_ts=1)


def test_binds_a_free_loopback_port() -> None:
    with MilvusTestServer() as a, MilvusTestServer() as b:
        assert a.port > 0 and b.port > 0 and a.port != b.port
        assert a.uri == f"http://127.0.0.1:{a.port}"


def test_milvus_client_connects_and_closes() -> None:
    with MilvusTestServer() as server:  # its own port: pymilvus pools connections per address
        client = MilvusClient(uri=server.uri)
        (connect,) = server.calls
        assert connect.method == "Connect"
        assert connect.request.client_info.sdk_type == "Python"
        client.close()

        authorized = MilvusClient(uri=server.uri, token="root:Milvus")
        assert authorized.get_server_version() == MilvusTestServer.VERSION
        authorized.close()
        connect = server.calls[1]
        assert connect.method == "Connect"
        assert connect.metadata["authorization"] == "cm9vdDpNaWx2dXM="  # base64 root:Milvus
        assert [call.method for call in server.calls] == ["Connect", "Connect", "GetVersion"]


def test_milvus_client_flush_goes_through_flush_and_get_flush_state(
    server: MilvusTestServer,
) -> None:
    client = MilvusClient(uri=server.uri)
    try:
        client.flush("docs", timeout=5)
    finally:
        client.close()
    (call,) = server.flush_calls
    assert list(call.request.collection_names) == ["docs"]
    assert call.metadata["identifier"].isdigit()  # from the Connect answer
    (state,) = server.flush_state_calls
    assert list(state.request.segmentIDs) == [1001, 1002]
    assert state.request.flush_ts > 0


def test_flush_answers_segments_for_every_collection(server: MilvusTestServer, stub: Stub) -> None:
    response = stub.Flush(flush_request("docs", "images", db_name="analytics"), timeout=2)
    assert response.status.code == 0
    assert response.db_name == "analytics"
    assert list(response.coll_segIDs["docs"].data) == [1001, 1002]
    assert list(response.coll_segIDs["images"].data) == [1011, 1012]
    assert response.flush_coll_segIDs == response.coll_segIDs
    assert set(response.coll_seal_times) == {"docs", "images"}
    assert abs(response.coll_seal_times["docs"] - time.time()) < 5
    assert response.coll_flush_ts["docs"] > 0
    (call,) = server.flush_calls
    assert list(call.request.collection_names) == ["docs", "images"]
    # grpc-timeout travels rounded up (to 10 ms for 1-10 s), so allow a little over
    assert call.time_remaining is not None and 0 < call.time_remaining <= 2 + 0.02
    assert call.started <= call.ended and not call.cancelled


def test_explicit_segments_and_default_after_the_script(
    server: MilvusTestServer, stub: Stub
) -> None:
    server.script_flush(ok({"docs": [7, 8, 9]}))
    first = stub.Flush(flush_request("docs", "images"))
    assert {name: list(ids.data) for name, ids in first.coll_segIDs.items()} == {"docs": [7, 8, 9]}
    assert list(stub.Flush(flush_request("docs")).coll_segIDs["docs"].data) == [1001, 1002]
    assert server.flush_calls[1].time_remaining is None


def test_scripted_status(server: MilvusTestServer, stub: Stub) -> None:
    server.script_flush(status(8, 49, "rate limit exceeded", retriable=True, detail="slow down"))
    response = stub.Flush(flush_request("docs"))
    assert (response.status.code, response.status.error_code) == (8, 49)
    assert response.status.reason == "rate limit exceeded"
    assert response.status.retriable and response.status.detail == "slow down"
    assert not response.coll_segIDs and not response.coll_flush_ts

    server.script_flush_state(status(100, 4, "collection not found"))
    state = stub.GetFlushState(state_request())
    assert state.status.code == 100 and not state.flushed


def test_hang_until_the_deadline_and_the_server_sees_it(
    server: MilvusTestServer, stub: Stub
) -> None:
    server.script_flush(hang())
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        stub.Flush(flush_request("docs"), timeout=0.2)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.19 <= time.monotonic() - started < 0.2 + 1.0  # at the deadline (and it ends)
    assert server.wait_for_cancellations(1)
    (call,) = server.flush_calls
    assert call.cancelled
    assert call.time_remaining is not None and 0 < call.time_remaining <= 0.2 + 0.01


def test_hang_until_the_client_cancels(server: MilvusTestServer, stub: Stub) -> None:
    server.script_flush_state(hang())
    future = stub.GetFlushState.future(state_request())
    assert server.wait_for_calls(1, "GetFlushState")
    future.cancel()
    assert server.wait_for_cancellations(1)
    assert server.flush_state_calls[0].time_remaining is None


def test_abort(server: MilvusTestServer, stub: Stub) -> None:
    server.script_flush(abort(grpc.StatusCode.UNAVAILABLE, "going away"))
    with pytest.raises(grpc.RpcError) as caught:
        stub.Flush(flush_request("docs"), timeout=2)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "going away"
    assert not server.flush_calls[0].cancelled


def test_delay_then_answer(server: MilvusTestServer, stub: Stub) -> None:
    server.script_flush(delay(0.2), delay(0.05, then=status(65535, 1, "busy")))
    started = time.monotonic()
    assert stub.Flush(flush_request("docs"), timeout=2).status.code == 0
    assert 0.2 <= time.monotonic() - started < 0.2 + 1.0
    assert stub.Flush(flush_request("docs"), timeout=2).status.reason == "busy"
    assert not any(call.cancelled for call in server.calls)


def test_delay_ends_early_when_the_client_goes(server: MilvusTestServer, stub: Stub) -> None:
    server.script_flush(delay(30))
    with pytest.raises(grpc.RpcError):
        stub.Flush(flush_request("docs"), timeout=0.1)
    assert server.wait_for_cancellations(1)  # long before the 30 s delay's end
    (call,) = server.flush_calls
    deadline = time.monotonic() + 10
    while call.ended == 0.0:  # the handler records its end just after the cancellation
        assert time.monotonic() < deadline, "the handler did not end"
        time.sleep(0.01)
    assert call.ended - call.started < 10


def test_flushed_after(server: MilvusTestServer, stub: Stub) -> None:
    server.flushed_after(3)
    answers = [stub.GetFlushState(state_request()).flushed for _ in range(4)]
    assert answers == [False, False, True, True]
    server.script_flush_state(flushed(False), delay(0.01, then=flushed(False)))
    assert [stub.GetFlushState(state_request()).flushed for _ in range(3)] == [False, False, True]


def test_metadata_is_recorded(server: MilvusTestServer, stub: Stub) -> None:
    response = stub.Flush(flush_request("docs"), metadata=[("dbname", "analytics")])
    assert response.db_name == "analytics"
    assert server.flush_calls[0].metadata["dbname"] == "analytics"


def test_every_header_is_recorded_in_order_repeats_included(
    server: MilvusTestServer, stub: Stub
) -> None:
    stub.Flush(flush_request("docs"), metadata=[("x-seen", "1"), ("dbname", "a"), ("x-seen", "2")])
    (call,) = server.flush_calls
    ours = [header for header in call.headers if header[0] in {"x-seen", "dbname"}]
    assert ours == [("x-seen", "1"), ("dbname", "a"), ("x-seen", "2")]
    assert call.metadata["x-seen"] == "2"  # by name: the last one


def test_misused_behaviours_are_refused(server: MilvusTestServer) -> None:
    with pytest.raises(TypeError):
        server.script_flush(flushed(True))
    with pytest.raises(TypeError):
        server.script_flush(delay(0.1, then="ok"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        abort(grpc.StatusCode.OK)
    with pytest.raises(ValueError):
        server.flushed_after(0)


def test_reset_clears_scripts_and_records(server: MilvusTestServer, stub: Stub) -> None:
    server.script_flush(status(1), status(2))
    assert stub.Flush(flush_request("docs")).status.code == 1
    server.reset()
    assert server.calls == []
    assert stub.Flush(flush_request("docs")).status.code == 0


def test_130_concurrent_hanging_calls_end_together(server: MilvusTestServer, stub: Stub) -> None:
    server.script_flush(*[hang() for _ in range(130)])

    # Deadlines long enough for every call to reach its handler first, on a busy machine
    # too (a call whose deadline passes before the server takes it up never reaches it).
    deadline = 5.0

    def one(i: int) -> grpc.StatusCode:
        try:
            stub.Flush(flush_request(f"c{i}"), timeout=deadline)
        except grpc.RpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    started = time.monotonic()
    with futures.ThreadPoolExecutor(max_workers=130) as pool:
        calls = [pool.submit(one, i) for i in range(130)]
        assert server.wait_for_calls(130, timeout=deadline)  # all hanging at once
        codes = [call.result() for call in calls]
    took = time.monotonic() - started
    assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 130
    # concurrently: one after another they would take 650 s
    assert deadline <= took < 60.0, took
    # the server notices each client going on its own handler thread: on a busy machine
    # 130 of them take a while to be scheduled
    assert server.wait_for_cancellations(130, timeout=20.0)
    assert len(server.flush_calls) == 130


def test_stop_releases_hanging_calls() -> None:
    server = MilvusTestServer().start()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = milvus_pb2_grpc.MilvusServiceStub(channel)
        server.script_flush(hang())
        future = stub.Flush.future(flush_request("docs"))
        assert server.wait_for_calls(1)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 4  # at once, not after stop's 5 s wait
        with pytest.raises(grpc.RpcError) as caught:
            future.result(timeout=2)
        assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        assert not server.flush_calls[0].cancelled


def test_disconnect_closes_the_connection_and_serves_again(server: MilvusTestServer) -> None:
    from flushkit.testing import disconnect

    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = milvus_pb2_grpc.MilvusServiceStub(channel)
    server.script_flush(disconnect())
    with pytest.raises(grpc.RpcError) as caught:
        stub.Flush(milvus_pb2.FlushRequest(collection_names=["docs"]), timeout=5)
    assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    deadline = time.monotonic() + 5
    while True:  # back on the same port once the restart is done
        try:
            answer = stub.Flush(milvus_pb2.FlushRequest(collection_names=["docs"]), timeout=1)
            break
        except grpc.RpcError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert answer.status.code == 0 and list(answer.coll_segIDs["docs"].data) == [1001, 1002]
    channel.close()


def test_the_pytest_plugin_fixture_is_fresh(milvus_test_server: MilvusTestServer) -> None:
    assert milvus_test_server.calls == []
    assert milvus_test_server.uri.startswith("http://127.0.0.1:")
