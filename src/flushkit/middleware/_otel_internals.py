"""Everything flushkit reads from the OpenTelemetry API's private state, in one place.

Until the application installs an SDK, the API's global tracer and its meters' instruments
are proxies that record nothing. Asking them anyway is most of what the tracing and
metrics middlewares cost a quiet flush: right after an RPC, the no-op ``start_span`` takes
longer than the rest of the tracing middleware, the attributes and the proxy's ``record``
most of the metrics middleware (docs/benchmarks.md). These checks answer what the proxies
themselves would find (no provider behind them) and nothing more; where the API's internals
are not what they expect, they answer False and the middleware takes the API's ordinary
path. ``tests/test_otel_internals.py`` fails loudly when they change.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.trace import ProxyTracer

__all__ = ["instrument_records_nothing", "is_global_proxy", "no_tracer_provider"]

_UNKNOWN = object()


def is_global_proxy(tracer: Any) -> bool:
    """Whether ``tracer`` is the API's proxy of the global tracer provider (what
    ``trace.get_tracer`` returns before the application installs one)."""
    return type(tracer) is ProxyTracer


def no_tracer_provider() -> bool:
    """Whether no global tracer provider is installed: a proxy tracer's spans are then
    non-recording (the proxy asks the same global)."""
    return getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None


def instrument_records_nothing(instrument: Any) -> bool:
    """Whether ``instrument`` is a proxy instrument with no real one behind it yet (no
    meter provider installed): its ``record`` and ``add`` then do nothing."""
    return getattr(instrument, "_real_instrument", _UNKNOWN) is None
