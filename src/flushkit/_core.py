"""The core flush: a Flush RPC per collection at the moment its lane allows, then
optionally waiting until the sealed segments persist.

The core is a flow like a middleware's, but it yields the effects of
:mod:`flushkit._effects` (RPCs, shared RPCs to start, waits for the call's bell) and
:class:`~flushkit.Pause`\\ s between polls, which the drivers perform. What to do next is
the lanes' answer (:mod:`flushkit._lanes`): a throttled answer makes the call wait for
its collection's next slot and try again, within its budget; a call whose budget ends
before that slot fails at once with :class:`~flushkit.RateLimitedError`. The core never
raises for any other Milvus status: a status that is not OK is returned in the result
for the status middleware to translate.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Generator
from typing import Any

from pymilvus.grpc_gen import milvus_pb2

from ._effects import FLUSH, GET_FLUSH_STATE, LIST_DATABASES, Await, Call, Start
from ._exceptions import (
    CollectionNotFoundError,
    FlushError,
    RateLimitedError,
    error_class_for,
    rate_limited_error,
    timeout_error,
)
from ._lanes import Lanes, Lead, Plan, Refuse, Share, Ticket, answered
from ._models import FlushRequest, FlushResult, Pause, Status, merged_result, result_from_proto

__all__ = ["flush_flow", "poll_pause", "wait_until_persisted"]

#: The first poll of GetFlushState comes right after the Flush RPC; the pause before each
#: later one is POLL_SHARE of the time waited so far, at least POLL_MIN and at most
#: POLL_MAX: a wait ends at most 15% (plus a poll) after the server reports the segments
#: persisted, whenever that is (pymilvus sleeps 0.5 s between polls).
POLL_MIN = 0.01
POLL_SHARE = 0.15
POLL_MAX = 0.25

Effects = Generator[Call | Start | Await | Pause, Any, FlushResult]


def flush_flow(request: FlushRequest, *, lanes: Lanes) -> Effects:
    """Flush ``request``'s collections, each when its lane lets it go."""
    plan = lanes.plan(request)
    try:
        lead = plan.first
        if lead is not None:  # the usual call: its own Flush at once, then likely done
            plan.first = None
            try:
                response = yield Call(FLUSH, _flush_message(request), request)
            except BaseException as exc:
                _own_flush_failed(plan, lead, exc)
            else:
                plan.answered(lead.tickets, response, None)
        if not plan.all_answered():
            yield from _flush_all(request, plan)
        answers = _answers(request, plan)
        if request.wait or _may_name_a_missing_database(request, answers):
            result = yield from _result(request, answers)
        else:
            result = _result_of(request, answers)
    except FlushError as error:
        error.throttled = plan.throttled()
        error.paced = plan.paced
        raise
    finally:
        plan.leave()
        _link_senders(request, plan)
    throttled = plan.throttled()
    if throttled or plan.paced:
        return dataclasses.replace(result, throttled=throttled, paced=plan.paced)
    return result


def _own_flush_failed(plan: Plan, lead: Lead, exc: BaseException) -> None:
    """The call's own Flush for ``lead`` raised ``exc``: raises it again unless the
    server throttled it (gRPC RESOURCE_EXHAUSTED), in which case the call tries again at
    the next slot."""
    plan.answered(lead.tickets, None, exc if isinstance(exc, Exception) else None)
    if not isinstance(exc, RateLimitedError):
        raise exc


def _flush_all(request: FlushRequest, plan: Plan) -> Generator[Any, Any, None]:
    """Get every collection of ``request`` flushed, adding the seconds spent waiting for
    a slot to ``plan.paced`` (an error on the way keeps them)."""
    announced: float | None = None
    deadline = request.deadline
    while True:
        for ticket in plan.tickets:
            if ticket.error is not None:
                ticket.outcome()  # raises it: no need to wait for the others
        now = time.monotonic()
        step = plan.next(now)
        if step is None:
            return
        if isinstance(step, Lead):
            led = request
            if len(step.names) < len(request.collection_names):
                led = request.replace(collection_names=step.names)
            try:
                response = yield Call(FLUSH, _flush_message(led), led)
            except BaseException as exc:
                _own_flush_failed(plan, step, exc)
                continue
            plan.answered(step.tickets, response, None)
            if plan.all_answered():  # the usual end: no need to ask the lanes again
                return
        elif isinstance(step, Share):
            call = Call(FLUSH, _flush_message(step.request), step.request)
            try:
                future = yield Start(call, functools.partial(answered, step.round))
            except BaseException:
                plan.unsend(step.round)
                raise
            plan.started(step.round, future)
        elif isinstance(step, Refuse):
            if deadline is not None and now >= deadline:
                raise timeout_error(request, "waiting for the server to admit a flush")
            raise rate_limited_error(
                request, step.ticket.name, step.retry_after, step.status, step.exhausted
            )
        else:
            if deadline is not None and now >= deadline:
                raise timeout_error(request, "waiting for its turn to flush")
            until = step.until
            if deadline is not None and (until is None or deadline < until):
                until = deadline
            if step.paced and step.until != announced:
                announced = step.until
                _announce_pacing(request, step.until - now if step.until else 0.0)
            yield Await(plan.bell, until)
            if step.paced:
                plan.paced += time.monotonic() - now


