"""Structured logging of every flush: structlog, or stdlib ``logging`` until the
application configures structlog.

Events (stable names, in the ``flushkit.`` namespace):

* ``flushkit.flush.succeeded`` at debug: ``collections``, ``db_name``, ``duration_s``,
  ``segments`` (sealed segment count), ``wait``, ``persisted``, ``attempts``,
  ``coalesced`` (the Flush RPC was shared with other calls), ``outcome="success"``.
* ``flushkit.flush.failed`` at warning: the same request fields, plus ``error`` (the
  exception class), ``code``, ``error_code``, ``grpc_code``, ``retryable``, ``reason``,
  ``attempts``, ``coalesced``, ``outcome="error"``.
* ``flushkit.flush.cancelled`` at debug, ``outcome="cancelled"``.
* ``flushkit.flush.paced`` at debug, before the outcome's event, when the call waited for
  its collections' next slot or its Flush RPCs were throttled (the server's rate limit):
  the request fields, ``paced_s`` (seconds waited) and ``throttled`` (throttled answers).

A call that fails because its budget ends before the server admits the next Flush logs
``retry_after_s`` in its ``failed`` event; ``paced_s`` and ``throttled`` appear there too
when not zero.

When the flush's span is recording (the tracing middleware, outside this one, with an
OpenTelemetry SDK), every event also carries ``trace_id`` and ``span_id`` (hex): the
same IDs as the span and, through propagation, the server's own log lines.

No credential is ever a field. The default logger (:class:`._default_logger.DefaultLogger`)
is structlog's ``flushkit`` logger once the application has configured structlog, and
until then the stdlib logger ``flushkit``, with the event name and the fields as
``key=repr(value)`` in the message and the event dict in ``record.flushkit``; the choice
follows the configuration at each call. Neither is ever configured here: the application
decides where the events go.
"""

from __future__ import annotations

import time
from typing import Any

from .._chain import Flow
from .._exceptions import FlushError
from .._models import FlushRequest, FlushResult
from ._default_logger import DefaultLogger, given_logger


class LoggingMiddleware:
    """Logs the outcome of each flush; ``logger`` defaults to flushkit's
    :class:`._default_logger.DefaultLogger` (structlog if configured, else stdlib
    ``logging``); a stdlib ``logging.Logger`` gets records like the default's; any other
    is called as a structlog logger."""

    def __init__(self, logger: Any = None) -> None:
        self.logger: Any = given_logger(logger)
        self._default = self.logger if isinstance(self.logger, DefaultLogger) else None

    def _current(self) -> tuple[Any, bool]:
        """The logger to call now, and whether it logs debug events (the default logger
        chooses at each call, cheaply; a logger passed in is used as is)."""
        default = self._default
        if default is None:
            return self.logger, True
        return default.current()

    def __call__(self, request: FlushRequest) -> Flow:
        logger, debug = self._current()
        try:
            result: FlushResult = yield request
        except Exception as exc:
            if debug and isinstance(exc, FlushError):
                _log_paced(logger, request, exc.paced, exc.throttled)
            logger.warning(
                "flushkit.flush.failed",
                **_request_fields(request),
                duration_s=time.monotonic() - request.started,
                outcome="error",
                **_error_fields(exc),
            )
            raise
        except BaseException:
            if debug:
                logger.debug(
                    "flushkit.flush.cancelled",
                    **_request_fields(request),
                    duration_s=time.monotonic() - request.started,
                    outcome="cancelled",
                )
            raise
        if not debug:
            return result
        _log_paced(logger, request, result.paced, result.throttled)
        logger.debug(
            "flushkit.flush.succeeded",
            **_request_fields(request),
            duration_s=result.elapsed,
            segments=sum(len(ids) for ids in result.coll_segIDs.values()),
            persisted=result.persisted,
            attempts=result.attempts,
            coalesced=result.coalesced,
            outcome="success",
        )
        return result

    def __repr__(self) -> str:
        return f"LoggingMiddleware(logger={self.logger!r})"


def _log_paced(logger: Any, request: FlushRequest, paced: float, throttled: int) -> None:
    """The debug event of a call that waited for its collection's slot or was throttled."""
    if paced or throttled:
        logger.debug(
            "flushkit.flush.paced", **_request_fields(request), paced_s=paced, throttled=throttled
        )


def _request_fields(request: FlushRequest) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "collections": list(request.collection_names),
        "db_name": request.db_name,
        "wait": request.wait,
    }
    if request.trace is not None:  # the flush's span is recording: correlate
        context = request.trace.span.get_span_context()
        fields["trace_id"] = format(context.trace_id, "032x")
        fields["span_id"] = format(context.span_id, "016x")
    return fields


def _error_fields(exc: Exception) -> dict[str, Any]:
    if not isinstance(exc, FlushError):
        return {"error": type(exc).__qualname__}
    fields: dict[str, Any] = {
        "error": type(exc).__qualname__,
        "code": exc.code,
        "error_code": exc.error_code,
        "grpc_code": exc.grpc_code,
        "retryable": exc.retryable,
        "reason": exc.reason,
        "attempts": exc.attempts,
        "coalesced": exc.coalesced,
    }
    if exc.retry_after is not None:
        fields["retry_after_s"] = exc.retry_after
    if exc.paced:
        fields["paced_s"] = exc.paced
    if exc.throttled:
        fields["throttled"] = exc.throttled
    return fields
