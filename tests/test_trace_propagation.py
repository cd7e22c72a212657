"""One trace from the service into Milvus: every RPC carries the flush span's context
(the scripted server records the metadata), joined rounds link to their sender, and log
events carry the span's IDs. The real server's own log lines are checked in
tests/test_real_server.py."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import NoOpTracerProvider

import flushkit
from flushkit.testing import delay

from .helpers import RecordingLogger, flush_in, leader_then, run_together


def traceparent_of(span: Any) -> str:
    ids = span.get_span_context()
    return f"00-{ids.trace_id:032x}-{ids.span_id:016x}-01"


def traced(spans: Any, **options: Any) -> list[Any]:
    return flushkit.default_middleware(tracer_provider=spans.provider, **options)


def test_every_rpc_carries_the_flush_spans_context(fake, client, runtime, spans):
    fake.flushed_after(3)
    flush_in(runtime, client, middleware=traced(spans))("docs", wait=True, timeout=5.0)
    (span,) = spans.get_finished_spans()
    sent = [call.metadata.get("traceparent") for call in fake.calls if call.method != "Connect"]
    assert len(sent) == 4  # the Flush and three polls
    assert set(sent) == {traceparent_of(span)}  # sampled bit only: "-01"


def test_it_is_the_flush_span_not_the_callers_current_one(fake, client, spans):
    outer = spans.provider.get_tracer("service").start_span("handle request")
    token = context.attach(trace.set_span_in_context(outer))
    try:
        flushkit.Flusher(client, middleware=traced(spans)).flush("docs")
    finally:
        context.detach(token)
        outer.end()
    flush_span = next(s for s in spans.get_finished_spans() if s.name == "flush docs")
    assert flush_span.parent.span_id == outer.get_span_context().span_id
    assert fake.flush_calls[-1].metadata["traceparent"] == traceparent_of(flush_span)


def test_without_a_recording_span_nothing_is_injected(fake, client, runtime, spans):
    outer = spans.provider.get_tracer("service").start_span("handle request")
    token = context.attach(trace.set_span_in_context(outer))  # a recording caller span
    try:
        chain = flushkit.default_middleware(tracer_provider=NoOpTracerProvider())
        flush_in(runtime, client, middleware=chain)("docs", wait=True, timeout=5.0)
    finally:
        context.detach(token)
        outer.end()
    assert fake.calls and all("traceparent" not in call.metadata for call in fake.calls)


class FlaggedSpan(trace.NonRecordingSpan):
    """A span that records nothing but says it does, with the trace flags it was given."""

    def is_recording(self) -> bool:
        return True


class FlaggedTracer(trace.Tracer):
    def __init__(self, flags: int) -> None:
        self.flags = flags

    def start_span(self, name: str, context: Any = None, *args: Any, **kwargs: Any) -> Any:
        flags = trace.TraceFlags(self.flags)
        return FlaggedSpan(trace.SpanContext(0x1234, 0x5678, is_remote=False, trace_flags=flags))

    @contextmanager
    def start_as_current_span(self, name: str, context: Any = None, *args: Any, **kwargs: Any):
        with trace.use_span(self.start_span(name, context), end_on_exit=True) as span:
            yield span


class FlaggedTracerProvider(trace.TracerProvider):
    """Its tracers start spans with these trace flags (through OpenTelemetry's API)."""

    def __init__(self, flags: int) -> None:
        self.flags = flags

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return FlaggedTracer(self.flags)


@pytest.mark.parametrize(("flags", "sent"), [(0x03, "01"), (0x01, "01"), (0x02, "00")])
def test_the_sampled_bit_alone_is_sent_whatever_the_span_flags(fake, client, flags, sent):
    # recent SDKs set the W3C Level 2 "random" bit too (0x02), which Milvus 2.3 ignores
    chain = flushkit.default_middleware(tracer_provider=FlaggedTracerProvider(flags))
    flushkit.Flusher(client, middleware=chain).flush("docs")
    expected = f"00-{0x1234:032x}-{0x5678:016x}-{sent}"
    assert fake.flush_calls[-1].metadata["traceparent"] == expected


def test_the_applications_propagators_are_honoured(fake, client, spans):
    class Tenant(TextMapPropagator):
        def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
            span = trace.get_current_span(context)
            carrier["X-Tenant-Trace"] = f"{span.get_span_context().span_id:016x}"

        def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
            return context

        @property
        def fields(self) -> set[str]:
            return {"X-Tenant-Trace"}

    before = propagate.get_global_textmap()
    propagate.set_global_textmap(Tenant())
    try:
        flushkit.Flusher(client, middleware=traced(spans)).flush("docs")
    finally:
        propagate.set_global_textmap(before)
    (span,) = spans.get_finished_spans()
    metadata = fake.flush_calls[-1].metadata
    assert metadata["x-tenant-trace"] == f"{span.get_span_context().span_id:016x}"
    assert "traceparent" not in metadata  # only what the application's propagators write


def test_a_shared_round_carries_its_senders_context_and_joiners_link_to_it(
    fake, client, runtime, spans
):
    fake.script_flush(delay(0.3), delay(0.2))
    callers = leader_then(3)
    outcomes = run_together(runtime, client, server=fake, callers=callers, middleware=traced(spans))
    assert [o.coalesced for o in outcomes] == [False, True, True, True]
    finished = {s.context.span_id: s for s in spans.get_finished_spans()}
    lead_rpc, shared_rpc = fake.flush_calls
    sender_id = int(shared_rpc.metadata["traceparent"].split("-")[2], 16)
    leader_id = int(lead_rpc.metadata["traceparent"].split("-")[2], 16)
    assert sender_id in finished and leader_id in finished and sender_id != leader_id
    joiners = [s for i, s in finished.items() if i not in (leader_id,)]
    for span in joiners:
        if span.context.span_id == sender_id:
            assert not span.links  # it sent the shared Flush itself
        else:
            assert [link.context.span_id for link in span.links] == [sender_id]


def test_log_events_carry_the_spans_ids(fake, client, runtime, spans):
    logger = RecordingLogger()
    chain = flushkit.default_middleware(tracer_provider=spans.provider, logger=logger)
    flush_in(runtime, client, middleware=chain)("docs", timeout=5.0)
    (span,) = spans.get_finished_spans()
    (_, event, fields) = logger.events[-1]
    assert event == "flushkit.flush.succeeded"
    assert fields["trace_id"] == f"{span.context.trace_id:032x}"
    assert fields["span_id"] == f"{span.context.span_id:016x}"


def test_without_a_recording_span_log_events_carry_no_ids(fake, client):
    logger = RecordingLogger()
    chain = flushkit.default_middleware(tracer_provider=NoOpTracerProvider(), logger=logger)
    flushkit.Flusher(client, middleware=chain).flush("docs")
    assert "trace_id" not in logger.events[-1][2]
