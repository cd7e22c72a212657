"""The core flush: ask the scheduler when and with whom to flush, call Flush, then
(``wait=True``) poll GetFlushState until the sealed segments persist or the budget ends.

The core is a flow like a middleware's, but what it yields are effects
(:mod:`flushkit._effects`), decided by the connection's scheduler
(:mod:`flushkit._scheduler`): the call's own Flush, a shared round's Flush to start, a
wait for the call's bell; and :class:`~flushkit.Pause`\\ s between polls. The drivers
perform them. A throttled answer makes the call wait for its collection's next slot and
try again, within its budget; a call whose budget ends before that slot fails at once
with :class:`~flushkit.RateLimitedError`. The core never raises for any other Milvus
status: a status that is not OK is returned in the result for the status middleware to
translate.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

from pymilvus.grpc_gen import milvus_pb2

from ._effects import FLUSH, GET_FLUSH_STATE, LIST_DATABASES, Call, Start, Wait
from ._exceptions import CollectionNotFoundError, FlushError, RateLimitedError, error_class_for
from ._models import FlushRequest, FlushResult, Pause, Status, merged_result, result_from_proto
from ._scheduler import Answer, FlushScheduler, Turn

__all__ = ["POLL_MAX", "POLL_MIN", "POLL_SHARE", "flush_flow", "poll_pause", "wait_until_persisted"]

#: The first poll of GetFlushState comes right after the Flush RPC; the pause before each
#: later one is POLL_SHARE of the time waited so far, at least POLL_MIN and at most
#: POLL_MAX: a wait ends at most 15% (plus a poll) after the server reports the segments
#: persisted, whenever that is (pymilvus sleeps 0.5 s between polls).
POLL_MIN = 0.01
POLL_SHARE = 0.15
POLL_MAX = 0.25

Effects = Generator[Call | Start | Wait | Pause, Any, FlushResult]


def flush_flow(request: FlushRequest, *, scheduler: FlushScheduler) -> Effects:
    """Flush ``request``'s collections, each when the scheduler lets it go."""
    turn = scheduler.join(request)
    announced: float | None = None
    flushing = paced = persisting = 0.0
    try:
        while (effect := turn.next()) is not None:
            began = time.monotonic()
            if isinstance(effect, Call):
                if effect.method == FLUSH:  # the call's own Flush
                    try:
                        response = yield effect
                    except Exception as exc:
                        turn.answered(None, exc)
                        if not isinstance(exc, RateLimitedError):  # gRPC RESOURCE_EXHAUSTED
                            raise
                    else:
                        turn.answered(response, None)
                    flushing += time.monotonic() - began
                    continue
                try:  # a look for another client's Flush, while it waits for a slot
                    response = yield effect
                except FlushError as exc:
                    turn.probed(None, exc)
                else:
                    turn.probed(response, None)
                paced += time.monotonic() - began
            elif isinstance(effect, Start):  # a shared round's Flush, owned by no caller
                try:
                    handle = yield effect
                except BaseException:
                    turn.unsend(effect.round)
                    raise
                turn.started(effect.round, handle)
            else:
                if effect.slot is not None and effect.slot != announced:
                    announced = effect.slot
                    _announce_pacing(request, effect.slot - began)
                yield effect
                if effect.slot is None:  # a shared Flush in flight, or held behind one
                    flushing += time.monotonic() - began
                else:
                    paced += time.monotonic() - began
        answers = turn.answers()
        if request.wait or (request.db_name != "default" and _may_name_a_missing_database(answers)):
            began = time.monotonic()
            result = yield from _result(request, answers)
            persisting = time.monotonic() - began
            if result.persisted and result.satisfied_by != "covered":
                scheduler.persisted(persisting)
        elif len(answers) == 1:
            response, _, status, how = answers[0]
            result = result_from_proto(response, request, status, how == "covered", how)
        else:
            result = _result_of(request, answers)
    except FlushError as error:
        error.throttled = turn.throttled
        error.paced = paced
        raise
    finally:
        turn.leave()
        if request.trace is not None:
            _link_senders(request, turn)
    result.__dict__.update(
        throttled=turn.throttled, paced=paced, flushing=flushing, persisting=persisting
    )
    return result


