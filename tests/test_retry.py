"""The retry middleware: pure policy logic, then blocking, asyncio and trio end to end."""

from __future__ import annotations

import time

import grpc
import pytest

import flushkit
from flushkit.testing import abort, disconnect, hang, status

from .helpers import RecordingLogger, flush_in

RATE_LIMITED = status(8, 49, "rate limit exceeded[rate=0.1]", retriable=True)
UNAVAILABLE = status(2, 1, "service unavailable", retriable=True)


def error(cls=flushkit.RateLimitedError, retryable=True):
    return cls("x", retryable=retryable)


# pure logic


@pytest.mark.pure
def test_backoff_grows_exponentially_up_to_the_maximum():
    policy = flushkit.RetryPolicy(attempts=10, initial=0.1, multiplier=2, maximum=0.5, jitter=0)
    pauses = [policy.pause_after(n, error(), None, 0.0) for n in range(1, 6)]
    assert pauses == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


@pytest.mark.pure
def test_jitter_shortens_the_pause_within_its_fraction():
    policy = flushkit.RetryPolicy(initial=1.0, maximum=1.0, jitter=0.5)
    assert policy.pause_after(1, error(), None, 0.0) == 1.0
    assert policy.pause_after(1, error(), None, 0.999) == pytest.approx(0.5005)


@pytest.mark.pure
def test_gives_up_on_what_is_not_retryable():
    policy = flushkit.RetryPolicy()
    assert policy.pause_after(1, error(flushkit.CollectionNotFoundError, False), None, 0) is None
    assert policy.pause_after(1, flushkit.FlushTimeoutError("t"), None, 0) is None
    assert policy.pause_after(1, ValueError("not a flush error"), None, 0) is None


@pytest.mark.pure
def test_gives_up_after_the_last_attempt():
    policy = flushkit.RetryPolicy(attempts=3)
    assert policy.pause_after(2, error(), None, 0) is not None
    assert policy.pause_after(3, error(), None, 0) is None


@pytest.mark.pure
def test_gives_up_when_the_next_try_cannot_start_before_the_deadline():
    policy = flushkit.RetryPolicy(initial=0.3, jitter=0)
    assert policy.pause_after(1, error(), 0.31, 0) == pytest.approx(0.3)
    assert policy.pause_after(1, error(), 0.3, 0) is None
    assert policy.pause_after(1, error(), 0.1, 0) is None


@pytest.mark.pure
@pytest.mark.parametrize(
    "options",
    [{"attempts": 0}, {"attempts": True}, {"jitter": 2}, {"initial": 3, "maximum": 1}],
)
def test_bad_policies_are_refused(options):
    with pytest.raises((TypeError, ValueError)):
        flushkit.RetryPolicy(**options)


# end to end


def chain(logger, **policy):
    return flushkit.default_middleware(
        logger=logger, retry=flushkit.RetryPolicy(**{"initial": 0.01, **policy})
    )


def test_unavailable_twice_then_ok(fake, runtime, client):
    logger = RecordingLogger()
    fake.script_flush(UNAVAILABLE, UNAVAILABLE)
    result = flush_in(runtime, client, middleware=chain(logger))("docs", timeout=5.0)
    assert result.status.ok and result.attempts == 3
    assert len(fake.flush_calls) == 3
    retries = [fields for _, event, fields in logger.events if event == "flushkit.flush.retrying"]
    assert [r["attempt"] for r in retries] == [1, 2]
    assert all(r["error"] == "ServiceUnavailableError" for r in retries)
    assert logger.events[-1][1] == "flushkit.flush.succeeded"
    assert logger.events[-1][2]["attempts"] == 3


def test_not_retryable_fails_at_once(fake, runtime, client):
    fake.script_flush(status(100, 4, "collection not found"))
    with pytest.raises(flushkit.CollectionNotFoundError) as caught:
        flush_in(runtime, client, middleware=chain(RecordingLogger()))("docs", timeout=5.0)
    assert caught.value.attempts == 1
    assert len(fake.flush_calls) == 1


