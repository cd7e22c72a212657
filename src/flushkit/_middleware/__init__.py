"""The default middlewares, one module each, and the default chain."""

from __future__ import annotations

from typing import Any

from .._chain import Middleware
from .coalescing import CoalescingMiddleware
from .logging import LoggingMiddleware
from .metrics import MetricsMiddleware
from .retry import RetryMiddleware, RetryPolicy
from .status import StatusMiddleware
from .timeout import TimeoutMiddleware
from .tracing import TracingMiddleware

__all__ = [
    "CoalescingMiddleware",
    "LoggingMiddleware",
    "MetricsMiddleware",
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
    """The default chain, outermost first: tracing, metrics, logging, timeout, retry,
    status translation, coalescing.

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
