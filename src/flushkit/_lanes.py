"""Lanes: which Flush RPC serves which call, and when it may go. Bookkeeping only.

A flush seals everything written before it, so flushes of one collection that wait for
the same moment can all be served by one Flush, as a database's group commit serves many
transactions with one disk write. A **lane** per (server, credential, database,
collection) holds:

* its **pacing** (:class:`~flushkit._pacing.Pace`): when the server will next admit a
  Flush of the collection, learned from throttled and admitted answers;
* its **gathering round**: the calls waiting for the lane's next Flush. The round goes
  when its slot has come and the lane has no Flush in flight, or the one in flight has
  taken :data:`HOLD_FACTOR` times the server's usual Flush latency (between
  :data:`HOLD_MIN` and :data:`HOLD_MAX`): a Flush that hangs holds nobody for long;
* how many of its Flush RPCs are in flight.

A call takes a :class:`Ticket` per collection (:meth:`Lanes.plan`) and asks its
:class:`Plan` what to do next (:meth:`Plan.next`): lead (send its own Flush when it is
alone in a round that may go), start a shared round's Flush (a gRPC future owned by no
caller, so that a member leaving does not end it for the others), give up at once when
its budget ends before the slot, or wait for its bell. The core flush
(:mod:`flushkit._core`) turns those answers into effects for its driver; nothing here
performs I/O, sleeps or starts an RPC. A throttled answer sends the round's members back
to the lane's gathering round, to go at the next slot; any other answer is theirs.

Calls with ``coalesce=False`` get private rounds: paced like the others, never shared,
never held back by another call's Flush.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Hashable
from typing import Any, NamedTuple

from ._effects import Bell
from ._exceptions import FlushError, RateLimitedError
from ._models import FlushRequest, Status, Trace
from ._pacing import Pace, is_throttled

__all__ = [
    "HOLD_FACTOR",
    "HOLD_MAX",
    "HOLD_MIN",
    "Lanes",
    "Plan",
    "Ticket",
    "answered",
    "forget",
    "lanes_in_use",
]

#: Calls queued behind a Flush that has been in flight HOLD_FACTOR times the server's
#: usual Flush latency (an average of its answers), at least HOLD_MIN and at most
#: HOLD_MAX seconds (HOLD_MAX while no answer has been timed), send their own round: a
#: hanging Flush holds the calls behind it that long at most.
HOLD_FACTOR = 4.0
HOLD_MIN = 0.05
HOLD_MAX = 1.0
#: The weight of a new answer in a server's usual Flush latency.
_LATENCY_WEIGHT = 0.2

# One lock guards every lane, round and ticket: the sections it covers are short and
# never perform I/O.
_lock = threading.Lock()
_lanes: dict[Hashable, _Lane] = {}
#: Each server identity's usual Flush latency, in seconds.
_latencies: dict[Hashable, float] = {}
# Lanes whose pacing is worth nothing are dropped when idle; lanes that remember a recent
# admission are swept once the process holds this many (it then doubles).
_SWEEP_FLOOR = 1024
_SWEEP_AT = _SWEEP_FLOOR


class Lanes:
    """One flusher's way into the process's lanes.

    ``identity`` says which calls may share an RPC (same server, same credential);
    ``interval`` is the flusher's ``flush_interval``, the least time between two Flushes
    of one collection (0: learn it from the server).
    """

    __slots__ = ("identity", "interval")

    def __init__(self, identity: Hashable, interval: float = 0.0) -> None:
        self.identity = identity
        self.interval = interval

    def plan(self, request: FlushRequest) -> Plan:
        """Take ``request``'s place in the lane of each of its collections."""
        bell = Bell()
        tickets = []
        with _lock:
            for name in request.collection_names:
                key = (self.identity, request.db_name, name)
                lane = _lanes.get(key)
                if lane is None:
                    if len(_lanes) >= _SWEEP_AT:
                        _sweep(request.started)
                    lane = _lanes[key] = _Lane(key)
                if self.interval:
                    lane.pace.seed(self.interval)
                tickets.append(Ticket(lane, name, request, bell))
            plan = Plan(request, tickets, bell)
            if len(tickets) == 1:  # the usual call: one collection, often an idle lane
                plan.first = _lead_at_once(tickets[0], request.deadline)
        return plan


class Lead(NamedTuple):
    """Send your own Flush of ``names`` now (each ticket is alone in its round)."""

    tickets: tuple[Ticket, ...]
    names: tuple[str, ...]


