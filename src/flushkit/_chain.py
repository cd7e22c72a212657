"""The middleware chain: generator flows, composed once, stepped by a driver.

A middleware is any callable that takes a :class:`FlushRequest` and returns a generator
(a *flow*). The flow yields one of two things and is resumed with the answer:

* ``result = yield request`` runs the rest of the chain (the inner middlewares and the
  core flush) with ``request`` and sends back its :class:`FlushResult`, or throws its
  exception in at the ``yield``.
* ``yield Pause(seconds)`` sleeps: ``time.sleep`` for the blocking facade, ``anyio.sleep``
  under asyncio and trio.

The flow returns the :class:`FlushResult` the caller receives. It may yield the request
several times (that is how a retry fits), replace the request, the result or the
exception. Because the driver, not the middleware, performs the I/O and the sleeping, one
middleware serves the blocking facade, asyncio and trio alike (as pluggy's hook wrappers
and httpx's ``Auth.auth_flow`` do).

:func:`compose` nests the middlewares around the core flow once per flusher and returns one
flow whose only effects are the core's RPC calls and the pauses.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any, Protocol, TypeVar

from ._models import FlushRequest, FlushResult, Pause

__all__ = ["Flow", "Middleware", "compose"]

Effect = TypeVar("Effect")

#: What a middleware returns: yields requests or pauses, receives results, returns one.
Flow = Generator[FlushRequest | Pause, Any, FlushResult]


class Middleware(Protocol):
    """A step of the chain; a plain generator function is one."""

    def __call__(self, request: FlushRequest, /) -> Flow: ...


Handler = Callable[[FlushRequest], Generator[Effect, Any, FlushResult]]


def compose(middleware: Sequence[Middleware], core: Handler[Effect]) -> Handler[Effect | Pause]:
    """Wrap ``core`` in ``middleware``; the first middleware is the outermost."""
    handler: Handler[Any] = core
    for layer in reversed(middleware):
        if not callable(layer):
            raise TypeError(f"middleware must be callable, not {type(layer).__name__}")
        handler = _around(layer, handler)
    return handler


def _around(layer: Middleware, inner: Handler[Any]) -> Handler[Any]:
    def flow(request: FlushRequest) -> Generator[Any, Any, FlushResult]:
        steps = layer(request)
        if not isinstance(steps, Generator):
            raise TypeError(
                f"middleware {layer!r} returned {type(steps).__name__}; a middleware is a "
                "generator function that yields the request and returns the result"
            )
        answer: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = steps.send(answer) if error is None else steps.throw(error)
            except StopIteration as stop:
                return _checked(layer, stop.value)
            answer = error = None
            if isinstance(step, FlushRequest):
                try:
                    answer = yield from inner(step)
                except BaseException as exc:  # thrown in at the middleware's yield
                    error = exc
            elif isinstance(step, Pause):
                try:
                    answer = yield step
                except BaseException as exc:
                    error = exc
            else:
                steps.close()
                raise TypeError(
                    f"middleware {layer!r} yielded {step!r}; "
                    "it may yield only a FlushRequest or a Pause"
                )

    flow.__qualname__ = f"flow of {getattr(layer, '__qualname__', type(layer).__qualname__)}"
    return flow


def _checked(layer: Middleware, value: Any) -> FlushResult:
    if not isinstance(value, FlushResult):
        raise TypeError(
            f"middleware {layer!r} returned {value!r}; "
            "it must return the FlushResult (result = yield request; return result)"
        )
    return value
