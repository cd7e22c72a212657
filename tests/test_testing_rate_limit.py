"""The scripted server's Milvus-like Flush rate limiter, through raw gRPC stubs.

Timing: a throttled call is asserted only at rates of 2.5/s or less (at least 400 ms between
two calls would have to pass for it to be admitted), and an admitted-again call only after
sleeping well past ``1 / rate``; nothing asserts that anything happens fast.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any, TypeAlias

import grpc
import pytest
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

from flushkit.testing import MilvusTestServer, _go_float, status

Stub: TypeAlias = Any  # milvus_pb2_grpc.MilvusServiceStub; pymilvus ships no type hints

REASON = "request is rejected by grpc RateLimiter middleware, please retry later: "
SLOW = 0.1  # Milvus's default flushRate.collection.max: 10 s between admitted Flushes


@pytest.fixture
def stub(fake: MilvusTestServer) -> Iterator[Stub]:
    with grpc.insecure_channel(fake.uri.removeprefix("http://")) as channel:
        yield milvus_pb2_grpc.MilvusServiceStub(channel)


def flush(stub: Stub, *names: str) -> Any:
    return stub.Flush(milvus_pb2.FlushRequest(collection_names=names), timeout=10)


def codes(stub: Stub, *requests: tuple[str, ...]) -> list[int]:
    """The status code of each Flush, sent one after the other."""
    return [flush(stub, *names).status.code for names in requests]


def test_first_flush_is_admitted_and_an_immediate_second_is_throttled(
    fake: MilvusTestServer, stub: Stub
) -> None:
    fake.limit_flush_rate(2)
    first = flush(stub, "docs")
    assert first.status.code == 0 and list(first.coll_segIDs["docs"].data) == [1001, 1002]

    second = flush(stub, "docs")
    assert second.status.code == 8
    assert second.status.error_code == 49  # commonpb.ErrorCode.RateLimit
    assert second.status.retriable is True
    assert second.status.reason == REASON + "rate limit exceeded[rate=2]"
    assert not second.coll_segIDs and not second.coll_flush_ts

    admitted, throttled = fake.flush_calls
    assert (admitted.throttled, throttled.throttled) == (False, True)
    assert fake.throttled_calls == [throttled]
    assert throttled.ended >= throttled.started > 0 and not throttled.cancelled


@pytest.mark.parametrize(("rate", "printed"), [(0.1, "0.1"), (1, "1"), (2.5, "2.5")])
def test_the_reason_prints_the_rate_as_go_does(
    fake: MilvusTestServer, stub: Stub, rate: float, printed: str
) -> None:
    fake.limit_flush_rate(rate)
    admitted, throttled = (flush(stub, "docs").status for _ in range(2))
    assert admitted.code == 0
    assert throttled.reason == f"{REASON}rate limit exceeded[rate={printed}]"


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        (0.1, "0.1"),
        (1.0, "1"),
        (2.5, "2.5"),
        (10.0, "10"),
        (123456.5, "123456.5"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (1e-05, "1e-05"),
        (1.5e-07, "1.5e-07"),
    ],
)
def test_go_float_formatting(value: float, printed: str) -> None:
    assert _go_float(value) == printed  # fmt.Sprintf("%v", value)


def test_admitted_again_after_one_over_rate_seconds(fake: MilvusTestServer, stub: Stub) -> None:
    fake.limit_flush_rate(5)  # 0.2 s apart
    assert flush(stub, "docs").status.code == 0
    time.sleep(0.25)
    assert flush(stub, "docs").status.code == 0
    time.sleep(0.25)
    assert flush(stub, "docs").status.code == 0
    assert fake.throttled_calls == []


def test_collections_are_limited_independently(fake: MilvusTestServer, stub: Stub) -> None:
    fake.limit_flush_rate(SLOW)
    assert codes(
        stub,
        ("docs",),
        ("docs", "images"),  # docs is throttled: the whole Flush is, images is not admitted
        ("images",),  # so images's first admitted Flush is this one
        ("docs",),
        ("images",),
        ("images", "images"),
        ("videos",),
    ) == [0, 8, 0, 8, 8, 8, 0]
    throttled = fake.throttled_calls
    assert [list(call.request.collection_names) for call in throttled] == [
        ["docs", "images"],
        ["docs"],
        ["images"],
        ["images", "images"],
    ]
    assert [call.throttled for call in fake.flush_calls] == [
        False,
        True,
        False,
        True,
        True,
        True,
        False,
    ]


def test_server_wide_limiter(fake: MilvusTestServer, stub: Stub) -> None:
    fake.limit_flush_rate(SLOW, per_collection=False)  # as Milvus 2.3
    assert flush(stub, "docs").status.code == 0
    images = flush(stub, "images").status
    assert (images.code, images.error_code, images.retriable) == (8, 49, True)
    assert images.reason == REASON + "rate limit exceeded[rate=0.1]"
    assert codes(stub, ("videos",), ("docs", "images"), ()) == [8, 8, 8]
    assert len(fake.throttled_calls) == 4


def test_server_wide_limiter_admits_again_after_one_over_rate_seconds(
    fake: MilvusTestServer, stub: Stub
) -> None:
    fake.limit_flush_rate(5, per_collection=False)
    assert flush(stub, "docs").status.code == 0
    time.sleep(0.25)
    assert flush(stub, "images").status.code == 0


def test_a_throttled_flush_does_not_consume_a_script(fake: MilvusTestServer, stub: Stub) -> None:
    fake.limit_flush_rate(SLOW)
    fake.script_flush(status(1, 1, "first"), status(2, 1, "second"))
    assert flush(stub, "docs").status.reason == "first"  # admitted: it takes a script entry
    assert flush(stub, "docs").status.code == 8  # throttled: it does not
    assert flush(stub, "images").status.reason == "second"
    assert flush(stub, "videos").status.code == 0  # the script is used up: the default
    assert len(fake.throttled_calls) == 1


def test_a_missing_collection_answers_not_found_before_the_limiter(
    fake: MilvusTestServer, stub: Stub
) -> None:
    fake.missing("ghost")
    fake.limit_flush_rate(SLOW)
    assert flush(stub, "docs").status.code == 0
    for _ in range(2):  # never throttled, and never admitted: it does not count
        response = flush(stub, "docs", "ghost")
        assert response.status.code == 100
        assert response.status.reason == "collection not found[collection=ghost]"
    assert flush(stub, "docs").status.code == 8
    assert [call.throttled for call in fake.flush_calls] == [False, False, False, True]


def test_get_flush_state_is_not_limited(fake: MilvusTestServer, stub: Stub) -> None:
    fake.limit_flush_rate(SLOW, per_collection=False)
    assert flush(stub, "docs").status.code == 0
    request = milvus_pb2.GetFlushStateRequest(collection_name="docs", segmentIDs=[1001])
    for _ in range(3):
        state = stub.GetFlushState(request, timeout=10)
        assert state.status.code == 0 and state.flushed
    assert fake.throttled_calls == []


def test_concurrent_flushes_admit_exactly_one(fake: MilvusTestServer, stub: Stub) -> None:
    fake.limit_flush_rate(SLOW)
    with futures.ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda _: flush(stub, "docs").status.code, range(32)))
    assert sorted(answers) == [0] + [8] * 31
    assert len(fake.flush_calls) == 32 and len(fake.throttled_calls) == 31


def test_reset_turns_the_limiter_off(fake: MilvusTestServer, stub: Stub) -> None:
    fake.limit_flush_rate(SLOW)
    assert codes(stub, ("docs",), ("docs",)) == [0, 8]
    fake.reset()
    assert fake.throttled_calls == []
    assert codes(stub, ("docs",), ("docs",), ("docs",)) == [0, 0, 0]
    assert fake.throttled_calls == []
    fake.limit_flush_rate(SLOW)  # and forgets the limiter's state: docs starts afresh
    assert codes(stub, ("docs",), ("docs",)) == [0, 8]


def test_none_turns_the_limiter_off(fake: MilvusTestServer, stub: Stub) -> None:
    fake.limit_flush_rate(SLOW)
    assert codes(stub, ("docs",), ("docs",)) == [0, 8]
    fake.limit_flush_rate(None)
    assert codes(stub, ("docs",), ("docs",)) == [0, 0]
    assert len(fake.throttled_calls) == 1  # the records stay


@pytest.mark.parametrize("rate", [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf, True, "2"])
def test_bad_rates_raise_value_error(fake: MilvusTestServer, stub: Stub, rate: Any) -> None:
    fake.limit_flush_rate(SLOW)
    with pytest.raises(ValueError, match="finite rate > 0 or None"):
        fake.limit_flush_rate(rate)
    assert codes(stub, ("docs",), ("docs",)) == [0, 8]  # the limit in force is kept
