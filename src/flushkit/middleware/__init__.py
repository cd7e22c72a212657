"""The middlewares, and the default chain: ``flushkit.middleware``.

A middleware is a callable that takes the :class:`~flushkit.FlushRequest` and returns a
generator (a *flow*): ``result = yield request`` runs the rest of the chain, ``yield
Pause(seconds)`` sleeps, and the flow returns the :class:`~flushkit.FlushResult` (see
:class:`Middleware`).

**Order: middlewares run in list order, the first in the list outermost.** A
:class:`RequestPreparer` (the timeout and coalescing middlewares are) runs no flow: it
sets fields of the request the call starts with, from the caller's arguments alone, so
every flow sees them wherever the preparer stands in the list, and a flow that changes
such a field changes it for the flows inside it.

Each default middleware lives in a module of its own here:

* ``TracingMiddleware``: an OpenTelemetry span per flush (database client conventions);
* ``MetricsMiddleware``: OpenTelemetry duration histogram and counters;
* ``LoggingMiddleware``: one structured event per flush (structlog or stdlib logging);
* ``TimeoutMiddleware``: turns the flush's timeout into one deadline for all its RPCs;
* ``RetryMiddleware``: retries what is retryable within that deadline (``RetryPolicy``);
* ``StatusMiddleware``: raises the typed :class:`~flushkit.FlushError` of a failed status;
* ``CoalescingMiddleware``: lets concurrent flushes of a collection share Flush RPCs.

:func:`default_middleware` returns them in that order. Every name here is also
importable from ``flushkit`` itself.
"""

from __future__ import annotations

from typing import Any

from .._chain import Flow, Middleware, RequestPreparer
from ._coalescing import CoalescingMiddleware
from ._logging import LoggingMiddleware
from ._metrics import MetricsMiddleware
from ._retry import RetryMiddleware, RetryPolicy
from ._status import StatusMiddleware
from ._timeout import TimeoutMiddleware
from ._tracing import TracingMiddleware

__all__ = [
    "CoalescingMiddleware",
    "Flow",
    "LoggingMiddleware",
    "MetricsMiddleware",
    "Middleware",
    "RequestPreparer",
    "RetryMiddleware",
    "RetryPolicy",
    "StatusMiddleware",
    "TimeoutMiddleware",
    "TracingMiddleware",
    "default_middleware",
]


def default_middleware(
    *,
    logger: Any = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    retry: RetryPolicy | None = None,
) -> list[Middleware]:
    """The default chain, in the order it runs (first outermost): tracing, metrics,
    logging, timeout, retry, status translation, coalescing.

    Pass it, edited, as ``Flusher(client, middleware=...)`` to add, replace or remove a
    middleware. ``logger`` is the logger of the logging and retry middlewares (by
    default structlog's ``flushkit`` logger once the application configured structlog,
    else stdlib ``logging``'s); ``tracer_provider`` and ``meter_provider`` the
    OpenTelemetry providers (the global ones by default); ``retry`` the
    :class:`RetryPolicy` (default ``RetryPolicy()``).
    """
    return [
        TracingMiddleware(tracer_provider=tracer_provider),
        MetricsMiddleware(meter_provider=meter_provider),
        LoggingMiddleware(logger=logger),
        TimeoutMiddleware(),
        RetryMiddleware(retry, logger=logger),
        StatusMiddleware(),
        CoalescingMiddleware(),
    ]


def _shown_here() -> None:
    """Reprs, tracebacks and docs name these where users import them (as httpx does)."""
    for name in __all__:
        public = globals()[name]
        if isinstance(public, type) or (callable(public) and hasattr(public, "__code__")):
            public.__module__ = __name__


_shown_here()
