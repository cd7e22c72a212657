"""Tracing: one OpenTelemetry CLIENT span per flush, after the database conventions.

The span is named ``flush <collection>`` for one collection, else ``flush <database>``,
and carries ``db.system.name="milvus"``, ``db.operation.name="flush"``,
``db.collection.name`` (one collection only), ``db.namespace``, ``server.address`` and
``server.port``, given to the tracer when the span starts (so a sampler can decide by
them). On failure it records the exception, sets ``error.type`` and
``db.response.status_code`` and the ERROR status; a cancelled flush ends the span with its
status unset. It covers the whole call, retries included. A call whose Flush RPC was
shared with other calls (coalescing) has ``flushkit.coalesced=true``. A call that
succeeded says how (``flushkit.satisfied_by``: ``flush``, ``shared`` or ``covered``, as
:attr:`FlushResult.satisfied_by <flushkit.FlushResult>`) and where its time went:
``flushkit.flushing_s`` (Flush RPCs), ``flushkit.paced_s`` (waiting for a slot) and
``flushkit.persisting_s`` (waiting for persistence). Under the server's flush rate limit:
a ``flushkit.paced`` span event when the call starts waiting for its collection's next
slot (``flushkit.paced.wait_s``), ``flushkit.throttled`` (throttled answers to its Flush
RPCs) and, when it fails because its budget ends before that slot,
``flushkit.retry_after_s`` (with ``flushkit.paced_s`` and ``flushkit.throttled``). Only
the OpenTelemetry API is used: the application installs the SDK, or nothing is recorded.

Propagation into Milvus: every RPC of a call whose span is recording (the Flush, each
GetFlushState poll, a shared round's Flush) carries the span's context in its gRPC
metadata, written by the application's configured propagators
(``opentelemetry.propagate``, W3C ``traceparent`` by default), so the server continues
the trace: Milvus logs ``traceID=...`` on its own lines for the flush. The trace flags go
out as the sampled bit alone: Milvus 2.3 ignores a ``traceparent`` whose flags carry
the W3C Level 2 "random" bit (``-03``), which recent SDKs set. A call that joined a shared
round sent by another call gets a span link to that call's span, whose context reached
the server. No recording span: nothing is injected.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
)

from .._chain import Flow
from .._exceptions import FlushError
from .._models import FlushRequest, FlushResult, Trace
from .._version import __version__
from ._otel_internals import is_global_proxy, tracer_provider_probe

#: The span attribute of a call whose Flush RPC was shared with other calls.
COALESCED = "flushkit.coalesced"
#: Seconds the call waited for its collections' next slots (the server's rate limit).
PACED = "flushkit.paced_s"
#: Throttled answers to the Flush RPCs the call sent.
THROTTLED = "flushkit.throttled"
#: How a call was satisfied: "flush", "shared" or "covered" (FlushResult.satisfied_by).
SATISFIED_BY = "flushkit.satisfied_by"
#: Seconds the call spent in Flush RPCs, its own or shared ones.
FLUSHING = "flushkit.flushing_s"
#: Seconds the call waited for its segments to persist (wait=True).
PERSISTING = "flushkit.persisting_s"
#: Seconds until the server admits the next Flush, on a call that could not wait for it.
RETRY_AFTER = "flushkit.retry_after_s"


class TracingMiddleware:
    """Wraps each flush in a span; ``tracer_provider`` defaults to the global one."""

    def __init__(self, tracer_provider: Any = None) -> None:
        self.tracer = trace.get_tracer("flushkit", __version__, tracer_provider=tracer_provider)
        #: The global provider's proxy records once the application installs a provider:
        #: until then (the probe answers None) its span could not record.
        self._provider = tracer_provider_probe() if is_global_proxy(self.tracer) else None

    def __call__(self, request: FlushRequest) -> Flow | None:
        provider = self._provider
        if provider is not None and provider() is None:
            return None  # no span could record: stay out of the call
        return self._traced(request)

    def _traced(self, request: FlushRequest) -> Flow:
        single = len(request.collection_names) == 1
        target = request.collection_names[0] if single else request.db_name
        span = self.tracer.start_span(
            f"flush {target}", kind=SpanKind.CLIENT, attributes=request_attributes(request)
        )
        if not span.is_recording():
            result: FlushResult = yield request
            return result
        token = context.attach(trace.set_span_in_context(span))
        try:
            result = yield request.replace(trace=Trace(span, carried_context(span)))
            span.set_attributes(result_attributes(result))
        except Exception as exc:
            span.record_exception(exc)
            span.set_attributes(error_attributes(exc))
            if isinstance(exc, FlushError):
                if exc.coalesced:
                    span.set_attribute(COALESCED, True)
                if exc.paced or exc.throttled:
                    span.set_attributes({PACED: exc.paced, THROTTLED: exc.throttled})
                if exc.retry_after is not None:
                    span.set_attribute(RETRY_AFTER, exc.retry_after)
            span.set_status(StatusCode.ERROR, f"{type(exc).__qualname__}: {exc}")
            raise
        finally:
            context.detach(token)
            span.end()
        return result

    def __repr__(self) -> str:
        return f"TracingMiddleware(tracer={self.tracer!r})"


def result_attributes(result: FlushResult) -> dict[str, Any]:
    """The span attributes of a successful call: how it was satisfied, where its time
    went, and the rate limit's marks when it met the limit."""
    attributes: dict[str, Any] = {
        SATISFIED_BY: result.satisfied_by,
        FLUSHING: result.flushing,
        PACED: result.paced,
        PERSISTING: result.persisting,
    }
    if result.coalesced:
        attributes[COALESCED] = True
    if result.throttled:
        attributes[THROTTLED] = result.throttled
    return attributes


def carried_context(span: Span) -> tuple[tuple[str, str], ...]:
    """The gRPC metadata that carries ``span``'s context to the server, as the
    application's propagators write it, with the trace flags cut to the sampled bit."""
    own = span.get_span_context()
    sent = SpanContext(
        own.trace_id,
        own.span_id,
        is_remote=False,
        trace_flags=TraceFlags(own.trace_flags & TraceFlags.SAMPLED),
        trace_state=own.trace_state,
    )
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(NonRecordingSpan(sent)))
    return tuple((key.lower(), value) for key, value in carrier.items())


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
    attributes = {"error.type": f"{cls.__module__}.{cls.__qualname__}"}
    if isinstance(exc, FlushError):
        code = exc.code if exc.code is not None else exc.grpc_code
        if code is not None:
            attributes["db.response.status_code"] = str(code)
    return attributes
