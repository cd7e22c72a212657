"""Coalescing: concurrent flushes of one collection share one Flush RPC.

A flush seals everything written before it, so flushes that begin while another Flush
of the same collection is in flight can all be served by the *next* Flush, as a
database's group commit serves many transactions with one disk write.

* A **lane** per (server, credentials, database, collection) has at most one Flush RPC
  in flight. A caller that finds its lane idle **leads** it: it sends its own Flush, on
  its own thread or task, with its own deadline and cancellation, exactly as without
  coalescing (no other caller can be in that RPC: it began before they did).
* Callers that arrive while the lane is busy take a **ticket** in the lane's next
  **round**. When the RPC in flight ends, the round is sent as one Flush for all its
  tickets: a gRPC future that belongs to no caller, whose deadline is the latest of
  theirs. Each caller waits for its ticket with its own deadline and cancellation; a
  caller that leaves does not disturb the others, and the round's RPC is cancelled only
  when every caller has left. With ``wait=True`` the round also polls GetFlushState for
  all of its waiting callers (the pauses run on one timer thread).
* A round flushes one collection, so a collection that does not exist fails only the
  callers that asked for it. Each caller gets its own copy of an error.

Both facades use the same lanes: threads, asyncio tasks and trio tasks share rounds. The
core flow takes its places with :meth:`Lanes.join` (bookkeeping, no I/O) and waits for
its tickets with :class:`~flushkit._core.Await` effects, which the drivers perform.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Generator, Hashable
from typing import Any

import grpc
from pymilvus.grpc_gen import milvus_pb2

from ._core import FLUSH, Call, wait_until_persisted
from ._exceptions import ClientClosedError, FlushError, error_from_rpc
from ._models import FlushRequest, FlushResult, Pause, Status, result_from_proto

__all__ = ["Lanes", "Membership", "Ticket"]

#: Starts an RPC and returns its gRPC future, which calls the callback once it has ended
#: (a transport's ``start``).
Sender = Callable[[Call, Callable[[Any], object]], Any]
#: What a ticket ends with: its collection's result, or the error for its caller.
Outcome = FlushResult | BaseException

# One lock guards every lane, round and ticket: the sections it covers are short and
# never perform I/O.
_lock = threading.Lock()
_lanes: dict[Hashable, _Lane] = {}


class Membership:
    """One call's places in the lanes of its collections (what :meth:`Lanes.join` gives).

    ``led`` names the collections whose Flush the caller sends itself; ``tickets`` its
    places in shared rounds, one per other collection.
    """

    __slots__ = ("_led_lanes", "led", "tickets")

    def __init__(self, led: list[str], led_lanes: list[_Lane], tickets: list[Ticket]) -> None:
        self.led = tuple(led)
        self._led_lanes = led_lanes
        self.tickets = tuple(tickets)

    def flushed(self) -> None:
        """The caller's own Flush ended: its lanes may send their next rounds."""
        lanes, self._led_lanes = self._led_lanes, []
        for lane in lanes:
            lane.release()

    def leave(self) -> None:
        """The call is over: release what it still holds, give up unanswered tickets."""
        self.flushed()
        for ticket in self.tickets:
            ticket.leave()


class Lanes:
    """One transport's way into the process's lanes.

    ``identity`` says which calls may share an RPC (same server, same credential);
    ``sender`` starts an RPC on the transport's channel when a round is sent.
    """

    __slots__ = ("identity", "sender")

    def __init__(self, identity: Hashable, sender: Sender) -> None:
        self.identity = identity
        self.sender = sender

    def join(self, request: FlushRequest) -> Membership:
        """Take ``request``'s place in the lanes of its collections: lead the idle ones,
        take a ticket in the next round of the busy ones."""
        led: list[str] = []
        led_lanes: list[_Lane] = []
        tickets: list[Ticket] = []
        with _lock:
            for name in request.collection_names:
                key = (self.identity, request.db_name, name)
                lane = _lanes.get(key)
                if lane is None:
                    lane = _lanes[key] = _Lane(key)
                if not lane.busy:
                    lane.busy = True
                    led.append(name)
                    led_lanes.append(lane)
                    continue
                if lane.gathering is None:
                    lane.gathering = _Round(lane, request.replace(collection_names=(name,)))
                ticket = Ticket(lane.gathering, request, self.sender)
                lane.gathering.tickets.append(ticket)
                tickets.append(ticket)
        return Membership(led, led_lanes, tickets)


