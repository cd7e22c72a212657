"""The scripted server's fleet model: AllocTimestamp, and GetFlushState(T) answered from the
Flushes any client had admitted, through raw gRPC stubs (and pymilvus's MilvusClient).

Timing: nothing asserts that anything happens fast. A coverage that must not have happened
yet is asserted only behind a persist delay of a minute; one that must happen is polled for
with a generous timeout; a persist delay is checked only as a lower bound.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any, TypeAlias

import grpc
import pytest
from pymilvus import MilvusClient
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

from flushkit.testing import (
    MilvusTestServer,
    abort,
    delay,
    disconnect,
    flushed,
    hang,
    ok,
    status,
)

Stub: TypeAlias = Any  # milvus_pb2_grpc.MilvusServiceStub; pymilvus ships no type hints

LOGICAL = 1 << 18  # a hybrid timestamp: physical Unix ms << 18 | logical counter
SLOW = 0.1  # Milvus's default flushRate.collection.max: 10 s between admitted Flushes
LONG = 60.0  # a persist delay no test outlives


def channel_to(server: MilvusTestServer) -> grpc.Channel:
    return grpc.insecure_channel(server.uri.removeprefix("http://"))


@pytest.fixture
def stub(fake: MilvusTestServer) -> Iterator[Stub]:
    with channel_to(fake) as channel:
        yield milvus_pb2_grpc.MilvusServiceStub(channel)


@pytest.fixture
def other(fake: MilvusTestServer) -> Iterator[Stub]:
    """Another client: a stub on a channel of its own."""
    with channel_to(fake) as channel:
        yield milvus_pb2_grpc.MilvusServiceStub(channel)


def alloc(stub: Stub) -> int:
    response = stub.AllocTimestamp(milvus_pb2.AllocTimestampRequest(), timeout=10)
    assert response.status.code == 0
    return int(response.timestamp)


def flush(stub: Stub, *names: str, db_name: str = "", metadata: Any = None) -> Any:
    request = milvus_pb2.FlushRequest(db_name=db_name, collection_names=names)
    return stub.Flush(request, timeout=10, metadata=metadata)


def flushed_at(
    stub: Stub,
    flush_ts: int,
    name: str = "docs",
    db_name: str = "",
    metadata: Any = None,
    segment_ids: tuple[int, ...] = (),
) -> bool:
    """GetFlushState(flush_ts)'s answer (its status must be OK)."""
    request = milvus_pb2.GetFlushStateRequest(
        segmentIDs=segment_ids, flush_ts=flush_ts, db_name=db_name, collection_name=name
    )
    response = stub.GetFlushState(request, timeout=10, metadata=metadata)
    assert response.status.code == 0
    return bool(response.flushed)


