"""The core flush: the Flush RPC, then optionally waiting until the segments persist.

The core is a flow like a middleware's, but it yields :class:`Call` effects, which the
drivers perform over gRPC, :class:`Pause` effects between polls, and, when the call is
coalesced (:mod:`flushkit._coalescing`), :class:`Await` effects for the shared RPCs it
joined. It never raises for a Milvus status: a status that is not OK is returned in the
result for the status middleware to translate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, NamedTuple

from pymilvus.grpc_gen import milvus_pb2

from ._models import FlushRequest, FlushResult, Pause, Status, merged_result, result_from_proto

if TYPE_CHECKING:
    from ._coalescing import Lanes, Ticket

__all__ = ["FLUSH", "GET_FLUSH_STATE", "Await", "Call", "flush_flow", "wait_until_persisted"]

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


class Await(NamedTuple):
    """Wait for the shared rounds of ``tickets`` within ``request``'s deadline; the driver
    answers with their results (or raises the first error)."""

    tickets: tuple[Ticket, ...]
    request: FlushRequest


Effects = Generator[Call | Await | Pause, Any, FlushResult]


def flush_flow(request: FlushRequest, *, lanes: Lanes) -> Effects:
    """Flush ``request``'s collections, through ``lanes`` when it asks to be coalesced."""
    if not request.coalesce:
        return (yield from _flush_and_wait(request, _nothing))
    membership = lanes.join(request)
    try:
        parts: list[FlushResult] = []
        if membership.led:  # lanes with nothing in flight: this call sends their Flush
            led = request
            if len(membership.led) < len(request.collection_names):
                led = request.replace(collection_names=membership.led)
            part = yield from _flush_and_wait(led, membership.flushed)
            if not membership.tickets:
                return part
            if not part.status.ok:
                return merged_result(request, [part])
            parts.append(part)
        parts.extend((yield Await(membership.tickets, request)))
        return merged_result(request, parts)
    finally:
        membership.leave()


def _nothing() -> None:
    pass


def _flush_and_wait(
    request: FlushRequest, flushed: Callable[[], None]
) -> Generator[Call | Pause, Any, FlushResult]:
    """One Flush RPC for ``request`` (``flushed`` runs once it has ended), then the wait."""
    try:
        response = yield Call(
            FLUSH,
            milvus_pb2.FlushRequest(
                db_name=request.db_name, collection_names=request.collection_names
            ),
            request,
        )
    finally:
        flushed()
    status = Status.from_proto(response.status)
    if not status.ok or not request.wait:
        return result_from_proto(response, request, status, persisted=False)
    failure = yield from wait_until_persisted(request, response)
    if failure is not None:
        return result_from_proto(response, request, failure, persisted=False)
    return result_from_proto(response, request, status, persisted=True)


def wait_until_persisted(
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
