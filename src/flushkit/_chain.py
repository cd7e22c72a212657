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

A middleware that only sets request fields, the same way at every call and from the
request's own fields (the timeout's deadline, the coalescing wish), is a
:class:`RequestPreparer`: it runs no flow. The chain applies every preparer, in chain
order, to the fields of each call's request when the request is made, before any flow
runs (so every flow sees the prepared request), without a copy.

A :class:`Chain` is composed once per flusher. For each call, :meth:`Chain.steps` walks it
as pluggy's ``_multicall`` walks hook wrappers: one stack of running flows, the core
flush on top, and a loop that hands each flow's answer to the one below. The drivers only
see the core's RPC calls and the pauses.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from inspect import isfunction, isgeneratorfunction
from types import GeneratorType
from typing import Any, Generic, Protocol, TypeVar

from ._models import (
    REQUEST_FIELDS,
    FlushRequest,
    FlushResult,
    Pause,
    RequestChanges,
    new_request,
)

__all__ = ["Chain", "Flow", "Middleware", "RequestPreparer", "Steps"]

Effect = TypeVar("Effect")

#: What a middleware returns: yields requests or pauses, receives results, returns one.
Flow = Generator[FlushRequest | Pause, Any, FlushResult]


class Middleware(Protocol):
    """A step of the chain; a plain generator function is one."""

    def __call__(self, request: FlushRequest, /) -> Flow: ...


class RequestPreparer:
    """Base of a middleware that only sets request fields, the same way at every call.

    A subclass defines :meth:`prepare`, which changes the fields of a call's request in
    place, reading nothing but those fields (the chain runs it when the call's request is
    made, before any flow: a flow that changes ``timeout`` sets ``deadline`` itself).
    Called as a flow (outside a chain), it yields the prepared copy of the request.
    """

    def prepare(self, fields: RequestChanges) -> None:
        """Change ``fields`` (every field of the request, by name) in place."""
        raise NotImplementedError

    def __call__(self, request: FlushRequest) -> Flow:
        result: FlushResult = yield _prepared((self.prepare,), {**request.__dict__})
        return result


Core = Callable[[FlushRequest], Generator[Effect, Any, FlushResult]]


class Chain(Generic[Effect]):
    """``middleware`` (outermost first) around ``core``, checked and composed once."""

    __slots__ = ("core", "depth", "flows", "middleware", "preparers")

    def __init__(self, middleware: Sequence[Middleware], core: Core[Effect]) -> None:
        if not isinstance(middleware, Iterable) or isinstance(middleware, str):
            maker = isfunction(middleware) and not isgeneratorfunction(middleware)
            hint = " (did you mean to call it?)" if maker else ""
            raise TypeError(
                f"middleware must be a list of middlewares, outermost first, not "
                f"{type(middleware).__name__}{hint}; pass [one] for a single middleware"
            )
        self.middleware = tuple(middleware)
        for layer in self.middleware:
            if not callable(layer):
                raise TypeError(f"middleware must be callable, not {type(layer).__name__}")
        #: What each call's request fields go through when the request is made.
        self.preparers = tuple(
            layer.prepare for layer in self.middleware if isinstance(layer, RequestPreparer)
        )
        #: The middlewares a walk runs as flows, outermost first.
        self.flows = tuple(
            layer for layer in self.middleware if not isinstance(layer, RequestPreparer)
        )
        #: Where the core runs in a walk's stack of flows.
        self.depth = len(self.flows)
        self.core = core

    def request(self, fields: dict[str, Any]) -> FlushRequest:
        """A call's request of ``fields`` (all of a request's fields, in a dict that
        becomes the request's own), prepared by the chain's preparers."""
        return _prepared(self.preparers, fields) if self.preparers else new_request(fields)

    def steps(self, request: FlushRequest) -> Steps[Effect]:
        """Walk the chain for one call."""
        return Steps(self, request)


