"""Waking an event loop's waiters from other threads: one wake-up per burst.

gRPC's completion thread and callers on other threads (ringing a waiting call's bell) finish what
async callers wait for. Each wake-up of an event loop from another thread writes to the
loop's wake-up socket and makes the loop run a pass; when several waiters of one loop
finish together (the callers of one shared Flush, or many concurrent RPCs answered in a
row), one wake-up serves them all: the first schedules a drain on the loop, the others
join its queue until it runs.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

import anyio

__all__ = ["threadsafe_setter"]

Setter = Callable[[], object]


class _LoopWakeups:
    """The pending wake-ups of one event loop (asyncio) or run (trio).

    Lock-free on purpose: a lock shared by gRPC's thread and the event loop's thread makes
    each wait for the other to get the GIL back. ``deque.append`` and ``popleft`` are
    atomic; the flag may schedule a drain too many, never one too few: a drain clears it
    before it empties the queue, and a waker sets it after it has queued.
    """

    __slots__ = ("_call_soon", "_pending", "_scheduled")

    def __init__(self, call_soon: Callable[[Callable[[], object]], object]) -> None:
        self._call_soon = call_soon
        self._pending: collections.deque[Setter] = collections.deque()
        self._scheduled = False

    def wake(self, setter: Setter) -> None:
        """Run ``setter`` on the loop soon; safe from any thread."""
        self._pending.append(setter)
        if self._scheduled:
            return
        self._scheduled = True
        try:
            self._call_soon(self._drain)
        except RuntimeError:  # the loop has closed (trio: RunFinishedError): none waits
            self._scheduled = False
            self._pending.clear()

    def _drain(self) -> None:
        self._scheduled = False
        pending = self._pending
        while pending:
            pending.popleft()()


_lock = threading.Lock()
_wakeups: weakref.WeakKeyDictionary[Any, _LoopWakeups] = weakref.WeakKeyDictionary()


def threadsafe_setter(event: anyio.Event) -> Callable[[], None]:
    """A function that sets ``event`` (of the running loop) from any thread."""
    loop = asyncio._get_running_loop()  # None, not an exception, outside asyncio
    if loop is not None:
        key: Any = loop
        call_soon = loop.call_soon_threadsafe
    else:  # anyio's only other backend, so trio is imported and running
        key = sys.modules["trio"].lowlevel.current_trio_token()
        call_soon = key.run_sync_soon
    wakeups = _wakeups.get(key)
    if wakeups is None:
        with _lock:
            wakeups = _wakeups.setdefault(key, _LoopWakeups(call_soon))
    setter = event.set
    wake = wakeups.wake

    def wake_event() -> None:
        wake(setter)

    return wake_event
