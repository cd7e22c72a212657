"""What a caller reads: the exact words of each refusal of bad input, of each error's
defaults and of the status and rate-limit errors, and the edges of what is accepted
(pure logic, no server; the mutation run's tests for ``_models``, ``_exceptions`` and the
retry policy)."""

from __future__ import annotations

import math
import time

import pytest

import flushkit
from flushkit import FlushRequest, Status
from flushkit._exceptions import error_from_status, rate_limited_error
from flushkit._models import (
    collection_names_of,
    db_name_of,
    interval_of,
    timeout_of,
    wait_of,
)

pytestmark = pytest.mark.pure


def request(budget: float | None = 60.0) -> FlushRequest:
    now = time.monotonic()
    return FlushRequest(
        ("docs",), "shop", budget, False, now, None if budget is None else now + budget
    )


@pytest.mark.parametrize(
    ("check", "value", "error", "message"),
    [
        (
            collection_names_of,
            7,
            TypeError,
            "collection_names must be a str or a sequence of str, not int",
        ),
        (collection_names_of, [7], TypeError, "collection name must be a str, not int: 7"),
        (collection_names_of, [" a"], ValueError, "collection name has leading or trailing"),
        (
            collection_names_of,
            [],
            ValueError,
            "collection_names is empty: give at least one collection name",
        ),
        (lambda v: db_name_of(v, "default"), 3, TypeError, "db_name must be a str, not int: 3"),
        (
            timeout_of,
            "5",
            TypeError,
            "timeout must be None or a number of seconds, not str: '5'",
        ),
        (wait_of, 1, TypeError, "wait must be True or False, not int: 1"),
        (
            interval_of,
            "10",
            TypeError,
            "flush_interval must be a number of seconds, not str: '10'",
        ),
        (
            interval_of,
            True,
            TypeError,
            "flush_interval must be a number of seconds, not bool: True",
        ),
        (
            interval_of,
            -1,
            ValueError,
            "flush_interval must be a finite number of seconds, 0 or more, not -1",
        ),
        (
            interval_of,
            math.inf,
            ValueError,
            "flush_interval must be a finite number of seconds, 0 or more, not inf",
        ),
    ],
)
def test_bad_input_is_refused_in_these_words(check, value, error, message):
    with pytest.raises(error) as raised:
        check(value)
    assert str(raised.value).startswith(message)


def test_a_single_name_is_a_tuple_of_it():
    assert collection_names_of("docs") == ("docs",)
    assert db_name_of(None, "default") == "default" and db_name_of("shop", "x") == "shop"


@pytest.mark.parametrize("value", [0, 0.0, 0.5, 10, 1e6])
def test_flush_intervals_of_zero_and_more_are_seconds(value):
    assert interval_of(value) == float(value) and type(interval_of(value)) is float


def test_replace_names_the_fields_a_request_does_not_have():
    with pytest.raises(TypeError) as raised:
        request().replace(colour="red", size=3)  # type: ignore[call-arg]
    assert str(raised.value) == "FlushRequest has no field colour, size"


def test_a_flush_errors_fields_start_empty():
    error = flushkit.FlushError("broken")
    assert (error.code, error.error_code, error.reason, error.db_name) == (None, "", "", "")
    assert error.collection_names == () and error.retryable is False
    assert error.grpc_code is None and error.retry_after is None
    assert (error.attempts, error.coalesced, error.throttled, error.paced) == (1, False, 0, 0.0)
    assert type(error.paced) is float and type(error.throttled) is int


def test_a_status_error_says_the_codes_and_the_reason():
    error = error_from_status(
        Status(100, "CollectionNotExists", "not found", False, "", 4), request()
    )
    assert str(error).endswith("[code=100, error_code=CollectionNotExists]: not found")
    assert error.grpc_code is None
    plain = error_from_status(Status(65535, "UnexpectedError", "", False, "", 1), request())
    assert str(plain).endswith("[code=65535, error_code=UnexpectedError]")


def test_a_status_after_the_budget_ran_out_is_a_timeout_without_a_grpc_code():
    error = error_from_status(Status(65535, "UnexpectedError", "x", False, "", 1), request(-1))
    assert type(error) is flushkit.FlushTimeoutError and error.grpc_code is None
    assert str(error).endswith("(the server answered [code=65535, error_code=UnexpectedError]: x)")


def test_a_refusal_without_a_throttled_answer_carries_no_status_fields():
    error = rate_limited_error(request(), "docs", 4.0, None)
    assert (error.code, error.error_code, error.reason, error.grpc_code) == (None, "", "", None)
    assert error.retry_after == 4.0 and error.retryable
    exhausted = rate_limited_error(request(), "docs", 4.0, None, True)
    assert exhausted.grpc_code == "RESOURCE_EXHAUSTED"
    named = rate_limited_error(request(), "docs", 4.0, Status(8, "RateLimit", "slow", True))
    assert (named.code, named.error_code, named.reason) == (8, "RateLimit", "slow")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"attempts": 2.0}, "attempts must be an int, not 2.0"),
        ({"attempts": 0}, "attempts must be at least 1, not 0"),
        ({"initial": -0.1}, "need 0 <= initial <= maximum and multiplier >= 1"),
        ({"multiplier": 0.5}, "need 0 <= initial <= maximum and multiplier >= 1"),
        ({"jitter": 1.5}, "jitter must be between 0 and 1, not 1.5"),
    ],
)
def test_bad_retry_policies_are_refused_in_these_words(options, message):
    with pytest.raises((TypeError, ValueError)) as raised:
        flushkit.RetryPolicy(**options)
    assert str(raised.value) == message


def test_the_edges_of_a_retry_policy_are_accepted():
    flushkit.RetryPolicy(attempts=1, initial=0.0, multiplier=1.0, jitter=1.0)
    flushkit.RetryPolicy(initial=2.0, maximum=2.0, jitter=0.0)


def test_a_coalesced_failure_pauses_the_full_backoff_whatever_the_chance():
    policy = flushkit.RetryPolicy(initial=1.0, maximum=1.0, jitter=0.5)
    error = flushkit.ServiceUnavailableError("down", retryable=True)
    assert policy.pause_after(1, error, None, 0.9) == pytest.approx(0.55)
    error.coalesced = True
    assert policy.pause_after(1, error, None, 0.9) == 1.0


@pytest.mark.parametrize(
    ("value", "message"),
    [("", "collection name is empty or blank: ''"), (" a", "collection name has leading")],
)
def test_a_single_bad_name_is_refused_as_a_collection_name(value, message):
    with pytest.raises(ValueError) as raised:
        collection_names_of(value)
    assert str(raised.value).startswith(message)