class Ticket:
    """A caller's place in a shared round, and in the end its outcome."""

    __slots__ = ("_wake", "deadline", "outcome", "round", "sender", "wait")

    def __init__(self, round_: _Round, request: FlushRequest, sender: Sender) -> None:
        self.round = round_
        self.wait = request.wait
        self.deadline = request.deadline
        self.sender = sender
        self.outcome: Outcome | None = None
        self._wake: Callable[[], object] | None = None

    def when_done(self, wake: Callable[[], object]) -> bool:
        """Have ``wake`` called (from any thread) when the outcome arrives.

        Returns False, and never calls ``wake``, when the outcome is already here.
        """
        with _lock:
            if self.outcome is not None:
                return False
            self._wake = wake
            return True

    def result(self) -> FlushResult:
        """The outcome: the collection's result, or raises the caller's error."""
        outcome = self.outcome
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome is None:
            raise RuntimeError("the shared flush has not answered yet")
        return outcome

    def leave(self) -> None:
        """Give up the ticket; the round's RPC is cancelled once nobody is left in it."""
        with _lock:
            if self.outcome is not None:
                return
            self.outcome = _LEFT
            round_ = self.round
            round_.tickets.remove(self)
            if round_.tickets:
                return
            if not round_.sent:  # nobody left to send it for
                if round_.lane.gathering is round_:
                    round_.lane.gathering = None
                return
            round_.abandoned = True
            future = round_.future
        if future is not None:
            future.cancel()

    def _resolve(self, outcome: Outcome) -> Callable[[], object] | None:
        """Set the outcome (under the lock); returns the waker to call outside it."""
        if self.outcome is not None:
            return None
        self.outcome = outcome
        return self._wake


class _LeftMarker(Exception):
    """The outcome of a ticket whose caller left."""


_LEFT = _LeftMarker()


class _Lane:
    """One (server, credentials, database, collection): at most one Flush in flight."""

    __slots__ = ("busy", "gathering", "key")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.busy = False
        self.gathering: _Round | None = None

    def release(self) -> None:
        """The Flush in flight ended: send the round gathered meanwhile, if any."""
        with _lock:
            next_round, self.gathering = self.gathering, None
            if next_round is None:
                self.busy = False
                del _lanes[self.key]
                return
            next_round.sent = True
        next_round.send()


