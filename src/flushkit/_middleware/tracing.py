"""Tracing: one OpenTelemetry CLIENT span per flush, after the database conventions.

The span is named ``flush <collection>`` for one collection, else ``flush <database>``,
and carries ``db.system.name="milvus"``, ``db.operation.name="flush"``,
``db.collection.name`` (one collection only), ``db.namespace``, ``server.address`` and
``server.port``. On failure it records the exception, sets ``error.type`` and
``db.response.status_code`` and the ERROR status; a cancelled flush ends the span with its
status unset. It covers the whole call, retries included. A call whose Flush RPC was
shared with other calls (coalescing) has ``flushkit.coalesced=true``. Only the OpenTelemetry API is
used: the application installs the SDK, or nothing is recorded.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, StatusCode

from .._chain import Flow
from .._exceptions import FlushError
from .._models import FlushRequest, FlushResult
from .._version import __version__

#: The span attribute of a call whose Flush RPC was shared with other calls.
COALESCED = "flushkit.coalesced"


class TracingMiddleware:
    """Wraps each flush in a span; ``tracer_provider`` defaults to the global one."""

    def __init__(self, tracer_provider: Any = None) -> None:
        self.tracer = trace.get_tracer("flushkit", __version__, tracer_provider=tracer_provider)

    def __call__(self, request: FlushRequest) -> Flow:
        single = len(request.collection_names) == 1
        target = request.collection_names[0] if single else request.db_name
        span = self.tracer.start_span(f"flush {target}", kind=SpanKind.CLIENT)
        if not span.is_recording():
            result: FlushResult = yield request
            return result
        span.set_attributes(request_attributes(request))
        token = context.attach(trace.set_span_in_context(span))
        try:
            result = yield request
            if result.coalesced:
                span.set_attribute(COALESCED, True)
        except Exception as exc:
            span.record_exception(exc)
            span.set_attributes(error_attributes(exc))
            if getattr(exc, "coalesced", False):
                span.set_attribute(COALESCED, True)
            span.set_status(StatusCode.ERROR, f"{type(exc).__qualname__}: {exc}")
            raise
        finally:
            context.detach(token)
            span.end()
        return result

    def __repr__(self) -> str:
        return f"TracingMiddleware(tracer={self.tracer!r})"


def request_attributes(request: FlushRequest) -> Mapping[str, Any]:
    """The database-convention attributes of a flush, for spans and metrics (read-only,
    computed once per target: they are on every call's path)."""
    return _attributes(
        request.collection_names, request.db_name, request.server_address, request.server_port
    )


@functools.lru_cache(maxsize=1024)
def _attributes(
    names: tuple[str, ...], db_name: str, address: str | None, port: int | None
) -> Mapping[str, Any]:
    attributes: dict[str, Any] = {
        "db.system.name": "milvus",
        "db.operation.name": "flush",
        "db.namespace": db_name,
    }
    if len(names) == 1:
        attributes["db.collection.name"] = names[0]
    if address is not None:
        attributes["server.address"] = address
    if port is not None:
        attributes["server.port"] = port
    return MappingProxyType(attributes)


def error_attributes(exc: Exception) -> dict[str, str]:
    """``error.type`` and ``db.response.status_code`` of a failed flush."""
    cls = type(exc)
    module = "flushkit" if isinstance(exc, FlushError) else cls.__module__
    attributes = {"error.type": f"{module}.{cls.__qualname__}"}
    if isinstance(exc, FlushError):
        code = exc.code if exc.code is not None else exc.grpc_code
        if code is not None:
            attributes["db.response.status_code"] = str(code)
    return attributes
