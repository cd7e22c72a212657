"""Fleet sharing on a real Milvus 2.3.5 standalone server: processes flushing one collection
under the server's flush rate limit (one Flush every 10 s, server-wide on 2.3.5), where a
call that cannot send its Flush returns once another process's admitted Flush covered its
writes (``satisfied_by == "covered"``).

Each process has a MilvusClient and a flushkit.Flusher of its own (multiprocessing,
spawn), inserts a row, says so, and flushes once every process has inserted. Nothing here
is timed: the processes are released by an event, and the parent's waits only bound a
hang. The RPCs go through the benchmarks' counting proxy (benchmarks/_proxy.py, imported
by path).
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import queue
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymilvus import MilvusClient

import flushkit

pytestmark = pytest.mark.server

#: Milvus's default flush rate (one Flush every 10 s), as the 2.3.5 server's server-wide
#: limit: the same settings as test_real_server.py's, so the session reuses one server.
FLUSH_LIMIT = {"quotaAndLimits.flushRate.enabled": "true", "quotaAndLimits.flushRate.max": "0.1"}
PROCESSES = 4
COLLECTION = "fleet_covered"
#: Bounds on the parent's waits, so that a hung process fails the test instead of hanging
#: it: never asserted on.
PATIENCE = 240.0


def _counting_proxy_class() -> Any:
    """benchmarks/_proxy.py's CountingProxy, imported by path (benchmarks/ is no package)."""
    path = Path(__file__).parent.parent / "benchmarks" / "_proxy.py"
    spec = importlib.util.spec_from_file_location("flushkit_bench_proxy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.CountingProxy


@pytest.fixture
def fleet_server(milvus_servers: Any) -> Iterator[tuple[Any, MilvusClient]]:
    """The rate-limited server behind a counting proxy, with a fresh collection."""
    server = milvus_servers.get(**FLUSH_LIMIT)
    with _counting_proxy_class()(server.uri.removeprefix("http://")) as proxy:
        client = MilvusClient(uri=proxy.uri)
        try:
            if client.has_collection(COLLECTION):
                client.drop_collection(COLLECTION)
            client.create_collection(COLLECTION, dimension=4)
            yield proxy, client
        finally:
            client.close()


def _flush_once(process: int, uri: str, messages: Any, go: Any) -> None:
    """One process: insert a row, say ``inserted``, wait for ``go``, flush once (wait=True);
    put what happened on ``messages``."""
    try:
        client = MilvusClient(uri=uri)
        flusher = flushkit.Flusher(client)
        client.insert(COLLECTION, [{"id": process + 1, "vector": [0.1, 0.2, 0.3, 0.4]}])
        messages.put(("inserted", process, None))
        go.wait()
        try:
            result = flusher.flush(COLLECTION, timeout=60.0, wait=True)
        except flushkit.FlushError as exc:
            messages.put(("result", process, {"error": f"{type(exc).__name__}: {exc}"}))
        else:
            outcome = {
                "error": None,
                "persisted": result.persisted,
                "satisfied_by": getattr(result, "satisfied_by", "flush"),
                "throttled": result.throttled,
            }
            messages.put(("result", process, outcome))
        client.close()
    except BaseException:
        messages.put(("crashed", process, traceback.format_exc()))


def _collect(messages: Any, kind: str, count: int) -> dict[int, Any]:
    """``count`` messages of ``kind``, by process; a crash fails the test with its traceback."""
    found: dict[int, Any] = {}
    while len(found) < count:
        try:
            got, process, payload = messages.get(timeout=PATIENCE)
        except queue.Empty:
            pytest.fail(f"only {len(found)} of {count} processes reported {kind!r}: {found}")
        if got == "crashed":
            pytest.fail(f"process {process} crashed:\n{payload}")
        assert got == kind, (got, process, payload)
        found[process] = payload
    return found


def test_processes_flushing_one_collection_are_covered_by_each_others_flushes(fleet_server):
    proxy, _client = fleet_server
    context = multiprocessing.get_context("spawn")
    messages, go = context.Queue(), context.Event()
    fleet = [
        context.Process(target=_flush_once, args=(p, proxy.uri, messages, go), daemon=True)
        for p in range(PROCESSES)
    ]
    for member in fleet:
        member.start()
    try:
        _collect(messages, "inserted", PROCESSES)  # every row is written before any flush
        proxy.take()
        go.set()
        outcomes = _collect(messages, "result", PROCESSES)
        counts = proxy.take()
    finally:
        go.set()
        for member in fleet:
            member.join(timeout=30)
            if member.is_alive():
                member.kill()

    assert [o["error"] for o in outcomes.values()] == [None] * PROCESSES, outcomes
    assert all(o["persisted"] for o in outcomes.values()), outcomes
    assert any(o["satisfied_by"] == "covered" for o in outcomes.values()), outcomes
    # Throttled answers are Flush RPCs too (a process learns the server's rate from its
    # first one): what a covered call saves is an admitted Flush.
    admitted = counts["flush_rpcs"] - counts["rate_limited"] - counts["flush_failed"]
    assert admitted < PROCESSES, (dict(counts), outcomes)
