"""The metrics middleware: db.client.operation.duration, blocking, asyncio and trio."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import flushkit
from flushkit.testing import status

from .helpers import RecordingLogger, flush_in, points


@pytest.fixture
def reader():
    return InMemoryMetricReader()


@pytest.fixture
def measured(runtime, client, reader):
    chain = flushkit.default_middleware(
        logger=RecordingLogger(), meter_provider=MeterProvider(metric_readers=[reader])
    )
    return flush_in(runtime, client, middleware=chain)


def test_duration_histogram_follows_the_conventions(measured, reader, fake):
    measured("docs", db_name="analytics")
    metric = points(reader)["db.client.operation.duration"]
    assert metric.unit == "s"
    (point,) = metric.data.data_points
    assert point.count == 1 and 0 < point.sum < 5
    assert list(point.explicit_bounds) == [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10]
    assert dict(point.attributes) == {
        "db.system.name": "milvus",
        "db.operation.name": "flush",
        "db.namespace": "analytics",
        "db.collection.name": "docs",
        "server.address": "127.0.0.1",
        "server.port": fake.port,
        "flushkit.satisfied_by": "flush",  # three values: flush, shared, covered
    }


def test_failures_carry_error_type_and_status_code(measured, reader, fake):
    fake.script_flush(status(100, 4, "collection not found"))
    with pytest.raises(flushkit.CollectionNotFoundError):
        measured(["docs", "images"])
    (point,) = points(reader)["db.client.operation.duration"].data.data_points
    assert point.attributes["error.type"] == "flushkit.CollectionNotFoundError"
    assert point.attributes["db.response.status_code"] == "100"
    assert "db.collection.name" not in point.attributes


def test_one_measurement_per_call_with_retries(measured, reader, fake):
    fake.script_flush(status(2, 1, "service unavailable", retriable=True))
    assert measured("docs").attempts == 2
    (point,) = points(reader)["db.client.operation.duration"].data.data_points
    assert point.count == 1
