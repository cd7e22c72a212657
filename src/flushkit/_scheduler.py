"""The flush scheduler: when each Flush of a collection goes, and which calls it serves.

One :class:`FlushScheduler` per connection, created and owned by the transport, as httpx
keeps its connection pool inside its transport: every flusher on one pymilvus client
shares it, another client has its own (between clients and processes, the server
arbitrates). It decides and never performs I/O, sleeps or starts an RPC: what it decides
is an effect (:mod:`flushkit._effects`) that the core flush yields to its driver.

Glossary: one name per idea.

collection
    One (database, collection) of the connection: its pacing and its gathering round.
    Its state lives while a round is in flight or gathering, or while it can still pace
    a call (a slot ahead, an admission or a throttled answer within the server's
    window), and goes when that passes.
round
    The calls one Flush RPC of one collection serves. A call that arrives while the
    collection has a Flush in flight, or waits for its slot, *gathers* in the next round
    (a call joins only an RPC sent after it began). A round is *sent* once and *settled*
    by its answer.
alone
    The usual call: one collection, idle (no Flush in flight, nobody gathering, its slot
    come). It sends its Flush at once, with no round; calls that arrive meanwhile gather
    behind it. A throttled answer makes it gather too, for the next slot.
lead
    A round of one call: the call sends the Flush itself, as its own RPC (its own
    deadline, its own cancellation). One call leads the rounds of all its collections
    that may go at once in one RPC.
shared
    A round of several calls: its Flush is started as an RPC owned by no caller, so that a
    member that leaves (times out, is cancelled) does not end it for the others; once
    every member has left, it is cancelled.
landed
    A shared round's RPC has ended: gRPC's thread (or the event loop's task) stores the
    outcome and rings the members' bells, nothing more. The first member to look
    settles the round: no scheduler code runs on a gRPC thread.
ticket
    A call's place in one collection's round, and in the end its answer.
turn
    One call's tickets, and the bell it waits on.
slot
    The earliest time the server admits the next Flush of a collection.
interval
    The least time between two admitted Flushes of a collection: ``1 / rate`` of the
    rate a throttled answer names (``rate=0.1``: 10 s), learned once per connection
    (Milvus's limit is one setting for every collection), or seeded with a flusher's
    ``flush_interval`` (the largest seed wins). After an admitted Flush the next slot is
    one interval later: a steady caller meets no throttled answer.
backoff
    How far a throttled answer that the interval cannot explain (another process
    flushed, or no rate named) pushes the slot: doubling from :data:`FIRST_BACKOFF` up
    to the window.
window
    The interval, or :data:`DEFAULT_WINDOW` (Milvus's default) while none is known.
throttled
    A Flush the server refused for its rate limit (code 8 or 4, legacy RateLimit 49, or
    gRPC RESOURCE_EXHAUSTED): its round's members gather again for the next slot.
paced
    The seconds a call waited for its collections' slots.
refused
    A call whose deadline comes before its collection's slot fails at once with
    :class:`~flushkit.RateLimitedError`: nobody can flush before that slot.
hold
    How long a Flush in flight holds the calls gathered behind it before they send the
    next round anyway: :data:`HOLD_FACTOR` times the connection's usual Flush latency,
    within [:data:`HOLD_MIN`, :data:`HOLD_MAX`] (``HOLD_MAX`` until a Flush was timed).
private
    A call with ``coalesce=False`` gets rounds of its own: paced like the others, never
    shared, never held back by another call's Flush.
covered
    A round whose writes another client's Flush persisted: while it waits for its slot,
    the round takes a timestamp T from the server's oracle (``AllocTimestamp``, later
    than every write its calls made) and *probes* ``GetFlushState(flush_ts=T)`` every
    :data:`PROBE_EVERY`; once the server says flushed, its calls are answered with no
    Flush of their own. At its slot, the round *looks* once more before it sends. A
    connection whose server lacks ``AllocTimestamp`` (Milvus Lite) never probes.
estimated
    A slot learned from another client's Flush (an unexplained throttled answer, or a
    covered round): one window after it, plus a random *spread* of up to
    :data:`SPREAD` so that a fleet's processes look one after another; by then the
    server admits a Flush for sure. A call whose deadline comes first sends its Flush
    at its *last chance* (its deadline less the usual time to answer), once.
margin
    The time a call needs after its slot: the connection's usual Flush latency, and its
    usual time to persist for a call that waits. A call whose deadline cannot reach its
    collection's known slot plus the margin is refused at once.
"""

from __future__ import annotations

import collections
import copy
import math
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from pymilvus.grpc_gen import milvus_pb2

from ._effects import ALLOC_TIMESTAMP, FLUSH, GET_FLUSH_STATE, Bell, Call, Start, Wait
from ._exceptions import FlushError, RateLimitedError, rate_limited_error, timeout_error
from ._models import FlushRequest, Status, Trace

