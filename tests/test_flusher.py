"""The public facades against the scripted server: each test runs blocking, under
asyncio and under trio (the ``flush`` fixture)."""

from __future__ import annotations

import dataclasses
import time

import anyio
import grpc
import pytest

import flushkit
from flushkit.testing import abort, delay, hang, ok, status

from .helpers import flush_in, replace_channel


def test_flush_returns_what_the_server_said(flush, fake):
    result = flush(["docs", "images"], timeout=5.0)
    assert isinstance(result, flushkit.FlushResult)
    assert result.status.ok and result.status.error_code == "Success"
    assert set(result.coll_segIDs) == {"docs", "images"}
    assert all(isinstance(i, int) for ids in result.coll_segIDs.values() for i in ids)
    assert all(result.coll_segIDs[name] for name in ("docs", "images"))
    assert set(result.coll_flush_ts) == {"docs", "images"}
    assert set(result.coll_seal_times) == {"docs", "images"}
    assert result.db_name == "default"
    assert 0 < result.elapsed < 5
    assert result.persisted is False
    (call,) = fake.flush_calls
    assert list(call.request.collection_names) == ["docs", "images"]
    assert fake.flush_state_calls == []


def test_one_name_and_duplicates(flush, fake):
    flush("docs")
    flush(["docs", "images", "docs"])
    assert [list(c.request.collection_names) for c in fake.flush_calls] == [
        ["docs"],
        ["docs", "images"],
    ]


def test_db_name_per_call_travels_in_request_and_metadata(flush, fake):
    result = flush("docs", db_name="analytics")
    call = fake.flush_calls[-1]
    assert call.request.db_name == "analytics"
    assert call.metadata["dbname"] == "analytics"
    assert result.db_name == "analytics"


def test_result_is_immutable(flush):
    result = flush("docs")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.db_name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.coll_segIDs["docs"] = ()  # type: ignore[index]


@pytest.mark.parametrize(
    ("behaviour", "cls", "code"),
    [
        (
            status(100, 4, "collection not found[collection=docs]"),
            flushkit.CollectionNotFoundError,
            100,
        ),
        (status(800, 1, "database not found"), flushkit.DatabaseNotFoundError, 800),
        (
            status(8, 49, "rate limit exceeded[rate=0.1]", retriable=True),
            flushkit.RateLimitedError,
            8,
        ),
        (status(1, 56, "not ready"), flushkit.ServiceUnavailableError, 1),
        (status(1401, 1, "not permitted"), flushkit.PermissionDeniedError, 1401),
        (status(1100, 5, "bad name"), flushkit.InvalidArgumentError, 1100),
        (status(9, 48, "force deny"), flushkit.QuotaExceededError, 9),
        (status(5, 1, "internal"), flushkit.ServerError, 5),
        (status(0, 49, "legacy rate limit"), flushkit.RateLimitedError, 0),
    ],
)
def test_failed_status_raises_its_class(flush, fake, behaviour, cls, code):
    fake.script_flush(*[behaviour] * 3)  # the default chain tries a retryable one 3 times
    with pytest.raises(cls) as caught:
        flush("docs", timeout=0.3)  # a throttled call waits for the next slot within it
    assert type(caught.value) is cls
    assert caught.value.code == code
    assert caught.value.collection_names == ("docs",)
    assert caught.value.db_name == "default"
    assert caught.value.reason in str(caught.value)


