"""Milvus statuses become typed exceptions (pure logic, no server)."""

import pickle
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymilvus.grpc_gen import common_pb2

import flushkit
from flushkit._exceptions import error_class_for, error_from_status
from flushkit._models import FlushRequest, Status

pytestmark = pytest.mark.pure

# The README's words, written out: "true for the codes Milvus marks retriable (1, 2, 4, 8,
# 12, 103, 106, 1002) and the legacy RateLimit and NotReadyServe" (never the
# implementation's own table, which a test could only agree with).
README_RETRIABLE = (1, 2, 4, 8, 12, 103, 106, 1002)
README_RETRIABLE_LEGACY = (49, 56)  # RateLimit, NotReadyServe

REQUEST = FlushRequest(
    collection_names=("docs", "images"), db_name="prod", timeout=5.0, wait=False, started=0.0
)


def status(code=0, error_code=0, reason="", retriable=False):
    return Status.from_proto(
        common_pb2.Status(code=code, error_code=error_code, reason=reason, retriable=retriable)
    )


@pytest.mark.parametrize(
    ("code", "error_code", "cls", "retryable"),
    [
        (100, 4, flushkit.CollectionNotFoundError, False),
        (0, 4, flushkit.CollectionNotFoundError, False),
        (800, 1, flushkit.DatabaseNotFoundError, False),
        (8, 49, flushkit.RateLimitedError, True),
        (0, 49, flushkit.RateLimitedError, True),
        (4, 1, flushkit.RateLimitedError, True),
        (1, 56, flushkit.ServiceUnavailableError, True),
        (0, 56, flushkit.ServiceUnavailableError, True),
        (2, 1, flushkit.ServiceUnavailableError, True),
        (1400, 1, flushkit.PermissionDeniedError, False),
        (1401, 1, flushkit.PermissionDeniedError, False),
        (0, 3, flushkit.PermissionDeniedError, False),
        (1100, 5, flushkit.InvalidArgumentError, False),
        (0, 5, flushkit.InvalidArgumentError, False),
        (9, 48, flushkit.QuotaExceededError, False),
        (0, 53, flushkit.QuotaExceededError, False),
        (5, 1, flushkit.ServerError, False),
        (65535, 1, flushkit.ServerError, False),
        (0, 1, flushkit.ServerError, False),
    ],
)
def test_status_codes_map_to_classes(code, error_code, cls, retryable):
    error = error_from_status(status(code, error_code, reason="boom"), REQUEST)
    assert type(error) is cls
    assert isinstance(error, flushkit.FlushError)
    assert error.code == code
    assert error.error_code == common_pb2.ErrorCode.Name(error_code)
    assert error.reason == "boom"
    assert error.retryable is retryable
    assert error.collection_names == ("docs", "images")
    assert error.db_name == "prod"
    assert "'docs'" in str(error) and "boom" in str(error)


def test_code_decides_over_legacy_code():
    assert error_class_for(status(100, 49)) is flushkit.CollectionNotFoundError


def test_server_retriable_flag_wins():
    assert error_from_status(status(5, 1, retriable=True), REQUEST).retryable


def test_ok_status():
    assert status().ok
    assert not status(0, 1).ok
    assert not status(1, 0).ok


def test_exceptions_pickle_with_their_fields():
    error = error_from_status(status(8, 49, reason="rate limit exceeded[rate=0.1]"), REQUEST)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is flushkit.RateLimitedError
    assert str(again) == str(error)
    assert vars(again) == vars(error)


def test_timeout_error_is_a_timeout_error():
    assert issubclass(flushkit.FlushTimeoutError, TimeoutError)
    assert issubclass(flushkit.FlushTimeoutError, flushkit.FlushError)


#: Codes the property test tries first: the README's retriable ones and some of each class.
SAMPLED_CODES = [0, 3, 5, 9, 100, 800, 1100, 1400, 65535, *README_RETRIABLE]


@given(
    code=st.sampled_from(SAMPLED_CODES) | st.integers(0, 2**31 - 1),
    error_code=st.sampled_from([v.number for v in common_pb2.ErrorCode.DESCRIPTOR.values]),
    retriable=st.booleans(),
)
def test_every_status_is_success_or_one_documented_error(code, error_code, retriable):
    s = status(code, error_code, retriable=retriable)
    if code == 0 and error_code == 0:
        assert s.ok
        return
    error = error_from_status(s, REQUEST)
    assert isinstance(error, flushkit.FlushError)
    assert type(error).__name__ in flushkit.__all__
    # the documented rule: the server's flag, else the code; the legacy code when code is 0
    expected = retriable or (
        code in README_RETRIABLE if code else error_code in README_RETRIABLE_LEGACY
    )
    assert error.retryable is expected