def _link_senders(request: FlushRequest, plan: Plan) -> None:
    """Link the call's span to the spans of the calls that sent its shared Flushes: their
    contexts, not this call's, reached the server."""
    if request.trace is None:
        return
    for ticket in plan.tickets:
        if ticket.sent_by is not None:
            request.trace.span.add_link(
                ticket.sent_by.span.get_span_context(), {"flushkit.link": "shared flush"}
            )


def _announce_pacing(request: FlushRequest, seconds: float) -> None:
    if request.trace is not None:
        request.trace.span.add_event("flushkit.paced", {"flushkit.paced.wait_s": seconds})


#: One answer of a call: a response, the request part it answers, its status, shared.
Answer = tuple[Any, FlushRequest, Status, bool]


def _answers(request: FlushRequest, plan: Plan) -> list[Answer]:
    """The call's answers, one per Flush response (raises a collection's error)."""
    tickets = plan.tickets
    if len(tickets) == 1:
        ticket = tickets[0]
        response = ticket.outcome()
        return [(response, request, _status_of(ticket), ticket.coalesced)]
    groups: list[tuple[Any, list[str], Ticket]] = []  # a response, its collections
    for ticket in tickets:
        response = ticket.outcome()
        for group in groups:
            if group[0] is response:
                group[1].append(ticket.name)
                break
        else:
            groups.append((response, [ticket.name], ticket))
    answers = []
    for response, names, first in groups:
        part = request
        if len(names) < len(request.collection_names):
            part = request.replace(collection_names=tuple(names))
        answers.append((response, part, _status_of(first), first.coalesced))
    return answers


def _status_of(ticket: Ticket) -> Status:
    """The status of the ticket's answer (made with it, once per Flush answer)."""
    assert ticket.status is not None
    return ticket.status


def _may_name_a_missing_database(request: FlushRequest, answers: list[Answer]) -> bool:
    """Whether a "collection not found" answer needs a look at the server's databases."""
    if request.db_name == "default":
        return False
    return any(error_class_for(status) is CollectionNotFoundError for _, _, status, _ in answers)


def _result(request: FlushRequest, answers: list[Answer]) -> Generator[Any, Any, FlushResult]:
    """The call's result from its answers, after a look at the server's databases when a
    collection was not found, and after the wait if the call asked for it."""
    if _may_name_a_missing_database(request, answers):
        for i, (response, part, status, coalesced) in enumerate(answers):
            if error_class_for(status) is CollectionNotFoundError:
                missing = yield from _database_missing(request, status)
                if missing is not None:
                    answers[i] = (response, part, missing, coalesced)
    failed = any(not status.ok for _, _, status, _ in answers)
    if not request.wait or failed:
        return _result_of(request, answers)
    parts = []
    for response, part, status, coalesced in answers:
        persisted = False
        if not failed:  # after a failed wait, the other collections are not waited for
            failure = yield from wait_until_persisted(part, response)
            if failure is not None:
                status, failed = failure, True
            else:
                persisted = True
        parts.append(result_from_proto(response, part, status, persisted, coalesced))
    return parts[0] if len(parts) == 1 else merged_result(request, parts)


def _result_of(request: FlushRequest, answers: list[Answer]) -> FlushResult:
    """The result of a call that did not wait for persistence."""
    parts = [
        result_from_proto(response, part, status, False, coalesced)
        for response, part, status, coalesced in answers
    ]
    return parts[0] if len(parts) == 1 else merged_result(request, parts)


def _database_missing(
    request: FlushRequest, status: Status
) -> Generator[Call, Any, Status | None]:
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


def _flush_message(request: FlushRequest) -> Any:
    return milvus_pb2.FlushRequest(
        db_name=request.db_name, collection_names=request.collection_names
    )


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