__all__ = [
    "DEFAULT_WINDOW",
    "FIRST_BACKOFF",
    "HOLD_FACTOR",
    "HOLD_MAX",
    "HOLD_MIN",
    "PROBE_EVERY",
    "SPREAD",
    "Collection",
    "FlushScheduler",
    "Round",
    "Ticket",
    "Turn",
    "is_throttled",
    "rate_named_in",
]

#: Milvus's default: one Flush per collection every 10 s.
DEFAULT_WINDOW = 10.0
#: The first push of the slot after a throttled answer the interval cannot explain.
FIRST_BACKOFF = 0.25
HOLD_FACTOR = 4.0
HOLD_MIN = 0.05
HOLD_MAX = 1.0
#: The weight of a new answer in the connection's usual Flush latency and persistence.
LATENCY_WEIGHT = 0.2
#: The pause between a waiting round's looks at whether another client's Flush covered
#: it: at most five GetFlushState RPCs a second per waiting collection and connection.
PROBE_EVERY = 0.2
#: The largest random delay added to an estimated slot.
SPREAD = 0.3
#: A call's last chance comes this many margins before its deadline, and at least
#: LAST_CHANCE_MIN seconds before it.
LAST_CHANCE = 2.0
LAST_CHANCE_MIN = 0.1
_OK_STATUS = Status()

_RATE = re.compile(r"rate=([0-9][0-9.eE+-]*)")
#: New codes 4 (too many requests) and 8 (rate limit); legacy 49 (RateLimit).
_THROTTLED_CODES = frozenset({4, 8})
_THROTTLED_LEGACY = 49


def is_throttled(status: Status) -> bool:
    """Whether the server refused the call for its rate limit (not a quota's deny)."""
    if status.code:
        return status.code in _THROTTLED_CODES
    return status.legacy_code == _THROTTLED_LEGACY


def rate_named_in(reason: str) -> float | None:
    """The rate, in calls per second, that a throttled answer's reason names, if any."""
    match = _RATE.search(reason)
    if match is None:
        return None
    try:
        rate = float(match.group(1))
    except ValueError:
        return None
    return rate if math.isfinite(rate) and rate > 0 else None