class Share(NamedTuple):
    """Start ``round``'s Flush (with ``request``) as an RPC owned by no caller."""

    round: _Round
    request: FlushRequest


class Refuse(NamedTuple):
    """The budget ends before the slot of ``ticket``'s collection, ``retry_after`` away;
    ``status`` is the last throttled answer (None: none, or gRPC RESOURCE_EXHAUSTED)."""

    ticket: Ticket
    retry_after: float
    status: Status | None
    exhausted: bool


class Sleep(NamedTuple):
    """Wait for the bell until ``until`` (None: the bell only); ``paced`` if for a slot."""

    until: float | None
    paced: bool


Step = Lead | Share | Refuse | Sleep | None


class Plan:
    """One call's tickets, and what the call should do next (``None``: all answered)."""

    __slots__ = ("bell", "first", "paced", "request", "tickets")

    def __init__(self, request: FlushRequest, tickets: list[Ticket], bell: Bell) -> None:
        self.request = request
        self.tickets = tuple(tickets)
        self.bell = bell
        #: Seconds the call has waited for its collections' slots.
        self.paced = 0.0
        #: The first step, decided when the plan was made (a lone call on an idle lane).
        self.first: Lead | None = None

    def next(self, now: float) -> Step:
        first = self.first
        if first is not None:
            self.first = None
            return first
        deadline = self.request.deadline
        lead: list[Ticket] = []
        until: float | None = None
        paced = False
        with _lock:
            for ticket in self.tickets:
                round_ = ticket.round
                if round_ is None or round_.sent:  # answered, or its Flush is in flight
                    continue
                lane = round_.lane
                slot = lane.pace.slot
                if deadline is not None and slot > deadline:
                    pace = lane.pace
                    exhausted = pace.last_status is None and pace.backoff > 0
                    return Refuse(ticket, slot - now, pace.last_status, exhausted)
                ready = slot
                if not round_.private and lane.in_flight:
                    ready = max(ready, lane.newest_start + _hold(lane.identity))
                if ready > now:
                    if until is None or ready < until:
                        until, paced = ready, slot > now
                    continue
                if len(round_.members) == 1:
                    lead.append(ticket)
                    continue
                round_.send(ticket, now)
                return Share(round_, _shared_request(round_, now))
            if lead:
                for ticket in lead:
                    assert ticket.round is not None
                    ticket.round.send(ticket, now)
                names = tuple(ticket.name for ticket in lead)
                return Lead(tuple(lead), names)
            if all(ticket.round is None for ticket in self.tickets):
                return None
        return Sleep(until, paced)

    def throttled(self) -> int:
        """Throttled answers to Flush RPCs the call sent."""
        count = 0
        for ticket in self.tickets:
            count += ticket.throttled
        return count

    def all_answered(self) -> bool:
        """Whether every collection of the call has its answer (a ticket, once answered,
        stays so: no lock needed)."""
        for ticket in self.tickets:  # noqa: SIM110 (on every call's path: all() costs more)
            if ticket.round is not None:
                return False
        return True

    def answered(
        self, tickets: tuple[Ticket, ...], response: Any, error: BaseException | None
    ) -> None:
        """The call's own Flush for ``tickets`` ended (``(None, None)``: cancelled). The
        call's own bell is not rung: it is not waiting, it asks its plan next."""
        for ticket in tickets:
            if ticket.round is not None:
                answered(ticket.round, response, error, self.bell)

    def started(self, round_: _Round, future: Any) -> None:
        """The shared round's RPC is in flight as ``future``."""
        with _lock:
            abandoned = not round_.members and round_.sent
            round_.future = future
        if abandoned:
            future.cancel()

    def unsend(self, round_: _Round) -> None:
        """Starting the shared round failed: put it back for another member to send."""
        bells = []
        with _lock:
            if round_.sent and round_.answered is False:
                lane = round_.lane
                lane.in_flight -= 1
                round_.sent = False
                _regather(round_)
                bells = _bells(lane)
        for bell in bells:
            bell.ring()

    def leave(self) -> None:
        """The call is over: give up its places (an answered ticket gave up its own when
        answered); a shared RPC nobody waits for is cancelled."""
        if self.first is None and self.all_answered():
            return  # the usual end: nothing left to give up
        futures = []
        with _lock:
            now = time.monotonic()
            if self.first is not None:  # decided, never sent: the lane is not in flight
                self.first = None
                for ticket in self.tickets:
                    if ticket.round is not None and ticket.round.sent:
                        ticket.round.sent = False
                        ticket.lane.in_flight -= 1
            for ticket in self.tickets:
                round_ = ticket.round
                if round_ is None:
                    continue
                ticket.round = None
                lane = ticket.lane
                lane.users -= 1
                if ticket in round_.members:
                    round_.members.remove(ticket)
                    if not round_.members:
                        if not round_.sent and lane.gathering is round_:
                            lane.gathering = None
                        elif round_.sent and round_.future is not None:
                            futures.append(round_.future)
                _forget_if_idle(lane, now)
        for future in futures:
            future.cancel()


