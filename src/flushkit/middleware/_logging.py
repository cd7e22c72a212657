"""Structured logging of every flush: structlog, or stdlib ``logging`` until the
application configures structlog.

Events (stable names, in the ``flushkit.`` namespace):

* ``flushkit.flush.succeeded`` at debug: ``collections``, ``db_name``, ``duration_s``,
  ``segments`` (sealed segment count), ``wait``, ``persisted``, ``attempts``,
  ``coalesced`` (the Flush RPC was shared with other calls), ``satisfied_by``
  (``"flush"``, ``"shared"`` or ``"covered"``: another client's Flush persisted the
  call's writes), where the time went (``flushing_s`` in Flush RPCs, ``paced_s`` waiting
  for a slot, ``persisting_s`` waiting for persistence), ``outcome="success"``.
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

No credential is ever a field.

**The default logger** (:class:`DefaultLogger`), for the logging and retry middlewares:
structlog's built-in defaults print every event to stdout, debug included, so an
application that never configured structlog (most use stdlib ``logging``) would see a line
per flush. flushkit therefore decides at each call: once the application has configured
structlog (``structlog.is_configured()``), events go to ``structlog.get_logger("flushkit")``;
until then they go to the stdlib logger ``flushkit``, where the application's levels and
handlers apply (with no logging configuration at all nothing is printed: ``import flushkit``
gives the ``flushkit`` logger a ``NullHandler``, as the logging HOWTO advises libraries;
debug events cost one level check).

A stdlib record carries the event the way structlog's key-value renderer shows it:
``record.msg`` is the template ``"<event> key=%r key=%r ..."`` with ``record.args`` the
values (so ``record.getMessage()`` reads ``flushkit.flush.failed collections=['docs']
...``), and ``record.flushkit`` is the event dict, ``{"event": ..., **fields}``, for
handlers and formatters that want the fields themselves. Neither structlog nor stdlib
logging is ever configured here: the application decides where the events go.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import structlog

from .._chain import Flow
from .._exceptions import FlushError
from .._models import FlushRequest, FlushResult


class LoggingMiddleware:
    """Logs the outcome of each flush; ``logger`` defaults to flushkit's
    :class:`DefaultLogger` (structlog if configured, else stdlib
    ``logging``); a stdlib ``logging.Logger`` gets records like the default's; any other
    is called as a structlog logger."""

    def __init__(self, logger: Any = None) -> None:
        self.logger: Any = given_logger(logger)
        self._default = self.logger if isinstance(self.logger, DefaultLogger) else None

    def __call__(self, request: FlushRequest) -> Flow:
        # The default logger chooses at each call, cheaply; a logger passed in is used as
        # is, debug events included.
        default = self._default
        logger, debug = (self.logger, True) if default is None else default.current()
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
            satisfied_by=result.satisfied_by,
            flushing_s=result.flushing,
            paced_s=result.paced,
            persisting_s=result.persisting,
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


_DEBUG = logging.DEBUG


def given_logger(logger: Any) -> Any:
    """The logger a middleware calls for the ``logger`` it was given: None is a new
    :class:`DefaultLogger`; a stdlib ``logging.Logger`` (or ``LoggerAdapter``) takes
    structlog-style calls through :class:`StdlibLogger`, its records made as the default
    logger makes them; any other logger is called as a structlog logger, as is."""
    if logger is None:
        return DefaultLogger()
    if isinstance(logger, logging.Logger | logging.LoggerAdapter):
        return StdlibLogger(logger)
    return logger


class StdlibLogger:
    """structlog-style calls (``logger.info("event", key=value)``) on a stdlib logger."""

    __slots__ = ("logger",)

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
        self.logger = logger

    def _log(self, level: int, event: str, fields: dict[str, Any], stacklevel: int) -> None:
        logger = self.logger
        if logger.isEnabledFor(level):
            logger.log(
                level,
                event.replace("%", "%%") + "".join([f" {key}=%r" for key in fields]),
                *fields.values(),
                extra={"flushkit": {"event": event, **fields}},
                stacklevel=stacklevel,  # the record names the caller's line, not ours
            )

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields, 3)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields, 3)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields, 3)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields, 3)

    def __repr__(self) -> str:
        return f"StdlibLogger({self.logger!r})"


class DefaultLogger:
    """The logger a middleware uses when given none (the module's docstring says which).

    :meth:`current` is the cheap per-call choice; the level methods forward to it, for
    callers that log rarely.
    """

    def __init__(self, name: str = "flushkit") -> None:
        self.name = name
        self._stdlib = StdlibLogger(logging.getLogger(name))
        self._proxy = structlog.get_logger(name)
        self._bound: tuple[dict[str, Any], Any, bool] | None = None

    def current(self) -> tuple[Any, bool]:
        """The logger to call now, and whether it logs debug events.

        Unconfigured structlog: the stdlib logger, and its level now. Configured: a
        structlog logger bound once per configuration (the lazy proxy binds a new one on
        every call, which is most of what logging costs a flush), so an application that
        configures structlog later is still obeyed.
        """
        if not structlog.is_configured():
            stdlib = self._stdlib
            return stdlib, stdlib.logger.isEnabledFor(_DEBUG)
        config = structlog.get_config()
        bound = self._bound
        if bound is None or bound[0] != config:  # compared in C, each value by identity first
            logger = self._proxy.bind()
            enabled = getattr(logger, "is_enabled_for", None)
            debug = True if enabled is None else bool(enabled(_DEBUG))
            bound = self._bound = (config, logger, debug)
        return bound[1], bound[2]

    def _forward(self, level: int, method: str, event: str, fields: dict[str, Any]) -> None:
        logger = self.current()[0]
        if logger is self._stdlib:
            self._stdlib._log(level, event, fields, 4)
        else:
            getattr(logger, method)(event, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        self._forward(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._forward(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._forward(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._forward(logging.ERROR, "error", event, fields)

    def __repr__(self) -> str:
        return f"DefaultLogger({self.name!r})"
