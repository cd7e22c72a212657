"""What the core flush asks its driver to do: the one vocabulary of effects.

The core (:mod:`flushkit._core`) and the scheduler (:mod:`flushkit._scheduler`) decide;
they never perform I/O, sleep or start an RPC. What they decide reaches the driver (the
blocking or the async facade, through the transport) as one of

* :class:`Call`: perform this RPC for the calling task and answer with its response;
* :class:`Start`: start this shared round's Flush as an RPC that belongs to no caller, and
  answer with its handle (to cancel it) at once; its outcome *lands* on the round
  (:meth:`~flushkit._scheduler.Round.land`), wherever the RPC ends;
* :class:`Wait`: sleep until the call's :class:`Bell` rings or until ``until``
  (``time.monotonic()`` seconds), whichever comes first;
* :class:`~flushkit.Pause`: sleep this long (the middlewares' own effect; the core's
  pause between GetFlushState polls).

The driver answers each effect with its outcome: the answer, or :class:`Failed` holding
the exception that performing it raised (cancellation included), which the walk throws
into the chain where the effect came from.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from ._models import FlushRequest

__all__ = [
    "ALLOC_TIMESTAMP",
    "FLUSH",
    "GET_FLUSH_STATE",
    "LIST_DATABASES",
    "Bell",
    "Call",
    "Failed",
    "Start",
    "Wait",
]

FLUSH = "Flush"
ALLOC_TIMESTAMP = "AllocTimestamp"
GET_FLUSH_STATE = "GetFlushState"
LIST_DATABASES = "ListDatabases"


class Call(NamedTuple):
    """An RPC for the driver to perform: ``method`` with ``message`` for ``request``."""

    method: str
    message: Any
    request: FlushRequest


class Start(NamedTuple):
    """Start ``call`` as an RPC owned by no caller; its outcome lands on ``round``."""

    call: Call
    round: Any  # the flushkit._scheduler.Round (which imports this module)


class Wait(NamedTuple):
    """Sleep until ``bell`` rings or ``until`` (None: only the bell) has come; ``slot``
    is when the call's wait for a collection's slot ends (pacing; the looks it makes
    meanwhile aside), else None."""

    bell: Bell
    until: float | None
    slot: float | None


class Failed(NamedTuple):
    """The outcome of an effect whose performing raised ``error``."""

    error: BaseException


class Bell:
    """Rung from any thread when something a waiting call depends on has changed.

    A driver :meth:`arm`\\ s it with a waker before it sleeps: if it was rung since the
    caller last looked, ``arm`` says so and the driver does not sleep at all, so a ring
    between the caller's look and its sleep is never lost.
    """

    __slots__ = ("_lock", "_rung", "_wake")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rung = False
        self._wake: Callable[[], object] | None = None

    def ring(self) -> None:
        with self._lock:
            wake, self._wake = self._wake, None
            self._rung = wake is None  # a woken driver returns, and its caller looks again
        if wake is not None:
            wake()

    def arm(self, wake: Callable[[], object]) -> bool:
        """Have ``wake`` called at the next ring; False (and no call) if it has rung
        since the last ``arm``."""
        with self._lock:
            if self._rung:
                self._rung = False
                return False
            self._wake = wake
            return True

    def disarm(self) -> None:
        """Forget the waker (the driver stopped waiting); a ring is kept for next time."""
        with self._lock:
            self._wake = None
