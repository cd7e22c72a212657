"""Timeout enforcement: one budget for the whole call, held as a deadline."""

from __future__ import annotations

from .._chain import RequestPreparer
from .._models import RequestChanges


class TimeoutMiddleware(RequestPreparer):
    """Turns the request's ``timeout`` into its ``deadline``.

    The deadline covers the whole call: the Flush RPC, the waiting, and every retry of
    middlewares inside this one. Every RPC receives what is left of it as its gRPC
    deadline (so the server sees the call end and gRPC ends the call there), and
    pauses never reach past it. Once it passes, the call raises
    :class:`~flushkit.FlushTimeoutError`. Without this middleware ``timeout`` is ignored.
    It sets the deadline of the request the call starts with (a request preparer); a
    middleware that yields ``request.replace(timeout=...)`` moves it.
    """

    def prepare(self, fields: RequestChanges) -> None:
        timeout = fields["timeout"]
        if timeout is not None:
            deadline = fields["started"] + timeout
            earlier = fields["deadline"]
            if earlier is None or deadline < earlier:
                fields["deadline"] = deadline

    def __repr__(self) -> str:
        return "TimeoutMiddleware()"
