"""The OpenTelemetry API internals flushkit relies on (flushkit/middleware/_otel_internals.py),
and what skipping the API's no-op paths must never change. If a contract test fails, the
API changed them: update _otel_internals.py, not this test."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

import flushkit
from flushkit.middleware import _otel_internals


def test_before_any_provider_the_global_tracer_is_a_proxy_without_a_provider():
    # This test process never installs a global provider (tests pass theirs explicitly).
    tracer = trace.get_tracer("probe")
    assert _otel_internals.is_global_proxy(tracer)
    assert _otel_internals.tracer_provider_probe()() is None
    assert not tracer.start_span("probe").is_recording()


def test_a_tracer_of_a_given_provider_is_not_the_global_proxy():
    tracer = trace.get_tracer("probe", tracer_provider=TracerProvider())
    assert not _otel_internals.is_global_proxy(tracer)


def test_a_global_meters_instruments_are_proxies_without_a_real_one():
    histogram = metrics.get_meter("probe").create_histogram("probe.duration")
    assert _otel_internals.real_instrument_probe(histogram)() is None
    counter = metrics.get_meter("probe").create_counter("probe.count")
    assert _otel_internals.real_instrument_probe(counter)() is None


def test_an_sdk_instrument_records():
    histogram = MeterProvider().get_meter("probe").create_histogram("probe.duration")
    assert _otel_internals.real_instrument_probe(histogram)() is not None


def test_unknown_internals_take_the_ordinary_path(monkeypatch):
    probe = _otel_internals.tracer_provider_probe()
    monkeypatch.delattr(trace, "_TRACER_PROVIDER")
    assert probe() is not None
    assert _otel_internals.real_instrument_probe(object())() is not None


def test_without_a_provider_the_quiet_path_asks_the_api_for_nothing(client, monkeypatch):
    """No span started, no measurement offered: those no-op calls are what the skip
    saves (each would still record nothing)."""
    asked = []
    monkeypatch.setattr(trace.ProxyTracer, "start_span", lambda *a, **k: asked.append("start_span"))
    flusher = flushkit.Flusher(client)
    duration = next(
        m for m in flusher.middleware if isinstance(m, flushkit.MetricsMiddleware)
    ).duration
    monkeypatch.setattr(duration, "record", lambda *a, **k: asked.append("record"))
    flusher.flush("docs")
    assert asked == []


def test_providers_installed_after_the_flusher_was_built_are_obeyed(fake):
    """The usual order in a service: flushkit built at import, telemetry set up later.
    (A process installs its global providers once: this runs in a child process.)"""
    program = textwrap.dedent(
        f"""
        import flushkit
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from pymilvus import MilvusClient

        client = MilvusClient(uri={fake.uri!r})
        flusher = flushkit.Flusher(client)
        flusher.flush("before")
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        flusher.flush("after")
        print([span.name for span in exporter.get_finished_spans()])
        points = [
            point.count
            for resource in reader.get_metrics_data().resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == "db.client.operation.duration"
            for point in metric.data.data_points
        ]
        print(points)
        client.close()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['flush after']", "[1]"]
    before, after = fake.flush_calls[-2:]
    assert "traceparent" not in before.metadata
    assert "traceparent" in after.metadata  # propagated, from the installed provider