class _Round:
    """One shared Flush of one collection (and, for its ``wait=True`` callers, the
    shared wait until persisted), driven by gRPC callbacks and the timer thread."""

    __slots__ = (
        "_flow",
        "_result",
        "_sender",
        "abandoned",
        "future",
        "lane",
        "request",
        "sent",
        "shared",
        "template",
        "tickets",
    )

    def __init__(self, lane: _Lane, template: FlushRequest) -> None:
        self.lane = lane
        self.template = template
        self.tickets: list[Ticket] = []
        self.sent = False
        self.abandoned = False
        self.shared = False
        self.future: Any = None
        self.request = template
        self._sender: Sender | None = None
        self._flow: Generator[Call | Pause, Any, Status | None] | None = None
        self._result: FlushResult | None = None

    def send(self) -> None:
        with _lock:
            tickets = list(self.tickets)
        if not tickets:  # its callers left between the release and now
            return self.lane.release()
        deadlines = [ticket.deadline for ticket in tickets]
        self.shared = len(tickets) > 1
        self.request = request = self.template.replace(
            timeout=None,
            wait=any(ticket.wait for ticket in tickets),
            started=time.monotonic(),
            deadline=None if None in deadlines else max(d for d in deadlines if d is not None),
        )
        message = milvus_pb2.FlushRequest(
            db_name=request.db_name, collection_names=request.collection_names
        )
        self._perform(Call(FLUSH, message, request), self._flushed, [t.sender for t in tickets])

    def _perform(
        self, call: Call, then: Callable[[Any, BaseException | None], None], senders: list[Sender]
    ) -> None:
        """Start ``call`` (with the first sender whose client is open); ``then`` gets the
        answer or the error on gRPC's thread."""
        error: BaseException | None = None
        for sender in senders:
            self._sender = sender  # before the answer, which may come at once
            try:
                future = sender(call, functools.partial(self._answered, call, then))
            except ClientClosedError as exc:  # that caller's client; try another's
                error = exc
                continue
            except Exception as exc:
                error = exc
                break
            with _lock:
                if future.done():  # answered already: `then` may have started the next
                    return
                self.future = future
                abandoned = self.abandoned
            if abandoned:
                future.cancel()
            return
        then(None, error if error is not None else ClientClosedError("no open client"))

    def _answered(
        self, call: Call, then: Callable[[Any, BaseException | None], None], future: Any
    ) -> None:
        """gRPC's callback: hand the answer on; a flushkit bug here fails the callers
        instead of leaving them waiting."""
        try:
            then(*_answer_of(future, call))
        except BaseException as exc:  # pragma: no cover - a bug
            self._finish(exc)

    def _resume(self) -> None:
        """The timer's callback after a pause of the shared wait."""
        try:
            self._step(None, None)
        except BaseException as exc:  # pragma: no cover - a bug
            self._finish(exc)

    def _flushed(self, response: Any, error: BaseException | None) -> None:
        self.lane.release()  # the next round may go while this one waits or answers
        if error is not None or response is None:
            return self._finish(error)
        status = Status.from_proto(response.status)
        result = result_from_proto(
            response, self.request, status, persisted=False, coalesced=self.shared
        )
        with _lock:
            waiting = [t for t in self.tickets if t.wait] if status.ok else []
            answered = [t for t in self.tickets if t not in waiting]
            self.tickets = waiting
            self._flow = wait_until_persisted(self.request, response) if waiting else None
            self._result = result
        _deliver(answered, result)
        if waiting:
            self._step(None, None)

    def _step(self, answer: Any, error: BaseException | None) -> None:
        """Drive the shared wait one effect further."""
        flow = self._flow
        if flow is None or self.abandoned:
            return
        try:
            effect = flow.send(answer) if error is None else flow.throw(error)
        except StopIteration as done:
            failure, result = done.value, self._result
            assert result is not None
            if failure is None:
                return self._finish(dataclasses.replace(result, persisted=True))
            return self._finish(dataclasses.replace(result, status=failure))
        except BaseException as exc:
            return self._finish(exc)
        if isinstance(effect, Pause):
            _timer.after(effect.seconds, self._resume)
        else:
            assert self._sender is not None
            self._perform(effect, self._step, [self._sender])

    def _finish(self, outcome: Outcome | None) -> None:
        with _lock:
            tickets, self.tickets = self.tickets, []
            self._flow = None
        if outcome is not None:
            _deliver(tickets, outcome)


def _deliver(tickets: list[Ticket], outcome: Outcome) -> None:
    """Give each ticket the outcome: results are shared, errors copied per caller."""
    wakes = []
    with _lock:
        for ticket in tickets:
            mine = outcome
            if isinstance(outcome, FlushError):
                mine = copy.copy(outcome)
                mine.coalesced = ticket.round.shared
            wake = ticket._resolve(mine)
            if wake is not None:
                wakes.append(wake)
    for wake in wakes:
        wake()


def _answer_of(future: Any, call: Call) -> tuple[Any, BaseException | None]:
    """(response, None), (None, the FlushError), or (None, None) once cancelled."""
    try:
        return future.result(), None
    except grpc.FutureCancelledError:
        return None, None
    except grpc.RpcError as exc:
        return None, error_from_rpc(exc, call)


class _Timer:
    """One daemon thread that runs callbacks after a delay: the shared waits' pauses.

    It starts when needed and ends after a second with nothing to do.
    """

    IDLE = 1.0

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._running = False

    def after(self, seconds: float, callback: Callable[[], None]) -> None:
        with self._condition:
            entry = (time.monotonic() + seconds, next(self._order), callback)
            heapq.heappush(self._queue, entry)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="flushkit-timer", daemon=True).start()
            self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while True:
                    if not self._queue:
                        self._condition.wait(self.IDLE)
                        if not self._queue:
                            self._running = False
                            return
                        continue
                    delay = self._queue[0][0] - time.monotonic()
                    if delay <= 0:
                        callback = heapq.heappop(self._queue)[2]
                        break
                    self._condition.wait(delay)
            with contextlib.suppress(Exception):  # callbacks guard themselves
                callback()


_timer = _Timer()
