"""The middleware chain: generator flows, composed once, walked for each call.

A middleware is any callable that takes a :class:`FlushRequest` and returns a generator
(a *flow*). The flow yields one of two things and is resumed with the answer:

* ``result = yield request`` runs the rest of the chain (the inner middlewares and the
  core flush) with ``request`` and sends back its :class:`FlushResult`, or throws its
  exception in at the ``yield``.
* ``yield Pause(seconds)`` sleeps: ``time.sleep`` for the blocking facade, ``anyio.sleep``
  under asyncio and trio.

The flow returns the :class:`FlushResult` the caller receives. It may yield the request
several times (that is how a retry fits), replace the request, the result or the
exception. A middleware with nothing to do for a call may return ``None`` instead of a
flow: it stays out of that call (the rest of the chain runs as if it were not there).
Because the driver, not the middleware, performs the I/O and the sleeping, one
middleware serves the blocking facade, asyncio and trio alike (as pluggy's hook wrappers
and httpx's ``Auth.auth_flow`` do).

**Order.** The flows run in list order, the first in the list outermost. A middleware
that only sets fields of the request the call starts with, the same way at every call and
from the caller's arguments alone (the timeout's deadline, the coalescing wish), is a
:class:`RequestPreparer`: it runs no flow; every flow, wherever it is in the list, sees
the fields it set, and a flow that changes one of them changes it for the flows inside.

A :class:`Chain` is composed once per flusher. For each call, :meth:`Chain.walk` walks it
as pluggy's ``_multicall`` walks hook wrappers, down then up: down, each flow starts with
the request the one above yielded and is stepped to its first yield, then the core runs;
up, the outcome (a result, or an exception thrown in) goes to each running flow,
innermost first, until one yields a request again (down again, below it) or none is left.
The walk is itself a generator: it yields the core's effects and the flows' pauses to
the driver, which sends back each outcome (an answer, or
:class:`~flushkit._effects.Failed`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from inspect import isfunction, isgeneratorfunction
from types import GeneratorType
from typing import Any, Generic, Protocol, TypeVar

from ._effects import Failed
from ._models import (
    REQUEST_FIELDS,
    FlushRequest,
    FlushResult,
    Pause,
    RequestChanges,
    check_call_fields,
    new_request,
)

__all__ = ["Chain", "Flow", "Middleware", "RequestPreparer"]

Effect = TypeVar("Effect")

#: What a middleware returns: yields requests or pauses, receives results, returns one.
Flow = Generator[FlushRequest | Pause, Any, FlushResult]


class Middleware(Protocol):
    """A step of the chain; a plain generator function is one. Returning None instead
    of a flow keeps the middleware out of that call."""

    def __call__(self, request: FlushRequest, /) -> Flow | None: ...


class RequestPreparer:
    """Base of a middleware that only sets request fields, the same way at every call.

    A subclass defines :meth:`prepare`, which changes the fields of the request a call
    starts with, in place, reading nothing but those fields. The chain runs it when the
    call's request is made, so every flow sees what it set. Called as a flow (outside a
    chain), it yields the prepared copy of the request.
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

    __slots__ = ("core", "flows", "middleware", "preparers")

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
        self.core = core

    def request(self, fields: dict[str, Any]) -> FlushRequest:
        """A call's request of ``fields`` (all of a request's fields, in a dict that
        becomes the request's own), prepared by the chain's preparers."""
        preparers: tuple[Any, ...] = self.preparers
        return _prepared(preparers, fields) if preparers else new_request(fields)

    def walk(self, request: FlushRequest) -> Generator[Effect | Pause, Any, FlushResult]:
        """One call's walk: yields each effect to perform (the core's effects, any flow's
        pauses), is sent each outcome (the answer, or a :class:`Failed`), and returns what
        the outermost flow returned (or raises what it raised)."""
        flows = self.flows
        depth = len(flows)
        running: list[Generator[Any, Any, Any]] = []  # the flows that run, outermost first
        levels: list[int] = []  # where each stands in ``flows``
        start = 0  # where the next descent starts
        while True:
            # Down: start each flow from ``start`` with the request the one above yielded,
            # and step it to its first yield; then the core. What stops the descent (a
            # flow's other yield, return or failure; the core's end) is the outcome below.
            answer: Any = None
            error: BaseException | None = None
            step: Any = None
            level = start
            while level < depth:
                try:
                    flow = flows[level](request)
                    if flow is None:  # the middleware stays out of this call
                        level += 1
                        continue
                    if type(flow) is not GeneratorType and not isinstance(flow, Generator):
                        raise _not_a_flow(flows[level], flow)
                    step = flow.send(None)
                except StopIteration as done:  # it returned before it yielded
                    answer = done.value
                    if type(answer) is not FlushResult and not isinstance(answer, FlushResult):
                        answer, error = None, _not_a_result(flows[level], answer)
                    break
                except BaseException as exc:  # it failed to start: thrown into the one above
                    if not running:
                        raise
                    error = exc
                    break
                running.append(flow)
                levels.append(level)
                if type(step) is not FlushRequest and not isinstance(step, FlushRequest):
                    break  # a pause, or a wrong yield: for the flow, below
                request = step
                step = None
                level += 1
            else:
                core = self.core(request)
                try:
                    effect = next(core)
                    while True:
                        try:
                            outcome = yield effect
                        except GeneratorExit:
                            core.close()
                            _close(running)
                            raise
                        if type(outcome) is Failed:
                            effect = core.throw(outcome.error)
                        else:
                            effect = core.send(outcome)
                except StopIteration as done:
                    answer = done.value
                except GeneratorExit:
                    raise
                except BaseException as exc:
                    if not running:
                        raise
                    error = exc
            # Up: the outcome goes to each running flow, innermost first, until one yields
            # a request (down again, below it) or none is left (the walk's outcome).
            while running:
                flow = running[-1]
                if step is None:
                    try:
                        if error is None:
                            step = flow.send(answer)
                        else:
                            thrown, error = error, None
                            step = flow.throw(thrown)
                    except StopIteration as done:  # it returned: hand its value up
                        running.pop()
                        answer = done.value
                        level = levels.pop()
                        if type(answer) is not FlushResult and not isinstance(answer, FlushResult):
                            answer, error = None, _not_a_result(flows[level], answer)
                        continue
                    except BaseException as exc:  # it raised: thrown into the one above
                        running.pop()
                        levels.pop()
                        if not running:
                            raise
                        answer, error = None, exc
                        continue
                if type(step) is FlushRequest or isinstance(step, FlushRequest):
                    request = step
                    start = levels[-1] + 1
                    break
                if isinstance(step, Pause):
                    pause, step = step, None
                    try:
                        answer = yield pause
                    except GeneratorExit:
                        _close(running)
                        raise
                    if type(answer) is Failed:  # thrown into the flow that asked for it
                        answer, error = None, answer.error
                    continue
                flow.close()
                running.pop()
                answer, error = None, _wrong_yield(flows[levels.pop()], step)
                step = None
            else:
                if error is not None:
                    raise error
                return answer  # type: ignore[no-any-return]