class FlushScheduler:
    """The rounds and the pacing of one connection's collections (see the module)."""

    __slots__ = (
        "_collections",
        "_expiries",
        "_largest",
        "_latency",
        "_lock",
        "_persist",
        "_seeded",
        "clock",
        "covers",
        "interval",
        "spread",
    )

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        spread: Callable[[], float] | None = None,
    ) -> None:
        #: What the scheduler reads the time from, and draws an estimated slot's
        #: spread (in [0, SPREAD]) from: a test of its decisions passes its own.
        self.clock = clock
        self.spread = spread or _spread
        # One lock for every collection, round and ticket: its sections are short and
        # never perform I/O.
        self._lock = threading.Lock()
        self._collections: dict[tuple[str, str], Collection] = {}
        #: The most collections held since the dict was last made anew (a dict never
        #: gives back the room it grew to: it is copied once it holds far fewer).
        self._largest = 0
        #: (when a collection's pacing stops mattering, the collection), in about that
        #: order: looked at as calls join, so state that carries nothing goes.
        self._expiries: collections.deque[tuple[float, Collection]] = collections.deque()
        #: The connection's usual Flush latency in seconds (None: none timed yet).
        self._latency: float | None = None
        #: The usual time from an admitted Flush's answer to its segments persisted
        #: (None: none timed yet).
        self._persist: float | None = None
        #: The interval: the one learned, at least the largest seed (0: unknown).
        self.interval = 0.0
        self._seeded = 0.0
        #: Whether the server answers AllocTimestamp, so that waiting rounds can probe
        #: (None: not asked yet; False: never again on this connection).
        self.covers: bool | None = None

    def seed(self, interval: float) -> None:
        """A flusher's ``flush_interval``: at least this long between Flushes."""
        with self._lock:
            self._seeded = max(self._seeded, interval)
            self.interval = max(self.interval, interval)

    def persisted(self, seconds: float) -> None:
        """A call waited ``seconds`` for its admitted Flush's segments to persist."""
        with self._lock:
            self._persist = _usual(self._persist, seconds)

    def join(self, request: FlushRequest) -> Turn:
        """Take ``request``'s place in each of its collections: alone at once (``Turn.first``
        is its own Flush) for the usual call, else a ticket in each collection's round."""
        now = self.clock()
        db_name = request.db_name
        names = request.collection_names
        turn = Turn(self, request)
        with self._lock:
            expiries = self._expiries
            if expiries and expiries[0][0] <= now:
                self._expire(now)
            if len(names) == 1:  # the usual call
                state = self._collection(db_name, names[0])
                if state.slot <= now and (
                    not request.coalesce or (state.gathering is None and not state.in_flight)
                ):
                    state.in_flight += 1
                    state.newest_start = now
                    turn.alone = state
                    turn.sent_at = now
                    message = state.message
                    if message is None:  # made once: the usual call sends the same bytes
                        message = state.message = milvus_pb2.FlushRequest(
                            db_name=db_name, collection_names=names
                        )
                    turn.first = Call(FLUSH, message, request)
                else:
                    turn.tickets = [Ticket(turn, state, names[0], request)]
            else:
                turn.tickets = [
                    Ticket(turn, self._collection(db_name, name), name, request) for name in names
                ]
        return turn

    def _collection(self, db_name: str, name: str) -> Collection:
        """The state of a collection, made at its first call (under the lock)."""
        state = self._collections.get((db_name, name))
        if state is None:
            state = self._collections[(db_name, name)] = Collection(
                db_name, name, self._lock, clock=self.clock, spread=self.spread
            )
            if len(self._collections) > self._largest:
                self._largest = len(self._collections)
        return state

    # Everything below runs under the lock.

    def _hold(self) -> float:
        latency = self._latency
        if latency is None:
            return HOLD_MAX
        return min(max(HOLD_FACTOR * latency, HOLD_MIN), HOLD_MAX)

    def _settle(
        self, round_: Round, response: Any, error: BaseException | None, now: float
    ) -> list[Bell]:
        """Record a round's answer: a throttled one sends its members back to gather for
        the next slot, any other is theirs. Returns the bells to ring."""
        round_.settled = True
        state = round_.state
        state.in_flight -= 1
        status = None if response is None else Status.from_proto(response.status)
        if response is not None:
            self._timed(now - round_.started)
        bells: list[Bell] = []
        if (status is None or not status.ok) and _throttled(status, error):
            self._throttled(state, now, status)
            sender = round_.sender
            if sender is not None and sender in round_.members and sender.turn is not None:
                sender.turn.throttled += 1
                sender.turn.throttled_at = now
            bells += _bells_of(round_.members)
            _regather(round_)
        else:
            if status is not None:  # admitted
                self._expires(state, state.admitted(now, self.interval))
            sender = round_.sender
            for ticket in round_.members:
                ticket.response, ticket.error, ticket.status = response, error, status
                ticket.how = "shared" if round_.shared else "flush"
                if sender is not None and sender.turn is not ticket.turn:
                    ticket.sent_by = sender.trace
                ticket.round = None
                state.users -= 1
            if round_.shared:
                bells += _bells_of(round_.members)
            round_.members = []
        gathering = state.gathering
        if gathering is not None:
            bells += _bells_of(gathering.members)
        if not (state.users or state.in_flight or state.expires > now):
            self._drop(state)
        return bells

    def _timed(self, seconds: float) -> None:
        """A Flush was answered after ``seconds``: the usual latency moves towards it."""
        self._latency = _usual(self._latency, seconds)

    def _margin(self, request: FlushRequest) -> float:
        """What a call needs after its slot: a Flush's answer, and its persistence if it
        waits for it."""
        margin = self._latency or 0.0
        return margin + (self._persist or 0.0) if request.wait else margin

    def _throttled(self, state: Collection, now: float, status: Status | None) -> None:
        """A Flush of ``state`` was throttled at ``now``: learn from it."""
        learned, until = state.throttled(now, status, self.interval, self.covers is not False)
        self.interval = max(learned, self._seeded)
        self._expires(state, until)

    def _covered(self, round_: Round, ts: int, asked: float, now: float) -> list[Bell]:
        """The server says everything of ``round_``'s collection before ``ts`` is
        persisted: the members whose calls began before ``ts`` was asked for (at
        ``asked``) are answered, covered; the collection's slot is one window away at
        most."""
        state = round_.state
        response = milvus_pb2.FlushResponse(
            db_name=state.db_name, coll_flush_ts={state.name: ts}
        )
        response.coll_segIDs[state.name].SetInParent()  # no segments of its own
        response.flush_coll_segIDs[state.name].SetInParent()
        kept = []
        for ticket in round_.members:
            if ticket.since > asked:  # began after T was asked for: not covered
                kept.append(ticket)
                continue
            ticket.response, ticket.status, ticket.how = response, _OK_STATUS, "covered"
            ticket.round = None
            state.users -= 1
        bells = _bells_of(round_.members)
        round_.members = kept
        if round_.ts is not None and round_.ts <= ts:  # the calls kept need a later T
            round_.ts = None
        if not kept and state.gathering is round_:
            state.gathering = None
        self._expires(state, state.covered(now, self.interval))
        return bells

    def _expires(self, state: Collection, when: float) -> None:
        if when > state.expires:
            state.expires = when
            self._expiries.append((when, state))

    def _expire(self, now: float) -> None:
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _, state = expiries.popleft()
            if not (state.users or state.in_flight or state.expires > now):
                self._drop(state)
        held = len(self._collections)
        if held < self._largest // 4:
            self._collections = dict(self._collections)
            self._largest = held

    def _drop(self, state: Collection) -> None:
        """Forget an idle collection whose pacing carries nothing any more."""
        key = (state.db_name, state.name)
        if self._collections.get(key) is state:
            del self._collections[key]


