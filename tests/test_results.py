"""FlushResult built from a FlushResponse: read-only mappings that behave as dicts, equal,
picklable, converted once."""

from __future__ import annotations

import dataclasses
import json
import pickle
import time

import pytest
from pymilvus.grpc_gen import milvus_pb2

import flushkit
from flushkit import FlushRequest, FlushResult, Status
from flushkit._models import merged_result, result_from_proto


def _response() -> milvus_pb2.FlushResponse:
    response = milvus_pb2.FlushResponse(db_name="default")
    response.coll_segIDs["a"].data.extend([1, 2])
    response.flush_coll_segIDs["a"].data.extend([0])
    response.coll_seal_times["a"] = 1_700_000_000
    response.coll_flush_ts["a"] = 449_000_000_000_000_000
    return response


def _result(names: tuple[str, ...] = ("a",), response=None) -> FlushResult:
    request = FlushRequest(names, "default", None, False, time.monotonic())
    return result_from_proto(response or _response(), request, Status(), persisted=False)


@pytest.mark.pure
def test_mappings_read_as_the_response_said():
    result = _result()
    assert result.coll_segIDs == {"a": (1, 2)}
    assert result.flush_coll_segIDs == {"a": (0,)}
    assert result.coll_seal_times == {"a": 1_700_000_000}
    assert result.coll_flush_ts == {"a": 449_000_000_000_000_000}
    assert dict(result.coll_segIDs) == {"a": (1, 2)} and list(result.coll_segIDs) == ["a"]
    assert len(result.coll_segIDs) == 1 and "a" in result.coll_segIDs
    assert result.coll_segIDs.get("b") is None
    assert repr(result.coll_segIDs) == "{'a': (1, 2)}"


@pytest.mark.pure
def test_mappings_views_are_dict_views():
    result = _result()
    assert list(result.coll_segIDs.keys()) == ["a"]
    assert list(result.coll_segIDs.values()) == [(1, 2)]
    assert list(result.coll_segIDs.items()) == [("a", (1, 2))]
    assert sum(len(ids) for ids in result.coll_segIDs.values()) == 2
    assert result.coll_seal_times.items() == {("a", 1_700_000_000)}
    assert result.coll_segIDs.keys() == {"a"} and result.coll_segIDs.keys() & {"a", "b"} == {"a"}
    assert (1, 2) in result.coll_segIDs.values()
    with pytest.raises(TypeError):  # a view is no way to change the result
        result.coll_segIDs.keys().mapping["b"] = (3,)  # type: ignore[index]


@pytest.mark.pure
def test_mappings_are_read_only_and_detached_from_later_changes():
    response = _response()
    result = _result(response=response)
    with pytest.raises(TypeError):
        result.coll_segIDs["b"] = (3,)  # type: ignore[index]
    assert result.coll_segIDs == {"a": (1, 2)}  # converted now
    response.coll_segIDs["a"].data.append(9)
    assert result.coll_segIDs["a"] == (1, 2)


@pytest.mark.pure
def test_empty_maps_are_empty():
    result = _result(response=milvus_pb2.FlushResponse(db_name="default"))
    assert result.coll_segIDs == {} and not result.coll_seal_times


@pytest.mark.pure
def test_results_compare_equal_and_pickle():
    result = _result()
    again = pickle.loads(pickle.dumps(result))
    assert again == result
    assert again.coll_segIDs == {"a": (1, 2)}
    assert pickle.loads(pickle.dumps(again)) == again


@pytest.mark.pure
def test_merged_results_join_the_mappings():
    second = _response()
    second.coll_segIDs["b"].data.extend([7])
    del second.coll_segIDs["a"]
    request = FlushRequest(("a", "b"), "default", None, False, time.monotonic())
    merged = merged_result(request, [_result(), _result(("b",), second)])
    assert merged.coll_segIDs == {"a": (1, 2), "b": (7,)}


@pytest.mark.pure
def test_request_replace_changes_each_field_and_only_it():
    request = FlushRequest(("a",), "default", 5.0, False, 1.0, 2.0, "host", 19530, False, None)
    names = [field.name for field in dataclasses.fields(FlushRequest)]
    changed = {
        "collection_names": ("b", "c"),
        "db_name": "other",
        "wait": True,
        "started": 3.0,
        "deadline": 4.0,
        "server_address": "elsewhere",
        "server_port": 1,
        "coalesce": True,
        "trace": object(),
    }
    assert set(changed) == set(names) - {"timeout"}  # timeout moves the deadline: below
    for name, value in changed.items():
        copy = request.replace(**{name: value})
        assert getattr(copy, name) == value
        for other in names:
            if other != name:
                assert getattr(copy, other) == getattr(request, other), (name, other)
    assert request.replace() == request and request.replace() is not request
    with pytest.raises(TypeError):
        request.replace(colection_names=("b",))  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.db_name = "other"  # type: ignore[misc]


