"""What only the async facade has: concurrency without threads, and cancellation."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import warnings
from typing import Any

import anyio
import pytest

import flushkit
from flushkit.testing import delay, hang

from .helpers import PYMILVUS_MAJOR, RecordingLogger, async_client_like, received

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


#: (event loop, client) pairs an AsyncFlusher runs on: an AsyncMilvusClient runs under
#: asyncio only (no trio case to skip).
FLAVOURS = [
    ("asyncio", "MilvusClient"),
    ("trio", "MilvusClient"),
    ("asyncio", "AsyncMilvusClient"),
]


def flavours(*backends: str) -> pytest.MarkDecorator:
    """Run the test with ``async_flusher`` of each flavour under these backends."""
    chosen = [f for f in FLAVOURS if f[0] in (backends or ("asyncio", "trio"))]
    return pytest.mark.parametrize(
        ("anyio_backend", "async_flusher"),
        chosen,
        indirect=["async_flusher"],
        ids=[f"{backend}-{kind}" for backend, kind in chosen],
    )


@pytest.fixture
async def async_flusher(request, anyio_backend, client):
    """``async_flusher(**options)``: an AsyncFlusher on the blocking client, or on an
    AsyncMilvusClient of the same server (asyncio only): ``flavours()`` chooses."""
    if request.param == "MilvusClient":
        yield lambda **options: flushkit.AsyncFlusher(client, **options)
        return
    assert anyio_backend == "asyncio", "an AsyncMilvusClient runs under asyncio only"
    if PYMILVUS_MAJOR < 3:
        # pymilvus 2.6's grpc.aio channels can deliver a late event to the event loop of
        # an earlier test, closed by then ("Event loop is closed"): flaky, not flushkit's
        pytest.skip("per-test event loops with pymilvus 2.6's AsyncMilvusClient")
    twin = async_client_like(client)
    yield lambda **options: flushkit.AsyncFlusher(twin, **options)
    await twin.close()
    await anyio.sleep(0.05)  # let gRPC's last events for this loop arrive while it runs


def most_at_once(calls) -> int:
    """The most calls the server had in flight at one moment."""
    edges = sorted([(c.started, 1) for c in calls] + [(c.ended, -1) for c in calls])
    in_flight = most = 0
    for _, step in edges:
        in_flight += step
        most = max(most, in_flight)
    return most


@flavours()
async def test_120_concurrent_flushes_of_a_slow_rpc_are_all_in_flight_at_once(fake, async_flusher):
    flusher = async_flusher()
    await flusher.flush("warm_up")  # an AsyncMilvusClient connects on its first call
    # 1 s each: long enough for all 120 to be sent while the first are in flight
    fake.script_flush(*[delay(1.0) for _ in range(120)])
    limiter = anyio.to_thread.current_default_thread_limiter()
    peak_borrowed = 0
    results = []

    async def one(i):
        results.append(await flusher.flush(f"c{i}", timeout=5.0))

    async def sample_threads():
        nonlocal peak_borrowed
        while True:
            peak_borrowed = max(peak_borrowed, limiter.borrowed_tokens)
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as outer:
        outer.start_soon(sample_threads)
        async with anyio.create_task_group() as tg:
            for i in range(120):
                tg.start_soon(one, i)
        outer.cancel_scope.cancel()
    assert len(results) == 120 and all(r.status.ok for r in results)
    # far more in flight at the server at once than a 40-thread limiter would allow
    assert most_at_once(fake.flush_calls[-120:]) > 40
    # no worker thread per flush (anyio's limiter would cap at 40 and serialise)
    assert peak_borrowed == 0
    assert not [t for t in threading.enumerate() if "AnyIO" in t.name]


async def cancel_once_received(fake, scope: anyio.CancelScope, n: int = 1) -> None:
    """Cancel ``scope`` once the server has received ``n`` Flush calls (an event: the RPC
    is in flight, whatever the machine's speed)."""
    await received(fake, n)
    scope.cancel()


@flavours()
async def test_outer_cancel_scope_cancels_the_rpc_on_the_server(fake, async_flusher):
    fake.script_flush(hang())
    flusher = async_flusher()
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as scope:
            tg.start_soon(cancel_once_received, fake, scope)
            await flusher.flush("docs", timeout=10.0)
    assert scope.cancelled_caught  # the runtime's cancellation, not a FlushTimeoutError
    assert time.monotonic() - started < 5.0  # it ends with the scope, not the 10 s budget
    assert fake.wait_for_cancellations(1)


@flavours()
async def test_callers_scope_deadline_becomes_the_rpc_deadline(fake, async_flusher):
    fake.script_flush(hang())
    flusher = async_flusher()
    async with anyio.create_task_group() as tg:
        with anyio.move_on_after(2.0) as scope:  # ended early, once the RPC is in flight
            tg.start_soon(cancel_once_received, fake, scope)
            await flusher.flush("docs", timeout=10.0)
    assert scope.cancelled_caught  # the runtime's cancellation, not a FlushTimeoutError
    remaining = fake.flush_calls[-1].time_remaining
    assert remaining is not None and remaining <= 2.0 + 0.01  # the scope's, not the 10 s


@flavours()
async def test_callers_scope_that_ends_while_the_loop_is_busy_still_cancels(fake, async_flusher):
    """The RPC's deadline (the scope's) and the scope's own end arrive in one pass of an
    event loop that was busy: the flush then resumes with the RPC's DEADLINE_EXCEEDED in
    a scope already cancelled, and the caller still sees its runtime's cancellation."""
    fake.script_flush(hang())
    flusher = async_flusher()
    frozen = []

    async def freeze_the_loop_once_the_flush_is_sent(scope):
        while not fake.flush_calls and anyio.current_time() < scope.deadline:
            await anyio.sleep(0.005)
        frozen.append(anyio.current_time() < scope.deadline)
        # past the scope's deadline: both ends arrive during this
        time.sleep(max(0.0, scope.deadline - anyio.current_time()) + 0.5)

    async with anyio.create_task_group() as tg:
        with anyio.move_on_after(1.0) as scope:
            tg.start_soon(freeze_the_loop_once_the_flush_is_sent, scope)
            await flusher.flush("docs", timeout=10.0)
    assert frozen == [True], "the RPC was not in flight before the scope's deadline"
    assert scope.cancelled_caught


@pytest.mark.skipif(PYMILVUS_MAJOR < 3, reason="see async_flusher above")
def test_a_budget_that_ends_as_the_async_client_connects_leaves_nothing_unawaited(fake):
    """An AsyncMilvusClient connects on its first call, within what is left of the
    budget. Budgets from a microsecond to 50 ms (and 5 s), each on a new client, end
    before the call, while it connects or not at all: each call is a FlushTimeoutError
    or a result, and no connection coroutine is left behind unawaited (Python would warn of one)."""
    from pymilvus import AsyncMilvusClient

    budgets = [1e-6 * 1.5**i for i in range(40) if 1e-6 * 1.5**i <= 0.05] + [5.0]

    async def main() -> list[Any]:
        outcomes: list[Any] = []
        for budget in budgets:
            each = AsyncMilvusClient(uri=fake.uri, dedicated=True)
            try:
                outcomes.append(await flushkit.AsyncFlusher(each).flush("docs", timeout=budget))
            except flushkit.FlushTimeoutError as exc:
                outcomes.append(exc)
            finally:
                await each.close()
        return outcomes

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcomes = asyncio.run(main())
        gc.collect()
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []
    timeouts = [str(o) for o in outcomes if isinstance(o, flushkit.FlushTimeoutError)]
    assert any("(before Flush)" in t for t in timeouts), timeouts  # ended before the call
    assert any("connecting the AsyncMilvusClient" in t for t in timeouts), timeouts
    assert isinstance(outcomes[-1], flushkit.FlushResult)  # 5 s: connected and flushed


@flavours()
async def test_cancelled_task_group_cancels_the_rpc(fake, async_flusher):
    fake.script_flush(hang())
    flusher = async_flusher()
    async with anyio.create_task_group() as tg:
        tg.start_soon(flusher.flush, "docs")
        await received(fake)  # the RPC is in flight
        tg.cancel_scope.cancel()
    assert fake.wait_for_cancellations(1)


@flavours("asyncio")
async def test_asyncio_task_cancel_propagates_as_cancelled_error(fake, async_flusher):
    fake.script_flush(hang())
    flusher = async_flusher()
    task = asyncio.get_running_loop().create_task(flusher.flush("docs"))
    await received(fake)  # the RPC is in flight
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fake.wait_for_cancellations(1)


@flavours()
async def test_cancellation_during_the_wait_loop(fake, async_flusher):
    from flushkit.testing import flushed

    fake.script_flush_state(*[flushed(False) for _ in range(1000)])
    flusher = async_flusher()
    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as scope:  # cancelled once it polls: in the wait loop
            tg.start_soon(cancel_at_the_first_poll, fake, scope)
            await flusher.flush("docs", wait=True)
    assert scope.cancelled_caught
    polls = len(fake.flush_state_calls)
    assert 1 <= polls < 1000  # it stopped polling, long before the 1,000 polls' end
    await anyio.sleep(0.3)
    assert len(fake.flush_state_calls) == polls  # and polls no more


async def cancel_at_the_first_poll(fake, scope: anyio.CancelScope) -> None:
    await received(fake, 1, "GetFlushState")
    scope.cancel()


async def test_context_manager_closes(client):
    async with flushkit.AsyncFlusher(client) as flusher:
        assert (await flusher.flush("docs")).status.ok
    with pytest.raises(flushkit.ClientClosedError):
        await flusher.flush("docs")


async def test_event_loop_is_never_blocked(fake, client):
    """Another task of the loop runs while the Flush is in flight: it ticks five times
    while the server holds the RPC, then cancels it (a blocked loop would never tick,
    and the flush would end with its 5 s budget instead)."""
    fake.script_flush(hang())
    flusher = flushkit.AsyncFlusher(client)
    ticks = 0

    async def ticker(scope):
        nonlocal ticks
        while ticks < 5:
            await anyio.sleep(0.01)
            ticks += any(call.ended == 0.0 for call in fake.flush_calls)  # in flight
        scope.cancel()

    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as scope:
            tg.start_soon(ticker, scope)
            await flusher.flush("docs", timeout=5.0)
    assert scope.cancelled_caught and ticks == 5
    assert fake.wait_for_cancellations(1)


async def test_cancelled_flush_ends_its_span_unset_and_logs_cancelled(fake, client, spans):
    from opentelemetry.trace import StatusCode

    logger = RecordingLogger()
    fake.script_flush(hang())
    flusher = flushkit.AsyncFlusher(
        client,
        middleware=flushkit.default_middleware(logger=logger, tracer_provider=spans.provider),
    )
    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as scope:
            tg.start_soon(cancel_once_received, fake, scope)
            await flusher.flush("docs", timeout=5.0)
    assert scope.cancelled_caught
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET
    assert not [e for e in span.events if e.name == "exception"]
    assert [event for _, event, _ in logger.events] == ["flushkit.flush.cancelled"]
    assert fake.wait_for_cancellations(1)


async def test_async_with_twice_and_after_close(client):
    flusher = flushkit.AsyncFlusher(client)
    async with flusher:
        async with flusher:  # nested: the inner exit closes the flusher
            assert (await flusher.flush("docs")).status.ok
        with pytest.raises(flushkit.ClientClosedError):
            await flusher.flush("docs")
    await flusher.aclose()  # again: harmless


def test_a_plain_asyncio_task_gives_the_rpc_the_flushs_own_budget(fake, client):
    """A task of a plain asyncio service (no anyio scope ever entered in it, so anyio
    knows no state of it): the RPC's deadline is the flush's budget."""
    clients = [client]
    if PYMILVUS_MAJOR >= 3:  # see async_flusher above
        clients.append(async_client_like(client))

    async def main() -> None:
        for each in clients:
            await flushkit.AsyncFlusher(each).flush("docs", timeout=3.0)
        for each in clients[1:]:
            await each.close()

    asyncio.run(main())
    for call in fake.flush_calls[-len(clients) :]:
        assert call.time_remaining is not None and 2.0 < call.time_remaining <= 3.0 + 0.01


@pytest.mark.skipif(not hasattr(asyncio, "timeout"), reason="asyncio.timeout: Python 3.11+")
def test_asyncio_timeout_cancels_the_rpc_on_the_server(fake, client):
    """asyncio's own ``asyncio.timeout()`` is no anyio scope (its deadline is not the RPC's)
    but cancelling the task still cancels the RPC on the server."""
    clients = [client]
    if PYMILVUS_MAJOR >= 3:  # see async_flusher above
        clients.append(async_client_like(client))

    async def main() -> list[BaseException]:
        caught: list[BaseException] = []
        for each in clients:
            flusher = flushkit.AsyncFlusher(each)
            await flusher.flush("warm_up")  # an AsyncMilvusClient connects on its first call
            fake.script_flush(hang())
            sent = len(fake.flush_calls) + 1
            try:
                async with asyncio.timeout(10.0) as within:  # due once the RPC is in flight
                    expiry = asyncio.ensure_future(expire_once_received(fake, within, sent))
                    await flusher.flush("docs", timeout=30.0)
            except TimeoutError as exc:
                caught.append(exc)
            await expiry
        for each in clients[1:]:
            await each.close()
        return caught

    caught = asyncio.run(main())
    assert len(caught) == len(clients)  # asyncio's TimeoutError, not the 30 s budget's
    assert not any(isinstance(exc, flushkit.FlushError) for exc in caught)
    assert fake.wait_for_cancellations(len(clients))


async def expire_once_received(fake, within, n: int) -> None:
    """Make ``asyncio.timeout()``'s ``within`` due now, once the server received ``n``
    Flush calls."""
    await received(fake, n)
    within.reschedule(asyncio.get_running_loop().time())