@pytest.mark.parametrize(
    ("code", "cls", "retryable"),
    [
        (grpc.StatusCode.UNAVAILABLE, flushkit.ServiceUnavailableError, True),
        (grpc.StatusCode.UNAUTHENTICATED, flushkit.PermissionDeniedError, False),
        (grpc.StatusCode.PERMISSION_DENIED, flushkit.PermissionDeniedError, False),
        (grpc.StatusCode.INVALID_ARGUMENT, flushkit.InvalidArgumentError, False),
        (grpc.StatusCode.CANCELLED, flushkit.ServiceUnavailableError, True),
        (grpc.StatusCode.INTERNAL, flushkit.ServerError, False),
        (grpc.StatusCode.UNIMPLEMENTED, flushkit.ServerError, False),
        (grpc.StatusCode.DEADLINE_EXCEEDED, flushkit.FlushTimeoutError, False),
    ],
)
def test_grpc_failures_map_and_never_escape_raw(flush, fake, code, cls, retryable):
    fake.script_flush(*[abort(code, "scripted failure")] * 3)
    with pytest.raises(flushkit.FlushError) as caught:
        flush("docs", timeout=5.0)
    assert type(caught.value) is cls
    assert not isinstance(caught.value, grpc.RpcError)
    assert caught.value.grpc_code == code.name
    assert caught.value.retryable is retryable
    assert caught.value.__cause__ is None or not isinstance(caught.value.__cause__, grpc.RpcError)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:  # the server's, long before the budget
        assert "before the call's budget ran out: scripted failure" in str(caught.value)
        assert "within 5 s" not in str(caught.value)