@pytest.mark.pure
def test_replace_checks_what_a_caller_gives_as_a_caller_s_own_is_checked():
    request = FlushRequest(("a",), "default", 5.0, False, 1.0, 2.0)
    with pytest.raises(ValueError, match="db_name is empty or blank"):
        request.replace(db_name="")
    with pytest.raises(TypeError, match="db_name must be a str"):
        request.replace(db_name=None)  # type: ignore[typeddict-item]
    with pytest.raises(ValueError, match="collection_names is empty"):
        request.replace(collection_names=())
    with pytest.raises(ValueError, match="timeout must be a finite number"):
        request.replace(timeout=0.0)
    with pytest.raises(TypeError, match="wait must be True or False"):
        request.replace(wait=1)  # type: ignore[typeddict-item]
    names = ["b", "a", "b"]
    assert request.replace(collection_names=names).collection_names == ("b", "a")  # type: ignore[typeddict-item]
    assert request.replace(timeout=None, db_name="prod").db_name == "prod"


@pytest.mark.pure
def test_a_new_timeout_moves_the_deadline_it_set():
    request = FlushRequest(("a",), "default", 5.0, False, 100.0, 105.0)
    assert request.replace(timeout=2.0).deadline == 102.0
    assert request.replace(timeout=None).deadline is None
    assert request.replace(timeout=2.0, deadline=101.0).deadline == 101.0  # given: kept
    unbounded = FlushRequest(("a",), "default", 5.0, False, 100.0)  # no timeout middleware
    assert unbounded.replace(timeout=2.0).deadline is None


@pytest.mark.pure
def test_replace_may_change_exactly_the_requests_fields():
    from flushkit._models import RequestChanges

    assert set(RequestChanges.__annotations__) == {
        field.name for field in dataclasses.fields(FlushRequest)
    }


def test_a_flushers_request_is_the_request_its_fields_make(client):
    # The facade fills the request's fields without __init__: it must be the same value,
    # frozen, and carry every field.
    flusher = flushkit.Flusher(client, timeout=7.0)
    made = flusher._request("c", wait=True)
    fields = {field.name: getattr(made, field.name) for field in dataclasses.fields(FlushRequest)}
    assert made == FlushRequest(**fields)
    assert made.__dict__.keys() == fields.keys()
    assert (made.collection_names, made.timeout, made.wait) == (("c",), 7.0, True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.wait = False  # type: ignore[misc]


@pytest.mark.pure
def test_a_result_made_from_a_response_is_the_result_its_fields_make():
    result = _result()
    fields = {field.name: getattr(result, field.name) for field in dataclasses.fields(FlushResult)}
    assert result == FlushResult(**fields)
    # Every field, once read, is the result's own (the mappings are read from the
    # response, which the result keeps, when first read).
    assert result.__dict__.keys() - {"_response"} == fields.keys()
    assert (result.attempts, result.throttled, result.paced, result.persisted) == (1, 0, 0.0, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.elapsed = 0.0  # type: ignore[misc]


@pytest.mark.pure
def test_a_fresh_result_copies_pickles_and_replaces_as_any_other():
    import copy

    expected = {"a": (1, 2)}
    assert pickle.loads(pickle.dumps(_result())).coll_segIDs == expected
    assert copy.copy(_result()).coll_segIDs == expected
    assert copy.deepcopy(_result()).coll_seal_times == {"a": 1_700_000_000}
    replaced = dataclasses.replace(_result(), attempts=2)
    assert (replaced.attempts, replaced.flush_coll_segIDs) == (2, {"a": (0,)})
    plain = dataclasses.asdict(_result())  # plain dicts all the way down, JSON-able
    assert plain["coll_flush_ts"] == {"a": 449_000_000_000_000_000}
    assert type(plain["coll_segIDs"]) is dict and type(plain["flush_coll_segIDs"]) is dict
    assert json.loads(json.dumps(plain))["coll_segIDs"] == {"a": [1, 2]}
    merged = merged_result(
        FlushRequest(("a", "b"), "default", None, False, time.monotonic()),
        [_result(), _result(("b",), milvus_pb2.FlushResponse(db_name="default"))],
    )
    assert dataclasses.asdict(merged)["coll_seal_times"] == {"a": 1_700_000_000}
    assert dataclasses.asdict(_result(response=milvus_pb2.FlushResponse()))["coll_segIDs"] == {}
    fresh = _result()
    assert repr(fresh).startswith("FlushResult(coll_segIDs={'a': (1, 2)}, flush_coll_segIDs=")


@pytest.mark.pure
def test_a_result_has_no_attribute_it_does_not_declare():
    result = _result()
    with pytest.raises(AttributeError, match="no attribute 'segments'"):
        result.segments  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute '_ids'"):
        result._ids  # type: ignore[attr-defined]  # noqa: B018
    made = FlushResult({}, {}, {}, {}, "default", Status(), 0.0)
    with pytest.raises(AttributeError):
        made._response  # type: ignore[attr-defined]  # noqa: B018
    assert not hasattr(result, "response") and hasattr(result, "coll_segIDs")
