"""Logging and tracing middlewares, each run blocking, under asyncio and under trio."""

from __future__ import annotations

import pytest
import structlog
from opentelemetry.trace import SpanKind, StatusCode
from pymilvus import MilvusClient

import flushkit
from flushkit.testing import abort, hang, status

from .helpers import PYMILVUS_MAJOR, RecordingLogger, flush_in


@pytest.fixture
def logger():
    return RecordingLogger()


@pytest.fixture
def observed(runtime, client, logger, spans):
    chain = flushkit.default_middleware(logger=logger, tracer_provider=spans.provider)
    return flush_in(runtime, client, middleware=chain)


def test_success_is_logged_at_debug_with_stable_fields(observed, logger):
    observed(["docs", "images"], db_name="analytics")
    ((level, event, fields),) = logger.events
    assert (level, event) == ("debug", "flushkit.flush.succeeded")
    assert fields["collections"] == ["docs", "images"]
    assert fields["db_name"] == "analytics"
    assert fields["outcome"] == "success"
    assert fields["segments"] == 4
    assert fields["duration_s"] > 0
    assert fields["wait"] is False


def test_failure_is_logged_at_warning_with_the_error(observed, logger, fake):
    fake.script_flush(status(100, 4, "collection not found"))
    with pytest.raises(flushkit.CollectionNotFoundError):
        observed("docs")
    ((level, event, fields),) = logger.events
    assert (level, event) == ("warning", "flushkit.flush.failed")
    assert fields["error"] == "CollectionNotFoundError"
    assert fields["code"] == 100
    assert fields["error_code"] == "CollectionNotExists"
    assert fields["outcome"] == "error"
    assert fields["retryable"] is False


def test_default_logger_is_structlogs_flushkit_logger(fake, runtime, client):
    with structlog.testing.capture_logs() as logs:
        flush_in(runtime, client)("docs")
    assert [entry["event"] for entry in logs] == ["flushkit.flush.succeeded"]
    assert logs[0]["log_level"] == "debug"


def test_span_follows_the_database_conventions(observed, spans, fake):
    observed("docs", db_name="analytics")
    (span,) = spans.get_finished_spans()
    assert span.name == "flush docs"
    assert span.kind is SpanKind.CLIENT
    assert span.instrumentation_scope.name == "flushkit"
    conventions = {k: v for k, v in span.attributes.items() if not k.startswith("flushkit.")}
    assert conventions == {
        "db.system.name": "milvus",
        "db.operation.name": "flush",
        "db.collection.name": "docs",
        "db.namespace": "analytics",
        "server.address": "127.0.0.1",
        "server.port": fake.port,
    }
    # How the call was satisfied and where its time went: all of it in its Flush RPC.
    own = {k: v for k, v in span.attributes.items() if k.startswith("flushkit.")}
    assert set(own) == {
        "flushkit.satisfied_by",
        "flushkit.flushing_s",
        "flushkit.paced_s",
        "flushkit.persisting_s",
    }
    assert own["flushkit.satisfied_by"] == "flush"
    assert own["flushkit.flushing_s"] > 0
    assert own["flushkit.paced_s"] == own["flushkit.persisting_s"] == 0
    assert span.status.status_code is StatusCode.UNSET


def test_a_sampler_sees_the_database_attributes(runtime, client, fake):
    # The attributes known when the span starts are given to start_span, as OpenTelemetry
    # asks, so that a sampler can decide by database or collection.
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    seen = []

    class KeepOnlyAnalytics(Sampler):
        def should_sample(
            self,
            parent_context,
            trace_id,
            name,
            kind=None,
            attributes=None,
            links=None,
            trace_state=None,
        ):
            seen.append(dict(attributes or {}))
            keep = (attributes or {}).get("db.namespace") == "analytics"
            return SamplingResult(
                Decision.RECORD_AND_SAMPLE if keep else Decision.DROP, attributes if keep else None
            )

        def get_description(self):
            return "KeepOnlyAnalytics"

    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=KeepOnlyAnalytics())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    flush = flush_in(
        runtime, client, middleware=flushkit.default_middleware(tracer_provider=provider)
    )
    flush("docs", db_name="analytics")
    flush("docs")
    assert [a.get("db.namespace") for a in seen] == ["analytics", "default"]
    assert all(a.get("db.collection.name") == "docs" for a in seen)
    assert all(a.get("server.port") == fake.port for a in seen)
    (span,) = exporter.get_finished_spans()
    assert span.attributes["db.namespace"] == "analytics"


def test_span_for_several_collections_is_named_after_the_database(observed, spans):
    observed(["docs", "images"])
    (span,) = spans.get_finished_spans()
    assert span.name == "flush default"
    assert "db.collection.name" not in span.attributes


def test_failed_span_has_error_type_and_status_code(observed, spans, fake):
    fake.script_flush(*[status(2, 1, "service unavailable", retriable=True)] * 3)
    with pytest.raises(flushkit.ServiceUnavailableError):
        observed("docs")
    (span,) = spans.get_finished_spans()  # one span for the call, retries included
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "flushkit.ServiceUnavailableError"
    assert span.attributes["db.response.status_code"] == "2"
    assert [e.name for e in span.events] == ["flushkit.retry", "flushkit.retry", "exception"]
    assert [e.attributes["flushkit.attempt"] for e in span.events[:2]] == [1, 2]


def test_grpc_failure_span_status_code_is_the_grpc_code(observed, spans, fake):
    import grpc

    fake.script_flush(*[abort(grpc.StatusCode.UNAVAILABLE, "down")] * 3)
    with pytest.raises(flushkit.ServiceUnavailableError):
        observed("docs")
    (span,) = spans.get_finished_spans()
    assert span.attributes["db.response.status_code"] == "UNAVAILABLE"


SECRET = "Sup3rSecretPassw0rd"


@pytest.mark.parametrize("how", ["token", "uri"])
def test_secrets_never_reach_logs_spans_or_errors(fake, runtime, how, spans):
    if how == "uri" and PYMILVUS_MAJOR < 3:
        pytest.skip("pymilvus < 3 cannot connect with user info in the URI (it hangs)")
    milvus = (
        MilvusClient(uri=fake.uri, token=f"root:{SECRET}")
        if how == "token"
        else MilvusClient(uri=f"http://root:{SECRET}@127.0.0.1:{fake.port}")
    )
    logger = RecordingLogger()
    chain = flushkit.default_middleware(logger=logger, tracer_provider=spans.provider)
    flush = flush_in(runtime, milvus, middleware=chain)
    texts = [repr(flush), repr(chain)]
    try:
        flush("docs")
        fake.script_flush(status(1401, 1, "not permitted"), hang())
        for timeout in (5.0, 0.1):
            with pytest.raises(flushkit.FlushError) as caught:
                flush("docs", timeout=timeout)
            texts += [str(caught.value), repr(caught.value), repr(vars(caught.value))]
    finally:
        milvus.close()
    texts += [repr(event) for event in logger.events]
    for span in spans.get_finished_spans():
        texts += [span.to_json()]
    assert len(logger.events) == 3
    joined = "\n".join(texts)
    assert SECRET not in joined
    assert "cm9vdD" not in joined  # nor its base64 form