def test_resource_exhausted_is_throttling_and_fails_once_the_budget_cannot_wait(flush, fake):
    fake.script_flush(*[abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")] * 3)
    with pytest.raises(flushkit.RateLimitedError) as caught:
        flush("docs", timeout=0.3)
    assert caught.value.grpc_code == "RESOURCE_EXHAUSTED"
    assert caught.value.retryable and caught.value.retry_after > 0
    assert caught.value.throttled >= 1


def test_timeout_covers_a_hanging_rpc_and_cancels_it_on_the_server(flush, fake):
    fake.script_flush(hang())
    started = time.monotonic()
    with pytest.raises(flushkit.FlushTimeoutError) as caught:
        flush(["docs", "images"], timeout=0.3)
    took = time.monotonic() - started
    # the budget, not the hang, ended it (the fault matrix holds it to the budget + 50 ms)
    assert 0.25 <= took < 0.3 + 1.0
    assert isinstance(caught.value, TimeoutError)
    assert "'docs'" in str(caught.value) and "0.3 s" in str(caught.value)
    assert fake.wait_for_cancellations(1)
    assert 0 < fake.flush_calls[0].time_remaining <= 0.3 + 0.01


def test_flusher_wide_default_timeout_and_none(fake, runtime, client):
    fake.script_flush(hang())
    flush = flush_in(runtime, client, timeout=0.2)
    with pytest.raises(flushkit.FlushTimeoutError):
        flush("docs")
    fake.script_flush(delay(0.3))
    assert flush("docs", timeout=None).status.ok
    assert fake.flush_calls[-1].time_remaining is None


def test_slow_rpc_within_the_budget_succeeds(flush, fake):
    fake.script_flush(delay(0.15))
    assert flush("docs", timeout=2.0).elapsed >= 0.15


# The README's poll schedule, written out: "first right after the Flush RPC, then after
# pauses of 15% of the time waited so far (at least 10 ms, at most 250 ms)".
README_POLL_MIN, README_POLL_SHARE, README_POLL_MAX = 0.010, 0.15, 0.25


def documented_polls(until: float) -> list[float]:
    """When the README's schedule polls, in seconds into the wait, with no time lost to
    the RPCs themselves (the most polls it can make): up to the first poll at or after
    ``until``."""
    polls = [0.0]
    while polls[-1] < until:
        waited = polls[-1]
        polls.append(
            waited + min(max(README_POLL_SHARE * waited, README_POLL_MIN), README_POLL_MAX)
        )
    return polls


def test_wait_polls_until_persisted(flush, fake):
    fake.flushed_after(5)
    result = flush(["docs"], wait=True, timeout=5.0)
    assert result.persisted is True
    states = fake.flush_state_calls
    assert len(states) == 5
    flushed = fake.flush_calls[0]
    assert states[0].request.collection_name == "docs"
    assert list(states[0].request.segmentIDs) == list(result.coll_segIDs["docs"])
    assert states[0].request.flush_ts == result.coll_flush_ts["docs"]
    assert states[0].started >= flushed.ended  # the first poll follows the Flush's answer


PERSIST = 4.0  # seconds from a Flush's admission until the test server says persisted


def test_wait_polls_on_the_documented_schedule(flush, fake):
    """What the server received while a Flush took 4 s to persist: never more polls than
    the README's schedule makes (10 ms at least between them, 15% of the wait), and polls
    at most 250 ms apart once the wait is long (counted over two seconds, with room for a
    busy machine); the wait ends at the first poll that finds the segments persisted."""
    fake.persist_after(PERSIST)
    result = flush("docs", wait=True, timeout=30.0)
    assert result.persisted is True and result.satisfied_by == "flush"
    (flushed,) = fake.flush_calls
    states = fake.flush_state_calls
    assert all(call.request.collection_name == "docs" for call in states)
    assert states[0].started >= flushed.ended
    # the server says persisted PERSIST s after admitting the Flush, so the last poll,
    # which found it, came after that, and every poll after ``certain`` found it
    assert states[-1].started >= flushed.started + PERSIST
    certain = flushed.ended + PERSIST
    assert sum(call.started >= certain for call in states) <= 1
    # never more often than documented: an RPC's own time only makes polls later
    at = [call.started - states[0].started for call in states]
    assert len(states) <= len(documented_polls(PERSIST)) + 1
    # at most 250 ms apart late in the wait: 8 polls in the two seconds before the 4th
    # (documented_polls(4.0) has 8 there); at least 6 even if each takes 80 ms longer
    assert sum(1 for t in at if PERSIST - 2.0 < t <= PERSIST - 0.001) >= 6, at
    assert sum(1 for t in documented_polls(PERSIST) if PERSIST - 2.0 < t < PERSIST) == 8


def test_wait_for_several_collections(flush, fake):
    result = flush(["docs", "images"], wait=True, timeout=5.0)
    assert result.persisted
    assert sorted(c.request.collection_name for c in fake.flush_state_calls) == [
        "docs",
        "images",
    ]


def test_wait_never_sleeps_past_the_deadline(flush, fake):
    # the segments never persist: the call ends at its budget (the pauses' cut at the
    # deadline is test_a_pause_between_polls_never_reaches_past_the_deadline)
    fake.script_flush_state(*[flushkit_never() for _ in range(1000)])
    started = time.monotonic()
    with pytest.raises(flushkit.FlushTimeoutError, match="waiting for the sealed segments"):
        flush("docs", wait=True, timeout=2.0)
    assert time.monotonic() - started < 2.0 + 1.0
    assert 1 < len(fake.flush_state_calls) <= len(documented_polls(2.0)) + 1


def flushkit_never():
    from flushkit.testing import flushed

    return flushed(False)


def test_wait_with_a_failing_state_raises_its_class(flush, fake):
    fake.script_flush_state(status(100, 4, "collection dropped"))
    with pytest.raises(flushkit.CollectionNotFoundError):
        flush("docs", wait=True)


def test_failed_flush_status_does_not_wait(flush, fake):
    fake.script_flush(*[status(8, 49, "rate limit exceeded", retriable=True)] * 3)
    with pytest.raises(flushkit.RateLimitedError):
        flush("docs", wait=True, timeout=0.3)
    # No wait for segments: the only GetFlushState calls are looks for another client's
    # Flush while the call waited for its slot (a timestamp, no segment IDs).
    for call in fake.flush_state_calls:
        assert list(call.request.segmentIDs) == [] and call.request.flush_ts > 0


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (([],), {}, ValueError),
        (("",), {}, ValueError),
        ((" ",), {}, ValueError),
        ((None,), {}, TypeError),
        ((b"docs",), {}, TypeError),
        (([1],), {}, TypeError),
        (([["docs"]],), {}, TypeError),
        (("x" * 256,), {}, ValueError),
        (("docs",), {"timeout": -1}, ValueError),
        (("docs",), {"timeout": 0}, ValueError),
        (("docs",), {"timeout": float("nan")}, ValueError),
        (("docs",), {"timeout": float("inf")}, ValueError),
        (("docs",), {"timeout": True}, TypeError),
        (("docs",), {"timeout": "5"}, TypeError),
        (("docs",), {"db_name": ""}, ValueError),
        (("docs",), {"wait": "yes"}, TypeError),
        (("docs",), {"wiat": True}, TypeError),
        (("docs", "default"), {}, TypeError),
    ],
)
def test_bad_input_is_refused_before_any_rpc(flush, fake, args, kwargs, error):
    with pytest.raises(error) as caught:
        flush(*args, **kwargs)
    assert fake.flush_calls == []
    if "wiat" in kwargs:
        assert "'wiat'" in str(caught.value) and "wait" in str(caught.value)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), "5", True])
