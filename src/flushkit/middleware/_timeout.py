"""Timeout enforcement: one budget for the whole call, held as a deadline."""

from __future__ import annotations

from .._chain import Flow
from .._models import FlushRequest, FlushResult


class TimeoutMiddleware:
    """Turns the request's ``timeout`` into its ``deadline``.

    The deadline covers the whole call: the Flush RPC, the waiting, and every retry of
    middlewares inside this one. Every RPC receives what is left of it as its gRPC
    deadline (so the server sees the call end and gRPC ends the call there), and
    pauses never reach past it. Once it passes, the call raises
    :class:`~flushkit.FlushTimeoutError`. Without this middleware ``timeout`` is ignored.
    """

    def __call__(self, request: FlushRequest) -> Flow:
        if request.timeout is not None:
            deadline = request.started + request.timeout
            if request.deadline is None or deadline < request.deadline:
                request = request.replace(deadline=deadline)
        result: FlushResult = yield request
        return result

    def __repr__(self) -> str:
        return "TimeoutMiddleware()"
