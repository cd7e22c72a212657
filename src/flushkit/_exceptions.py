"""Every error flushkit raises about a flush.

::

    FlushError                      code, error_code, reason, collection_names, db_name,
    │                               retryable, grpc_code, attempts, coalesced, throttled,
    │                               paced, retry_after
    ├── FlushTimeoutError           also a TimeoutError: the call's budget ran out (any
    │                               failure after it did; the server's status kept on it),
    │                               or the server ended the RPC with DEADLINE_EXCEEDED
    ├── CollectionNotFoundError     code 100 / legacy CollectionNotExists
    ├── DatabaseNotFoundError       code 800, or a reason saying so (Milvus Lite: code 6);
    │                               Milvus 2.3's "collection not found" for a database
    │                               the server does not list (the core asks it)
    ├── RateLimitedError            codes 4, 8 / legacy RateLimit; gRPC RESOURCE_EXHAUSTED;
    │                               the budget ends before the server admits the next flush
    ├── ServiceUnavailableError     also a ConnectionError: codes 1, 2 / legacy NotReadyServe,
    │                               ConnectFailed; gRPC UNAVAILABLE, CANCELLED by the server
    ├── PermissionDeniedError       also a PermissionError: codes 1400, 1401 / legacy
    │                               PermissionDenied; gRPC UNAUTHENTICATED, PERMISSION_DENIED
    ├── InvalidArgumentError        codes 802, 1100, 1101 / legacy IllegalArgument;
    │                               gRPC INVALID_ARGUMENT
    ├── QuotaExceededError          codes 3, 7, 9 / legacy ForceDeny, MemoryQuotaExhausted,
    │                               DiskQuotaExhausted
    ├── ServerError                 any other status or gRPC failure
    └── ClientClosedError           the MilvusClient (or the flusher) was closed

Bad arguments are not flush errors: they raise ``ValueError`` or ``TypeError`` before
any RPC. Cancellation is never a ``FlushError``: it propagates as the runtime's own
(``asyncio.CancelledError``, ``trio.Cancelled``, ``KeyboardInterrupt``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc

from ._effects import Call
from ._models import FlushRequest, Status

__all__ = [
    "ClientClosedError",
    "CollectionNotFoundError",
    "DatabaseNotFoundError",
    "FlushError",
    "FlushTimeoutError",
    "InvalidArgumentError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RateLimitedError",
    "ServerError",
    "ServiceUnavailableError",
]


class FlushError(Exception):
    """Base of every error flushkit raises about a flush.

    ``code`` and ``error_code`` are the Milvus status codes (``None`` and ``""`` when the
    failure came from gRPC or from flushkit itself, in which case ``grpc_code`` may name
    the gRPC status). ``retryable`` says whether the same flush may succeed if tried again;
    ``attempts`` how many times it was tried; ``coalesced`` whether the failed Flush was
    one that other calls shared; ``throttled`` how many throttled answers the Flush RPCs
    this call sent got; ``paced`` the seconds it waited for its collection's next slot;
    ``retry_after`` (a :class:`RateLimitedError` raised before the slot) the seconds until
    the server is expected to admit a Flush again.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        error_code: str = "",
        reason: str = "",
        collection_names: Sequence[str] = (),
        db_name: str = "",
        retryable: bool = False,
        grpc_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.error_code = error_code
        self.reason = reason
        self.collection_names = tuple(collection_names)
        self.db_name = db_name
        self.retryable = retryable
        self.grpc_code = grpc_code
        #: How many times the flush was tried (set by the retry middleware).
        self.attempts = 1
        #: Whether the failed Flush RPC was shared with other calls (coalescing).
        self.coalesced = False
        #: Throttled answers to the Flush RPCs this call sent.
        self.throttled = 0
        #: Seconds the call waited for its collections' next slots.
        self.paced = 0.0
        #: Seconds until the server is expected to admit a Flush (rate limiting only).
        self.retry_after: float | None = None

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[FlushError], message: str, fields: dict[str, Any]) -> FlushError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(fields)
    return error


class FlushTimeoutError(FlushError, TimeoutError):
    """The flush did not finish within its budget (``timeout``)."""


class CollectionNotFoundError(FlushError):
    """A collection of the flush does not exist."""