def test_bad_flusher_timeout_is_refused(client, timeout):
    with pytest.raises((ValueError, TypeError)):
        flushkit.Flusher(client, timeout=timeout)
    with pytest.raises((ValueError, TypeError)):
        flushkit.AsyncFlusher(client, timeout=timeout)


def test_not_a_client_is_refused():
    with pytest.raises(TypeError, match="MilvusClient"):
        flushkit.Flusher("http://localhost:19530")


def test_closed_client_raises_client_closed(fake, runtime):
    from pymilvus import AsyncMilvusClient, MilvusClient

    if runtime == "aio":

        async def main() -> None:
            twin = AsyncMilvusClient(uri=fake.uri)
            flusher = flushkit.AsyncFlusher(twin)
            await flusher.flush("docs")
            await twin.close()
            with pytest.raises(flushkit.ClientClosedError):
                await flusher.flush("docs")

        return anyio.run(main, backend="asyncio")
    milvus = MilvusClient(uri=fake.uri)
    flush = flush_in(runtime, milvus)
    milvus.close()
    with pytest.raises(flushkit.ClientClosedError):
        flush("docs")


def test_flush_survives_pymilvus_replacing_its_channel(flush, client, fake):
    flush("docs")
    replace_channel(client)
    assert flush("docs").status.ok
    assert len(fake.flush_calls) == 2


def test_credentials_travel_as_metadata(fake, runtime):
    from pymilvus import MilvusClient

    milvus = MilvusClient(uri=fake.uri, token="root:Milvus")
    try:
        flush_in(runtime, milvus)("docs")
    finally:
        milvus.close()
    assert fake.flush_calls[-1].metadata["authorization"] == "cm9vdDpNaWx2dXM="


def test_ok_behaviour_with_explicit_segments(flush, fake):
    fake.script_flush(ok({"docs": [7, 8, 9]}))
    assert flush("docs").coll_segIDs["docs"] == (7, 8, 9)


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda c: flushkit.Flusher(c, timeout="5"), TypeError),
        (lambda c: flushkit.Flusher(c, timeout=True), TypeError),
        (lambda c: flushkit.Flusher(c, timeout=-1), ValueError),
        (lambda c: flushkit.AsyncFlusher(c, timeout=float("inf")), ValueError),
        (lambda c: flushkit.Flusher(c, middleware=[42]), TypeError),
        (lambda c: flushkit.AsyncFlusher(c, middleware=["not callable"]), TypeError),
        (lambda c: flushkit.Flusher(None), TypeError),
        (lambda c: flushkit.Flusher("http://localhost:19530"), TypeError),
        (lambda c: flushkit.RetryPolicy(attempts=0), ValueError),
        (lambda c: flushkit.RetryPolicy(jitter=-1), ValueError),
    ],
)
def test_bad_constructor_arguments_are_refused_without_rpcs(client, fake, make, error):
    with pytest.raises(error):
        make(client)
    assert [call.method for call in fake.calls if call.method != "Connect"] == []