def eventually(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Poll ``predicate`` every 20 ms until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# the oracle


def test_timestamps_strictly_increase_over_many_calls(stub: Stub) -> None:
    before = int(time.time() * 1000)
    stamps = [alloc(stub) for _ in range(500)]
    after = int(time.time() * 1000)
    assert all(a < b for a, b in itertools.pairwise(stamps))
    # physical part: the server's clock in ms (this process's), never behind it
    assert before <= stamps[0] >> 18 and stamps[-1] >> 18 <= after + 1000


def test_timestamps_strictly_increase_from_several_clients_and_threads(
    fake: MilvusTestServer,
) -> None:
    channels = [channel_to(fake) for _ in range(4)]
    stubs = [milvus_pb2_grpc.MilvusServiceStub(channel) for channel in channels]
    try:
        with futures.ThreadPoolExecutor(max_workers=8) as pool:
            runs = list(pool.map(lambda i: [alloc(stubs[i % 4]) for _ in range(100)], range(8)))
    finally:
        for channel in channels:
            channel.close()
    for run in runs:  # each caller sees its own answers strictly increase
        assert all(a < b for a, b in itertools.pairwise(run))
    everything = [stamp for run in runs for stamp in run]
    assert len(set(everything)) == 800  # and no two callers ever get the same timestamp
    assert len(fake.alloc_timestamp_calls) == 800


def test_alloc_timestamp_is_recorded(fake: MilvusTestServer, stub: Stub) -> None:
    stub.AllocTimestamp(
        milvus_pb2.AllocTimestampRequest(), timeout=5, metadata=[("dbname", "analytics")]
    )
    assert fake.wait_for_calls(1, "AllocTimestamp")
    (call,) = fake.alloc_timestamp_calls
    assert call is fake.calls[0]
    assert call.method == "AllocTimestamp"
    assert isinstance(call.request, milvus_pb2.AllocTimestampRequest)
    assert call.metadata["dbname"] == "analytics"
    assert call.time_remaining is not None and 0 < call.time_remaining <= 5 + 0.05
    assert call.started <= call.ended and not call.cancelled and not call.throttled
    assert fake.flush_calls == [] and fake.flush_state_calls == []


def test_alloc_timestamp_is_never_rate_limited(fake: MilvusTestServer, stub: Stub) -> None:
    fake.limit_flush_rate(SLOW, per_collection=False)
    assert flush(stub, "docs").status.code == 0
    assert flush(stub, "docs").status.code == 8
    stamps = [alloc(stub) for _ in range(50)]
    assert len(set(stamps)) == 50
    assert len(fake.throttled_calls) == 1


def test_a_flush_answers_its_admission_timestamp_from_the_same_oracle(stub: Stub) -> None:
    before = alloc(stub)
    response = flush(stub, "docs", "images")
    after = alloc(stub)
    stamps = dict(response.coll_flush_ts)
    assert set(stamps) == {"docs", "images"}
    assert stamps["docs"] == stamps["images"]  # one admission, one timestamp
    assert before < stamps["docs"] < after

    again = flush(stub, "docs").coll_flush_ts["docs"]
    assert after < again


def test_scripted_segments_take_their_timestamp_from_the_oracle(
    fake: MilvusTestServer, stub: Stub
) -> None:
    fake.script_flush(ok({"docs": [7, 8, 9]}))
    before = alloc(stub)
    response = flush(stub, "docs")
    assert {name: list(ids.data) for name, ids in response.coll_segIDs.items()} == {
        "docs": [7, 8, 9]
    }
    assert before < response.coll_flush_ts["docs"] < alloc(stub)
    assert flushed_at(stub, response.coll_flush_ts["docs"])


# GetFlushState(T): whoever's Flush covers it


def test_not_flushed_before_any_flush(stub: Stub) -> None:
    taken = alloc(stub)
    assert [flushed_at(stub, taken) for _ in range(3)] == [False, False, False]


def test_flushed_once_a_flush_admitted_after_t_persisted(stub: Stub) -> None:
    taken = alloc(stub)
    assert not flushed_at(stub, taken)
    response = flush(stub, "docs")
    assert response.coll_flush_ts["docs"] > taken
    assert flushed_at(stub, taken)
    assert flushed_at(stub, response.coll_flush_ts["docs"])  # the flusher's own wait
    assert not flushed_at(stub, taken, name="images")  # another collection is not covered


def test_another_clients_flush_covers_my_timestamp(
    fake: MilvusTestServer, stub: Stub, other: Stub
) -> None:
    taken = alloc(stub)
    assert not flushed_at(stub, taken)
    assert flush(other, "docs").status.code == 0
    assert flushed_at(stub, taken)
    assert [call.method for call in fake.calls] == [
        "AllocTimestamp",
        "GetFlushState",
        "Flush",
        "GetFlushState",
    ]


def test_a_milvus_client_flush_covers_a_raw_clients_timestamp(
    fake: MilvusTestServer, stub: Stub
) -> None:
    taken = alloc(stub)
    client = MilvusClient(uri=fake.uri)
    try:
        client.flush("docs", timeout=10)  # waits through its own GetFlushState: true at once
    finally:
        client.close()
    assert flushed_at(stub, taken)


def test_a_flush_admitted_before_t_does_not_cover_it(stub: Stub, other: Stub) -> None:
    early = flush(other, "docs").coll_flush_ts["docs"]
    taken = alloc(stub)
    assert early < taken
    assert flushed_at(stub, early)
    assert not flushed_at(stub, taken)
    assert not flushed_at(stub, taken + 1_000_000 * LOGICAL)  # far in the future: no Flush yet


def test_segment_ids_do_not_change_the_rule(stub: Stub) -> None:
    taken = alloc(stub)
    assert not flushed_at(stub, taken, segment_ids=(1001, 1002))
    flush(stub, "docs")
    assert flushed_at(stub, taken, segment_ids=(1001, 1002))
    assert flushed_at(stub, taken, segment_ids=(424242,))
    assert flushed_at(stub, taken)


def test_flush_ts_zero_is_always_flushed(stub: Stub) -> None:
    assert flushed_at(stub, 0)
    assert flushed_at(stub, 0, name="never-flushed", db_name="elsewhere")


def test_a_flush_in_one_database_does_not_cover_another(stub: Stub, other: Stub) -> None:
    taken = alloc(stub)
    assert flush(other, "docs", db_name="a").db_name == "a"
    assert flushed_at(stub, taken, db_name="a")
    assert flushed_at(stub, taken, metadata=[("dbname", "a")])  # the header names it too
    assert not flushed_at(stub, taken, db_name="b")
    assert not flushed_at(stub, taken, metadata=[("dbname", "b")])
    assert not flushed_at(stub, taken)  # "default"

    assert flush(other, "docs", metadata=[("dbname", "b")]).db_name == "b"
    assert flushed_at(stub, taken, db_name="b")
    assert not flushed_at(stub, taken, db_name="default")

    assert flush(other, "docs").db_name == "default"
    assert flushed_at(stub, taken, db_name="default")
    assert flushed_at(stub, taken)


def test_a_throttled_flush_covers_nothing(fake: MilvusTestServer, stub: Stub, other: Stub) -> None:
    fake.limit_flush_rate(SLOW)
    assert flush(other, "docs").status.code == 0
    taken = alloc(stub)
    throttled = flush(other, "docs")
    assert throttled.status.code == 8 and not throttled.coll_flush_ts
    assert not flushed_at(stub, taken)
    assert flush(other, "images").status.code == 0  # another collection's Flush is admitted
    assert not flushed_at(stub, taken)
    assert flushed_at(stub, taken, name="images")
    assert len(fake.throttled_calls) == 1


def test_flushes_not_answered_ok_cover_nothing(fake: MilvusTestServer, stub: Stub) -> None:
    taken = alloc(stub)
    fake.script_flush(
        status(65535, 1, "busy"),
        abort(grpc.StatusCode.UNAVAILABLE, "going away"),
        hang(),
        delay(0.01, then=status(8, 49, "slow down", retriable=True)),
    )
    assert flush(stub, "docs").status.code == 65535
    with pytest.raises(grpc.RpcError) as caught:
        flush(stub, "docs")
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError) as caught:
        stub.Flush(milvus_pb2.FlushRequest(collection_names=["docs"]), timeout=0.2)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert flush(stub, "docs").status.code == 8
    fake.missing("ghost")
    assert flush(stub, "docs", "ghost").status.code == 100
    assert not flushed_at(stub, taken)

    assert flush(stub, "docs").status.code == 0  # the script is used up: admitted
    assert flushed_at(stub, taken)


