"""What only the async facade has: concurrency without threads, and cancellation."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import warnings

import anyio
import pytest

import flushkit
from flushkit.testing import delay, hang

from .helpers import async_client_like

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


@pytest.fixture(params=["MilvusClient", "AsyncMilvusClient"])
async def async_flusher(request, anyio_backend, client):
    """``async_flusher(**options)``: an AsyncFlusher on the blocking client, or on an
    AsyncMilvusClient of the same server (asyncio only)."""
    if request.param == "MilvusClient":
        yield lambda **options: flushkit.AsyncFlusher(client, **options)
        return
    if anyio_backend != "asyncio":
        pytest.skip("an AsyncMilvusClient runs under asyncio only")
    import pymilvus

    if int(pymilvus.__version__.split(".")[0]) < 3:
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


async def test_120_concurrent_flushes_of_a_200ms_rpc_are_all_in_flight_at_once(fake, async_flusher):
    flusher = async_flusher()
    await flusher.flush("warm_up")  # an AsyncMilvusClient connects on its first call
    fake.script_flush(*[delay(0.2) for _ in range(120)])
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


async def test_outer_cancel_scope_cancels_the_rpc_on_the_server(fake, async_flusher):
    fake.script_flush(hang())
    flusher = async_flusher()
    started = time.monotonic()
    with anyio.move_on_after(0.2) as scope:
        await flusher.flush("docs", timeout=5.0)
    assert scope.cancelled_caught
    assert time.monotonic() - started < 0.2 + 1.0  # the scope ended it, not the 5 s budget
    assert fake.wait_for_cancellations(1)


async def test_callers_scope_deadline_becomes_the_rpc_deadline(fake, async_flusher):
    fake.script_flush(hang())
    flusher = async_flusher()
    with anyio.move_on_after(0.3) as scope:
        await flusher.flush("docs", timeout=10.0)
    assert scope.cancelled_caught  # the runtime's cancellation, not a FlushTimeoutError
    remaining = fake.flush_calls[-1].time_remaining
    assert remaining is not None and remaining <= 0.3 + 0.01


async def test_callers_scope_that_ends_while_the_loop_is_busy_still_cancels(fake, async_flusher):
    """The RPC's deadline (the scope's) and the scope's own end arrive in one pass of an
    event loop that was busy: the flush then resumes with the RPC's DEADLINE_EXCEEDED in
    a scope already cancelled, and the caller still sees its runtime's cancellation."""
    fake.script_flush(hang())
    flusher = async_flusher()

    async def freeze_the_loop_once_the_flush_is_sent():
        while not fake.flush_calls:
            await anyio.sleep(0.005)
        time.sleep(1.0)  # past the scope's 0.3 s: both ends arrive during this

    async with anyio.create_task_group() as tg:
        tg.start_soon(freeze_the_loop_once_the_flush_is_sent)
        with anyio.move_on_after(0.3) as scope:
            await flusher.flush("docs", timeout=10.0)
    assert scope.cancelled_caught


async def test_a_budget_that_ends_as_the_async_client_connects_leaves_nothing_unawaited(
    fake, async_flusher, monkeypatch
):
    """An AsyncMilvusClient connects on its first call, within what is left of the
    budget. When the budget ends between the call's start and that connection (the
    transport's second look at it), the call is a FlushTimeoutError and no connection
    coroutine is left behind unawaited (Python would warn of one)."""
    from flushkit._grpc import transport

    flusher = async_flusher()
    if not flusher._transport.asyncio_only:
        pytest.skip("only an AsyncMilvusClient connects on its first call")
    looks = []
    remaining = transport._remaining

    def ended_at_the_second_look(call):
        looks.append(call)
        if len(looks) == 2:
            raise transport.timeout_error(call.request, "connecting")
        return remaining(call)

    monkeypatch.setattr(transport, "_remaining", ended_at_the_second_look)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(flushkit.FlushTimeoutError):
            await flusher.flush("docs")
        gc.collect()
    assert len(looks) == 2
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []


async def test_cancelled_task_group_cancels_the_rpc(fake, async_flusher):
    fake.script_flush(hang())
    flusher = async_flusher()
    async with anyio.create_task_group() as tg:
        tg.start_soon(flusher.flush, "docs")
        await anyio.sleep(0.1)
        tg.cancel_scope.cancel()
    assert fake.wait_for_cancellations(1)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_asyncio_task_cancel_propagates_as_cancelled_error(fake, async_flusher):
    fake.script_flush(hang())
    flusher = async_flusher()
    task = asyncio.get_running_loop().create_task(flusher.flush("docs"))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fake.wait_for_cancellations(1)


async def test_cancellation_during_the_wait_loop(fake, async_flusher):
    from flushkit.testing import flushed

    fake.script_flush_state(*[flushed(False) for _ in range(1000)])
    flusher = async_flusher()
    started = time.monotonic()
    with anyio.move_on_after(0.3) as scope:
        await flusher.flush("docs", wait=True)
    assert scope.cancelled_caught
    assert time.monotonic() - started < 0.3 + 1.0  # long before the 1,000 polls' end


async def test_context_manager_closes(client):
    async with flushkit.AsyncFlusher(client) as flusher:
        assert (await flusher.flush("docs")).status.ok
    with pytest.raises(flushkit.ClientClosedError):
        await flusher.flush("docs")


async def test_event_loop_is_never_blocked(fake, client):
    fake.script_flush(delay(0.3))
    flusher = flushkit.AsyncFlusher(client)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await flusher.flush("docs")
        tg.cancel_scope.cancel()
    assert ticks >= 15


async def test_cancelled_flush_ends_its_span_unset_and_logs_cancelled(fake, client):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    from .helpers import RecordingLogger

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    logger = RecordingLogger()
    fake.script_flush(hang())
    flusher = flushkit.AsyncFlusher(
        client, middleware=flushkit.default_middleware(logger=logger, tracer_provider=provider)
    )
    with anyio.move_on_after(0.2):
        await flusher.flush("docs", timeout=5.0)
    (span,) = exporter.get_finished_spans()
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
    import pymilvus

    clients = [client]
    if int(pymilvus.__version__.split(".")[0]) >= 3:  # see async_flusher above
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
    import pymilvus

    clients = [client]
    if int(pymilvus.__version__.split(".")[0]) >= 3:  # see async_flusher above
        clients.append(async_client_like(client))

    async def main() -> list[BaseException]:
        caught: list[BaseException] = []
        for each in clients:
            flusher = flushkit.AsyncFlusher(each)
            await flusher.flush("warm_up")  # an AsyncMilvusClient connects on its first call
            fake.script_flush(hang())
            try:
                async with asyncio.timeout(0.3):
                    await flusher.flush("docs", timeout=10.0)
            except TimeoutError as exc:
                caught.append(exc)
        for each in clients[1:]:
            await each.close()
        return caught

    caught = asyncio.run(main())
    assert len(caught) == len(clients)
    assert not any(isinstance(exc, flushkit.FlushError) for exc in caught)
    assert fake.wait_for_cancellations(len(clients))