@pytest.mark.parametrize("runtime", ["blocking", "asyncio", "trio"])  # "aio" flushes through
def test_a_flusher_follows_the_clients_current_database(fake, client, runtime):  # a twin client
    flush = flush_in(runtime, client)  # made before the switch
    client.use_database("analytics")
    result = flush("docs", timeout=5.0)
    assert result.db_name == "analytics"
    call = fake.flush_calls[-1]
    assert call.metadata["dbname"] == "analytics"
    assert call.request.db_name == "analytics"
    client.use_database("default")
    assert flush("docs", timeout=5.0).db_name == "default"


def test_collection_not_found_in_a_database_the_server_does_not_list_is_database_not_found(
    fake, flush
):
    # Milvus 2.3 answers a Flush in a missing database with "collection not found"
    fake.missing("docs")
    fake.databases("analytics")
    with pytest.raises(flushkit.DatabaseNotFoundError) as caught:
        flush("docs", db_name="nowhere", timeout=5.0)
    assert caught.value.code == 800 and "nowhere" in caught.value.reason
    with pytest.raises(flushkit.CollectionNotFoundError):  # the database exists
        flush("docs", db_name="analytics", timeout=5.0)
    with pytest.raises(flushkit.CollectionNotFoundError):  # no database lookup for default
        flush("docs", timeout=5.0)
    assert sum(call.method == "ListDatabases" for call in fake.calls) == 2


def test_an_async_client_under_trio_is_a_clear_error_before_any_rpc(fake):
    from pymilvus import AsyncMilvusClient

    async def main() -> None:
        flusher = flushkit.AsyncFlusher(AsyncMilvusClient(uri=fake.uri))
        with pytest.raises(TypeError, match="under trio give AsyncFlusher a blocking"):
            await flusher.flush("docs")

    anyio.run(main, backend="trio")
    assert fake.flush_calls == []


def test_the_blocking_flusher_points_an_async_client_to_async_flusher(fake):
    from pymilvus import AsyncMilvusClient

    with pytest.raises(TypeError, match=r"use flushkit\.AsyncFlusher"):
        flushkit.Flusher(AsyncMilvusClient(uri=fake.uri))


def test_a_users_request_preparer_shapes_every_call(fake, client):
    class TenantDatabase(flushkit.RequestPreparer):
        def prepare(self, fields):
            fields["db_name"] = "tenant_a"

    seen = []

    def outer(request):  # a flow outside it sees the prepared request
        seen.append(request.db_name)
        return (yield request)

    flusher = flushkit.Flusher(
        client, middleware=[outer, *flushkit.default_middleware(), TenantDatabase()]
    )
    result = flusher.flush("docs", db_name="other")
    assert result.db_name == "tenant_a" and seen == ["tenant_a"]
    assert [call.request.db_name for call in fake.flush_calls] == ["tenant_a"]
    assert fake.flush_calls[0].metadata["dbname"] == "tenant_a"


def tenant_database(request):
    try:
        result = yield request.replace(db_name="tenant_a")
    except flushkit.DatabaseNotFoundError:
        result = yield request.replace(db_name="default")
    return result


def test_the_readmes_fallback_middleware_outside_status_catches_its_error(fake, client, runtime):
    fake.script_flush(status(800, 0, "database not found[database=tenant_a]"), ok())
    chain = flushkit.default_middleware()
    at = next(i for i, m in enumerate(chain) if isinstance(m, flushkit.StatusMiddleware))
    chain.insert(at, tenant_database)
    result = flush_in(runtime, client, middleware=chain)("docs")
    assert result.status.ok and result.db_name == "default"
    assert [call.metadata["dbname"] for call in fake.flush_calls] == ["tenant_a", "default"]


def test_an_error_names_the_database_an_inner_middleware_sent_the_flush_to(fake, client, runtime):
    fake.script_flush(status(800, 0, "database not found[database=tenant_a]"))
    chain = [*flushkit.default_middleware(), tenant_database]  # inside StatusMiddleware
    with pytest.raises(flushkit.DatabaseNotFoundError) as caught:
        flush_in(runtime, client, middleware=chain)("docs")
    assert caught.value.db_name == "tenant_a"
    assert "database 'tenant_a'" in str(caught.value)