class Ticket:
    """A call's place in one collection's lane, and in the end its answer."""

    __slots__ = (
        "bell",
        "coalesced",
        "deadline",
        "error",
        "lane",
        "name",
        "response",
        "round",
        "sent_by",
        "status",
        "throttled",
        "trace",
    )

    def __init__(self, lane: _Lane, name: str, request: FlushRequest, bell: Bell) -> None:
        self.lane = lane
        self.name = name
        self.deadline = request.deadline
        self.bell = bell
        self.response: Any = None
        #: The response's status (``Status.from_proto``, made once per answer).
        self.status: Status | None = None
        self.error: BaseException | None = None
        self.coalesced = False
        #: Throttled answers to Flush RPCs this call sent for this collection.
        self.throttled = 0
        self.trace = request.trace
        #: The trace of the call that sent the Flush that answered this ticket, when
        #: another call sent it.
        self.sent_by: Trace | None = None
        lane.users += 1
        if request.coalesce:
            if lane.gathering is None:
                lane.gathering = _Round(lane, request, private=False)
            self.round: _Round | None = lane.gathering
        else:
            self.round = _Round(lane, request, private=True)
        self.round.members.append(self)

    def outcome(self) -> Any:
        """The Flush response for this collection, or raises this caller's error."""
        if self.error is not None:
            error = self.error
            if isinstance(error, FlushError) and self.coalesced:
                error = copy.copy(error)  # each caller its own
                error.coalesced = True
            raise error
        return self.response


class _Lane:
    """One (server, credential, database, collection)."""

    __slots__ = ("gathering", "identity", "in_flight", "key", "newest_start", "pace", "users")

    def __init__(self, key: tuple[Hashable, str, str]) -> None:
        self.key = key
        self.identity = key[0]
        self.pace = Pace()
        self.gathering: _Round | None = None
        self.in_flight = 0
        self.newest_start = 0.0
        self.users = 0


class _Round:
    """The calls one Flush RPC of one collection serves."""

    __slots__ = (
        "answered",
        "future",
        "lane",
        "members",
        "private",
        "sender",
        "sent",
        "shared",
        "started",
        "template",
    )

    def __init__(self, lane: _Lane, template: FlushRequest, *, private: bool) -> None:
        self.lane = lane
        self.template = template
        self.private = private
        self.members: list[Ticket] = []
        self.sent = False
        self.answered = False
        self.shared = False
        self.sender: Ticket | None = None
        self.future: Any = None
        self.started = 0.0

    def send(self, sender: Ticket, now: float) -> None:
        """Mark the round in flight (under the lock)."""
        lane = self.lane
        if lane.gathering is self:
            lane.gathering = None
        self.sent = True
        self.sender = sender
        self.shared = len(self.members) > 1
        self.started = now
        lane.in_flight += 1
        lane.newest_start = now


def _lead_at_once(ticket: Ticket, deadline: float | None) -> Lead | None:
    """The step :meth:`Plan.next` would take at once for a call's only ticket when its
    lane lets it send its own Flush now (under the lock); None otherwise."""
    round_ = ticket.round
    assert round_ is not None
    lane = round_.lane
    now = time.monotonic()
    slot = lane.pace.slot
    if slot > now or (deadline is not None and slot > deadline) or len(round_.members) != 1:
        return None
    if lane.in_flight and not round_.private:
        return None  # queued behind the lane's Flush in flight: Plan.next decides
    round_.send(ticket, now)
    return Lead((ticket,), (ticket.name,))


def _shared_request(round_: _Round, now: float) -> FlushRequest:
    """The shared Flush's request: one collection, the latest of its members' deadlines."""
    deadlines = [ticket.deadline for ticket in round_.members]
    latest = None if None in deadlines else max(d for d in deadlines if d is not None)
    assert round_.sender is not None
    return round_.template.replace(
        collection_names=(round_.members[0].name,),
        timeout=None,
        started=now,
        deadline=latest,
        coalesce=True,
        trace=round_.sender.trace,  # the sending call's context reaches the server
    )