class Collection:
    """One (database, collection) of the connection: its pacing and its next round."""

    __slots__ = (
        "admitted_at",
        "backoff",
        "clock",
        "db_name",
        "estimated",
        "expires",
        "gathering",
        "in_flight",
        "last_status",
        "lock",
        "message",
        "name",
        "newest_start",
        "slot",
        "spread",
        "users",
    )

    def __init__(
        self,
        db_name: str,
        name: str,
        lock: threading.Lock,
        *,
        clock: Callable[[], float] = time.monotonic,
        spread: Callable[[], float] | None = None,
    ) -> None:
        #: The scheduler's lock, clock and spread.
        self.lock = lock
        self.clock = clock
        self.spread = spread or _spread
        self.db_name = db_name
        self.name = name
        #: The Flush message of this collection alone (made at its first such Flush).
        self.message: Any = None
        #: The earliest time the next Flush may go.
        self.slot = -math.inf
        #: Whether the slot is estimated (another client's Flush set it; see the module).
        self.estimated = False
        #: The current push after unexplained throttling; 0 after an admitted Flush.
        self.backoff = 0.0
        #: When the last admitted Flush was answered (None: none seen).
        self.admitted_at: float | None = None
        #: The last throttled answer's status (None: none, or gRPC RESOURCE_EXHAUSTED).
        self.last_status: Status | None = None
        #: Until when the pacing carries information.
        self.expires = -math.inf
        self.gathering: Round | None = None
        self.in_flight = 0
        self.newest_start = 0.0
        #: Tickets not yet answered.
        self.users = 0

    def admitted(self, now: float, interval: float) -> float:
        """A Flush was admitted (answered, not throttled) at ``now``; returns until when
        that paces the collection's calls."""
        self.admitted_at = now
        self.backoff = 0.0
        self.slot = now + interval
        self.estimated = False
        return max(self.slot, now + (interval or DEFAULT_WINDOW))

    def throttled(
        self, now: float, status: Status | None, interval: float, covers: bool = False
    ) -> tuple[float, float]:
        """A Flush was throttled at ``now`` (``status`` None: gRPC RESOURCE_EXHAUSTED).
        Returns the interval (learned from the rate the answer names, else as it was)
        and until when this answer paces the collection's calls. ``covers``: whether
        waiting rounds can probe for another client's Flush (else: backoff)."""
        self.last_status = status
        rate = None if status is None else rate_named_in(status.reason)
        if rate is not None:
            interval = 1.0 / rate
        if interval and self.admitted_at is not None:
            due = self.admitted_at + interval
            if due > now:  # the interval explains it: the next slot is known exactly
                self.slot = max(self.slot, due)
                return interval, self.slot
        window = interval or DEFAULT_WINDOW
        self.backoff = min(window, 2 * self.backoff if self.backoff else FIRST_BACKOFF)
        if not covers:
            self.slot = max(self.slot, now + self.backoff)
        elif not (self.estimated and self.slot > now):  # another client's Flush
            self.slot = now + window + self.spread()
            self.estimated = True
        return interval, max(self.slot, now + window)

    def covered(self, now: float, interval: float) -> float:
        """A round was covered by ``now``: another client's Flush, admitted by then, or
        none at all (nothing written since the last one); the next slot is one window
        away at most. A slot known from the client's own admitted Flush stays known.
        Returns until when that paces the calls."""
        if not self.estimated and self.slot > now:
            return self.slot
        window = interval or DEFAULT_WINDOW
        self.slot = max(self.slot, now + window + self.spread())
        self.estimated = True
        return self.slot

    def uncovered(self, now: float) -> None:
        """The connection cannot probe: an estimated slot becomes the backoff's."""
        if self.estimated:
            self.estimated = False
            self.slot = min(self.slot, now + (self.backoff or FIRST_BACKOFF))