def test_a_delayed_ok_is_admitted_and_covers(fake: MilvusTestServer, stub: Stub) -> None:
    taken = alloc(stub)
    fake.script_flush(delay(0.05))
    response = flush(stub, "docs")
    assert response.coll_flush_ts["docs"] > taken
    assert flushed_at(stub, taken)


# persist_after


def test_persist_after_holds_coverage_back(fake: MilvusTestServer, stub: Stub) -> None:
    fake.persist_after(LONG)
    taken = alloc(stub)
    response = flush(stub, "docs")
    assert response.status.code == 0 and response.coll_flush_ts["docs"] > taken
    assert not flushed_at(stub, taken)
    assert not flushed_at(stub, response.coll_flush_ts["docs"])  # its own wait waits too

    fake.persist_after(0)  # a later setting does not move an admitted Flush's persist time
    assert not flushed_at(stub, taken)
    flush(stub, "docs")  # but a Flush admitted now persists at once
    assert flushed_at(stub, taken)


def test_persist_after_covers_once_the_delay_has_passed(fake: MilvusTestServer, stub: Stub) -> None:
    fake.persist_after(0.3)
    taken = alloc(stub)
    sent = time.monotonic()
    assert flush(stub, "docs").status.code == 0
    assert eventually(lambda: flushed_at(stub, taken))
    assert time.monotonic() - sent >= 0.3  # never before the delay (a lower bound only)