def answered(
    round_: _Round, response: Any, error: BaseException | None, awake: Bell | None = None
) -> None:
    """A round's Flush ended (for a shared round, on gRPC's thread): a throttled answer
    sends its members back to wait for the next slot, any other answer is theirs; the
    calls waiting for the lane are rung (but ``awake``, the bell of the call that got
    the answer itself)."""
    status = None if response is None else Status.from_proto(response.status)
    now = time.monotonic()
    with _lock:
        if round_.answered:
            return
        round_.answered = True
        lane = round_.lane
        lane.in_flight -= 1
        if response is not None:
            _timed(lane.identity, now - round_.started)
        if (status is not None and is_throttled(status)) or isinstance(error, RateLimitedError):
            lane.pace.throttled(now, status)
            if round_.sender is not None and round_.sender in round_.members:
                round_.sender.throttled += 1
            bells = [ticket.bell for ticket in round_.members]
            _regather(round_)
        else:
            if status is not None:
                lane.pace.admitted(now)
            bells = []
            sender = round_.sender
            for ticket in round_.members:
                ticket.response, ticket.error, ticket.status = response, error, status
                ticket.coalesced = round_.shared
                if sender is not None and sender.bell is not ticket.bell:
                    ticket.sent_by = sender.trace
                lane.users -= 1  # answered: the ticket leaves the lane (before its round
                ticket.round = None  # is None, which Plan.leave reads without the lock)
                bells.append(ticket.bell)
            round_.members = []
        bells.extend(_bells(lane))
        _forget_if_idle(lane, now)
    for bell in bells:
        if bell is not awake:
            bell.ring()


def _hold(identity: Hashable) -> float:
    """How long a Flush of this server may hold the calls queued behind it."""
    latency = _latencies.get(identity)
    if latency is None:
        return HOLD_MAX
    return min(max(HOLD_FACTOR * latency, HOLD_MIN), HOLD_MAX)


def _timed(identity: Hashable, seconds: float) -> None:
    """A Flush of this server was answered after ``seconds`` (under the lock)."""
    latency = _latencies.get(identity)
    if latency is None:
        _latencies[identity] = seconds
    else:
        _latencies[identity] = latency + _LATENCY_WEIGHT * (seconds - latency)


def _regather(round_: _Round) -> None:
    """Send ``round_``'s members back to wait for the lane's next round (under the lock)."""
    lane = round_.lane
    members, round_.members = round_.members, []
    if not members:
        return
    if round_.private:
        again = _Round(lane, round_.template, private=True)
    else:
        if lane.gathering is None:
            lane.gathering = _Round(lane, round_.template, private=False)
        again = lane.gathering
    for ticket in members:
        ticket.round = again
        again.members.append(ticket)


def _bells(lane: _Lane) -> list[Bell]:
    """The bells of the calls gathering for ``lane``'s next round (under the lock)."""
    gathering = lane.gathering
    return [] if gathering is None else [ticket.bell for ticket in gathering.members]


def _forget_if_idle(lane: _Lane, now: float) -> None:
    idle = not lane.users and not lane.in_flight and lane.pace.neutral(now)
    if idle and _lanes.get(lane.key) is lane:
        del _lanes[lane.key]


def _sweep(now: float) -> None:
    """Drop the idle lanes with nothing worth remembering (under the lock), so that a
    process flushing many collections keeps only the lanes it needs."""
    global _SWEEP_AT
    for lane in list(_lanes.values()):
        _forget_if_idle(lane, now)
    _SWEEP_AT = max(_SWEEP_FLOOR, 2 * len(_lanes))


def forget(address: str | None = None) -> None:
    """Forget the pacing and latency learned for lanes not in use (of one server
    ``address``, or all): for tests that script rate limits and delays, so that one test's
    learning does not carry over."""
    with _lock:
        for identity in list(_latencies):
            server = identity[0] if isinstance(identity, tuple) else None
            if address is None or server == address:
                del _latencies[identity]
        for key, lane in list(_lanes.items()):
            identity = key[0] if isinstance(key, tuple) else None
            server = identity[0] if isinstance(identity, tuple) else None
            if address is not None and server != address:
                continue
            if not lane.users and not lane.in_flight:
                del _lanes[key]


def lanes_in_use() -> list[Hashable]:
    """The lanes some call or RPC still holds (empty once every call has ended)."""
    with _lock:
        return [key for key, lane in _lanes.items() if lane.users or lane.in_flight]