def test_a_missing_database_named_only_in_the_reason_is_database_not_found():
    # Milvus Lite 3.2: code 6 / legacy 6, "database 'nodb' does not exist"
    error = error_from_status(status(6, 6, "database 'nodb' does not exist"), REQUEST)
    assert type(error) is flushkit.DatabaseNotFoundError
    assert error.code == 6
    # a reason alone never overrides a code that has its own class
    error = error_from_status(status(100, 4, "collection not found[database=x]"), REQUEST)
    assert type(error) is flushkit.CollectionNotFoundError


@pytest.mark.parametrize(
    ("code", "error_code", "reason"),
    [
        (65535, 1, "proxy TaskCondition context Done"),
        (65535, 1, "attempt #0: channel not found[channel=x]"),
        (100, 4, "collection not found"),
        (8, 49, "rate limit exceeded[rate=0.1]"),
    ],
)
def test_any_failure_after_the_budget_ran_out_is_a_timeout_keeping_the_status(
    code, error_code, reason
):
    spent = REQUEST.replace(deadline=time.monotonic() - 0.001)
    error = error_from_status(status(code, error_code, reason), spent)
    assert type(error) is flushkit.FlushTimeoutError and isinstance(error, TimeoutError)
    assert (error.code, error.reason) == (code, reason)
    assert error.error_code == common_pb2.ErrorCode.Name(error_code)
    assert reason in str(error)
    in_time = REQUEST.replace(deadline=time.monotonic() + 60)
    assert type(error_from_status(status(code, error_code, reason), in_time)) is not (
        flushkit.FlushTimeoutError
    )


def test_a_grpc_failure_after_the_budget_ran_out_is_a_timeout():
    import grpc

    from flushkit._effects import FLUSH, Call
    from flushkit._exceptions import error_from_rpc

    class Failed(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.UNAVAILABLE

        def details(self):
            return "connection reset"

    spent = REQUEST.replace(deadline=time.monotonic() - 0.001)
    error = error_from_rpc(Failed(), Call(FLUSH, None, spent))
    assert type(error) is flushkit.FlushTimeoutError
    assert error.grpc_code == "UNAVAILABLE" and error.reason == "connection reset"


@pytest.mark.parametrize("code", README_RETRIABLE)
def test_the_codes_the_readme_calls_retriable_are_retryable(code):
    assert error_from_status(status(code=code, error_code=1), REQUEST).retryable
    # whatever the legacy code beside it, and without the server's flag
    assert error_from_status(status(code=code, error_code=0), REQUEST).retryable


@pytest.mark.parametrize("legacy", README_RETRIABLE_LEGACY)
def test_the_legacy_codes_the_readme_calls_retriable_are_retryable(legacy):
    assert error_from_status(status(error_code=legacy), REQUEST).retryable


NOT_RETRIABLE = (3, 5, 6, 7, 9, 10, 11, 13, 100, 101, 102, 104, 105, 107, 200, 800, 1001, 1003)
NOT_RETRIABLE += (1100, 1101, 1400, 1401, 65535)


@pytest.mark.parametrize("code", NOT_RETRIABLE)
def test_other_codes_are_not_retryable_unless_the_server_says_so(code):
    assert not error_from_status(status(code=code, error_code=1), REQUEST).retryable
    assert error_from_status(status(code=code, error_code=1, retriable=True), REQUEST).retryable


@pytest.mark.parametrize("legacy", [1, 3, 4, 5, 48, 53, 55])
def test_other_legacy_codes_are_not_retryable_unless_the_server_says_so(legacy):
    # UnexpectedError, PermissionDenied, CollectionNotExists, IllegalArgument, ForceDeny,
    # MemoryQuotaExhausted, TimeTickLongDelay
    assert not error_from_status(status(error_code=legacy), REQUEST).retryable
    assert error_from_status(status(error_code=legacy, retriable=True), REQUEST).retryable


def test_a_legacy_retriable_code_beside_a_code_that_is_not_does_not_make_it_retryable():
    # the code decides when it is set (the README: the legacy code chooses when code is 0)
    assert not error_from_status(status(code=5, error_code=49), REQUEST).retryable
    assert error_from_status(status(code=8, error_code=1), REQUEST).retryable