class Steps(Iterator[Effect | Pause]):
    """One call's walk through a :class:`Chain`.

    Iterate to get each effect to perform (the core's calls, any flow's pauses); report
    how it went with :meth:`send` (the answer) or :meth:`throw` (the exception). When the
    outermost flow is done, iteration stops and :attr:`result` holds what it returned, or
    iteration raises what it raised.
    """

    __slots__ = ("_answer", "_chain", "_error", "_request", "_stack", "result")

    def __init__(self, chain: Chain[Effect], request: FlushRequest) -> None:
        self._chain = chain
        self._stack: list[Generator[Any, Any, FlushResult]] = []
        self._request: FlushRequest | None = request  # a request to run at the next depth
        self._answer: Any = None
        self._error: BaseException | None = None

    def send(self, answer: Any) -> None:
        self._answer = answer

    def throw(self, error: BaseException) -> None:
        self._answer, self._error = None, error

    def __next__(self) -> Effect | Pause:
        # On every call's path: the walk's state lives in locals until it returns.
        stack = self._stack
        chain = self._chain
        middleware = chain.flows
        core_depth = chain.depth
        request, answer, error = self._request, self._answer, self._error
        self._request = self._answer = self._error = None
        while True:
            if request is not None:  # run the rest of the chain at the next depth
                depth = len(stack)
                try:
                    if depth == core_depth:
                        stack.append(chain.core(request))
                    else:
                        started = middleware[depth](request)
                        if type(started) is not GeneratorType and not isinstance(
                            started, Generator
                        ):
                            raise _not_a_flow(middleware[depth], started)
                        stack.append(started)
                except Exception as exc:  # a middleware that failed to start a flow
                    if not stack:
                        raise
                    answer, error = None, exc
                request = None
            flow = stack[-1]
            try:
                if error is None:
                    step = flow.send(answer)
                else:
                    thrown, error = error, None
                    step = flow.throw(thrown)
            except StopIteration as done:
                stack.pop()
                value = done.value
                depth = len(stack)
                if depth < core_depth and type(value) is not FlushResult:
                    try:  # a middleware returned, not the core: it must be a result
                        value = self._checked(depth, value)
                    except TypeError as exc:
                        if not stack:
                            raise
                        answer, error = None, exc
                        continue
                if stack:
                    answer = value
                    continue
                self.result: FlushResult = value
                raise StopIteration from None
            except BaseException as exc:  # the flow raised: throw it into the one below
                stack.pop()
                if not stack:
                    raise
                answer, error = None, exc
                continue
            answer = None
            depth = len(stack) - 1
            if depth < core_depth and type(step) is FlushRequest:
                request = step
                continue
            if depth == core_depth or isinstance(step, Pause):
                return step  # type: ignore[no-any-return]
            if isinstance(step, FlushRequest):
                request = step
                continue
            flow.close()
            stack.pop()
            wrong = TypeError(
                f"middleware {middleware[depth]!r} yielded {step!r}; "
                "it may yield only a FlushRequest or a Pause"
            )
            if not stack:
                raise wrong
            answer, error = None, wrong

    def _checked(self, depth: int, value: Any) -> FlushResult:
        if not isinstance(value, FlushResult):
            raise TypeError(
                f"middleware {self._chain.flows[depth]!r} returned {value!r}; "
                "it must return the FlushResult (result = yield request; return result)"
            )
        return value


def _prepared(preparers: tuple[Any, ...], fields: dict[str, Any]) -> FlushRequest:
    """The request of ``fields`` once each of ``preparers`` changed them."""
    for prepare in preparers:
        prepare(fields)
    if fields.keys() != REQUEST_FIELDS:  # a preparer added, dropped or renamed a field
        raise _bad_fields(preparers, fields)
    return new_request(fields)


def _bad_fields(preparers: tuple[Any, ...], fields: dict[str, Any]) -> TypeError:
    unknown = sorted(set(fields) - REQUEST_FIELDS)
    missing = sorted(REQUEST_FIELDS - set(fields))
    return TypeError(
        f"a request preparer of {[p.__self__ for p in preparers]!r} changed the request's "
        f"fields themselves (unknown: {unknown}, missing: {missing}); prepare(fields) may "
        "only change the values of FlushRequest's fields"
    )


def _not_a_flow(middleware: Middleware, flow: object) -> TypeError:
    return TypeError(
        f"middleware {middleware!r} returned {type(flow).__name__}; a middleware "
        "is a generator function that yields the request and returns the result"
    )