class DatabaseNotFoundError(FlushError):
    """The database of the flush does not exist."""


class RateLimitedError(FlushError):
    """The server throttles Flush (by default one per collection every 10 s) and the
    call's budget ends before the server will admit the next one: ``retry_after`` says
    in how many seconds it will."""


class ServiceUnavailableError(FlushError, ConnectionError):
    """The server is not ready, unavailable, or the connection failed."""


class PermissionDeniedError(FlushError, PermissionError):
    """The credential was refused or lacks the privilege to flush."""


class InvalidArgumentError(FlushError):
    """The server rejected an argument of the flush (a name it does not accept, say)."""


class QuotaExceededError(FlushError):
    """A quota of the server denies writes (memory, disk, or a forced deny)."""


class ServerError(FlushError):
    """Any other failure reported by the server or by gRPC."""


class ClientClosedError(FlushError):
    """The MilvusClient or the flusher was closed."""


# Newer codes (milvus pkg/util/merr) and legacy ErrorCode values, by class.
_BY_CODE: Mapping[int, type[FlushError]] = {
    1: ServiceUnavailableError,
    2: ServiceUnavailableError,
    3: QuotaExceededError,
    4: RateLimitedError,
    7: QuotaExceededError,
    8: RateLimitedError,
    9: QuotaExceededError,
    100: CollectionNotFoundError,
    800: DatabaseNotFoundError,
    802: InvalidArgumentError,
    1100: InvalidArgumentError,
    1101: InvalidArgumentError,
    1400: PermissionDeniedError,
    1401: PermissionDeniedError,
}
_BY_LEGACY_CODE: Mapping[int, type[FlushError]] = {
    2: ServiceUnavailableError,
    3: PermissionDeniedError,
    4: CollectionNotFoundError,
    5: InvalidArgumentError,
    48: QuotaExceededError,
    49: RateLimitedError,
    53: QuotaExceededError,
    54: QuotaExceededError,
    56: ServiceUnavailableError,
}
#: Codes the server marks retriable (milvus pkg/util/merr), and the legacy rate limit and
#: not-ready codes, for servers that do not set ``Status.retriable``.
RETRIABLE_CODES = frozenset({1, 2, 4, 8, 12, 103, 106, 1002})
RETRIABLE_LEGACY_CODES = frozenset({49, 56})

_DESCRIPTIONS: Mapping[type[FlushError], str] = {
    CollectionNotFoundError: "collection not found",
    DatabaseNotFoundError: "database not found",
    RateLimitedError: "rate limited",
    ServiceUnavailableError: "service unavailable",
    PermissionDeniedError: "permission denied",
    InvalidArgumentError: "invalid argument",
    QuotaExceededError: "quota exceeded",
    ServerError: "server error",
}


#: Milvus Lite answers a missing database with code 6 and only its reason says so
#: ("database 'x' does not exist"); servers answer code 800 (2.4+) or name it likewise.
_DATABASE_MISSING = re.compile(r"database .*(does not exist|not ?found)", re.IGNORECASE)


def error_class_for(status: Status) -> type[FlushError]:
    """The exception class for a status that is not OK."""
    if status.code:
        cls = _BY_CODE.get(status.code, ServerError)
    else:
        cls = _BY_LEGACY_CODE.get(status.legacy_code, ServerError)
    if cls is ServerError and _DATABASE_MISSING.search(status.reason):
        return DatabaseNotFoundError
    return cls


def is_retryable(status: Status) -> bool:
    """The server's retriable flag, or a code known to be retriable."""
    if status.retriable:
        return True
    if status.code:
        return status.code in RETRIABLE_CODES
    return status.legacy_code in RETRIABLE_LEGACY_CODES


def describe(request: FlushRequest) -> str:
    """How errors name a flush: its collections and database."""
    names = ", ".join(repr(name) for name in request.collection_names)
    return f"flush of [{names}] in database {request.db_name!r}"


def spent(request: FlushRequest) -> bool:
    """Whether the call's budget has run out: from then on, any failure is a timeout (a
    server may report its own deadline expiry as an ordinary status)."""
    return request.deadline is not None and time.monotonic() >= request.deadline


