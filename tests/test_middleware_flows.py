"""The retry and status middlewares as flows, stepped by hand as the chain would: what
each yields, raises and returns for each outcome (pure logic: no server, no sleeping;
the mutation run's tests for ``middleware/_retry.py`` and ``middleware/_status.py``)."""

from __future__ import annotations

import time

import pytest

import flushkit
from flushkit import FlushRequest, FlushResult, Pause, Status
from flushkit.middleware import RetryMiddleware, StatusMiddleware

from .helpers import RecordingLogger

pytestmark = pytest.mark.pure


def request(db: str = "shop", budget: float | None = None) -> FlushRequest:
    now = time.monotonic()
    return FlushRequest(
        collection_names=("docs", "news"),
        db_name=db,
        timeout=budget,
        wait=False,
        started=now,
        deadline=None if budget is None else now + budget,
    )


def result(status: Status | None = None, db: str = "shop", **fields: object) -> FlushResult:
    return FlushResult(
        coll_segIDs={"docs": (1,)},
        flush_coll_segIDs={},
        coll_seal_times={},
        coll_flush_ts={},
        db_name=db,
        status=status or Status(),
        elapsed=0.1,
        **fields,
    )


def unavailable() -> flushkit.FlushError:
    return flushkit.ServiceUnavailableError(
        "down", code=2, grpc_code="UNAVAILABLE", retryable=True
    )


# retry


def test_a_first_success_is_returned_as_it_came():
    flow = RetryMiddleware(logger=RecordingLogger())(request())
    sent = next(flow)
    assert sent == request().replace(started=sent.started, deadline=sent.deadline)
    done = result()
    with pytest.raises(StopIteration) as stop:
        flow.send(done)
    assert stop.value.value is done and done.attempts == 1


def test_retryable_failures_pause_by_the_policy_and_the_result_counts_the_tries():
    logger = RecordingLogger()
    policy = flushkit.RetryPolicy(attempts=3, initial=0.2, multiplier=3.0, maximum=5.0, jitter=0.5)
    flow = RetryMiddleware(policy, logger=logger, chance=lambda: 0.5)(request())
    first = next(flow)
    assert flow.throw(unavailable()).seconds == pytest.approx(0.2 * 0.75)
    assert flow.send(None) is first  # the same request again
    assert flow.throw(unavailable()).seconds == pytest.approx(0.6 * 0.75)
    assert flow.send(None) is first
    with pytest.raises(StopIteration) as stop:
        flow.send(result())
    assert stop.value.value.attempts == 3
    assert stop.value.value.coll_segIDs == {"docs": (1,)}
    assert [(level, event) for level, event, _ in logger.events] == [
        ("info", "flushkit.flush.retrying"),
        ("info", "flushkit.flush.retrying"),
    ]
    assert logger.events[1][2] == {
        "collections": ["docs", "news"],
        "db_name": "shop",
        "attempt": 2,
        "pause_s": pytest.approx(0.45),
        "error": "ServiceUnavailableError",
        "code": 2,
        "grpc_code": "UNAVAILABLE",
    }


def test_the_last_failure_is_raised_with_the_tries_it_took():
    policy = flushkit.RetryPolicy(attempts=2, initial=0.01)
    flow = RetryMiddleware(policy, logger=RecordingLogger(), chance=lambda: 0.0)(request())
    next(flow)
    assert isinstance(flow.throw(unavailable()), Pause)
    next(flow)
    last = unavailable()
    with pytest.raises(flushkit.ServiceUnavailableError) as raised:
        flow.throw(last)
    assert raised.value is last and last.attempts == 2


def test_what_is_not_retryable_is_raised_at_once():
    logger = RecordingLogger()
    flow = RetryMiddleware(logger=logger)(request())
    next(flow)
    error = flushkit.CollectionNotFoundError("gone", code=100)
    with pytest.raises(flushkit.CollectionNotFoundError):
        flow.throw(error)
    assert error.attempts == 1 and logger.events == []


def test_no_pause_reaches_past_the_deadline():
    policy = flushkit.RetryPolicy(initial=5.0, maximum=5.0, jitter=0.0)
    flow = RetryMiddleware(policy, logger=RecordingLogger())(request(budget=2.0))
    next(flow)
    error = unavailable()
    with pytest.raises(flushkit.ServiceUnavailableError):
        flow.throw(error)
    assert error.attempts == 1
    # with room for the pause, it pauses
    roomy = RetryMiddleware(policy, logger=RecordingLogger())(request(budget=60.0))
    next(roomy)
    assert roomy.throw(unavailable()) == Pause(5.0)


def test_each_retry_is_an_event_on_the_flushs_span(spans):
    tracer = spans.provider.get_tracer("test")
    with tracer.start_as_current_span("flush"):
        flow = RetryMiddleware(logger=RecordingLogger(), chance=lambda: 0.0)(request())
        next(flow)
        flow.throw(unavailable())
    [span] = spans.get_finished_spans()
    [event] = span.events
    assert event.name == "flushkit.retry"
    assert dict(event.attributes) == {
        "flushkit.attempt": 1,
        "flushkit.retry.pause_s": pytest.approx(0.2),
        "error.type": "flushkit.ServiceUnavailableError",
    }


def test_retry_and_status_middlewares_say_what_they_are():
    policy = flushkit.RetryPolicy(attempts=4)
    assert repr(RetryMiddleware(policy)) == f"RetryMiddleware({policy!r})"
    assert RetryMiddleware().policy == flushkit.RetryPolicy()
    assert repr(StatusMiddleware()) == "StatusMiddleware()"


# status


def test_an_ok_result_passes_through():
    flow = StatusMiddleware()(request())
    next(flow)
    done = result()
    with pytest.raises(StopIteration) as stop:
        flow.send(done)
    assert stop.value.value is done


def test_a_failed_status_becomes_its_error_carrying_how_the_call_went():
    flow = StatusMiddleware()(request())
    next(flow)
    failed = result(
        Status(100, "CollectionNotExists", "collection not found[collection=docs]", False, "", 4),
        coalesced=True,
        throttled=2,
        paced=1.5,
    )
    with pytest.raises(flushkit.CollectionNotFoundError) as raised:
        flow.send(failed)
    error = raised.value
    assert (error.code, error.reason) == (100, "collection not found[collection=docs]")
    assert error.db_name == "shop" and error.collection_names == ("docs", "news")
    assert error.coalesced is True and error.throttled == 2 and error.paced == 1.5


def test_a_failed_status_names_the_database_the_flush_went_to():
    flow = StatusMiddleware()(request(db="shop"))
    next(flow)
    with pytest.raises(flushkit.FlushError) as raised:
        flow.send(result(Status(65535, "UnexpectedError", "broken", False, "", 1), db="archive"))
    assert raised.value.db_name == "archive"
    assert "archive" in str(raised.value)
