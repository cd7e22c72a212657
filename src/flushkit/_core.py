"""The core flush: the Flush RPC, then optionally waiting until the segments persist.

The core is a flow like a middleware's, but it yields :class:`Call` effects, which the
drivers perform over gRPC, and :class:`Pause` effects between polls. It never raises for
a Milvus status: a status that is not OK is returned in the result for the status
middleware to translate.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any, NamedTuple

from pymilvus.grpc_gen import milvus_pb2

from ._models import FlushRequest, FlushResult, Pause, Status, result_from_proto

__all__ = ["FLUSH", "GET_FLUSH_STATE", "Call", "flush_flow"]

FLUSH = "Flush"
GET_FLUSH_STATE = "GetFlushState"

#: The first poll of GetFlushState comes right after the Flush RPC; between later polls
#: the pause starts here and grows by POLL_GROWTH up to POLL_MAX (pymilvus sleeps 0.5 s).
POLL_FIRST = 0.005
POLL_GROWTH = 1.5
POLL_MAX = 0.25


class Call(NamedTuple):
    """An RPC for the driver to perform: ``method`` with ``message`` for ``request``."""

    method: str
    message: Any
    request: FlushRequest


def flush_flow(request: FlushRequest) -> Generator[Call | Pause, Any, FlushResult]:
    response = yield Call(
        FLUSH,
        milvus_pb2.FlushRequest(db_name=request.db_name, collection_names=request.collection_names),
        request,
    )
    status = Status.from_proto(response.status)
    if not status.ok or not request.wait:
        return result_from_proto(response, request, status, persisted=False)
    failure = yield from _wait_until_persisted(request, response)
    if failure is not None:
        return result_from_proto(response, request, failure, persisted=False)
    return result_from_proto(response, request, status, persisted=True)


def _wait_until_persisted(
    request: FlushRequest, response: Any
) -> Generator[Call | Pause, Any, Status | None]:
    """Poll GetFlushState for every collection until all report flushed.

    Returns ``None`` when they have, or the first status that is not OK. The pauses never
    reach past the request's deadline; the driver fails the next call once it has passed.
    """
    pending = [
        milvus_pb2.GetFlushStateRequest(
            segmentIDs=response.coll_segIDs[name].data if name in response.coll_segIDs else (),
            flush_ts=response.coll_flush_ts.get(name, 0),
            db_name=request.db_name,
            collection_name=name,
        )
        for name in request.collection_names
    ]
    pause = POLL_FIRST
    while True:
        still_pending = []
        for message in pending:
            state = yield Call(GET_FLUSH_STATE, message, request)
            status = Status.from_proto(state.status)
            if not status.ok:
                return status
            if not state.flushed:
                still_pending.append(message)
        if not still_pending:
            return None
        pending = still_pending
        if request.deadline is None:
            yield Pause(pause)
        else:
            yield Pause(min(pause, max(request.deadline - time.monotonic(), 0.0)))
        pause = min(pause * POLL_GROWTH, POLL_MAX)
