"""A call's result from the parts its collections were flushed in, and from one Flush
response: every field, for each way a part can differ (pure logic, no server; the
mutation run's tests for ``flushkit._models``' results)."""

from __future__ import annotations

import time

import pytest
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from flushkit import FlushRequest, FlushResult, Status
from flushkit._models import merged_result, result_from_proto

pytestmark = pytest.mark.pure

FAILED = Status(100, "CollectionNotExists", "collection not found", False, "", 4)
ALSO_FAILED = Status(65535, "UnexpectedError", "broken", False, "", 1)


def call(*names: str, db: str = "shop", started_ago: float = 1.0) -> FlushRequest:
    return FlushRequest(names, db, None, False, time.monotonic() - started_ago)


def part(name: str, **fields: object) -> FlushResult:
    values: dict[str, object] = {
        "coll_segIDs": {name: (1,)},
        "flush_coll_segIDs": {name: (2,)},
        "coll_seal_times": {name: 3},
        "coll_flush_ts": {name: 4},
        "db_name": "shop",
        "status": Status(),
        "elapsed": 0.01,
        "persisted": True,
    }
    values.update(fields)
    return FlushResult(**values)  # type: ignore[arg-type]


def test_a_merged_result_joins_every_mapping_and_keeps_the_calls_own_elapsed():
    merged = merged_result(call("a", "b"), [part("a"), part("b", satisfied_by="flush")])
    assert merged.coll_segIDs == {"a": (1,), "b": (1,)}
    assert merged.flush_coll_segIDs == {"a": (2,), "b": (2,)}
    assert merged.coll_seal_times == {"a": 3, "b": 3}
    assert merged.coll_flush_ts == {"a": 4, "b": 4}
    assert merged.db_name == "shop" and merged.status.ok
    assert merged.persisted is True and merged.coalesced is False
    assert merged.satisfied_by == "flush"
    assert 1.0 <= merged.elapsed < 600  # since the call began, not a part's


def test_the_first_failed_part_is_the_merged_status():
    merged = merged_result(
        call("a", "b", "c"),
        [part("a"), part("b", status=FAILED), part("c", status=ALSO_FAILED)],
    )
    assert merged.status == FAILED


def test_persisted_only_if_every_part_is_coalesced_if_any_part_was():
    merged = merged_result(
        call("a", "b"), [part("a", coalesced=True), part("b", persisted=False)]
    )
    assert merged.persisted is False and merged.coalesced is True


@pytest.mark.parametrize(
    ("hows", "merged"),
    [
        (("covered", "flush"), "flush"),
        (("shared", "covered"), "shared"),
        (("shared", "flush"), "flush"),
        (("covered", "covered"), "covered"),
    ],
)
def test_satisfied_by_is_the_strongest_of_the_parts(hows, merged):
    parts = [part(name, satisfied_by=how) for name, how in zip("ab", hows, strict=True)]
    assert merged_result(call("a", "b"), parts).satisfied_by == merged


def test_a_part_without_a_database_takes_the_calls():
    merged = merged_result(call("a", "b", db="archive"), [part("a", db_name=""), part("b")])
    assert merged.db_name == "archive"


def response(**status: object) -> milvus_pb2.FlushResponse:
    message = milvus_pb2.FlushResponse(db_name="shop", status=common_pb2.Status(**status))
    message.coll_segIDs["a"].data.extend([1, 2])
    message.flush_coll_segIDs["a"].data.extend([3])
    message.coll_seal_times["a"] = 5
    message.coll_flush_ts["a"] = 6
    return message


def test_a_result_from_a_response_reads_every_field():
    result = result_from_proto(response(), call("a"), Status(), True, "shared")
    assert result.coll_segIDs == {"a": (1, 2)} and result.flush_coll_segIDs == {"a": (3,)}
    assert result.coll_seal_times == {"a": 5} and result.coll_flush_ts == {"a": 6}
    assert result.db_name == "shop" and result.status.ok and result.persisted is True
    assert result.coalesced is True and result.satisfied_by == "shared"
    assert result.flushing == 0.0 and result.persisting == 0.0
    assert 1.0 <= result.elapsed < 600


def test_a_result_from_an_empty_response_has_empty_mappings_and_the_calls_database():
    empty = milvus_pb2.FlushResponse()
    result = result_from_proto(empty, call("a", db="archive"), Status(), False)
    assert result.coll_segIDs == {} and result.flush_coll_segIDs == {}
    assert result.coll_seal_times == {} and result.coll_flush_ts == {}
    assert result.db_name == "archive"
    assert result.satisfied_by == "flush" and result.coalesced is False


def test_a_status_reads_every_field_of_the_message():
    status = Status.from_proto(
        common_pb2.Status(code=100, error_code=4, reason="gone", retriable=True, detail="d")
    )
    assert status == Status(100, "CollectionNotExists", "gone", True, "d", 4)
    unknown = Status.from_proto(common_pb2.Status(code=5, error_code=999))
    assert unknown.error_code == "999" and unknown.legacy_code == 999
    assert Status.from_proto(common_pb2.Status()) == Status()
    assert Status.from_proto(common_pb2.Status(reason="fine")) == Status(reason="fine")
    assert Status.from_proto(common_pb2.Status(reason="fine")).ok