def test_an_older_persisted_flush_still_covers_under_a_newer_pending_one(
    fake: MilvusTestServer, stub: Stub
) -> None:
    taken = alloc(stub)
    first = flush(stub, "docs").coll_flush_ts["docs"]  # persisted at once
    fake.persist_after(LONG)
    second = flush(stub, "docs").coll_flush_ts["docs"]
    assert taken < first < second
    assert flushed_at(stub, taken) and flushed_at(stub, first)
    assert not flushed_at(stub, first + 1) and not flushed_at(stub, second)


@pytest.mark.parametrize("seconds", [-1, -0.1, float("nan"), float("inf"), True, "1"])
def test_bad_persist_delays_raise_value_error(
    fake: MilvusTestServer, stub: Stub, seconds: Any
) -> None:
    with pytest.raises(ValueError, match="finite seconds >= 0"):
        fake.persist_after(seconds)
    taken = alloc(stub)
    flush(stub, "docs")
    assert flushed_at(stub, taken)  # the delay in force (0) is kept


# scripts keep precedence over the model


def test_get_flush_state_scripts_take_precedence(fake: MilvusTestServer, stub: Stub) -> None:
    taken = alloc(stub)
    flush(stub, "docs")
    fake.script_flush_state(flushed(False), status(65535, 1, "busy"))
    assert not flushed_at(stub, taken)
    request = milvus_pb2.GetFlushStateRequest(flush_ts=taken, collection_name="docs")
    assert stub.GetFlushState(request, timeout=10).status.reason == "busy"
    assert flushed_at(stub, taken)  # the script is used up: the model again

    later = alloc(stub)
    fake.flushed_after(2)
    assert [flushed_at(stub, later) for _ in range(3)] == [False, True, False]


def test_a_missing_collection_still_answers_not_found(fake: MilvusTestServer, stub: Stub) -> None:
    fake.missing("ghost")
    request = milvus_pb2.GetFlushStateRequest(flush_ts=alloc(stub), collection_name="ghost")
    state = stub.GetFlushState(request, timeout=10)
    assert (state.status.code, state.flushed) == (100, False)
    assert state.status.reason == "collection not found[collection=ghost]"


# AllocTimestamp: scripted, and missing as on Milvus Lite


def test_without_alloc_timestamp_answers_unimplemented(fake: MilvusTestServer, stub: Stub) -> None:
    fake.script_alloc_timestamp(status(1, 1, "unused"))
    fake.without_alloc_timestamp()
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as caught:
            stub.AllocTimestamp(milvus_pb2.AllocTimestampRequest(), timeout=10)
        assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
        assert caught.value.details() == "Method not implemented!"  # as Milvus Lite 3.2.2
    assert len(fake.alloc_timestamp_calls) == 2
    assert not any(call.cancelled for call in fake.alloc_timestamp_calls)
    assert flush(stub, "docs").status.code == 0  # nothing else changes
    assert flushed_at(stub, 0)


