"""Waking event-loop waiters from other threads: one wake-up per burst."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import anyio
import pytest

from flushkit._grpc.wakeups import _LoopWakeups, _wakeups, threadsafe_setter


class Loop:
    """Records what is scheduled on it; ``run()`` runs it, as a loop's pass would."""

    def __init__(self, closed: bool = False) -> None:
        self.scheduled: list[Callable[[], object]] = []
        self.closed = closed

    def call_soon(self, callback: Callable[[], object]) -> None:
        if self.closed:
            raise RuntimeError("Event loop is closed")
        self.scheduled.append(callback)

    def run(self) -> None:
        scheduled, self.scheduled = self.scheduled, []
        for callback in scheduled:
            callback()


def test_a_burst_of_wakeups_schedules_one_pass():
    loop, woken = Loop(), []
    wakeups = _LoopWakeups(loop.call_soon)
    for i in range(5):
        wakeups.wake(lambda i=i: woken.append(i))
    assert len(loop.scheduled) == 1 and woken == []
    loop.run()
    assert woken == [0, 1, 2, 3, 4]
    wakeups.wake(lambda: woken.append(5))  # after the drain: a new pass
    assert len(loop.scheduled) == 1
    loop.run()
    assert woken == [0, 1, 2, 3, 4, 5]


def test_a_closed_loop_is_not_an_error_and_is_tried_again():
    loop, woken = Loop(closed=True), []
    wakeups = _LoopWakeups(loop.call_soon)
    wakeups.wake(lambda: woken.append(1))
    loop.closed = False  # (a stopped loop that runs again)
    wakeups.wake(lambda: woken.append(2))
    loop.run()
    assert woken == [2]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_events_set_from_other_threads_all_wake(backend):
    async def main() -> None:
        events = [anyio.Event() for _ in range(200)]
        setters = [threadsafe_setter(event) for event in events]
        threads = [
            threading.Thread(target=lambda part=part: [s() for s in setters[part::4]])
            for part in range(4)
        ]
        for thread in threads:
            thread.start()
        with anyio.fail_after(5):
            for event in events:
                await event.wait()
        for thread in threads:
            thread.join()

    for _ in range(3):  # a new loop each time
        anyio.run(main, backend=backend)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_waking_after_the_loop_ended_is_harmless(backend):
    async def main() -> tuple[anyio.Event, Callable[[], None], _LoopWakeups]:
        event = anyio.Event()
        wake = threadsafe_setter(event)
        if backend == "asyncio":
            key: object = asyncio.get_running_loop()
        else:
            import trio

            key = trio.lowlevel.current_trio_token()
        return event, wake, _wakeups[key]  # the ended loop's wake-ups

    event, wake, wakeups = anyio.run(main, backend=backend)
    attempts: list[object] = []
    call_soon = wakeups._call_soon

    def counting_call_soon(callback: Callable[[], object]) -> object:
        attempts.append(callback)
        return call_soon(callback)  # raises: the loop has ended

    wakeups._call_soon = counting_call_soon
    assert wake() is None  # no error reaches the thread that wakes
    assert wake() is None
    assert len(attempts) == 2  # the first failure did not leave a drain "scheduled"
    assert not wakeups._scheduled
    assert not wakeups._pending  # nothing queued for a loop that will never drain it
    assert not event.is_set()


def test_one_flusher_from_event_loops_in_several_threads_at_once(fake, client):
    """Each loop is woken through its own wake-ups, loops come and go, none is missed."""
    import flushkit

    flusher = flushkit.AsyncFlusher(client)
    results: list[object] = []
    errors: list[BaseException] = []

    def run(backend: str) -> None:
        async def main() -> None:
            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(lambda: _flush_into(flusher, results))

        try:
            for _ in range(5):  # a new event loop each time
                anyio.run(main, backend=backend)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(b,)) for b in ["asyncio", "trio"] * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert len(results) == 4 * 5 * 8


async def _flush_into(flusher: object, results: list[object]) -> None:
    with anyio.fail_after(10):
        results.append(await flusher.flush("docs"))  # type: ignore[attr-defined]