def _prepared(preparers: tuple[Any, ...], fields: dict[str, Any]) -> FlushRequest:
    """The request of ``fields`` once each of ``preparers`` changed them; a field a caller
    gives that a preparer changed is checked as the caller's own would be."""
    given = (fields["collection_names"], fields["db_name"], fields["timeout"], fields["wait"])
    for prepare in preparers:
        prepare(fields)
    if fields.keys() != REQUEST_FIELDS:  # a preparer added, dropped or renamed a field
        raise _bad_fields(preparers, fields)
    if given != (fields["collection_names"], fields["db_name"], fields["timeout"], fields["wait"]):
        _check_prepared(preparers, fields, given)
    return new_request(fields)


def _check_prepared(
    preparers: tuple[Any, ...], fields: dict[str, Any], given: tuple[Any, ...]
) -> None:
    changed = [name for name, was in zip(_CALL_FIELDS, given, strict=True) if fields[name] != was]
    try:
        check_call_fields(fields, changed)
    except (TypeError, ValueError) as exc:
        owners = [prepare.__self__ for prepare in preparers]
        raise type(exc)(f"a request preparer of {owners!r} set a bad value: {exc}") from None


#: The fields a caller gives, which a preparer's changes are checked for.
_CALL_FIELDS = ("collection_names", "db_name", "timeout", "wait")


def _bad_fields(preparers: tuple[Any, ...], fields: dict[str, Any]) -> TypeError:
    unknown = sorted(set(fields) - REQUEST_FIELDS)
    missing = sorted(REQUEST_FIELDS - set(fields))
    return TypeError(
        f"a request preparer of {[p.__self__ for p in preparers]!r} changed the request's "
        f"fields themselves (unknown: {unknown}, missing: {missing}); prepare(fields) may "
        "only change the values of FlushRequest's fields"
    )


def _close(running: list[Generator[Any, Any, Any]]) -> None:
    """Close the running flows, innermost first (the walk itself is being closed)."""
    for flow in reversed(running):
        flow.close()


def _wrong_yield(middleware: Middleware, step: object) -> TypeError:
    return TypeError(
        f"middleware {middleware!r} yielded {step!r}; it may yield only a FlushRequest or a Pause"
    )


def _not_a_result(middleware: Middleware, value: object) -> TypeError:
    return TypeError(
        f"middleware {middleware!r} returned {value!r}; "
        "it must return the FlushResult (result = yield request; return result)"
    )


def _not_a_flow(middleware: Middleware, flow: object) -> TypeError:
    return TypeError(
        f"middleware {middleware!r} returned {type(flow).__name__}; a middleware "
        "is a generator function that yields the request and returns the result"
    )
