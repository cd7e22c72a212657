"""Closing a flusher: the README's "``Flusher.close()`` (or ``with Flusher(client) as
flusher:``) and ``await AsyncFlusher.aclose()`` (or ``async with``) make later flushes raise
``ClientClosedError``; the pymilvus client stays open: it is yours."

Public behaviour only: what the test server received (nothing once closed), the error's
class and text, and the client still answering. Blocking; ``AsyncFlusher`` under asyncio
and trio on a ``MilvusClient``, and under asyncio on an ``AsyncMilvusClient``.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from pymilvus import AsyncMilvusClient, MilvusClient

import flushkit
from flushkit.testing import MilvusTestServer, delay

ASYNC_RUNTIMES = ("asyncio", "trio", "aio")
PATIENCE = 10.0


def rpcs(server: MilvusTestServer) -> list[str]:
    """The flush path's RPCs the server received (a client's Connect left out)."""
    return [call.method for call in server.calls if call.method != "Connect"]


def refuses(error: BaseException, facade: str) -> None:
    assert type(error) is flushkit.ClientClosedError
    assert isinstance(error, flushkit.FlushError)
    assert str(error) == f"{facade} is closed"


# blocking


def test_a_closed_flusher_raises_client_closed_and_sends_nothing(fake, client):
    flusher = flushkit.Flusher(client)
    assert flusher.flush("docs").status.ok
    flusher.close()
    sent = rpcs(fake)
    for options in [{}, {"wait": True}, {"db_name": "other"}, {"timeout": None}]:
        with pytest.raises(flushkit.ClientClosedError) as caught:
            flusher.flush(["docs", "images"], **options)
        refuses(caught.value, "Flusher")
    assert rpcs(fake) == sent == ["Flush"]


def test_leaving_with_closes_the_flusher_and_the_client_stays_open(fake, client):
    with flushkit.Flusher(client) as flusher:
        assert isinstance(flusher, flushkit.Flusher)
        assert flusher.flush("docs").status.ok
    with pytest.raises(flushkit.ClientClosedError) as caught:
        flusher.flush("docs")
    refuses(caught.value, "Flusher")
    assert len(fake.flush_calls) == 1
    # the pymilvus client is the caller's: still open, for pymilvus and for flushkit
    assert "default" in client.list_databases()
    assert flushkit.Flusher(client).flush("docs").status.ok
    assert len(fake.flush_calls) == 2


def test_with_closes_the_flusher_when_the_block_raises(fake, client):
    with pytest.raises(LookupError), flushkit.Flusher(client) as flusher:
        raise LookupError("the caller's own error goes through")
    with pytest.raises(flushkit.ClientClosedError):
        flusher.flush("docs")
    assert fake.flush_calls == []


def test_closing_twice_is_harmless(fake, client):
    flusher = flushkit.Flusher(client)
    flusher.close()
    flusher.close()
    # entering a closed flusher is allowed; it stays closed
    with flusher, pytest.raises(flushkit.ClientClosedError):
        flusher.flush("docs")
    flusher.close()
    assert fake.flush_calls == []


def test_closing_one_flusher_leaves_the_others_on_its_client_working(fake, client):
    closed, other = flushkit.Flusher(client), flushkit.Flusher(client)
    closed.close()
    assert other.flush("docs").status.ok
    with pytest.raises(flushkit.ClientClosedError):
        closed.flush("docs")
    assert len(fake.flush_calls) == 1


def test_a_flush_in_flight_when_its_flusher_closes_ends_as_usual(fake, client):
    # "later flushes" raise: a flush already on its way gets its Flush's answer
    fake.script_flush(delay(1.0))
    flusher = flushkit.Flusher(client)
    outcome: list[Any] = []

    def flush() -> None:
        try:
            outcome.append(flusher.flush("docs", timeout=PATIENCE))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=flush)
    thread.start()
    assert fake.wait_for_calls(1, "Flush", timeout=PATIENCE)
    flusher.close()
    thread.join(PATIENCE)
    assert not thread.is_alive()
    (result,) = outcome
    assert isinstance(result, flushkit.FlushResult) and result.status.ok
    with pytest.raises(flushkit.ClientClosedError):
        flusher.flush("docs")
    assert len(fake.flush_calls) == 1


def test_a_closed_pymilvus_client_is_client_closed_too(fake):
    # the other way round: the client closed (by its owner), the flusher refuses
    milvus = MilvusClient(uri=fake.uri)
    flusher = flushkit.Flusher(milvus)
    milvus.close()
    with pytest.raises(flushkit.ClientClosedError):
        flusher.flush("docs")
    assert fake.flush_calls == []


# async


@asynccontextmanager
async def async_client(
    runtime: str, fake: MilvusTestServer, client: MilvusClient
) -> AsyncIterator[Any]:
    """The client an AsyncFlusher of ``runtime`` flushes through: ``client``, or ("aio") an
    AsyncMilvusClient of the test server, closed at the end."""
    if runtime != "aio":
        yield client
        return
    twin = AsyncMilvusClient(uri=fake.uri, dedicated=True)
    try:
        yield twin
    finally:
        with anyio.CancelScope(shield=True):
            await twin.close()


async def databases_of(runtime_client: Any) -> list[str]:
    """The client's own list_databases: it still works."""
    if isinstance(runtime_client, AsyncMilvusClient):
        return list(await runtime_client.list_databases())
    return list(await anyio.to_thread.run_sync(runtime_client.list_databases))