class Round:
    """The calls one Flush RPC of one collection serves."""

    __slots__ = (
        "asked",
        "handle",
        "landed",
        "looked",
        "members",
        "outcome",
        "private",
        "probe_at",
        "prober",
        "probes",
        "sender",
        "sent",
        "settled",
        "shared",
        "started",
        "state",
        "template",
        "ts",
    )

    def __init__(self, state: Collection, template: FlushRequest, *, private: bool) -> None:
        self.state = state
        self.template = template
        self.private = private
        self.members: list[Ticket] = []
        self.sent = False
        self.settled = False
        self.shared = False
        self.sender: Ticket | None = None
        self.started = 0.0
        #: A shared round's RPC (to cancel it), and its outcome once it landed:
        #: (response, error, when).
        self.handle: Any = None
        self.landed = False
        self.outcome: tuple[Any, BaseException | None, float] | None = None
        #: Probing for another client's Flush: whether it may (False once a probe
        #: failed), the timestamp T and when it was asked for, when the next look is
        #: due, when the last look was sent, and the call performing one now.
        self.probes = True
        self.ts: int | None = None
        self.asked = 0.0
        self.probe_at = 0.0
        self.looked = -math.inf
        self.prober: Turn | None = None

    def send(self, sender: Ticket, now: float) -> None:
        """Mark the round in flight (under the lock)."""
        state = self.state
        if state.gathering is self:
            state.gathering = None
        self.sent = True
        self.sender = sender
        self.shared = len(self.members) > 1
        self.started = now
        state.in_flight += 1
        state.newest_start = now

    def land(self, response: Any, error: BaseException | None) -> None:
        """The shared round's RPC ended (``(None, None)``: cancelled): keep the outcome
        and ring the members' bells. Runs wherever the RPC ended (gRPC's thread)."""
        self.outcome = (response, error, self.state.clock())
        with self.state.lock:
            self.landed = True
            bells = _bells_of(self.members)
        for bell in bells:
            bell.ring()


class Ticket:
    """A call's place in one collection's round, and in the end its answer."""

    __slots__ = (
        "deadline",
        "error",
        "how",
        "name",
        "response",
        "round",
        "sent_by",
        "since",
        "state",
        "status",
        "trace",
        "turn",
    )

    def __init__(self, turn: Turn, state: Collection, name: str, request: FlushRequest) -> None:
        #: The call's turn, while the ticket is in a round (None once the call is over).
        self.turn: Turn | None = turn
        self.deadline = request.deadline
        self.state = state
        self.name = name
        self.response: Any = None
        #: The response's status (made once per answer).
        self.status: Status | None = None
        self.error: BaseException | None = None
        #: How the answer came: "flush" (a Flush of the call's own), "shared" (one
        #: shared with other calls), "covered" (another client's Flush).
        self.how = "flush"
        #: When the call began: a timestamp asked for after it covers its writes.
        self.since = request.started
        self.trace = request.trace
        #: The trace of the call that sent the Flush that answered this ticket, when
        #: another call sent it.
        self.sent_by: Trace | None = None
        state.users += 1
        if request.coalesce:
            round_ = state.gathering
            if round_ is None:
                round_ = state.gathering = Round(state, request, private=False)
        else:
            round_ = Round(state, request, private=True)
        self.round: Round | None = round_
        round_.members.append(self)

    def outcome(self) -> Any:
        """The Flush response for this collection, or raises this caller's error."""
        if self.error is not None:
            error = self.error
            if isinstance(error, FlushError) and self.how == "shared":
                error = copy.copy(error)  # each caller its own
                error.coalesced = True
            raise error
        return self.response


