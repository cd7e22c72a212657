"""What the core flush asks its driver to do: the effects, and the bell a waiting call
listens to.

The core is a generator (:mod:`flushkit._core`) that never performs I/O itself. It yields

* :class:`Call`: perform this RPC for the calling task and answer with its response
  (blocking, or awaited as a gRPC future);
* :class:`Start`: start this shared round's Flush RPC as a gRPC future that belongs to no
  caller and answer with the future at once; ``then`` gets the RPC's outcome on gRPC's
  thread;
* :class:`Await`: sleep until the call's :class:`Bell` rings or until ``until``
  (``time.monotonic()`` seconds), whichever comes first;
* :class:`~flushkit.Pause` (between GetFlushState polls).

The blocking driver performs them with blocking calls and a ``threading.Event``; the async
one with awaited futures and an ``anyio.Event``. Everything else is pure logic.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from ._models import FlushRequest

__all__ = ["FLUSH", "GET_FLUSH_STATE", "LIST_DATABASES", "Await", "Bell", "Call", "Start"]

FLUSH = "Flush"
GET_FLUSH_STATE = "GetFlushState"
LIST_DATABASES = "ListDatabases"

#: Gets an RPC's outcome: ``(response, None)`` or ``(None, the FlushError)``; ``(None,
#: None)`` when it was cancelled.
Outcome = Callable[[Any, BaseException | None], None]


class Call(NamedTuple):
    """An RPC for the driver to perform: ``method`` with ``message`` for ``request``."""

    method: str
    message: Any
    request: FlushRequest


class Start(NamedTuple):
    """Start ``call`` as a gRPC future owned by no caller; ``then`` gets its outcome."""

    call: Call
    then: Outcome


class Await(NamedTuple):
    """Sleep until ``bell`` rings or ``until`` (None: only the bell) has come."""

    bell: Bell
    until: float | None


# One lock for every bell: its sections are a few assignments, and a lock per bell (a
# call) would be made on every call's path.
_bells_lock = threading.Lock()


class Bell:
    """Rung from any thread when something a waiting call depends on has changed.

    A driver :meth:`arm`\\ s it with a waker before it sleeps: if it was rung since the
    caller last looked, ``arm`` says so and the driver does not sleep at all, so a ring
    between the caller's look and its sleep is never lost.
    """

    __slots__ = ("_rung", "_wake")

    def __init__(self) -> None:
        self._rung = False
        self._wake: Callable[[], object] | None = None

    def ring(self) -> None:
        with _bells_lock:
            wake, self._wake = self._wake, None
            self._rung = wake is None  # a woken driver returns, and its caller looks again
        if wake is not None:
            wake()

    def arm(self, wake: Callable[[], object]) -> bool:
        """Have ``wake`` called at the next ring; False (and no call) if it has rung
        since the last ``arm``."""
        with _bells_lock:
            if self._rung:
                self._rung = False
                return False
            self._wake = wake
            return True

    def disarm(self) -> None:
        """Forget the waker (the driver stopped waiting); a ring is kept for next time."""
        with _bells_lock:
            self._wake = None