def test_stops_at_the_maximum_number_of_attempts(fake, runtime, client):
    fake.script_flush(*[UNAVAILABLE] * 5)
    flush = flush_in(runtime, client, middleware=chain(RecordingLogger(), attempts=3))
    with pytest.raises(flushkit.ServiceUnavailableError) as caught:
        flush("docs", timeout=5.0)
    assert caught.value.attempts == 3
    assert len(fake.flush_calls) == 3


def test_never_sleeps_past_the_deadline_and_fails_with_the_last_error(fake, runtime, client):
    fake.script_flush(*[UNAVAILABLE] * 20)
    policy = {"attempts": 20, "initial": 1.0, "maximum": 4.0, "jitter": 0}
    flush = flush_in(runtime, client, middleware=chain(RecordingLogger(), **policy))
    started = time.monotonic()
    with pytest.raises(flushkit.ServiceUnavailableError) as caught:  # not a FlushTimeoutError
        flush("docs", timeout=2.5)
    took = time.monotonic() - started
    # It fails after its 1 s pause and second try, not at its 2.5 s deadline:
    assert took < 2.0, f"{took:.3f} s: it slept into the deadline instead of failing at once"
    assert caught.value.attempts == 2
    assert len(fake.flush_calls) == 2  # 1 s + 2 s of pauses would not fit in 2.5 s


@pytest.mark.parametrize(
    "fault",
    [abort(grpc.StatusCode.UNAVAILABLE, "dropped"), disconnect(), status(1, 56, "not ready")],
)
def test_dropped_connection_and_unavailable_are_retried(fake, runtime, client, fault):
    fake.script_flush(fault)
    flush = flush_in(runtime, client, middleware=chain(RecordingLogger(), initial=0.1))
    result = flush("docs", timeout=10.0)
    assert result.status.ok and result.attempts >= 2


def test_a_timeout_is_not_retried(fake, runtime, client):
    fake.script_flush(hang())
    with pytest.raises(flushkit.FlushTimeoutError):
        flush_in(runtime, client, middleware=chain(RecordingLogger()))("docs", timeout=0.2)
    assert len(fake.flush_calls) == 1


def test_retry_is_removable(fake, runtime, client):
    fake.script_flush(UNAVAILABLE)
    without = [
        m
        for m in flushkit.default_middleware(logger=RecordingLogger())
        if not isinstance(m, flushkit.RetryMiddleware)
    ]
    with pytest.raises(flushkit.ServiceUnavailableError):
        flush_in(runtime, client, middleware=without)("docs")
    assert len(fake.flush_calls) == 1


def test_a_coalesced_failure_is_retried_after_the_full_backoff_without_jitter():
    policy = flushkit.RetryPolicy(initial=1.0, jitter=0.5)
    shared = error()
    shared.coalesced = True
    assert policy.pause_after(1, shared, None, 0.999) == 1.0
    assert policy.pause_after(1, shared, None, 0.0) == 1.0


def test_a_call_refused_for_the_rate_limit_is_not_tried_again():
    # The core refuses a call (RateLimitedError with retry_after) only when its budget
    # cannot reach the next slot plus the usual time to answer: another try could not
    # succeed, even where the slot itself comes before the deadline.
    policy = flushkit.RetryPolicy(initial=0.1, jitter=0)
    late = error()
    late.retry_after = 2.0
    for remaining in (1.5, 3.0, 60.0, None):
        assert policy.pause_after(1, late, remaining, 0.0) is None
    late.retry_after = None  # rate limited without a verdict (RESOURCE_EXHAUSTED elsewhere)
    assert policy.pause_after(1, late, 3.0, 0.0) == pytest.approx(0.1)


def test_throttled_answers_do_not_use_up_attempts(fake, runtime, client):
    fake.script_flush(*[status(8, 49, "rate limit exceeded[rate=50]", retriable=True)] * 4)
    flush = flush_in(runtime, client, middleware=chain(RecordingLogger(), attempts=1))
    result = flush("docs", timeout=10.0)
    assert result.status.ok and result.attempts == 1
    assert result.throttled == 4
    assert len(fake.flush_calls) == 5