def error_from_status(status: Status, request: FlushRequest) -> FlushError:
    """The :class:`FlushError` that a status that is not OK stands for; once the budget
    has run out, a :class:`FlushTimeoutError` that keeps the status."""
    said = f"[code={status.code}, error_code={status.error_code}]"
    if status.reason:
        said = f"{said}: {status.reason}"
    if spent(request):
        error = timeout_error(request, f"the server answered {said}")
        error.code, error.error_code, error.reason = status.code, status.error_code, status.reason
        error.grpc_code = None
        return error
    cls = error_class_for(status)
    return cls(
        f"{describe(request)} failed: {_DESCRIPTIONS[cls]} {said}",
        code=status.code,
        error_code=status.error_code,
        reason=status.reason,
        collection_names=request.collection_names,
        db_name=request.db_name,
        retryable=is_retryable(status),
    )


def rate_limited_error(
    request: FlushRequest,
    name: str,
    retry_after: float,
    status: Status | None,
    exhausted: bool = False,
) -> RateLimitedError:
    """The error for a call whose budget ends before its collection's next slot
    (``status``: the last throttled answer; ``exhausted``: it was gRPC's
    RESOURCE_EXHAUSTED)."""
    message = (
        f"{describe(request)} is rate limited: the server admits the next flush of "
        f"{name!r} in {retry_after:.3g} s, after the call's budget ends"
    )
    if status is not None and status.reason:
        message = f"{message}: {status.reason}"
    error = RateLimitedError(
        message,
        code=None if status is None else status.code,
        error_code="" if status is None else status.error_code,
        reason="" if status is None else status.reason,
        collection_names=request.collection_names,
        db_name=request.db_name,
        retryable=True,
        grpc_code="RESOURCE_EXHAUSTED" if exhausted else None,
    )
    error.retry_after = retry_after
    return error


def timeout_error(request: FlushRequest, during: str) -> FlushTimeoutError:
    """The error for a flush whose budget ran out ``during`` some step."""
    budget = "its deadline" if request.timeout is None else f"{request.timeout:g} s"
    return FlushTimeoutError(
        f"{describe(request)} did not finish within {budget} ({during})",
        collection_names=request.collection_names,
        db_name=request.db_name,
        grpc_code="DEADLINE_EXCEEDED",
    )


#: How early gRPC may end an RPC at the call's own deadline, by flushkit's clock.
_EARLY = 0.01

_BY_GRPC_CODE: Mapping[grpc.StatusCode, tuple[type[FlushError], bool]] = {
    grpc.StatusCode.UNAVAILABLE: (ServiceUnavailableError, True),
    grpc.StatusCode.CANCELLED: (ServiceUnavailableError, True),
    grpc.StatusCode.UNAUTHENTICATED: (PermissionDeniedError, False),
    grpc.StatusCode.PERMISSION_DENIED: (PermissionDeniedError, False),
    grpc.StatusCode.INVALID_ARGUMENT: (InvalidArgumentError, False),
    grpc.StatusCode.ABORTED: (ServerError, True),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (RateLimitedError, True),
}


def error_from_rpc(exc: grpc.RpcError, call: Call) -> FlushError:
    """The :class:`FlushError` for a failed RPC; never lets a ``grpc.RpcError`` out."""
    request: FlushRequest = call.request
    code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
    details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        left = None if request.deadline is None else request.deadline - time.monotonic()
        if left is None or left > _EARLY:  # the server's deadline, not the call's budget
            return FlushTimeoutError(
                f"{describe(request)} failed: the server ended {call.method} with gRPC "
                f"DEADLINE_EXCEEDED before the call's budget ran out: {details}",
                reason=details or "",
                collection_names=request.collection_names,
                db_name=request.db_name,
                grpc_code=code.name,
            )
        return timeout_error(request, f"gRPC deadline exceeded during {call.method}")
    if spent(request):
        error = timeout_error(request, f"{call.method} ended with gRPC {code.name}")
        error.grpc_code, error.reason = code.name, details or ""
        return error
    cls, retryable = _BY_GRPC_CODE.get(code, (ServerError, False))
    return cls(
        f"{describe(request)} failed: {call.method} RPC ended with gRPC {code.name}: {details}",
        reason=details or "",
        collection_names=request.collection_names,
        db_name=request.db_name,
        retryable=retryable,
        grpc_code=code.name,
    )