class Turn:
    """One call's tickets, and what it should do next (:meth:`next`)."""

    __slots__ = (
        "alone",
        "bell",
        "first",
        "led",
        "outcome",
        "probing",
        "request",
        "scheduler",
        "sent_at",
        "spent",
        "throttled",
        "throttled_at",
        "tickets",
    )

    def __init__(self, scheduler: FlushScheduler, request: FlushRequest) -> None:
        self.scheduler = scheduler
        self.request = request
        self.tickets: list[Ticket] = []
        #: The collection whose Flush the call sent alone, while in flight; when; the
        #: answer (response, status, error).
        self.alone: Collection | None = None
        self.sent_at = 0.0
        self.outcome: tuple[Any, Status | None, BaseException | None] | None = None
        #: Throttled answers to Flush RPCs the call sent, and when the last came.
        self.throttled = 0
        self.throttled_at = -math.inf
        #: Made the first time the call has to wait (the usual call never does).
        self.bell: Bell | None = None
        #: The call's first effect, decided as it joined: its own Flush at once.
        self.first: Call | None = None
        #: The tickets the call's own Flush in flight answers.
        self.led: tuple[Ticket, ...] = ()
        #: The round the call probes for now, the RPC, when it was sent, the T it looks
        #: at and when that was asked for.
        self.probing: tuple[Round, str, float, int | None, float] | None = None
        #: Whether the call sent its Flush at its last chance (see the module).
        self.spent = False

    def answered(self, response: Any, error: BaseException | None) -> None:
        """The call's own Flush ended: ``response``, or ``error`` (a FlushError)."""
        scheduler = self.scheduler
        now = scheduler.clock()
        bells: list[Bell] = []
        state = self.alone
        with scheduler._lock:
            if state is not None:  # sent alone: no round to settle
                self.alone = None
                state.in_flight -= 1
                status = None if response is None else Status.from_proto(response.status)
                if response is not None:
                    scheduler._timed(now - self.sent_at)
                if (status is None or not status.ok) and _throttled(status, error):
                    scheduler._throttled(state, now, status)  # gather for the next slot
                    self.throttled += 1
                    self.throttled_at = now
                    self.tickets = [Ticket(self, state, state.name, self.request)]
                else:
                    self.outcome = (response, status, error)
                    if status is not None:  # admitted
                        until = state.admitted(now, scheduler.interval)
                        if until > state.expires:
                            state.expires = until
                            scheduler._expiries.append((until, state))
                gathering = state.gathering
                if gathering is not None:
                    bells = _bells_of(gathering.members)
                if not (state.users or state.in_flight or state.expires > now):
                    scheduler._drop(state)
            else:
                led, self.led = self.led, ()
                for ticket in led:
                    round_ = ticket.round
                    if round_ is not None and not round_.settled:
                        bells += scheduler._settle(round_, response, error, now)
        for bell in bells:
            if bell is not self.bell:
                bell.ring()

    def answers(self) -> list[Answer]:
        """The call's answers, one per Flush response: (the response, the part of the
        request it answers, its status, whether it was shared). Raises a collection's
        error (each caller gets its own copy of a shared one)."""
        outcome = self.outcome
        if outcome is not None:  # sent alone
            response, status, error = outcome
            if error is not None:
                raise error
            assert status is not None
            return [(response, self.request, status, "flush")]
        tickets = self.tickets
        if len(tickets) == 1:
            ticket = tickets[0]
            response = ticket.outcome() if ticket.error is not None else ticket.response
            assert ticket.status is not None  # made with the answer
            return [(response, self.request, ticket.status, ticket.how)]
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
            part = self.request
            if len(names) < len(part.collection_names):
                part = part.replace(collection_names=tuple(names))
            assert first.status is not None  # made with the answer
            answers.append((response, part, first.status, first.how))
        return answers

    def next(self) -> Call | Start | Wait | None:
        """What the call does next: send its own Flush (:class:`Call`), start a shared
        round's (:class:`Start`), probe for another client's Flush (a :class:`Call` of
        AllocTimestamp or GetFlushState: answer it with :meth:`probed`), wait
        (:class:`Wait`), or nothing more (None: every collection has its answer).
        Raises when the call cannot get its answer in its budget: RateLimitedError
        before a slot past its deadline, FlushTimeoutError once the deadline has passed."""
        first = self.first
        if first is not None:
            self.first = None
            return first
        pending = False
        for ticket in self.tickets:
            if ticket.error is not None:
                ticket.outcome()  # raises it: no need to wait for the others
            if ticket.round is not None:
                pending = True
        if not pending:
            return None  # every collection has its answer: the usual end
        request = self.request
        deadline = request.deadline
        scheduler = self.scheduler
        now = scheduler.clock()
        bells: list[Bell] = []
        lead: list[Ticket] = []
        until: float | None = None
        #: When the earliest wait for a slot ends (a call's last chance, if first): the
        #: pacing the call announces, whatever looks it makes meanwhile.
        slot_ends: float | None = None
        refused: Ticket | None = None
        effect: Call | Start | Wait | None = None
        with scheduler._lock:
            margin = scheduler._margin(request)
            for ticket in self.tickets:
                round_ = ticket.round
                if round_ is None:  # answered
                    continue
                if round_.sent:
                    if not round_.landed or round_.settled:
                        continue  # in flight
                    assert round_.outcome is not None
                    response, error, when = round_.outcome
                    bells += scheduler._settle(round_, response, error, when)
                    round_ = ticket.round
                    if round_ is None:
                        continue
                state = round_.state
                if state.estimated and scheduler.covers is False:
                    state.uncovered(now)
                slot = ready = state.slot
                if slot > now and deadline is not None:
                    if state.estimated and not self.spent:  # its last chance may come first
                        chance = deadline - max(LAST_CHANCE * margin, LAST_CHANCE_MIN)
                        if chance < slot:
                            if chance <= self.throttled_at + PROBE_EVERY:  # tried: no new try
                                refused = ticket
                                break
                            ready = chance
                    elif slot + margin > deadline:
                        refused = ticket
                        break
                if not round_.private and state.in_flight:
                    ready = max(ready, state.newest_start + scheduler._hold())
                probe = round_.probes and round_.prober is None and scheduler.covers is not False
                if ready > now:
                    if slot > now and (slot_ends is None or ready < slot_ends):
                        slot_ends = ready
                    if probe and slot > now:  # waiting for a slot: look for coverage
                        if round_.ts is None:
                            if slot - now >= PROBE_EVERY:
                                effect = self._probe(round_, ALLOC_TIMESTAMP, now)
                                break
                        elif round_.probe_at <= now:
                            effect = self._probe(round_, GET_FLUSH_STATE, now)
                            break
                        elif round_.probe_at < ready:
                            ready = round_.probe_at
                    if until is None or ready < until:
                        until = ready
                    continue
                if round_.ts is not None and round_.looked < ready:
                    if probe:  # one more look before it sends
                        effect = self._probe(round_, GET_FLUSH_STATE, now)
                        break
                    if round_.prober is not None:  # another member looks: see soon
                        ready = now + PROBE_EVERY
                        if until is None or ready < until:
                            until = ready
                        if slot_ends is None or ready < slot_ends:
                            slot_ends = ready
                        continue
                if slot > now:
                    self.spent = True
                if len(round_.members) == 1:
                    lead.append(ticket)
                    continue
                round_.send(ticket, now)
                shared = _shared_request(round_, now)
                effect = Start(Call(FLUSH, _flush_message(shared), shared), round_)
                break
            if effect is None and refused is None:
                if lead:
                    for ticket in lead:
                        assert ticket.round is not None
                        ticket.round.send(ticket, now)
                    self.led = tuple(lead)
                    led = request
                    if len(lead) < len(request.collection_names):
                        led = request.replace(collection_names=tuple(t.name for t in lead))
                    effect = Call(FLUSH, _flush_message(led), led)
                elif _in_a_round(self.tickets):
                    if self.bell is None:
                        self.bell = Bell()
                    wake = until
                    if deadline is not None and (wake is None or deadline < wake):
                        wake = deadline
                    effect = Wait(self.bell, wake, slot_ends)
        for bell in bells:
            if bell is not self.bell:
                bell.ring()
        if refused is not None:
            state = refused.state
            if deadline is not None and now >= deadline:
                raise timeout_error(request, "waiting for the server to admit a flush")
            exhausted = state.last_status is None and state.backoff > 0
            raise rate_limited_error(
                request, refused.name, state.slot - now, state.last_status, exhausted
            )
        if type(effect) is Wait and deadline is not None and now >= deadline:
            raise timeout_error(request, "waiting for its turn to flush")
        return effect

    def _probe(self, round_: Round, method: str, now: float) -> Call:
        """The call probes for ``round_`` (under the lock): asks for T, or looks."""
        round_.prober = self
        self.probing = (round_, method, now, round_.ts, round_.asked)
        state = round_.state
        if method == ALLOC_TIMESTAMP:
            return Call(ALLOC_TIMESTAMP, milvus_pb2.AllocTimestampRequest(), self.request)
        round_.looked = now
        message = milvus_pb2.GetFlushStateRequest(
            flush_ts=round_.ts, db_name=state.db_name, collection_name=state.name
        )
        return Call(GET_FLUSH_STATE, message, self.request)

    def probed(self, response: Any, error: BaseException | None) -> None:
        """The call's probe ended: ``response``, or ``error`` (a FlushError). A failed
        probe ends the round's probing (an AllocTimestamp the server does not
        implement, the connection's); a covering answer answers the round's calls."""
        assert self.probing is not None
        round_, method, sent, ts, asked = self.probing
        self.probing = None
        scheduler = self.scheduler
        now = scheduler.clock()
        bells: list[Bell] = []
        with scheduler._lock:
            round_.prober = None
            if round_.sent or not round_.members:
                pass  # sent meanwhile, or nobody waits any more
            elif error is not None or not Status.from_proto(response.status).ok:
                round_.probes = False  # the members wait for the slot, as without probes
                bells = _bells_of(round_.members)
                if method == ALLOC_TIMESTAMP and getattr(error, "grpc_code", None) == (
                    "UNIMPLEMENTED"
                ):
                    scheduler.covers = False  # Milvus Lite: never on this connection
            elif method == ALLOC_TIMESTAMP:
                scheduler.covers = True
                if round_.ts is None:  # (else it holds an earlier T, carried over)
                    round_.ts, round_.asked = response.timestamp, sent
                    round_.probe_at = now + PROBE_EVERY
            elif response.flushed:
                assert ts is not None
                bells = scheduler._covered(round_, ts, asked, now)
            else:
                round_.probe_at = now + PROBE_EVERY
        for bell in bells:
            if bell is not self.bell:
                bell.ring()

    def started(self, round_: Round, handle: Any) -> None:
        """The shared round's RPC is in flight as ``handle`` (cancelled at once if every
        member left meanwhile)."""
        with self.scheduler._lock:
            abandoned = not round_.members
            round_.handle = handle
        if abandoned:
            handle.cancel()

    def unsend(self, round_: Round) -> None:
        """Starting the shared round failed: put it back for another member to send."""
        bells: list[Bell] = []
        with self.scheduler._lock:
            if round_.sent and not round_.settled and not round_.landed:
                state = round_.state
                state.in_flight -= 1
                round_.sent = False
                round_.settled = True
                _regather(round_)
                gathering = state.gathering
                if gathering is not None:
                    bells = _bells_of(gathering.members)
        for bell in bells:
            if bell is not self.bell:
                bell.ring()

    def leave(self) -> None:
        """The call is over: give up its places (an answered ticket gave up its own when
        answered); a shared RPC nobody waits for any more is cancelled."""
        if self.alone is None and not self.led and self.probing is None:
            for ticket in self.tickets:
                if ticket.round is not None:
                    break
            else:  # the usual end: every ticket answered
                for ticket in self.tickets:
                    ticket.turn = None  # no cycle left for the garbage collector
                return
        handles = []
        bells: list[Bell] = []
        scheduler = self.scheduler
        with scheduler._lock:
            now = scheduler.clock()
            freed = []  # collections with one Flush fewer in flight: their next round may go
            self.first = None
            if self.probing is not None:  # another member probes in its place
                probed = self.probing[0]
                self.probing, probed.prober = None, None
                bells += _bells_of(probed.members)
            state = self.alone
            if state is not None:  # sent alone, never answered (the call left)
                self.alone = None
                state.in_flight -= 1
                freed.append(state)
                if not (state.users or state.in_flight or state.expires > now):
                    scheduler._drop(state)
            self.led = ()  # the call's own Flush, never answered: its round ends below
            for ticket in self.tickets:
                round_ = ticket.round
                if round_ is None:
                    continue
                ticket.round = None
                state = ticket.state
                state.users -= 1
                if ticket in round_.members:
                    round_.members.remove(ticket)
                    if not round_.members:
                        if not round_.sent and state.gathering is round_:
                            state.gathering = None
                        elif round_.landed and not round_.settled:  # learn from its answer
                            assert round_.outcome is not None
                            bells += scheduler._settle(round_, *round_.outcome)
                        elif round_.sent and not round_.settled:
                            round_.settled = True  # nobody waits for it: cancelled
                            state.in_flight -= 1
                            freed.append(state)
                            if round_.handle is not None:
                                handles.append(round_.handle)
                if not (state.users or state.in_flight or state.expires > now):
                    scheduler._drop(state)
            for state in freed:
                if state.gathering is not None:
                    bells += _bells_of(state.gathering.members)
            for ticket in self.tickets:
                ticket.turn = None
        for handle in handles:
            handle.cancel()
        for bell in bells:
            if bell is not self.bell:
                bell.ring()