def _link_senders(request: FlushRequest, turn: Turn) -> None:
    """Link the call's span to the spans of the calls that sent its shared Flushes: their
    contexts, not this call's, reached the server."""
    assert request.trace is not None
    for ticket in turn.tickets:
        if ticket.sent_by is not None:
            request.trace.span.add_link(
                ticket.sent_by.span.get_span_context(), {"flushkit.link": "shared flush"}
            )


def _announce_pacing(request: FlushRequest, seconds: float) -> None:
    if request.trace is not None:
        request.trace.span.add_event("flushkit.paced", {"flushkit.paced.wait_s": seconds})


def _may_name_a_missing_database(answers: list[Answer]) -> bool:
    """Whether a "collection not found" answer (outside the default database) needs a
    look at the server's databases."""
    return any(error_class_for(status) is CollectionNotFoundError for _, _, status, _ in answers)


def _result(request: FlushRequest, answers: list[Answer]) -> Generator[Any, Any, FlushResult]:
    """The call's result from its answers, after a look at the server's databases when a
    collection was not found, and after the wait if the call asked for it."""
    if request.db_name != "default" and _may_name_a_missing_database(answers):
        for i, (response, part, status, how) in enumerate(answers):
            if error_class_for(status) is CollectionNotFoundError:
                missing = yield from _database_missing(request, status)
                if missing is not None:
                    answers[i] = (response, part, missing, how)
    failed = False
    for _, _, status, _ in answers:
        failed = failed or not status.ok
    if not request.wait or failed:
        return _result_of(request, answers)
    parts = []
    for response, part, status, how in answers:
        persisted = how == "covered"  # another client's Flush persisted it
        if not failed and not persisted:  # after a failed wait, no other collection waits
            failure = yield from wait_until_persisted(part, response)
            if failure is not None:
                status, failed = failure, True
            else:
                persisted = True
        parts.append(result_from_proto(response, part, status, persisted, how))
    return parts[0] if len(parts) == 1 else merged_result(request, parts)


def _result_of(request: FlushRequest, answers: list[Answer]) -> FlushResult:
    """The result of a call that did not wait for persistence."""
    parts = [
        result_from_proto(response, part, status, how == "covered", how)
        for response, part, status, how in answers
    ]
    return parts[0] if len(parts) == 1 else merged_result(request, parts)


def _database_missing(request: FlushRequest, status: Status) -> Generator[Call, Any, Status | None]:
    """Whether a "collection not found" means that the database does not exist (Milvus
    2.3 answers a Flush in a missing database so; 2.4 and newer answer code 800): asks
    the server's database list. Returns the status to report (code 800), or None when
    the database exists or the server cannot say."""
    try:
        listed = yield Call(LIST_DATABASES, milvus_pb2.ListDatabasesRequest(), request)
    except FlushError:
        return None
    if not Status.from_proto(listed.status).ok or request.db_name in listed.db_names:
        return None
    return Status(
        code=800,
        error_code=status.error_code,
        reason=f"database not found[database={request.db_name}] ({status.reason})",
        legacy_code=status.legacy_code,
    )


def wait_until_persisted(
    request: FlushRequest, response: Any
) -> Generator[Call | Pause, Any, Status | None]:
    """Poll GetFlushState for every collection until all report flushed.

    Returns ``None`` when they have, or the first status that is not OK. The pauses never
    reach past the request's deadline; the driver fails the next call once it has passed.
    """
    pending = []
    for name in request.collection_names:
        segments = response.coll_segIDs[name].data if name in response.coll_segIDs else ()
        pending.append(
            milvus_pb2.GetFlushStateRequest(
                segmentIDs=segments,
                flush_ts=response.coll_flush_ts.get(name, 0),
                db_name=request.db_name,
                collection_name=name,
            )
        )
    began = time.monotonic()
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
        now = time.monotonic()
        pause = poll_pause(now - began)
        if request.deadline is not None:
            pause = min(pause, max(request.deadline - now, 0.0))
        yield Pause(pause)


def poll_pause(waited: float) -> float:
    """The pause before the next GetFlushState poll, ``waited`` seconds into the wait."""
    return min(max(POLL_SHARE * waited, POLL_MIN), POLL_MAX)
