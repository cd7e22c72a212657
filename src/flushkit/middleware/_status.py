"""Status translation: a Milvus status that is not OK becomes a typed FlushError."""

from __future__ import annotations

from .._chain import Flow
from .._exceptions import error_from_status
from .._models import FlushRequest, FlushResult


class StatusMiddleware:
    """Raises the :class:`~flushkit.FlushError` subclass that a failed status stands for.

    Without it, a failed flush returns a :class:`~flushkit.FlushResult` whose ``status``
    is not OK, as Milvus's own SDKs do.
    """

    def __call__(self, request: FlushRequest) -> Flow:
        result: FlushResult = yield request
        if not result.status.ok:
            if result.db_name != request.db_name:  # an inner middleware sent it elsewhere
                request = request.replace(db_name=result.db_name)
            error = error_from_status(result.status, request)
            error.coalesced = result.coalesced
            error.throttled, error.paced = result.throttled, result.paced
            raise error
        return result

    def __repr__(self) -> str:
        return "StatusMiddleware()"
