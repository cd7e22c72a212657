"""Integration on a real Milvus 2.3.5 standalone server (authorization on), blocking,
under asyncio and under trio. Milvus Lite returns no segment IDs and treats a missing
collection as success, so these are the tests that prove the contract."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pymilvus import MilvusClient

import flushkit

from .helpers import RecordingLogger, flush_in

pytestmark = pytest.mark.server

#: The benchmark's caller helpers (benchmarks/coalescing_rate_limit.py) run the blocking
#: client's three ways; the AsyncMilvusClient path is covered by the flush_in tests here.
BENCH_RUNTIMES = pytest.mark.parametrize("runtime", ["blocking", "asyncio", "trio"])

#: Under pytest-xdist (the README's ``-n 4``; ``--dist loadgroup`` in pyproject.toml) a
#: group's tests run on one worker, one after another, on the one server the group starts
#: (each worker has its own servers): without groups every worker would start every kind
#: of server. The default rate's tests, about 90 s each way, are two groups run side by side.
ON_THE_RATE_LIMITED_SERVER = pytest.mark.xdist_group("milvus-rate-limited")
ON_A_DEFAULT_RATE_SERVER = pytest.mark.xdist_group("milvus-default-rate")
ON_ANOTHER_DEFAULT_RATE_SERVER = pytest.mark.xdist_group("milvus-default-rate-2")


@pytest.fixture
def root(milvus_server):
    client = MilvusClient(uri=milvus_server.uri, token=milvus_server.token)
    yield client
    client.close()


_made: set[tuple[str, str]] = set()


def collection(client, name, rows=0, db_name=None):
    """Create ``name`` once (in ``db_name``), then insert ``rows`` fresh rows."""
    target = client
    if db_name is not None:
        target = MilvusClient(uri=client._config.uri, token="root:Milvus", db_name=db_name)
    key = (client._config.uri, f"{db_name}.{name}")
    if key not in _made:
        if target.has_collection(name):
            target.drop_collection(name)
        target.create_collection(name, dimension=4)
        _made.add(key)
    if rows:
        start = int(time.time() * 1000) % 10**9
        data = [{"id": start + i, "vector": [0.1, 0.2, 0.3, i / rows]} for i in range(rows)]
        target.insert(name, data)
    if target is not client:
        target.close()
    return name


def test_fresh_rows_give_segment_ids_flush_ts_and_seal_times(root, runtime):
    name = collection(root, f"fresh_{runtime}", rows=200)
    before = int(time.time())
    result = flush_in(runtime, root)(name, timeout=30.0)
    assert result.status.ok
    assert result.coll_segIDs[name], result
    assert all(isinstance(i, int) and i > 0 for i in result.coll_segIDs[name])
    assert result.coll_flush_ts[name] > 0
    assert before - 60 <= result.coll_seal_times[name] <= time.time() + 60
    assert result.persisted is False


def test_wait_returns_when_persisted_and_statistics_count_every_row(root, runtime):
    name = collection(root, f"wait_{runtime}", rows=300)
    result = flush_in(runtime, root)(name, wait=True, timeout=60.0)
    assert result.persisted is True
    assert result.coll_segIDs[name]
    assert int(root.get_collection_stats(name)["row_count"]) == 300


def test_several_collections_in_one_call(root, runtime):
    names = [collection(root, f"multi_{i}_{runtime}", rows=50) for i in range(3)]
    result = flush_in(runtime, root)(names, wait=True, timeout=60.0)
    assert set(result.coll_segIDs) == set(names)
    assert all(result.coll_segIDs[name] for name in names)


def test_db_name_per_call_reaches_a_second_database(root, runtime):
    if "second" not in root.list_databases():
        root.create_database("second")
    name = collection(root, f"second_{runtime}", rows=50, db_name="second")
    result = flush_in(runtime, root)(name, db_name="second", timeout=30.0)
    assert result.db_name == "second"
    assert result.coll_segIDs[name]
    # the same name is not in the client's own database
    with pytest.raises(flushkit.CollectionNotFoundError):
        flush_in(runtime, root)(name, timeout=30.0)


def test_database_that_does_not_exist(root, runtime):
    # Milvus 2.3.5 answers a missing database with "collection not found" (code 100);
    # flushkit asks the server's database list and reports what it is
    with pytest.raises(flushkit.DatabaseNotFoundError) as caught:
        flush_in(runtime, root)("docs", db_name="no_such_db", timeout=30.0)
    assert caught.value.db_name == "no_such_db"
    assert caught.value.code == 800
    assert "no_such_db" in caught.value.reason


@pytest.mark.parametrize("runtime", ["blocking", "asyncio", "trio"])  # "aio": a twin client
def test_a_flusher_follows_the_clients_current_database(root, runtime):
    if "switched" not in root.list_databases():
        root.create_database("switched")
    name = collection(root, f"switched_{runtime}", rows=50, db_name="switched")
    client = MilvusClient(uri=root._config.uri, token="root:Milvus")
    try:
        flush = flush_in(runtime, client)  # made while the client is in "default"
        # pymilvus's use_database, less its DescribeDatabase check (Milvus 2.3.5 lacks it)
        client._config.db_name = "switched"
        result = flush(name, wait=True, timeout=60.0)  # not in "default": would fail there
        assert result.db_name == "switched" and result.coll_segIDs[name] and result.persisted
    finally:
        client.close()


def test_a_spent_budget_is_a_timeout_whatever_the_server_answers(root, runtime):
    """The server reports its own deadline expiry as a status (code 65535, "proxy
    TaskCondition context Done") most of the time: every repetition must be a timeout."""
    name = collection(root, f"tiny_{runtime}", rows=10)
    flush = flush_in(runtime, root)
    for _ in range(8):
        with pytest.raises(flushkit.FlushTimeoutError) as caught:
            flush(name, wait=True, timeout=0.001)
        assert isinstance(caught.value, TimeoutError)


def test_collection_that_does_not_exist(root, runtime):
    with pytest.raises(flushkit.CollectionNotFoundError) as caught:
        flush_in(runtime, root)("no_such_collection", timeout=30.0)
    assert caught.value.code == 100
    assert caught.value.error_code == "CollectionNotExists"
    assert caught.value.collection_names == ("no_such_collection",)
    assert caught.value.retryable is False


PASSWORD = "Al1cePassw0rd"


def test_credentials_right_and_wrong_never_leak(root, milvus_server, runtime, spans):
    name = collection(root, f"auth_{runtime}", rows=10)
    user = f"alice_{runtime}"
    if user in root.list_users():
        root.drop_user(user)
    root.create_user(user, PASSWORD)
    logger = RecordingLogger()
    chain = flushkit.default_middleware(logger=logger, tracer_provider=spans.provider)
    texts = []

    # the right credential, without the privilege to flush
    alice = MilvusClient(uri=milvus_server.uri, token=f"{user}:{PASSWORD}")
    flush = flush_in(runtime, alice, middleware=chain)
    with pytest.raises(flushkit.PermissionDeniedError) as denied:
        flush(name, timeout=30.0)
    assert denied.value.grpc_code == "PERMISSION_DENIED"
    texts.append(str(denied.value))

    # a credential the server no longer accepts
    root.update_password(user, PASSWORD, "An0therPassw0rd")
    _until_refused(flush_in(runtime, alice), name)  # unobserved: the proxy's cache updates late
    with pytest.raises(flushkit.PermissionDeniedError) as refused:
        flush(name, timeout=30.0)
    assert refused.value.grpc_code == "UNAUTHENTICATED"
    texts += [str(refused.value), repr(vars(refused.value))]
    alice.close()
    root.drop_user(user)

    # the right credential with the privilege works
    assert flush_in(runtime, root, middleware=chain)(name, timeout=30.0).status.ok

    texts += [repr(event) for event in logger.events]
    texts += [span.to_json() for span in spans.get_finished_spans()]
    joined = "\n".join(texts)
    assert len(logger.events) == 3 and len(spans.get_finished_spans()) == 3
    for secret in (PASSWORD, "An0therPassw0rd", 'Milvus"', "root:Milvus"):
        assert secret not in joined


def _until_refused(flush: Any, name: str, patience: float = 30.0) -> None:
    """Flush until the server refuses the credential (UNAUTHENTICATED), PATIENCE at most."""
    deadline = time.monotonic() + patience
    while True:
        try:
            flush(name, timeout=30.0)
        except flushkit.PermissionDeniedError as exc:
            if exc.grpc_code == "UNAUTHENTICATED":
                return
        assert time.monotonic() < deadline, "the server still accepts the old password"
        time.sleep(0.2)


def test_next_flush_after_the_server_restarts_succeeds(milvus_servers):
    """Once for all runtimes. The restarted server waits for the killed one's sessions to
    expire: a 10 s session lease (30 s by default) brings that from about 60 s to 25 s."""
    server = milvus_servers.get(authorization=True, **{"common.session.ttl": 10})
    client = MilvusClient(uri=server.uri, token=server.token)
    try:
        name = collection(client, "restart", rows=20)
        for runtime in ("blocking", "asyncio", "trio"):
            assert flush_in(runtime, client)(name, timeout=30.0).status.ok
        assert milvus_servers.restart().port == server.port
        # The channel reconnects by itself. The server then needs a while before its data
        # coordinator accepts flushes again ("node not match", code 65535): every answer
        # in that time is a FlushError, never a raw gRPC or pymilvus exception.
        deadline = time.monotonic() + 90
        while True:
            try:
                flush_in("blocking", client)(name, timeout=30.0)
                break
            except flushkit.FlushError:
                assert time.monotonic() < deadline, "the server did not come back"
                time.sleep(1)
        for runtime in ("blocking", "asyncio", "trio"):
            assert flush_in(runtime, client)(name, timeout=30.0).status.ok
    finally:
        client.close()


def _benchmark(name: str):
    """A module of benchmarks/, imported by path."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"flushkit_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rate_bench():
    return _benchmark("coalescing_rate_limit")


@pytest.fixture
def limited(milvus_servers, rate_bench):
    """A server that admits one Flush a second (two back to back), behind a proxy that
    counts Flush RPCs and rate-limited answers."""
    server = milvus_servers.get(**rate_bench.RATE_LIMIT)
    with rate_bench.CountingProxy(server.uri.removeprefix("http://")) as proxy:
        client = MilvusClient(uri=proxy.uri)
        if not client.has_collection(rate_bench.COLLECTION):
            client.create_collection(rate_bench.COLLECTION, dimension=4)
        client.insert(rate_bench.COLLECTION, [{"id": 1, "vector": [0.1, 0.2, 0.3, 0.4]}])
        rate_bench.refill(2.5)  # a full token bucket
        proxy.take()
        yield client, proxy
        client.close()


@ON_THE_RATE_LIMITED_SERVER
@BENCH_RUNTIMES
def test_64_callers_share_two_flushes_under_the_servers_rate_limit(limited, rate_bench, runtime):
    client, proxy = limited
    outcomes = rate_bench.run_flushkit(client, 64, runtime)  # wait=True, like pymilvus
    report = rate_bench.summary(outcomes, proxy.take())
    assert report["errors"] == {}
    assert report["rate_limited_answers"] == 0
    assert report["flush_rpcs"] <= 2
    assert report["retried_calls"] == 0
    assert report["coalesced_calls"] >= 62
    assert all(result.persisted for _, result in outcomes)


@ON_THE_RATE_LIMITED_SERVER
def test_the_same_load_through_pymilvus_meets_the_rate_limit(limited, rate_bench):
    client, proxy = limited
    outcomes = rate_bench.run_pymilvus(client, 64, timeout=3.0)
    report = rate_bench.summary(outcomes, proxy.take())
    assert report["flush_rpcs"] > 2
    assert report["rate_limited_answers"] > 0


# Milvus's default flush rate (one Flush every 10 s), as the 2.3.5 server's server-wide
# limit. One counting proxy and one client per server, kept across tests, so that the
# client's scheduler remembers what it learned, as in a long-running service.

_PROXIES: dict[str, Any] = {}


@pytest.fixture(scope="module")
def _proxies():
    yield _PROXIES
    for proxy, client in _PROXIES.values():
        client.close()
        proxy.__exit__(None, None, None)
    _PROXIES.clear()


@pytest.fixture
def default_limited(milvus_servers, rate_bench, _proxies):
    """A server at Milvus's default flush rate, behind a proxy that counts Flush RPCs and
    throttled answers; the collection has a fresh row."""
    server = milvus_servers.get(**rate_bench.DEFAULT_RATE_LIMIT)
    if server.uri not in _proxies:
        proxy = rate_bench.CountingProxy(server.uri.removeprefix("http://"))
        proxy.__enter__()
        _proxies[server.uri] = (proxy, MilvusClient(uri=proxy.uri))
    proxy, client = _proxies[server.uri]
    if not client.has_collection(rate_bench.COLLECTION):
        client.create_collection(rate_bench.COLLECTION, dimension=4)
    client.insert(rate_bench.COLLECTION, [{"id": 7, "vector": [0.1, 0.2, 0.3, 0.4]}])
    # The client learns the server's slot as a long-running service knows it (a test
    # before may have flushed through a client of its own, "aio"): one flush, waiting.
    flushkit.Flusher(client).flush(rate_bench.COLLECTION, timeout=60.0)
    proxy.take()
    return client, proxy


@ON_A_DEFAULT_RATE_SERVER
def test_two_flushes_in_a_row_both_succeed_under_the_default_rate_limit(
    default_limited, rate_bench, runtime
):
    client, proxy = default_limited
    flush = flush_in(runtime, client)
    # The first may wait for the slot of earlier tests, and ("aio": a client of its own,
    # which knows nothing yet) learn it from throttled answers.
    flush(rate_bench.COLLECTION, timeout=30.0)
    proxy.take()
    second = flush(rate_bench.COLLECTION, timeout=30.0)  # knows the slot now
    counts = proxy.take()
    assert second.status.ok
    assert second.elapsed <= rate_bench.DEFAULT_WINDOW + 1.0
    assert counts["rate_limited"] <= 1
    # Its own Flush at the slot; or none, when the server said everything before its T
    # was persisted already (nothing was written since the first flush).
    admitted = counts["flush_rpcs"] - counts["rate_limited"]
    assert (second.satisfied_by, admitted) in {("flush", 1), ("covered", 0)}


@ON_ANOTHER_DEFAULT_RATE_SERVER
@BENCH_RUNTIMES
def test_callers_arriving_over_20_seconds_share_one_flush_per_slot(
    default_limited, rate_bench, runtime
):
    client, proxy = default_limited
    call = rate_bench.flushkit_call(client, runtime)
    outcomes = rate_bench.arriving(64, 0.3, call, runtime)
    report = rate_bench.summary(outcomes, proxy.take())
    assert report["errors"] == {}
    assert report["flush_rpcs"] <= 4
    assert report["rate_limited_answers"] <= 2


@ON_A_DEFAULT_RATE_SERVER
def test_a_call_whose_budget_ends_before_the_slot_fails_at_once(
    default_limited, rate_bench, runtime
):
    client, _proxy = default_limited
    flush = flush_in(runtime, client)
    # The client learns the slot exactly from a Flush of its own that the server admits
    # ("aio" has a client of its own). A flush the server covers (a write just after the
    # last Flush can be persisted by it) leaves only an estimate, which a call with a short
    # budget tries at its last chance instead: flush again until one is its own.
    for row in range(8, 11):
        client.insert(rate_bench.COLLECTION, [{"id": row, "vector": [0.1, 0.2, 0.3, 0.4]}])
        if flush(rate_bench.COLLECTION, timeout=30.0).satisfied_by == "flush":
            break
    else:
        pytest.fail("three flushes in a row were covered: none was admitted")
    started = time.monotonic()
    with pytest.raises(flushkit.RateLimitedError) as caught:
        flush(rate_bench.COLLECTION, timeout=3.0)
    took = time.monotonic() - started
    assert took < 2.0, f"{took:.3f} s: it waited (into its 3 s budget) instead of failing"
    assert 3.0 < caught.value.retry_after <= rate_bench.DEFAULT_WINDOW
    assert caught.value.retryable


@pytest.fixture
def busy_machine():
    """Two CPU-bound processes for the test's duration (the machine has two cores)."""
    import subprocess
    import sys

    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    yield
    for spinner in spinners:
        spinner.kill()
        spinner.wait()


@ON_ANOTHER_DEFAULT_RATE_SERVER
@BENCH_RUNTIMES
def test_64_callers_released_together_on_a_busy_machine(
    default_limited, rate_bench, runtime, busy_machine
):
    client, proxy = default_limited
    outcomes = rate_bench.at_once(64, rate_bench.flushkit_call(client, runtime), runtime)
    report = rate_bench.summary(outcomes, proxy.take())
    assert report["errors"] == {}


def _server_logs_mention(server, text: str, patience: float = 20.0) -> bool:
    """Whether the server's own log files mention ``text`` (they are written late)."""
    from pathlib import Path

    deadline = time.monotonic() + patience
    while True:
        for path in Path(server.logs).rglob("*"):
            if path.is_file() and text in path.read_text(errors="ignore"):
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def test_the_servers_log_lines_carry_the_flush_spans_trace_id(root, milvus_server, runtime, spans):
    name = collection(root, f"traced_{runtime}", rows=10)
    chain = flushkit.default_middleware(tracer_provider=spans.provider)
    flush_in(runtime, root, middleware=chain)(name, timeout=30.0)
    (span,) = spans.get_finished_spans()
    assert _server_logs_mention(milvus_server, f"{span.context.trace_id:032x}")


@BENCH_RUNTIMES
def test_a_shared_rounds_senders_trace_reaches_the_server(root, milvus_server, runtime, spans):
    name = collection(root, f"shared_traced_{runtime}", rows=10)
    chain = flushkit.default_middleware(tracer_provider=spans.provider)
    flusher: Any = (
        flushkit.Flusher(root, middleware=chain)
        if runtime == "blocking"
        else flushkit.AsyncFlusher(root, middleware=chain)
    )
    rate_bench = _benchmark("coalescing_rate_limit")
    outcomes = rate_bench.at_once(32, lambda: flusher.flush(name, timeout=30.0), runtime)
    assert all(isinstance(o, flushkit.FlushResult) for _, o in outcomes), outcomes
    linked = {link.context.trace_id for s in spans.get_finished_spans() for link in s.links}
    assert linked, "no call joined a shared round"
    for trace_id in linked:
        assert _server_logs_mention(milvus_server, f"{trace_id:032x}")
