"""gRPC's completion thread of a channel is kept between consecutive futures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import flushkit
from flushkit._grpc import completion_thread as _completion_thread
from flushkit._grpc.completion_thread import ChannelFutures, futures_of

from .helpers import joined

#: A linger far longer than any check below needs: a thread still alive while its
#: future is answered is lingering, and one that ends well before it did not linger.
LONG = 10.0


class Future:
    """A stand-in for a gRPC future: ``end()`` runs its callbacks on the calling thread."""

    def __init__(self, ended: bool = False) -> None:
        self.ended = ended
        self.callbacks: list[Callable[[Any], object]] = []

    def add_done_callback(self, callback: Callable[[Any], object]) -> None:
        if self.ended:
            callback(self)
        else:
            self.callbacks.append(callback)

    def end(self) -> None:
        self.ended = True
        for callback in self.callbacks:
            callback(self)


def end_on_another_thread(future: Future) -> tuple[threading.Thread, list[float]]:
    took: list[float] = []

    def run() -> None:
        started = time.monotonic()
        future.end()
        took.append(time.monotonic() - started)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, took


@pytest.fixture
def long_linger(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(_completion_thread, "LINGER", LONG)
    return LONG


def test_the_last_future_lingers_until_the_next_starts(long_linger):
    futures, answered = ChannelFutures(), []
    first = Future()
    reached = threading.Event()
    futures.track(first, lambda future: (answered.append(future), reached.set()))
    thread, took = end_on_another_thread(first)
    assert reached.wait(LONG / 2)
    assert answered == [first]  # answered before the linger, not after
    assert thread.is_alive()  # gRPC's thread is held for the next future
    futures.track(Future(), answered.append)
    joined(thread, LONG / 2)  # released by the next future, not at the linger's end
    assert took[0] < LONG / 2


def test_the_linger_ends_by_itself(monkeypatch):
    monkeypatch.setattr(_completion_thread, "LINGER", 0.05)
    futures = ChannelFutures()
    future = Future()
    futures.track(future, lambda _: None)
    thread, took = end_on_another_thread(future)
    joined(thread, LONG)  # it ends by itself
    assert took[0] > 0.04  # after lingering


def test_no_linger_while_another_future_is_in_flight(long_linger):
    futures = ChannelFutures()
    first, second = Future(), Future()
    futures.track(first, lambda _: None)
    futures.track(second, lambda _: None)
    thread, took = end_on_another_thread(first)
    joined(thread, LONG / 2)
    assert took[0] < LONG / 2  # not held for the linger


def test_a_future_that_ended_before_tracking_never_holds_the_caller(long_linger):
    futures, answered = ChannelFutures(), []
    started = time.monotonic()
    futures.track(Future(ended=True), answered.append)
    assert time.monotonic() - started < LONG / 2 and len(answered) == 1


def test_a_failing_callback_still_counts_the_future_out(long_linger):
    futures = ChannelFutures()
    future = Future()

    def fail(_: Any) -> None:
        raise RuntimeError("a bug")

    futures.track(future, fail)
    with pytest.raises(RuntimeError):
        future.end()  # on this thread: no linger either
    other = Future()
    reached = threading.Event()
    futures.track(other, lambda _: reached.set())
    thread, _ = end_on_another_thread(other)
    assert reached.wait(LONG / 2)
    assert thread.is_alive()  # the count is back to zero: the last future lingers
    futures.track(Future(), lambda _: None)
    joined(thread, LONG / 2)


def test_one_per_channel():
    a, b = object.__new__(type("Channel", (), {})), object.__new__(type("Channel", (), {}))
    assert futures_of(a) is futures_of(a)
    assert futures_of(a) is not futures_of(b)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_consecutive_async_flushes_reuse_grpcs_thread(fake, client, backend, monkeypatch):
    """Without the linger, gRPC starts a thread for each of these flushes."""
    started = []
    original = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        started.append(thread.name)
        original(thread)

    flusher = flushkit.AsyncFlusher(client)

    async def main() -> None:
        await flusher.flush("docs")
        monkeypatch.setattr(threading.Thread, "start", start)
        for _ in range(40):
            await flusher.flush("docs")

    anyio.run(main, backend=backend)
    assert len(fake.flush_calls) == 41
    assert len(started) < 20, started


def test_a_channel_without_weak_references_gets_its_own():
    channel = object()  # cannot be weakly referenced
    assert isinstance(futures_of(channel), ChannelFutures)
