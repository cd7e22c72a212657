"""flushkit's default logger: structlog when the application configured it, else stdlib
``logging``.

structlog's built-in defaults print every event to stdout, debug included, so an
application that never configured structlog (most use stdlib ``logging``) would see a line
per flush. flushkit therefore decides at each call: once the application has configured
structlog (``structlog.is_configured()``), events go to ``structlog.get_logger("flushkit")``
as they always did; until then they go to the stdlib logger ``flushkit``, where the
application's levels and handlers apply (with no logging configuration at all, Python's
last-resort handler prints warnings and above to stderr, and debug events cost one level
check).

A stdlib record carries the event the way structlog's key-value renderer shows it:
``record.msg`` is the template ``"<event> key=%r key=%r ..."`` with ``record.args`` the
values (so ``record.getMessage()`` reads ``flushkit.flush.failed collections=['docs']
...``), and ``record.flushkit`` is the event dict, ``{"event": ..., **fields}``, for
handlers and formatters that want the fields themselves.

Neither structlog nor stdlib logging is ever configured here.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["DefaultLogger", "StdlibLogger", "given_logger"]

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
    """The logger a middleware uses when given none: see the module's docstring.

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
