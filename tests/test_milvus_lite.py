"""Integration on Milvus Lite, the embedded default (a local .db file)."""

from __future__ import annotations

import pytest

import flushkit

from .helpers import Caller, flush_in, run_together

pytest.importorskip("milvus_lite", reason="Milvus Lite is not installed (pip install '.[lite]')")
pytestmark = pytest.mark.lite


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    from pymilvus import MilvusClient

    client = MilvusClient(str(tmp_path_factory.mktemp("lite") / "flushkit.db"))
    for name in ("docs", "images"):
        client.create_collection(name, dimension=4)
    yield client
    client.close()


START = {"blocking": 0, "asyncio": 1000, "trio": 2000, "aio": 3000}


def insert(client, name, count=100, start=0):
    rows = [{"id": start + i, "vector": [0.1, 0.2, 0.3, float(i)]} for i in range(count)]
    client.insert(name, rows)


def test_flush_after_inserts(lite, runtime):
    insert(lite, "docs", start=START[runtime])
    result = flush_in(runtime, lite)(["docs", "images"], timeout=10.0)
    assert result.status.ok
    assert result.db_name == "default"
    assert result.persisted is False
    assert 0 < result.elapsed < 10


def test_wait_until_persisted(lite, runtime):
    insert(lite, "images", start=START[runtime])
    result = flush_in(runtime, lite)("images", wait=True, timeout=10.0)
    assert result.persisted is True
    assert lite.get_collection_stats("images")["row_count"] >= 100


def test_flush_into_a_second_database(lite, runtime):
    if "second" not in lite.list_databases():
        lite.create_database("second")
    result = flush_in(runtime, lite)("docs", db_name="second", timeout=10.0)
    assert result.status.ok
    assert result.db_name == "second"


def test_database_that_does_not_exist_raises(lite, runtime):
    # Milvus Lite answers with its own code (6), which flushkit reads as a missing database
    with pytest.raises(flushkit.DatabaseNotFoundError, match="does not exist") as caught:
        flush_in(runtime, lite)("docs", db_name="no_such_db", timeout=10.0)
    assert caught.value.code == 6


def test_bad_input_raises_before_any_rpc(lite, runtime):
    with pytest.raises(ValueError):
        flush_in(runtime, lite)([])


def test_timeout_too_short_for_the_call_raises_flush_timeout(lite):
    # a budget that has run out before the first RPC is sent fails without one
    flusher = flushkit.Flusher(lite, timeout=1e-9)
    with pytest.raises(flushkit.FlushTimeoutError):
        flusher.flush("docs")


def test_concurrent_flushes_coalesce(lite, runtime):
    callers = [Caller("docs", options={"wait": True, "timeout": 10.0}) for _ in range(32)]
    outcomes = run_together(runtime, lite, callers)
    assert all(isinstance(o, flushkit.FlushResult) and o.persisted for o in outcomes), outcomes
    assert sum(o.coalesced for o in outcomes) >= 16  # 32 callers released together


def test_a_missing_database_is_database_not_found(lite, runtime):
    with pytest.raises(flushkit.DatabaseNotFoundError) as caught:
        flush_in(runtime, lite)("docs", db_name="no_such_db", timeout=10.0)
    assert caught.value.db_name == "no_such_db"


@pytest.mark.parametrize("runtime", ["blocking", "asyncio", "trio"])  # "aio": a twin client
def test_a_flusher_follows_use_database(tmp_path, runtime):
    from pymilvus import MilvusClient

    client = MilvusClient(str(tmp_path / "dbs.db"))
    try:
        client.create_database("other")
        flush = flush_in(runtime, client)  # made while the client is in "default"
        client.use_database("other")
        client.create_collection("only_here", dimension=4)
        insert(client, "only_here")
        result = flush("only_here", wait=True, timeout=30.0)
        assert result.db_name == "other" and result.persisted
    finally:
        client.close()
