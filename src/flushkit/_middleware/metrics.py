"""Metrics: the OpenTelemetry database client histogram ``db.client.operation.duration``.

One measurement per flush call (retries included), in seconds, with the advisory buckets
of the database semantic conventions and the same attributes as the span:
``db.system.name``, ``db.operation.name``, ``db.namespace``, ``db.collection.name`` (one
collection only), ``server.address``, ``server.port``, and on failure ``error.type`` and
``db.response.status_code``. A cancelled flush is not measured.

And the counter ``flushkit.flush.coalesced`` (unit ``{call}``, the same attributes): calls
whose Flush RPC was shared with other calls; with 64 callers served by 2 RPCs it grows by
63 (all but the one whose RPC was its own). Only the OpenTelemetry API is used: the
application installs the SDK, or nothing is recorded.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import metrics

from .._chain import Flow
from .._models import FlushRequest, FlushResult
from .._version import __version__
from .tracing import error_attributes, request_attributes

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
        self.coalesced = meter.create_counter(
            "flushkit.flush.coalesced",
            unit="{call}",
            description="Flush calls whose Flush RPC was shared with other calls.",
        )

    def __call__(self, request: FlushRequest) -> Flow:
        try:
            result: FlushResult = yield request
        except Exception as exc:
            failed = {**request_attributes(request), **error_attributes(exc)}
            self.duration.record(time.monotonic() - request.started, failed)
            if getattr(exc, "coalesced", False):
                self.coalesced.add(1, failed)
            raise
        attributes = request_attributes(request)
        self.duration.record(time.monotonic() - request.started, attributes)
        if result.coalesced:
            self.coalesced.add(1, attributes)
        return result

    def __repr__(self) -> str:
        return "MetricsMiddleware()"