def test_scripted_alloc_timestamp_behaviours(fake: MilvusTestServer, stub: Stub) -> None:
    fake.script_alloc_timestamp(
        status(65535, 1, "tso not ready", retriable=True),
        ok(),
        delay(0.05),
        delay(0.01, then=status(2, 1, "later")),
        abort(grpc.StatusCode.UNAVAILABLE, "going away"),
    )
    request = milvus_pb2.AllocTimestampRequest()
    failed = stub.AllocTimestamp(request, timeout=10)
    assert (failed.status.code, failed.status.reason, failed.status.retriable) == (
        65535,
        "tso not ready",
        True,
    )
    assert failed.timestamp == 0
    first = alloc(stub)
    second = alloc(stub)
    assert 0 < first < second
    assert stub.AllocTimestamp(request, timeout=10).status.reason == "later"
    with pytest.raises(grpc.RpcError) as caught:
        stub.AllocTimestamp(request, timeout=10)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "going away"
    assert second < alloc(stub)  # the script is used up: the oracle
    assert len(fake.alloc_timestamp_calls) == 6


def test_a_hanging_alloc_timestamp_is_seen_cancelled(fake: MilvusTestServer, stub: Stub) -> None:
    fake.script_alloc_timestamp(hang())
    with pytest.raises(grpc.RpcError) as caught:
        stub.AllocTimestamp(milvus_pb2.AllocTimestampRequest(), timeout=0.2)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert fake.wait_for_cancellations(1, timeout=20)
    (call,) = fake.alloc_timestamp_calls
    assert call.cancelled


def test_a_disconnecting_alloc_timestamp_then_the_oracle_goes_on(
    fake: MilvusTestServer,
) -> None:
    channel = channel_to(fake)
    stub = milvus_pb2_grpc.MilvusServiceStub(channel)
    try:
        before = alloc(stub)
        fake.script_alloc_timestamp(disconnect())
        with pytest.raises(grpc.RpcError) as caught:
            stub.AllocTimestamp(milvus_pb2.AllocTimestampRequest(), timeout=10)
        assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        after: list[int] = []

        def answered() -> bool:
            try:
                after.append(alloc(stub))
            except grpc.RpcError:
                return False
            return True

        assert eventually(answered)  # back on the same port once the restart is done
        assert before < after[0]  # one oracle per server: a restart keeps it
    finally:
        channel.close()


def test_flushed_is_refused_for_alloc_timestamp(fake: MilvusTestServer) -> None:
    with pytest.raises(TypeError, match="GetFlushState, not AllocTimestamp"):
        fake.script_alloc_timestamp(flushed(True))
    with pytest.raises(TypeError):
        fake.script_alloc_timestamp(delay(0.1, then=flushed(True)))


# reset


def test_reset_forgets_the_model(fake: MilvusTestServer, stub: Stub) -> None:
    fake.without_alloc_timestamp()
    fake.persist_after(LONG)
    fake.script_alloc_timestamp(status(1, 1, "scripted"))
    flush(stub, "docs")
    fake.reset()

    assert fake.calls == []
    taken = alloc(stub)  # neither unimplemented nor scripted
    assert not flushed_at(stub, taken)  # nothing admitted since the reset
    flush(stub, "docs")
    assert flushed_at(stub, taken)  # persisted at once: the delay is gone
    assert [call.method for call in fake.calls] == [
        "AllocTimestamp",
        "GetFlushState",
        "Flush",
        "GetFlushState",
    ]


def test_timestamps_keep_increasing_across_reset_and_count_as_flushed(
    fake: MilvusTestServer, stub: Stub
) -> None:
    fake.persist_after(LONG)
    before = alloc(stub)
    flush(stub, "docs")
    assert not flushed_at(stub, before)
    fake.reset()
    after = alloc(stub)
    assert before < after  # one oracle: it never goes back
    # what the server had before the reset counts as persisted, as a real checkpoint starts
    # at the collection's creation
    assert flushed_at(stub, before)
    assert flushed_at(stub, 1)
    assert not flushed_at(stub, after)
