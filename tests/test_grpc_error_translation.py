"""gRPC failures become typed FlushErrors, as the README's exception tree says (pure
logic: an RpcError made by the test, no channel; the mutation run's tests for
``flushkit._exceptions``)."""

from __future__ import annotations

import time

import grpc
import pytest

import flushkit
from flushkit import FlushRequest
from flushkit._effects import FLUSH, Call
from flushkit._exceptions import error_from_rpc, timeout_error

pytestmark = pytest.mark.pure


class Failed(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """A failed RPC as grpc raises it: its status code and details."""

    def __init__(self, code: grpc.StatusCode, details: str | None = "it broke") -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str | None:
        return self._details

    # the rest of grpc.Call, unused here
    def initial_metadata(self):  # pragma: no cover
        return None

    def trailing_metadata(self):  # pragma: no cover
        return None

    def is_active(self):  # pragma: no cover
        return False

    def time_remaining(self):  # pragma: no cover
        return None

    def cancel(self):  # pragma: no cover
        return False

    def add_callback(self, callback):  # pragma: no cover
        return False


def call(budget: float | None = 60.0, timeout: float | None = 60.0) -> Call:
    now = time.monotonic()
    request = FlushRequest(
        collection_names=("docs", "news"),
        db_name="shop",
        timeout=timeout,
        wait=False,
        started=now,
        deadline=None if budget is None else now + budget,
    )
    return Call(FLUSH, None, request)


#: The README's tree, gRPC side: (code, class, retryable).
README_GRPC = [
    (grpc.StatusCode.UNAVAILABLE, flushkit.ServiceUnavailableError, True),
    (grpc.StatusCode.CANCELLED, flushkit.ServiceUnavailableError, True),
    (grpc.StatusCode.UNAUTHENTICATED, flushkit.PermissionDeniedError, False),
    (grpc.StatusCode.PERMISSION_DENIED, flushkit.PermissionDeniedError, False),
    (grpc.StatusCode.INVALID_ARGUMENT, flushkit.InvalidArgumentError, False),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, flushkit.RateLimitedError, True),
    (grpc.StatusCode.ABORTED, flushkit.ServerError, True),
    (grpc.StatusCode.INTERNAL, flushkit.ServerError, False),
    (grpc.StatusCode.UNKNOWN, flushkit.ServerError, False),
    (grpc.StatusCode.UNIMPLEMENTED, flushkit.ServerError, False),
]


@pytest.mark.parametrize(("code", "cls", "retryable"), README_GRPC)
def test_each_grpc_code_becomes_the_documented_error(code, cls, retryable):
    error = error_from_rpc(Failed(code), call())
    assert type(error) is cls
    assert error.retryable is retryable
    assert error.grpc_code == code.name and error.reason == "it broke"
    assert error.collection_names == ("docs", "news") and error.db_name == "shop"
    assert error.code is None and error.attempts == 1
    assert str(error) == (
        f"flush of ['docs', 'news'] in database 'shop' failed: Flush RPC ended with gRPC "
        f"{code.name}: it broke"
    )


def test_an_rpc_error_without_details_has_an_empty_reason():
    error = error_from_rpc(Failed(grpc.StatusCode.UNAVAILABLE, None), call())
    assert error.reason == ""


def test_an_rpc_error_that_is_not_a_call_is_an_unknown_server_error():
    error = error_from_rpc(grpc.RpcError("odd"), call())
    assert type(error) is flushkit.ServerError and error.grpc_code == "UNKNOWN"
    assert error.reason == "odd" and not error.retryable


def test_the_servers_own_deadline_is_a_timeout_that_says_so():
    error = error_from_rpc(Failed(grpc.StatusCode.DEADLINE_EXCEEDED, "slow"), call())
    assert type(error) is flushkit.FlushTimeoutError and isinstance(error, TimeoutError)
    assert error.grpc_code == "DEADLINE_EXCEEDED" and error.reason == "slow"
    assert error.db_name == "shop" and error.collection_names == ("docs", "news")
    assert str(error) == (
        "flush of ['docs', 'news'] in database 'shop' failed: the server ended Flush with "
        "gRPC DEADLINE_EXCEEDED before the call's budget ran out: slow"
    )
    unbounded = error_from_rpc(Failed(grpc.StatusCode.DEADLINE_EXCEEDED, None), call(None))
    assert "before the call's budget ran out" in str(unbounded) and unbounded.reason == ""


def test_a_deadline_at_the_calls_budget_is_the_calls_timeout():
    error = error_from_rpc(Failed(grpc.StatusCode.DEADLINE_EXCEEDED), call(budget=0.005))
    assert type(error) is flushkit.FlushTimeoutError
    assert str(error) == (
        "flush of ['docs', 'news'] in database 'shop' did not finish within 60 s "
        "(gRPC deadline exceeded during Flush)"
    )
    assert error.grpc_code == "DEADLINE_EXCEEDED"


def test_any_failure_once_the_budget_is_spent_is_a_timeout_keeping_what_grpc_said():
    error = error_from_rpc(Failed(grpc.StatusCode.UNAVAILABLE, "gone"), call(budget=-1.0))
    assert type(error) is flushkit.FlushTimeoutError
    assert error.grpc_code == "UNAVAILABLE" and error.reason == "gone"
    assert str(error).endswith("(Flush ended with gRPC UNAVAILABLE)")


def test_a_timeout_names_the_budget_or_the_deadline():
    request = call(timeout=2.5).request
    error = timeout_error(request, "waiting")
    assert str(error) == (
        "flush of ['docs', 'news'] in database 'shop' did not finish within 2.5 s (waiting)"
    )
    assert error.grpc_code == "DEADLINE_EXCEEDED" and error.db_name == "shop"
    assert error.collection_names == ("docs", "news") and not error.retryable
    untimed = timeout_error(call(timeout=None).request, "waiting")
    assert "within its deadline (waiting)" in str(untimed)


def test_a_spent_budgets_failure_without_details_has_an_empty_reason():
    error = error_from_rpc(Failed(grpc.StatusCode.UNAVAILABLE, None), call(budget=-1.0))
    assert type(error) is flushkit.FlushTimeoutError and error.reason == ""