#: One answer of a call: a response, the part of the request it answers, its status,
#: how it came ("flush", "shared" or "covered").
Answer = tuple[Any, FlushRequest, Status, str]


def _spread() -> float:
    """An estimated slot's random spread: up to :data:`SPREAD`."""
    return random.uniform(0.0, SPREAD)


def _usual(usual: float | None, seconds: float) -> float:
    """A usual duration (None: none timed yet) moved towards a new one, ``seconds``."""
    return seconds if usual is None else usual + LATENCY_WEIGHT * (seconds - usual)


def _throttled(status: Status | None, error: BaseException | None) -> bool:
    """Whether a Flush's answer (``status``, or ``error``) is the server's rate limit."""
    if status is not None:
        return bool(status.code or status.legacy_code) and is_throttled(status)
    return isinstance(error, RateLimitedError)


def _in_a_round(tickets: list[Ticket]) -> bool:
    """Whether some of ``tickets`` still wait for an answer."""
    return any(ticket.round is not None for ticket in tickets)


def _bells_of(tickets: list[Ticket]) -> list[Bell]:
    """The bells of the calls of ``tickets`` that have waited (the others look before
    they wait)."""
    return [t.turn.bell for t in tickets if t.turn is not None and t.turn.bell is not None]


def _regather(round_: Round) -> None:
    """Send ``round_``'s members back to gather for the collection's next round."""
    state = round_.state
    members, round_.members = round_.members, []
    if not members:
        return
    again = None if round_.private else state.gathering
    if again is None:
        again = Round(state, round_.template, private=round_.private)
        if not round_.private:
            state.gathering = again
    for ticket in members:
        ticket.round = again
        again.members.append(ticket)
    ts = round_.ts
    if ts is not None and again.probes and (again.ts is None or ts < again.ts):
        # The members' T, taken before the Flush the server just admitted for another
        # client, is likely covered by it: look at once, and keep looking.
        again.ts, again.asked, again.probe_at = ts, round_.asked, -math.inf


def _shared_request(round_: Round, now: float) -> FlushRequest:
    """The shared Flush's request: one collection, the latest of its members' deadlines,
    the sending call's trace (its context reaches the server)."""
    deadlines = [ticket.deadline for ticket in round_.members]
    latest = None if None in deadlines else max(d for d in deadlines if d is not None)
    assert round_.sender is not None
    return round_.template.replace(
        collection_names=(round_.members[0].name,),
        timeout=None,
        started=now,
        deadline=latest,
        coalesce=True,
        trace=round_.sender.trace,
    )


def _flush_message(request: FlushRequest) -> Any:
    return milvus_pb2.FlushRequest(
        db_name=request.db_name, collection_names=request.collection_names
    )
