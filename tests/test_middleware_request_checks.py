"""A middleware cannot send what a caller could not: a request it changes is checked as
the caller's own is (an empty ``db_name`` would reach Milvus as its default database),
before any RPC, in every runtime."""

from __future__ import annotations

from typing import Any

import pytest
from pymilvus import MilvusClient

import flushkit
from flushkit.middleware import RequestPreparer

from .helpers import flush_in

BAD_CHANGES = [
    ({"db_name": ""}, ValueError, "db_name is empty or blank"),
    ({"db_name": " prod"}, ValueError, "db_name has leading or trailing whitespace"),
    ({"db_name": None}, TypeError, "db_name must be a str"),
    ({"collection_names": ()}, ValueError, "collection_names is empty"),
    ({"collection_names": ("docs", "")}, ValueError, "collection name is empty or blank"),
    ({"timeout": -1.0}, ValueError, "timeout must be a finite number of seconds"),
    ({"wait": "yes"}, TypeError, "wait must be True or False"),
]


def replacing(changes: dict[str, Any]) -> Any:
    """A flow that sends the request with ``changes``."""

    def flow(request: flushkit.FlushRequest) -> Any:
        return (yield request.replace(**changes))

    return flow


class Preparing(RequestPreparer):
    def __init__(self, changes: dict[str, Any]) -> None:
        self.changes = changes

    def prepare(self, fields: Any) -> None:
        fields.update(self.changes)


@pytest.mark.parametrize(("changes", "error", "message"), BAD_CHANGES)
@pytest.mark.parametrize("how", [replacing, Preparing], ids=["flow", "preparer"])
def test_a_bad_value_set_by_a_middleware_fails_the_call_before_any_rpc(
    fake, runtime, how, changes, error, message
):
    client = MilvusClient(uri=fake.uri)
    try:
        flush = flush_in(runtime, client, middleware=[how(changes)])
        with pytest.raises(error, match=message):
            flush("docs")
    finally:
        client.close()
    assert fake.flush_calls == []


@pytest.mark.parametrize("how", [replacing, Preparing], ids=["flow", "preparer"])
def test_good_values_set_by_a_middleware_are_sent_as_a_caller_would_send_them(fake, runtime, how):
    client = MilvusClient(uri=fake.uri)
    try:
        changes = {"db_name": "prod", "collection_names": ["images", "docs", "images"]}
        flush = flush_in(runtime, client, middleware=[how(changes)])
        result = flush("docs")
    finally:
        client.close()
    (call,) = fake.flush_calls
    assert list(call.request.collection_names) == ["images", "docs"]  # as a caller's list
    assert call.metadata["dbname"] == "prod" or call.request.db_name == "prod"
    assert set(result.coll_segIDs) == {"images", "docs"}
