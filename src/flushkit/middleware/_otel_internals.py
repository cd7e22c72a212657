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

import functools
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import ProxyTracer

__all__ = ["is_global_proxy", "real_instrument_probe", "tracer_provider_probe"]

_UNKNOWN = object()


def is_global_proxy(tracer: Any) -> bool:
    """Whether ``tracer`` is the API's proxy of the global tracer provider (what
    ``trace.get_tracer`` returns before the application installs one)."""
    return type(tracer) is ProxyTracer


def tracer_provider_probe() -> Callable[[], Any]:
    """A probe of the global tracer provider the API holds: calling it answers None while
    none is installed (a proxy tracer's spans then cannot record: the proxy asks the same
    global), anything else once one is or when the API's internals are not what this
    expects. The probe is C-level: asking it on every flush enters no Python function."""
    return functools.partial(getattr, trace, "_TRACER_PROVIDER", _UNKNOWN)


def real_instrument_probe(instrument: Any) -> Callable[[], Any]:
    """A probe of the real instrument behind ``instrument``: calling it answers None while
    ``instrument`` is a proxy with no meter provider behind it yet (its ``record`` and
    ``add`` then do nothing), anything else for an instrument that records or whose
    internals are not what this expects. C-level, like :func:`tracer_provider_probe`."""
    return functools.partial(getattr, instrument, "_real_instrument", _UNKNOWN)
