"""Metrics: the OpenTelemetry database client histogram ``db.client.operation.duration``.

One measurement per flush call (retries included), in seconds, with the advisory buckets
of the database semantic conventions and the same attributes as the span:
``db.system.name``, ``db.operation.name``, ``db.namespace``, ``db.collection.name`` (one
collection only), ``server.address``, ``server.port``; on success
``flushkit.satisfied_by`` (``flush``, ``shared`` or ``covered``: three values), on
failure ``error.type`` and ``db.response.status_code``. A cancelled flush is not
measured.

And the counter ``flushkit.flush.coalesced`` (unit ``{call}``, the same attributes): calls
whose Flush RPC was shared with other calls; with 64 callers served by 2 RPCs it grows by
63 (all but the one whose RPC was its own).

Under the server's flush rate limit: the counter ``flushkit.flush.throttled`` (unit
``{response}``): throttled answers to Flush RPCs, each counted once, by the call that sent
the RPC; and the histogram ``flushkit.flush.paced.duration`` (unit ``s``): for each call
that waited for its collections' next slot, how long. Only the OpenTelemetry API is used:
the application installs the SDK, or nothing is recorded.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics

from .._chain import Flow
from .._exceptions import FlushError
from .._models import FlushRequest, FlushResult
from .._version import __version__
from ._otel_internals import real_instrument_probe
from ._tracing import SATISFIED_BY, error_attributes, request_attributes

#: The advisory bucket boundaries of ``db.client.operation.duration``, in seconds.
BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10)


class MetricsMiddleware:
    """Records each flush's duration; ``meter_provider`` defaults to the global one."""

    def __init__(self, meter_provider: Any = None) -> None:
        meter = metrics.get_meter("flushkit", __version__, meter_provider=meter_provider)
        self.duration = meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of database client operations.",
            explicit_bucket_boundaries_advisory=BUCKETS,
        )
        #: None while no meter provider is behind the duration histogram.
        self._real_duration = real_instrument_probe(self.duration)
        self.coalesced = meter.create_counter(
            "flushkit.flush.coalesced",
            unit="{call}",
            description="Flush calls whose Flush RPC was shared with other calls.",
        )
        self.throttled = meter.create_counter(
            "flushkit.flush.throttled",
            unit="{response}",
            description="Throttled answers (the server's rate limit) to Flush RPCs.",
        )
        self.paced = meter.create_histogram(
            "flushkit.flush.paced.duration",
            unit="s",
            description="Time flush calls waited for the server to admit their Flush.",
            explicit_bucket_boundaries_advisory=BUCKETS,
        )

    def __call__(self, request: FlushRequest) -> Flow | None:
        if self._real_duration() is None:
            return None  # no meter provider yet: nothing would be recorded
        return self._measured(request)

    def _measured(self, request: FlushRequest) -> Flow:
        try:
            result: FlushResult = yield request
        except Exception as exc:
            failed = {**request_attributes(request), **error_attributes(exc)}
            self.duration.record(time.monotonic() - request.started, failed)
            if isinstance(exc, FlushError):
                self._record_flags(exc.coalesced, exc.throttled, exc.paced, failed)
            raise
        flagged = result.coalesced or result.throttled or result.paced
        attributes = request_attributes(request)
        self.duration.record(
            time.monotonic() - request.started,
            {**attributes, SATISFIED_BY: result.satisfied_by},
        )
        if flagged:
            self._record_flags(result.coalesced, result.throttled, result.paced, attributes)
        return result

    def _record_flags(
        self, coalesced: bool, throttled: int, paced: float, attributes: Mapping[str, Any]
    ) -> None:
        if coalesced:
            self.coalesced.add(1, attributes)
        if throttled:
            self.throttled.add(throttled, attributes)
        if paced:
            self.paced.record(paced, attributes)

    def __repr__(self) -> str:
        return "MetricsMiddleware()"