def run(runtime: str, main: Any) -> None:
    anyio.run(main, backend="asyncio" if runtime == "aio" else runtime)


@pytest.mark.parametrize("runtime", ASYNC_RUNTIMES)
def test_a_closed_async_flusher_raises_client_closed_and_sends_nothing(fake, client, runtime):
    async def main() -> None:
        async with async_client(runtime, fake, client) as target:
            flusher = flushkit.AsyncFlusher(target)
            assert (await flusher.flush("docs")).status.ok
            await flusher.aclose()
            sent = rpcs(fake)
            for options in [{}, {"wait": True}, {"db_name": "other"}, {"timeout": None}]:
                with pytest.raises(flushkit.ClientClosedError) as caught:
                    await flusher.flush(["docs", "images"], **options)
                refuses(caught.value, "AsyncFlusher")
            assert rpcs(fake) == sent
            assert "default" in await databases_of(target)  # the client stays open

    run(runtime, main)
    assert len(fake.flush_calls) == 1


@pytest.mark.parametrize("runtime", ASYNC_RUNTIMES)
def test_leaving_async_with_closes_and_the_client_stays_open(fake, client, runtime):
    async def main() -> None:
        async with async_client(runtime, fake, client) as target:
            async with flushkit.AsyncFlusher(target) as flusher:
                assert isinstance(flusher, flushkit.AsyncFlusher)
                assert (await flusher.flush("docs", wait=True)).persisted
            with pytest.raises(flushkit.ClientClosedError) as caught:
                await flusher.flush("docs")
            refuses(caught.value, "AsyncFlusher")
            assert len(fake.flush_calls) == 1
            assert "default" in await databases_of(target)
            again = flushkit.AsyncFlusher(target)  # a new flusher on the same client
            assert (await again.flush("docs")).status.ok
            await again.aclose()
            await again.aclose()  # twice: harmless

    run(runtime, main)
    assert len(fake.flush_calls) == 2


@pytest.mark.parametrize("runtime", ASYNC_RUNTIMES)
def test_async_with_closes_when_the_block_raises(fake, client, runtime):
    async def main() -> None:
        async with async_client(runtime, fake, client) as target:
            flusher = flushkit.AsyncFlusher(target)
            with pytest.raises(LookupError):
                async with flusher:
                    raise LookupError("the caller's own error goes through")
            with pytest.raises(flushkit.ClientClosedError):
                await flusher.flush("docs")

    run(runtime, main)
    assert fake.flush_calls == []


@pytest.mark.parametrize("runtime", ASYNC_RUNTIMES)
def test_an_async_flush_in_flight_when_its_flusher_closes_ends_as_usual(fake, client, runtime):
    fake.script_flush(delay(1.0))

    async def main() -> None:
        async with async_client(runtime, fake, client) as target:
            flusher = flushkit.AsyncFlusher(target)
            outcome: list[Any] = []

            async def flush() -> None:
                outcome.append(await flusher.flush("docs", timeout=PATIENCE))

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(flush)
                arrived = await anyio.to_thread.run_sync(
                    lambda: fake.wait_for_calls(1, "Flush", timeout=PATIENCE)
                )
                assert arrived
                await flusher.aclose()
            (result,) = outcome
            assert result.status.ok
            with pytest.raises(flushkit.ClientClosedError):
                await flusher.flush("docs")

    run(runtime, main)
    assert len(fake.flush_calls) == 1
