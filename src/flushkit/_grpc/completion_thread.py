"""Keeping gRPC's completion thread of a channel alive between consecutive futures.

A blocking gRPC channel answers its futures on one thread of its own, which gRPC starts
when the channel has no future in flight and a new one begins, and which exits when the
last future in flight ends. The async facade and the shared rounds of coalescing run
every RPC as a future, so a caller flushing again and again (one call at a time) would
start a new thread for every call, in the caller's path, since ``Thread.start()`` waits
for the new thread to run (what that costs: ``docs/benchmarks.md``).

:class:`ChannelFutures` counts a channel's flushkit futures in flight. When the last one
ends, its done-callback (which runs on gRPC's thread) lingers for at most :data:`LINGER`
seconds, and returns as soon as the next flushkit future on the channel has begun: that
future counted on the thread still being there, so gRPC keeps it.
Nothing but public gRPC calls is used; the cost is gRPC's thread held idle (no CPU) for
at most a millisecond after a burst of calls ends, during which the channel's other
futures, if any, are answered that much later.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["LINGER", "ChannelFutures", "futures_of"]

#: How long gRPC's thread waits, after a channel's last flushkit future, for the next.
LINGER = 0.001


class ChannelFutures:
    """The flushkit futures in flight on one channel, and the linger after the last."""

    __slots__ = ("_in_flight", "_lingering", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._lingering: threading.Event | None = None

    def track(self, future: Any, when_done: Callable[[Any], object]) -> None:
        """Count ``future`` (just started) until it ends; ``when_done(future)`` runs first."""
        with self._lock:
            self._in_flight += 1
            lingering, self._lingering = self._lingering, None
        if lingering is not None:
            lingering.set()  # gRPC's thread may go back to polling: this future counts on it
        starter = threading.get_ident()

        def done(future: Any) -> None:
            try:
                when_done(future)
            finally:
                # A future that ended before this callback was added calls it at once,
                # on the starting thread: that thread must never be held.
                self._ended(linger=threading.get_ident() != starter)

        future.add_done_callback(done)

    def _ended(self, *, linger: bool) -> None:
        with self._lock:
            self._in_flight -= 1
            if self._in_flight or not linger:
                return
            lingering = self._lingering = threading.Event()
        lingering.wait(LINGER)
        with self._lock:
            if self._lingering is lingering:
                self._lingering = None


_lock = threading.Lock()
_futures: weakref.WeakKeyDictionary[Any, ChannelFutures] = weakref.WeakKeyDictionary()


def futures_of(channel: Any) -> ChannelFutures:
    """The :class:`ChannelFutures` of ``channel``, shared by every flusher using it
    (a channel that cannot be weakly referenced gets one of its own each time)."""
    with _lock:
        try:
            futures = _futures.get(channel)
            if futures is None:
                futures = _futures[channel] = ChannelFutures()
        except TypeError:
            futures = ChannelFutures()
        return futures
