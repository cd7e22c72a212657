"""The flush scheduler's decisions, driven step by step with a clock of the test's own:
what a call does next (send, start a shared round, probe, wait, give up), and what it
learns from each answer. Pure logic: no server, no channel, no sleeping (the mutation
run's tests for ``flushkit._scheduler``; docs/mutation.md)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pymilvus.grpc_gen import common_pb2, milvus_pb2

import flushkit
from flushkit._effects import ALLOC_TIMESTAMP, FLUSH, GET_FLUSH_STATE, Call, Start, Wait
from flushkit._models import FlushRequest, new_request
from flushkit._scheduler import FlushScheduler, Turn, is_throttled, rate_named_in

pytestmark = pytest.mark.pure

T0 = 1000.0
#: A throttled answer naming Milvus's default rate: one Flush every 10 s.
RATE_LIMITED = {"code": 8, "error_code": 49, "reason": "rate limit exceeded[rate=0.1]"}


class Clock:
    """The scheduler's time, moved only by the test."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Handle:
    """A shared round's RPC as the driver would hold it."""

    def __init__(self) -> None:
        self.cancelled = 0

    def cancel(self) -> None:
        self.cancelled += 1


@pytest.fixture
def clock() -> Clock:
    return Clock()


#: The spread an estimated slot gets in these tests (the most it may be: see the module).
SPREAD_DRAWN = 0.3


class Watched(FlushScheduler):
    """A scheduler that keeps the turns it made, so that a test's end can look at what
    is left once every call is over."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock, spread=lambda: SPREAD_DRAWN)
        self.turns: list[Turn] = []

    def join(self, request: FlushRequest) -> Turn:
        turn = super().join(request)
        self.turns.append(turn)
        return turn


@pytest.fixture
def scheduler(clock: Clock) -> Iterator[FlushScheduler]:
    """A connection's scheduler whose server does not answer AllocTimestamp (as Milvus
    Lite): pacing and coalescing alone, no looking for coverage. At the test's end,
    once every call has left, nothing of them is left: no collection counts a call or
    a Flush in flight, and once their pacing has passed the collections are forgotten."""
    scheduler = Watched(clock)
    scheduler.covers = False
    yield scheduler
    for turn in scheduler.turns:
        turn.leave()
    for key, state in scheduler._collections.items():
        assert (state.users, state.in_flight) == (0, 0), key
        assert state.gathering is None or not state.gathering.members, key
    clock.advance(3600)
    scheduler.join(request_at(clock, "fresh")).leave()  # a join looks at what expired
    assert list(scheduler._collections) == []


def rung(wait: Wait) -> bool:
    """Whether ``wait``'s bell was rung since the call looked (a driver would not sleep)."""
    return not wait.bell.arm(lambda: None)


@pytest.fixture
def looks(scheduler: FlushScheduler) -> None:
    """The scheduler's server may answer AllocTimestamp (not asked yet)."""
    scheduler.covers = None


def request_at(
    clock: Clock,
    *names: str,
    db: str = "default",
    timeout: float | None = None,
    wait: bool = False,
    coalesce: bool = True,
    trace: object = None,
) -> FlushRequest:
    """A call's request as the chain hands it to the core, begun now."""
    return new_request(
        {
            "collection_names": names or ("docs",),
            "db_name": db,
            "timeout": timeout,
            "wait": wait,
            "started": clock.now,
            "deadline": None if timeout is None else clock.now + timeout,
            "server_address": None,
            "server_port": None,
            "coalesce": coalesce,
            "trace": trace,
        }
    )


def flushed(*names: str, db: str = "default", **status: object) -> milvus_pb2.FlushResponse:
    """A Flush response for ``names`` (segment 7 each), with ``status`` (default: ok)."""
    response = milvus_pb2.FlushResponse(db_name=db, status=common_pb2.Status(**status))
    for name in names or ("docs",):
        response.coll_segIDs[name].data.append(7)
    return response


def throttled(*names: str, reason: str = RATE_LIMITED["reason"]) -> milvus_pb2.FlushResponse:
    return flushed(*names, code=8, error_code=49, reason=reason)


def flush_sent(effect: object, *names: str, db: str = "default") -> Call:
    """``effect`` is the call's own Flush of ``names`` in ``db``."""
    assert type(effect) is Call, effect
    assert effect.method == FLUSH
    assert effect.message.db_name == db
    assert tuple(effect.message.collection_names) == (names or ("docs",))
    return effect


def waits(effect: object) -> Wait:
    assert type(effect) is Wait, effect
    return effect


def two_gathered(scheduler: FlushScheduler, clock: Clock) -> tuple[Turn, Turn, Start]:
    """Two calls gathered behind a Flush answered at once (timed: 0 s): the first of them
    starts their shared round."""
    first = scheduler.join(request_at(clock))
    flush_sent(first.next())
    one, two = (scheduler.join(request_at(clock)) for _ in range(2))
    first.answered(flushed(), None)
    start = one.next()
    assert type(start) is Start, start
    return one, two, start


def admit(scheduler: FlushScheduler, clock: Clock, name: str = "docs", **options: object):
    """One call alone on an idle collection, admitted: the collection's pacing starts."""
    turn = scheduler.join(request_at(clock, name, **options))
    flush_sent(turn.next(), name, db=str(options.get("db", "default")))
    turn.answered(flushed(name), None)
    assert turn.next() is None
    return turn


# the usual call


def test_the_usual_call_sends_its_own_flush_at_once_and_is_answered_by_it(scheduler, clock):
    request = request_at(clock, "docs", db="shop")
    turn = scheduler.join(request)
    call = flush_sent(turn.next(), "docs", db="shop")
    assert call.request is request
    response = flushed("docs", db="shop")
    turn.answered(response, None)
    assert turn.next() is None
    [(answer, part, status, how)] = turn.answers()
    assert answer is response and part is request and status.ok and how == "flush"
    turn.leave()


def test_a_failed_flush_is_raised_to_its_caller(scheduler, clock):
    turn = scheduler.join(request_at(clock))
    flush_sent(turn.next())
    error = flushkit.ServerError("broken", code=5)
    turn.answered(None, error)
    with pytest.raises(flushkit.ServerError) as raised:
        turn.answers()
    assert raised.value is error


def test_an_answer_with_an_error_status_is_the_callers_not_a_throttling(scheduler, clock):
    turn = scheduler.join(request_at(clock))
    flush_sent(turn.next())
    response = flushed(code=100, error_code=4, reason="collection not found")
    turn.answered(response, None)
    assert turn.next() is None
    [(answer, _, status, how)] = turn.answers()
    assert answer is response and status.code == 100 and how == "flush"
    # and it paces nothing: the next call goes at once
    flush_sent(scheduler.join(request_at(clock)).next())


def test_several_collections_go_in_one_flush_and_share_its_answer(scheduler, clock):
    request = request_at(clock, "a", "b")
    turn = scheduler.join(request)
    call = flush_sent(turn.next(), "a", "b")
    assert call.request is request
    response = flushed("a", "b")
    turn.answered(response, None)
    assert turn.next() is None
    [(answer, part, status, how)] = turn.answers()
    assert answer is response and part is request and how == "flush" and status.ok


# coalescing: rounds, the hold, databases apart


def test_a_call_behind_a_flush_in_flight_gathers_and_is_held_for_at_most_the_hold(scheduler, clock):
    first = scheduler.join(request_at(clock))
    flush_sent(first.next())
    clock.advance(0.01)
    behind = scheduler.join(request_at(clock))
    wait = waits(behind.next())
    assert wait.until == pytest.approx(T0 + 1.0)  # HOLD_MAX: no Flush timed yet
    assert wait.slot is None  # held, not paced
    clock.advance(1.0)
    flush_sent(behind.next())  # the hold is over: it sends the next round itself
    first.answered(flushed(), None)
    behind.answered(flushed(), None)
    assert behind.next() is None
    assert behind.answers()[0][3] == "flush"


def test_once_a_flush_was_timed_the_hold_is_four_times_its_latency(scheduler, clock):
    turn = scheduler.join(request_at(clock))
    flush_sent(turn.next())
    clock.advance(0.1)
    turn.answered(flushed(), None)
    first = scheduler.join(request_at(clock))
    flush_sent(first.next())
    behind = scheduler.join(request_at(clock))
    assert waits(behind.next()).until == pytest.approx(clock.now + 0.4)


def test_the_hold_stays_within_its_bounds(scheduler, clock):
    for latency, hold in ((0.001, 0.05), (5.0, 1.0)):
        turn = scheduler.join(request_at(clock))
        flush_sent(turn.next())
        clock.advance(latency)
        turn.answered(flushed(), None)
        clock.advance(20)
        first = scheduler.join(request_at(clock))
        flush_sent(first.next())
        behind = scheduler.join(request_at(clock))
        assert waits(behind.next()).until == pytest.approx(clock.now + hold)
        first.answered(flushed(), None)
        behind.leave()
        clock.advance(20)


def test_the_calls_gathered_behind_a_flush_share_the_next_one(scheduler, clock):
    first = scheduler.join(request_at(clock))
    flush_sent(first.next())
    one = scheduler.join(request_at(clock, timeout=30, trace="one"))
    two = scheduler.join(request_at(clock, timeout=60, trace="two"))
    woken: list[int] = []
    for i, turn in enumerate((one, two)):  # each sleeps: not rung since it looked
        assert waits(turn.next()).bell.arm(lambda i=i: woken.append(i))
    first.answered(flushed(), None)  # rings the gathered calls: the next round may go
    assert sorted(woken) == [0, 1]
    start = one.next()
    assert type(start) is Start
    assert start.call.method == FLUSH
    assert tuple(start.call.message.collection_names) == ("docs",)
    shared = start.call.request
    assert shared.deadline == pytest.approx(T0 + 60)  # the latest member's
    assert shared.timeout is None and shared.coalesce and shared.trace == "one"
    assert shared.started == clock.now
    handle = Handle()
    one.started(start.round, handle)
    landing = waits(two.next())
    assert landing.slot is None and landing.until == T0 + 60  # the landing, or its deadline
    response = flushed()
    start.round.land(response, None)
    assert rung(landing)
    for turn in (one, two):
        assert turn.next() is None
        [(answer, _, status, how)] = turn.answers()
        assert answer is response and status.ok and how == "shared"
    assert two.tickets[0].sent_by == "one" and one.tickets[0].sent_by is None
    one.leave()
    two.leave()
    assert handle.cancelled == 0


def test_a_shared_rounds_error_is_each_callers_own_marked_coalesced(scheduler, clock):
    one, two, start = two_gathered(scheduler, clock)
    one.started(start.round, Handle())
    error = flushkit.ServerError("broken", code=5)
    start.round.land(None, error)
    raised = []
    for turn in (one, two):
        with pytest.raises(flushkit.ServerError) as caught:
            assert turn.next() is None  # (the sender settles the round: then its answers)
            turn.answers()
        raised.append(caught.value)
    assert raised[0] is not raised[1] and raised[0] is not error
    assert all(e.coalesced for e in raised) and not error.coalesced


def test_a_shared_round_every_member_left_is_cancelled(scheduler, clock):
    one, two, start = two_gathered(scheduler, clock)
    handle = Handle()
    one.started(start.round, handle)
    one.leave()
    assert handle.cancelled == 0  # another member still waits for it
    two.leave()
    assert handle.cancelled == 1
    # and the collection is free: the next call goes alone at once
    flush_sent(scheduler.join(request_at(clock)).next())


def test_a_shared_round_abandoned_before_it_started_is_cancelled_as_it_starts(scheduler, clock):
    one, two, start = two_gathered(scheduler, clock)
    one.leave()
    two.leave()
    handle = Handle()
    one.started(start.round, handle)
    assert handle.cancelled == 1


def test_a_shared_round_that_failed_to_start_goes_back_for_another_member_to_send(scheduler, clock):
    one, two, start = two_gathered(scheduler, clock)
    one.unsend(start.round)
    one.leave()
    again = two.next()
    flush_sent(again)  # alone in the round now: its own Flush
    two.answered(flushed(), None)
    assert two.next() is None and two.answers()[0][3] == "flush"


def test_the_last_member_leaving_a_landed_round_learns_from_its_answer(scheduler, clock):
    one, two, start = two_gathered(scheduler, clock)
    one.started(start.round, Handle())
    clock.advance(0.1)
    start.round.land(throttled(), None)
    one.leave()
    two.leave()
    # the throttled answer was learned: the next call is paced to the slot
    late = scheduler.join(request_at(clock, timeout=1))
    with pytest.raises(flushkit.RateLimitedError) as refused:
        late.next()
    assert refused.value.retry_after == pytest.approx(T0 + 10 - clock.now)


def test_calls_without_coalescing_send_their_own_flush_even_behind_one_in_flight(scheduler, clock):
    first = scheduler.join(request_at(clock))
    flush_sent(first.next())
    private = scheduler.join(request_at(clock, coalesce=False))
    flush_sent(private.next())
    private.answered(flushed(), None)
    assert private.next() is None and private.answers()[0][3] == "flush"


def test_private_calls_gathered_for_a_slot_each_send_their_own(scheduler, clock):
    scheduler.seed(1.0)
    admit(scheduler, clock)
    one, two = (scheduler.join(request_at(clock, coalesce=False)) for _ in range(2))
    for turn in (one, two):
        assert waits(turn.next()).slot == pytest.approx(T0 + 1.0)
    clock.advance(1.0)
    for turn in (one, two):
        flush_sent(turn.next())


def test_the_same_collection_name_in_two_databases_is_two_collections(scheduler, clock):
    in_a = scheduler.join(request_at(clock, "docs", db="a"))
    flush_sent(in_a.next(), "docs", db="a")
    in_b = scheduler.join(request_at(clock, "docs", db="b"))
    flush_sent(in_b.next(), "docs", db="b")  # not held behind a's Flush
    in_a.answered(throttled(reason="too many"), None)  # backs a off 0.25 s
    in_b.answered(flushed(db="b"), None)
    assert in_b.next() is None
    assert waits(in_a.next()).slot == pytest.approx(T0 + 0.25)
    # a's throttling paces a, not b
    flush_sent(scheduler.join(request_at(clock, "docs", db="b")).next(), "docs", db="b")
    assert waits(scheduler.join(request_at(clock, "docs", db="a")).next()).until == (
        pytest.approx(T0 + 0.25)
    )


def test_a_multi_collection_call_behind_one_in_flight_sends_the_rest_at_once(scheduler, clock):
    first = scheduler.join(request_at(clock, "a"))
    flush_sent(first.next(), "a")
    both = scheduler.join(request_at(clock, "a", "b"))
    call = flush_sent(both.next(), "b")  # b is idle: its Flush goes now, a's is held
    assert call.request.collection_names == ("b",)
    both.answered(flushed("b"), None)
    first.answered(flushed("a"), None)
    call = flush_sent(both.next(), "a")
    response = flushed("a")
    both.answered(response, None)
    assert both.next() is None
    answers = both.answers()
    assert [part.collection_names for _, part, _, _ in answers] == [("a",), ("b",)]
    assert answers[0][0] is response


# pacing: slots, intervals, refusals


def test_an_admitted_flush_paces_the_next_one_interval_later(scheduler, clock):
    scheduler.seed(2.0)
    admit(scheduler, clock)
    turn = scheduler.join(request_at(clock))
    wait = waits(turn.next())
    assert wait.until == wait.slot == pytest.approx(T0 + 2.0)
    clock.advance(2.0)
    flush_sent(turn.next())
    turn.answered(flushed(), None)
    assert turn.next() is None


def test_the_largest_seed_wins(scheduler, clock):
    scheduler.seed(3.0)
    scheduler.seed(1.0)
    admit(scheduler, clock)
    assert waits(scheduler.join(request_at(clock)).next()).slot == pytest.approx(T0 + 3.0)


def test_a_throttled_answer_naming_the_rate_paces_from_the_last_admission(scheduler, clock):
    admit(scheduler, clock)
    clock.advance(1.0)
    turn = scheduler.join(request_at(clock))
    flush_sent(turn.next())  # the interval is not known yet: it tries
    turn.answered(throttled(), None)
    wait = waits(turn.next())
    assert wait.slot == pytest.approx(T0 + 10.0)  # the rate: 0.1/s, from the admission
    clock.advance(9.0)
    flush_sent(turn.next())
    turn.answered(flushed(), None)
    assert turn.next() is None
    assert turn.throttled == 1
    # learned: the next call is paced without a throttled answer
    assert waits(scheduler.join(request_at(clock)).next()).slot == pytest.approx(T0 + 20.0)


def test_a_learned_interval_is_never_below_the_seed(scheduler, clock):
    scheduler.seed(20.0)
    admit(scheduler, clock)
    clock.advance(25.0)
    turn = scheduler.join(request_at(clock))
    flush_sent(turn.next())
    turn.answered(throttled(), None)  # rate=0.1: 10 s, less than the seed
    clock.advance(1.0)
    admit(scheduler, clock, "other")
    assert waits(scheduler.join(request_at(clock, "other")).next()).slot == pytest.approx(
        clock.now + 20.0
    )


def test_unexplained_throttling_backs_off_doubling_without_coverage(scheduler, clock):
    scheduler.covers = False  # as on Milvus Lite
    turn = scheduler.join(request_at(clock))
    slots = []
    for _ in range(4):
        flush_sent(turn.next())
        turn.answered(throttled(reason="too many"), None)  # no rate named
        slot = waits(turn.next()).slot
        slots.append(slot - clock.now)
        clock.now = slot
    assert slots == pytest.approx([0.25, 0.5, 1.0, 2.0])


def test_grpc_resource_exhausted_is_throttling_too(scheduler, clock):
    scheduler.covers = False
    turn = scheduler.join(request_at(clock, timeout=0.1))
    flush_sent(turn.next())
    turn.answered(None, flushkit.RateLimitedError("exhausted", grpc_code="RESOURCE_EXHAUSTED"))
    with pytest.raises(flushkit.RateLimitedError) as refused:
        turn.next()
    assert refused.value.retry_after == pytest.approx(0.25)
    assert refused.value.grpc_code == "RESOURCE_EXHAUSTED"


def test_a_call_whose_budget_ends_before_the_slot_is_refused_at_once(scheduler, clock):
    scheduler.seed(5.0)
    admit(scheduler, clock, db="shop")
    clock.advance(1.0)
    turn = scheduler.join(request_at(clock, "docs", db="shop", timeout=3.9))
    with pytest.raises(flushkit.RateLimitedError) as refused:
        turn.next()
    assert refused.value.retry_after == pytest.approx(4.0)
    assert refused.value.db_name == "shop" and refused.value.collection_names == ("docs",)
    assert "'docs' in 4 s" in str(refused.value)
    # a budget that reaches the slot waits for it
    wait = waits(scheduler.join(request_at(clock, db="shop", timeout=4.1)).next())
    assert wait.slot == pytest.approx(T0 + 5.0)
    # and the same name in another database goes at once
    flush_sent(scheduler.join(request_at(clock, timeout=1.0)).next())


def test_the_refusal_counts_the_usual_latency_and_with_wait_the_usual_persistence(scheduler, clock):
    scheduler.seed(5.0)
    turn = scheduler.join(request_at(clock))
    flush_sent(turn.next())
    clock.advance(0.5)  # the usual Flush latency: 0.5 s
    turn.answered(flushed(), None)
    scheduler.persisted(2.0)  # the usual persistence: 2 s
    slot = T0 + 0.5 + 5.0
    # no wait: the slot plus 0.5 s
    waits(scheduler.join(request_at(clock, timeout=slot + 0.6 - clock.now)).next())
    with pytest.raises(flushkit.RateLimitedError):
        scheduler.join(request_at(clock, timeout=slot + 0.4 - clock.now)).next()
    # wait=True: the slot plus 2.5 s
    waits(scheduler.join(request_at(clock, timeout=slot + 2.6 - clock.now, wait=True)).next())
    with pytest.raises(flushkit.RateLimitedError):
        scheduler.join(request_at(clock, timeout=slot + 2.4 - clock.now, wait=True)).next()


def test_the_usual_latency_moves_a_fifth_of_the_way_to_each_new_one(scheduler, clock):
    scheduler.seed(5.0)
    for latency in (1.0, 2.0):  # usual: 1.0, then 1.2
        clock.advance(10)
        turn = scheduler.join(request_at(clock))
        flush_sent(turn.next())
        clock.advance(latency)
        turn.answered(flushed(), None)
    slot = clock.now + 5.0
    waits(scheduler.join(request_at(clock, timeout=slot + 1.25 - clock.now)).next())
    with pytest.raises(flushkit.RateLimitedError):
        scheduler.join(request_at(clock, timeout=slot + 1.15 - clock.now)).next()


def test_the_usual_persistence_moves_a_fifth_of_the_way_to_each_new_one(scheduler, clock):
    scheduler.seed(5.0)
    admit(scheduler, clock)
    scheduler.persisted(1.0)
    scheduler.persisted(2.0)  # usual: 1.2
    slot = T0 + 5.0
    waits(scheduler.join(request_at(clock, wait=True, timeout=slot + 1.25 - clock.now)).next())
    with pytest.raises(flushkit.RateLimitedError):
        scheduler.join(request_at(clock, wait=True, timeout=slot + 1.15 - clock.now)).next()


def test_a_waiting_call_whose_deadline_passes_times_out(scheduler, clock):
    first = scheduler.join(request_at(clock))
    flush_sent(first.next())
    behind = scheduler.join(request_at(clock, timeout=0.5))
    assert waits(behind.next()).until == pytest.approx(T0 + 0.5)  # its deadline first
    clock.advance(0.5)
    with pytest.raises(flushkit.FlushTimeoutError) as timed_out:
        behind.next()
    assert str(timed_out.value).endswith("(waiting for its turn to flush)")


def test_a_paced_call_whose_deadline_passed_times_out_rather_than_being_refused(scheduler, clock):
    scheduler.seed(5.0)
    admit(scheduler, clock)
    turn = scheduler.join(request_at(clock, timeout=6.0))
    assert waits(turn.next()).slot == pytest.approx(T0 + 5.0)
    clock.advance(5.0)
    flush_sent(turn.next())
    clock.advance(1.5)  # the throttled answer comes after the call's deadline
    turn.answered(throttled(), None)  # rate=0.1: the next slot is T0 + 10
    with pytest.raises(flushkit.FlushTimeoutError) as timed_out:
        turn.next()
    assert str(timed_out.value).endswith("(waiting for the server to admit a flush)")


def test_pacing_outlives_its_calls_and_then_goes(scheduler, clock):
    scheduler.seed(2.0)
    admit(scheduler, clock)
    assert waits(scheduler.join(request_at(clock)).next()).slot == pytest.approx(T0 + 2.0)
    clock.advance(60)
    flush_sent(scheduler.join(request_at(clock, "docs2")).next(), "docs2")
    assert len(scheduler._collections) <= 2


def test_collections_whose_pacing_carries_nothing_are_forgotten(scheduler, clock):
    for i in range(40):
        admit(scheduler, clock, f"c{i}")
    clock.advance(60)  # every admission's window has passed
    turn = scheduler.join(request_at(clock, "last"))
    assert set(scheduler._collections) == {("default", "last")}
    flush_sent(turn.next(), "last")


# coverage: another client's Flush answers a waiting round


def covered_setup(scheduler: FlushScheduler, clock: Clock, latency: float = 0.0, **options: object):
    """A call throttled by another client's Flush (unexplained: an estimated slot),
    answered after ``latency``."""
    turn = scheduler.join(request_at(clock, **options))
    flush_sent(turn.next(), db=str(options.get("db", "default")))
    clock.advance(latency)
    turn.answered(throttled(), None)
    return turn


def alloc(effect: object) -> Call:
    assert type(effect) is Call and effect.method == ALLOC_TIMESTAMP, effect
    assert type(effect.message) is milvus_pb2.AllocTimestampRequest
    assert type(effect.request) is FlushRequest  # the probing call's, for its trace
    return effect


def look(effect: object, ts: int, name: str = "docs", db: str = "default") -> Call:
    assert type(effect) is Call and effect.method == GET_FLUSH_STATE, effect
    assert effect.message.flush_ts == ts
    assert effect.message.collection_name == name and effect.message.db_name == db
    assert effect.request.collection_names[0] == name and effect.request.db_name == db
    return effect


def timestamp(ts: int) -> milvus_pb2.AllocTimestampResponse:
    return milvus_pb2.AllocTimestampResponse(status=common_pb2.Status(), timestamp=ts)


def flush_state(flushed_: bool) -> milvus_pb2.GetFlushStateResponse:
    return milvus_pb2.GetFlushStateResponse(status=common_pb2.Status(), flushed=flushed_)


def test_a_throttled_call_takes_t_and_looks_until_another_clients_flush_covers_it(
    scheduler, clock, looks
):
    turn = covered_setup(scheduler, clock, db="shop")
    alloc(turn.next())
    clock.advance(0.05)
    turn.probed(timestamp(77), None)
    assert scheduler.covers is True
    wait = waits(turn.next())
    assert wait.until == pytest.approx(clock.now + 0.2)
    assert wait.slot == pytest.approx(T0 + 10.0 + SPREAD_DRAWN)  # estimated, spread
    clock.advance(0.2)
    look(turn.next(), 77, db="shop")
    turn.probed(flush_state(False), None)
    assert waits(turn.next()).until == pytest.approx(clock.now + 0.2)
    clock.advance(0.2)
    look(turn.next(), 77, db="shop")
    turn.probed(flush_state(True), None)
    assert turn.next() is None
    [(response, _, status, how)] = turn.answers()
    assert how == "covered" and status.ok
    assert response.db_name == "shop" and dict(response.coll_flush_ts) == {"docs": 77}
    assert list(response.coll_segIDs["docs"].data) == []
    assert "docs" in response.coll_segIDs and "docs" in response.flush_coll_segIDs


def test_a_slot_closer_than_a_look_is_waited_for_without_taking_t(scheduler, clock, looks):
    scheduler.covers = True
    scheduler.seed(0.15)
    admit(scheduler, clock)
    assert waits(scheduler.join(request_at(clock)).next()).slot == pytest.approx(T0 + 0.15)


def test_a_covered_slot_is_estimated_one_window_on_and_a_covered_call_keeps_a_known_slot(
    scheduler, clock, looks
):
    scheduler.seed(10.0)
    admit(scheduler, clock)
    turn = scheduler.join(request_at(clock))
    alloc(turn.next())
    turn.probed(timestamp(5), None)
    clock.advance(0.2)
    look(turn.next(), 5)
    turn.probed(flush_state(True), None)
    assert turn.answers()[0][3] == "covered"
    # the slot the client's own admission made known stays: a short budget is refused
    with pytest.raises(flushkit.RateLimitedError) as refused:
        scheduler.join(request_at(clock, timeout=1.0)).next()
    assert refused.value.retry_after == pytest.approx(T0 + 10.0 - clock.now)


def test_a_call_that_began_after_t_was_asked_for_is_not_covered_by_it(scheduler, clock, looks):
    turn = covered_setup(scheduler, clock)
    alloc(turn.next())
    asked = clock.now
    clock.advance(0.1)
    later = scheduler.join(request_at(clock))  # began after T was asked for
    turn.probed(timestamp(77), None)
    clock.advance(0.2)
    look(turn.next(), 77)
    turn.probed(flush_state(True), None)
    assert turn.answers()[0][3] == "covered"
    effect = later.next()  # needs a later T
    alloc(effect)
    assert clock.now > asked


def test_at_its_slot_a_round_looks_once_more_and_then_sends(scheduler, clock, looks):
    turn = covered_setup(scheduler, clock)
    alloc(turn.next())
    turn.probed(timestamp(77), None)
    clock.now = T0 + 10.0 + SPREAD_DRAWN  # the slot
    look(turn.next(), 77)
    turn.probed(flush_state(False), None)
    flush_sent(turn.next())
    turn.answered(flushed(), None)
    assert turn.next() is None and turn.answers()[0][3] == "flush"


def test_a_round_throttled_at_its_slot_keeps_t_and_looks_at_once(scheduler, clock, looks):
    first = covered_setup(scheduler, clock)
    alloc(first.next())
    first.probed(timestamp(77), None)
    clock.now = T0 + 10.0 + SPREAD_DRAWN
    look(first.next(), 77)
    first.probed(flush_state(False), None)
    flush_sent(first.next())
    first.answered(throttled(), None)
    look(first.next(), 77)  # no new T, no waiting


def test_a_server_without_alloc_timestamp_is_never_asked_again(scheduler, clock, looks):
    turn = covered_setup(scheduler, clock, timeout=60)
    alloc(turn.next())
    turn.probed(None, flushkit.FlushError("unimplemented", grpc_code="UNIMPLEMENTED"))
    assert scheduler.covers is False
    wait = waits(turn.next())  # the estimated slot became the backoff's
    assert wait.slot == pytest.approx(T0 + 0.25)
    other = covered_setup(scheduler, clock, db="other")
    waits(other.next())  # no AllocTimestamp for another round either


def test_a_failed_look_makes_its_round_wait_for_the_slot_and_the_next_round_looks_again(
    scheduler, clock, looks
):
    turn = covered_setup(scheduler, clock)
    alloc(turn.next())
    turn.probed(timestamp(77), None)
    clock.advance(0.2)
    look(turn.next(), 77)
    turn.probed(None, flushkit.ServiceUnavailableError("down", grpc_code="UNAVAILABLE"))
    assert scheduler.covers is True
    wait = waits(turn.next())
    assert wait.until == wait.slot == pytest.approx(T0 + 10.0 + SPREAD_DRAWN)
    other = covered_setup(scheduler, clock, db="other")
    alloc(other.next())


def test_a_look_answered_with_an_error_status_counts_as_failed(scheduler, clock, looks):
    turn = covered_setup(scheduler, clock)
    alloc(turn.next())
    turn.probed(
        milvus_pb2.AllocTimestampResponse(status=common_pb2.Status(code=5, reason="no")), None
    )
    assert scheduler.covers is None  # not known either way
    wait = waits(turn.next())
    assert wait.until == wait.slot


def test_one_member_looks_for_the_round_the_others_wait(scheduler, clock, looks):
    first = covered_setup(scheduler, clock)
    other = scheduler.join(request_at(clock))
    alloc(first.next())
    wait = waits(other.next())  # the round's looking is taken
    assert wait.slot == pytest.approx(T0 + 10.0 + SPREAD_DRAWN)
    first.probed(timestamp(9), None)
    clock.advance(0.2)
    look(first.next(), 9)
    first.probed(flush_state(True), None)
    for turn in (first, other):
        assert turn.next() is None and turn.answers()[0][3] == "covered"


def test_a_member_leaving_mid_look_hands_looking_to_another(scheduler, clock, looks):
    first = covered_setup(scheduler, clock)
    other = scheduler.join(request_at(clock))
    alloc(first.next())
    first.leave()
    alloc(other.next())


def test_an_estimated_slot_past_the_deadline_gets_one_flush_at_the_last_chance(
    scheduler, clock, looks
):
    turn = covered_setup(scheduler, clock, timeout=5.0)
    alloc(turn.next())
    turn.probed(timestamp(3), None)
    # latency unknown: the last chance is 0.1 s before the deadline
    clock.now = T0 + 4.9
    look(turn.next(), 3)
    turn.probed(flush_state(False), None)
    flush_sent(turn.next())
    turn.answered(throttled(), None)
    with pytest.raises(flushkit.RateLimitedError):
        turn.next()  # tried at its last chance: no second try


def test_the_last_chance_leaves_twice_the_usual_latency(scheduler, clock, looks):
    turn = covered_setup(scheduler, clock, latency=0.5, timeout=5.0)  # usual latency: 0.5
    alloc(turn.next())
    turn.probed(None, flushkit.FlushError("no", grpc_code="UNKNOWN"))  # no looks: wait
    wait = waits(turn.next())
    assert wait.until == wait.slot == pytest.approx(T0 + 5.0 - 2 * 0.5)
    clock.now = wait.until
    flush_sent(turn.next())


# the module's pure helpers


def test_only_rate_limits_are_throttling():
    assert is_throttled(flushkit.Status(8, "RateLimit", legacy_code=49))
    assert is_throttled(flushkit.Status(4, "UnexpectedError", legacy_code=1))
    assert is_throttled(flushkit.Status(0, "RateLimit", legacy_code=49))  # legacy only
    assert not is_throttled(flushkit.Status(0, "ForceDeny", legacy_code=48))
    assert not is_throttled(flushkit.Status(9, "ForceDeny", legacy_code=48))  # a quota
    assert not is_throttled(flushkit.Status(100, "CollectionNotExists", legacy_code=4))


@pytest.mark.parametrize(
    ("reason", "rate"),
    [
        ("request is rejected by grpc RateLimiter middleware: rate limit exceeded[rate=0.1]", 0.1),
        ("rate limit exceeded[rate=2.5]", 2.5),
        ("rate limit exceeded[rate=1e+06]", 1e6),
        ("rate limit exceeded", None),
        ("rate=0", None),
        ("rate=0.0", None),
        ("rate=inf", None),
        ("rate=1e999", None),
        ("rate=nan", None),
        ("rate=1.2.3", None),
    ],
)
def test_the_rate_is_read_from_the_reason(reason, rate):
    assert rate_named_in(reason) == (None if rate is None else pytest.approx(rate))


@pytest.mark.parametrize(
    "status",
    [
        {"code": 8, "reason": "rate limit exceeded[rate=0.1]"},  # a new server: no legacy code
        {"error_code": 49, "reason": "rate limit exceeded[rate=0.1]"},  # legacy code only
    ],
)
def test_either_code_alone_is_a_throttled_answer(scheduler, clock, status):
    scheduler.seed(0.0)
    admit(scheduler, clock)
    turn = scheduler.join(request_at(clock))
    clock.advance(1.0)
    flush_sent(turn.next())
    turn.answered(flushed(**status), None)
    assert turn.throttled == 1
    assert waits(turn.next()).slot == pytest.approx(T0 + 10.0)


# exact times: the fake clock meets slots and deadlines to the nanosecond


def test_a_call_at_exactly_its_slot_goes_at_once(scheduler, clock):
    scheduler.seed(2.0)
    admit(scheduler, clock)
    clock.now = T0 + 2.0
    flush_sent(scheduler.join(request_at(clock)).next())


def test_a_waiting_call_at_exactly_its_slot_sends(scheduler, clock):
    scheduler.seed(2.0)
    admit(scheduler, clock)
    turn = scheduler.join(request_at(clock, timeout=2.0))  # its deadline is the slot
    assert waits(turn.next()).until == pytest.approx(T0 + 2.0)
    clock.now = T0 + 2.0
    flush_sent(turn.next())


def test_a_call_whose_deadline_is_exactly_its_slot_plus_the_margin_waits(scheduler, clock):
    scheduler.seed(2.0)
    turn = scheduler.join(request_at(clock))
    flush_sent(turn.next())
    clock.advance(0.5)
    turn.answered(flushed(), None)  # latency 0.5: the slot is T0 + 2.5
    clock.now = T0 + 1.0
    waits(scheduler.join(request_at(clock, timeout=2.0)).next())  # 2.5 + 0.5 = deadline
    with pytest.raises(flushkit.RateLimitedError):
        scheduler.join(request_at(clock, timeout=1.999)).next()


def test_at_exactly_its_deadline_a_waiting_call_times_out(scheduler, clock):
    first = scheduler.join(request_at(clock))
    flush_sent(first.next())
    behind = scheduler.join(request_at(clock, timeout=0.5))
    waits(behind.next())
    clock.now = T0 + 0.5
    with pytest.raises(flushkit.FlushTimeoutError):
        behind.next()


def test_pacing_ends_exactly_when_its_window_does(scheduler, clock):
    scheduler.seed(2.0)
    admit(scheduler, clock, "a")
    admit(scheduler, clock, "b")
    clock.now = T0 + 2.0
    scheduler.join(request_at(clock, "c")).leave()
    assert set(scheduler._collections) == set()


# who is woken


def test_a_throttled_shared_round_rings_its_members_to_go_again_together(scheduler, clock):
    one, two, start = two_gathered(scheduler, clock)
    one.started(start.round, Handle())
    landing = waits(two.next())
    clock.advance(0.1)
    start.round.land(throttled(), None)
    assert rung(landing)
    waiting = [waits(turn.next()) for turn in (two, one)]
    assert [w.slot for w in waiting] == pytest.approx([T0 + 10.0] * 2)
    assert one.throttled == 1 and two.throttled == 0  # the sender's own Flush was throttled
    clock.now = T0 + 10.0
    again = two.next()
    assert type(again) is Start  # both again, in one round
    assert len(again.round.members) == 2


def test_a_multi_collection_call_is_woken_by_each_of_its_collections(scheduler, clock):
    scheduler.seed(1.0)
    admit(scheduler, clock, "a")
    clock.advance(0.5)
    admit(scheduler, clock, "b")
    turn = scheduler.join(request_at(clock, "a", "b"))
    wait = waits(turn.next())
    assert wait.until == wait.slot == pytest.approx(T0 + 1.0)  # a's slot first
    clock.now = T0 + 1.0
    flush_sent(turn.next(), "a")
    turn.answered(flushed("a"), None)
    wait = waits(turn.next())
    assert wait.until == pytest.approx(T0 + 1.5)
    clock.now = T0 + 1.5
    flush_sent(turn.next(), "b")


def test_a_gathering_round_takes_a_call_that_arrives_at_its_slot(scheduler, clock):
    first = scheduler.join(request_at(clock))
    flush_sent(first.next())
    second = scheduler.join(request_at(clock))
    waits(second.next())
    first.answered(flushed(), None)  # second's round may go: it has not looked yet
    third = scheduler.join(request_at(clock))  # joins that round rather than going alone
    start = third.next()
    assert type(start) is Start and len(start.round.members) == 2
    third.started(start.round, Handle())
    assert waits(second.next()).slot is None
    start.round.land(flushed(), None)
    for turn in (second, third):
        assert turn.next() is None and turn.answers()[0][3] == "shared"


def test_a_probe_failing_rings_the_members_that_wait_for_it(scheduler, clock, looks):
    first = covered_setup(scheduler, clock)
    other = scheduler.join(request_at(clock))
    alloc(first.next())
    wait = waits(other.next())
    first.probed(None, flushkit.ServiceUnavailableError("down", grpc_code="UNAVAILABLE"))
    assert rung(wait)


def test_a_covering_look_rings_every_member(scheduler, clock, looks):
    first = covered_setup(scheduler, clock)
    other = scheduler.join(request_at(clock))
    alloc(first.next())
    wait = waits(other.next())
    first.probed(timestamp(4), None)
    clock.advance(0.2)
    look(first.next(), 4)
    first.probed(flush_state(True), None)
    assert rung(wait)
    assert other.next() is None and other.answers()[0][3] == "covered"


def test_the_prober_leaving_rings_the_others_so_one_looks_instead(scheduler, clock, looks):
    first = covered_setup(scheduler, clock)
    other = scheduler.join(request_at(clock))
    alloc(first.next())
    wait = waits(other.next())
    first.leave()
    assert rung(wait)
    alloc(other.next())


def test_a_private_call_throttled_regathers_alone(scheduler, clock):
    first = scheduler.join(request_at(clock, coalesce=False))
    flush_sent(first.next())
    second = scheduler.join(request_at(clock, coalesce=False))
    flush_sent(second.next())
    first.answered(throttled(reason="too many"), None)
    second.answered(throttled(reason="too many"), None)
    clock.advance(1.0)
    flush_sent(first.next())  # each its own round: no shared Start
    flush_sent(second.next())


# leaving, and what it frees


def test_a_call_leaving_its_unanswered_flush_frees_the_collection_for_the_next(scheduler, clock):
    first = scheduler.join(request_at(clock))
    flush_sent(first.next())
    behind = scheduler.join(request_at(clock))
    woken: list[int] = []
    assert waits(behind.next()).bell.arm(lambda: woken.append(1))
    first.leave()  # cancelled: its Flush is no longer in flight
    assert woken == [1]
    flush_sent(behind.next())  # not held behind a Flush nobody waits for


def test_a_call_leaving_the_flush_it_leads_frees_the_collection(scheduler, clock):
    scheduler.seed(1.0)
    admit(scheduler, clock)
    leader = scheduler.join(request_at(clock))
    waits(leader.next())
    clock.now = T0 + 1.0
    flush_sent(leader.next())
    behind = scheduler.join(request_at(clock))
    woken: list[int] = []
    assert waits(behind.next()).bell.arm(lambda: woken.append(1))
    leader.leave()
    assert woken == [1]


def test_the_only_member_leaving_a_gathering_round_ends_it(scheduler, clock):
    first = scheduler.join(request_at(clock))
    flush_sent(first.next())
    gone = scheduler.join(request_at(clock))
    waits(gone.next())
    gone.leave()
    first.answered(flushed(), None)
    flush_sent(scheduler.join(request_at(clock)).next())  # alone at once: no round left


def test_with_wait_an_untimed_persistence_counts_nothing(scheduler, clock):
    scheduler.seed(5.0)
    admit(scheduler, clock)
    waits(scheduler.join(request_at(clock, wait=True, timeout=5.5)).next())


def test_a_shared_flush_is_timed_too(scheduler, clock):
    one, two, start = two_gathered(scheduler, clock)
    one.started(start.round, Handle())
    clock.advance(0.1)
    start.round.land(flushed(), None)
    assert one.next() is None and two.next() is None
    # the usual latency: 0 + 0.2 * (0.1 - 0) = 0.02 s; the hold, 4 times that
    clock.advance(20)
    lead = scheduler.join(request_at(clock))
    flush_sent(lead.next())
    assert waits(scheduler.join(request_at(clock)).next()).until == pytest.approx(clock.now + 0.08)


def test_a_shared_flush_exhausted_by_grpc_sends_its_members_back_for_the_slot(scheduler, clock):
    one, two, start = two_gathered(scheduler, clock)
    one.started(start.round, Handle())
    start.round.land(None, flushkit.RateLimitedError("exhausted", grpc_code="RESOURCE_EXHAUSTED"))
    assert [waits(t.next()).slot for t in (one, two)] == pytest.approx([T0 + 0.25] * 2)


def test_a_round_covered_for_some_members_keeps_the_others_gathering(scheduler, clock, looks):
    turn = covered_setup(scheduler, clock)
    alloc(turn.next())
    clock.advance(0.1)
    later = scheduler.join(request_at(clock))
    turn.probed(timestamp(77), None)
    clock.advance(0.2)
    look(turn.next(), 77)
    turn.probed(flush_state(True), None)
    third = scheduler.join(request_at(clock))
    assert third.tickets[0].round is later.tickets[0].round  # one round still gathers


def test_a_covered_slot_is_one_known_interval_on(scheduler, clock, looks):
    scheduler.seed(2.0)
    turn = covered_setup(scheduler, clock, timeout=60)  # names rate=0.1: 10 s
    alloc(turn.next())
    turn.probed(timestamp(3), None)
    clock.advance(0.2)
    look(turn.next(), 3)
    turn.probed(flush_state(True), None)
    state = scheduler._collections[("default", "docs")]
    assert state.slot == pytest.approx(clock.now + 10.0 + SPREAD_DRAWN)
    assert state.estimated


def test_a_covered_slot_with_a_seeded_interval_only_is_that_interval_on(scheduler, clock, looks):
    scheduler.seed(2.0)
    turn = scheduler.join(request_at(clock))
    flush_sent(turn.next())
    turn.answered(throttled(reason="too many"), None)  # no rate named: the seed, 2 s
    alloc(turn.next())
    turn.probed(timestamp(3), None)
    clock.advance(0.2)
    look(turn.next(), 3)
    turn.probed(flush_state(True), None)
    state = scheduler._collections[("default", "docs")]
    assert state.slot == pytest.approx(clock.now + 2.0 + SPREAD_DRAWN)


def test_with_no_interval_known_a_covered_slot_is_the_default_window_on(scheduler, clock, looks):
    turn = scheduler.join(request_at(clock))
    flush_sent(turn.next())
    turn.answered(throttled(reason="too many"), None)  # no rate named: no interval
    alloc(turn.next())
    turn.probed(timestamp(3), None)
    clock.advance(0.2)
    look(turn.next(), 3)
    turn.probed(flush_state(True), None)
    state = scheduler._collections[("default", "docs")]
    assert state.slot == pytest.approx(clock.now + 10.0 + SPREAD_DRAWN)
    assert state.estimated


def test_unexplained_throttling_is_remembered_after_its_calls_left(scheduler, clock):
    turn = scheduler.join(request_at(clock))
    flush_sent(turn.next())
    turn.answered(throttled(reason="too many"), None)  # backoff 0.25
    turn.leave()
    clock.advance(1.0)
    again = scheduler.join(request_at(clock))
    flush_sent(again.next())
    again.answered(throttled(reason="too many"), None)  # doubles: 0.5
    assert waits(again.next()).slot == pytest.approx(clock.now + 0.5)


def test_a_refusal_names_the_throttled_answer_it_learned_from(scheduler, clock):
    admit(scheduler, clock)
    turn = scheduler.join(request_at(clock))
    flush_sent(turn.next())
    turn.answered(throttled(), None)
    refused_call = scheduler.join(request_at(clock, timeout=1.0))
    with pytest.raises(flushkit.RateLimitedError) as refused:
        refused_call.next()
    assert refused.value.reason == RATE_LIMITED["reason"]
    assert refused.value.code == 8 and refused.value.grpc_code is None
    assert str(refused.value).endswith(": " + RATE_LIMITED["reason"])


def test_a_refusal_by_pacing_alone_names_no_server_answer(scheduler, clock):
    scheduler.seed(5.0)
    admit(scheduler, clock)
    with pytest.raises(flushkit.RateLimitedError) as refused:
        scheduler.join(request_at(clock, timeout=1.0)).next()
    assert refused.value.grpc_code is None and refused.value.reason == ""
    assert refused.value.retryable


def test_at_exactly_its_deadline_a_refused_call_times_out(scheduler, clock):
    scheduler.seed(5.0)
    admit(scheduler, clock)
    turn = scheduler.join(request_at(clock, timeout=6.0))
    waits(turn.next())
    clock.now = T0 + 5.0
    flush_sent(turn.next())
    clock.now = T0 + 6.0
    turn.answered(throttled(), None)
    with pytest.raises(flushkit.FlushTimeoutError):
        turn.next()


def test_a_member_at_its_slot_while_another_looks_waits_a_look_for_its_answer(
    scheduler, clock, looks
):
    first = covered_setup(scheduler, clock)
    other = scheduler.join(request_at(clock))
    alloc(first.next())
    first.probed(timestamp(4), None)
    clock.now = T0 + 10.0 + SPREAD_DRAWN - 0.1
    look(first.next(), 4)  # a look just before the slot, still in flight at the slot
    clock.now = T0 + 10.0 + SPREAD_DRAWN
    wait = waits(other.next())  # other waits for that look, briefly
    assert wait.until == wait.slot == pytest.approx(clock.now + 0.2)


def test_a_call_joining_a_round_with_an_estimated_slot_gets_its_own_last_chance(
    scheduler, clock, looks
):
    first = covered_setup(scheduler, clock)
    alloc(first.next())
    first.probed(None, flushkit.FlushError("no", grpc_code="UNKNOWN"))  # no looks
    late = scheduler.join(request_at(clock, timeout=3.0))
    wait = waits(late.next())  # never throttled itself: it may try at its last chance
    assert wait.until == pytest.approx(clock.now + 3.0 - 0.1)


def test_a_throttled_private_call_does_not_gather_coalescing_calls(scheduler, clock):
    private = scheduler.join(request_at(clock, coalesce=False))
    flush_sent(private.next())
    private.answered(throttled(reason="too many"), None)
    shared = scheduler.join(request_at(clock))
    assert shared.tickets[0].round is not private.tickets[0].round


def test_a_throttled_round_and_the_calls_gathered_behind_it_go_again_as_one(scheduler, clock):
    one, two, start = two_gathered(scheduler, clock)
    one.started(start.round, Handle())
    three = scheduler.join(request_at(clock))  # gathers behind the shared Flush
    waits(three.next())
    start.round.land(throttled(reason="too many"), None)
    waits(two.next())
    clock.advance(0.25)
    again = three.next()
    assert type(again) is Start and len(again.round.members) == 3


# what a call counts, and who stays together


def test_a_call_throttled_twice_counts_both(scheduler, clock):
    turn = scheduler.join(request_at(clock))
    flush_sent(turn.next())
    turn.answered(throttled(reason="too many"), None)  # alone: backoff 0.25
    clock.now = waits(turn.next()).slot
    flush_sent(turn.next())  # again, now in a round of its own
    turn.answered(throttled(reason="too many"), None)
    assert turn.throttled == 2
    assert waits(turn.next()).slot == pytest.approx(clock.now + 0.5)


def test_a_settled_round_rings_the_calls_gathered_behind_it(scheduler, clock):
    one, _, start = two_gathered(scheduler, clock)
    one.started(start.round, Handle())
    three = scheduler.join(request_at(clock))  # gathers behind the shared Flush
    woken: list[int] = []
    assert waits(three.next()).bell.arm(lambda: woken.append(3))
    start.round.land(flushed(), None)  # rings the round's members only
    assert woken == []
    assert one.next() is None  # the first to look settles it: the next round may go
    assert woken == [3]


def test_a_multi_collection_call_is_rung_when_a_flush_it_waits_behind_ends(scheduler, clock):
    first = scheduler.join(request_at(clock, "a"))
    flush_sent(first.next(), "a")
    both = scheduler.join(request_at(clock, "a", "b"))
    flush_sent(both.next(), "b")
    both.answered(flushed("b"), None)
    woken: list[int] = []
    assert waits(both.next()).bell.arm(lambda: woken.append(1))
    first.answered(flushed("a"), None)
    assert woken == [1]


def test_calls_still_gathering_keep_their_collection_after_a_failed_flush(scheduler, clock):
    first = scheduler.join(request_at(clock))
    flush_sent(first.next())
    two, three = (scheduler.join(request_at(clock)) for _ in range(2))
    for turn in (two, three):
        waits(turn.next())
    first.answered(flushed(code=65535, error_code=1, reason="broken"), None)  # paces nothing
    four = scheduler.join(request_at(clock))
    assert four.tickets and four.tickets[0].round is two.tickets[0].round
    two.leave()
    five = scheduler.join(request_at(clock))
    assert five.tickets and five.tickets[0].round is three.tickets[0].round


def test_calls_still_gathering_keep_their_collection_after_a_failed_shared_flush(scheduler, clock):
    one, _, start = two_gathered(scheduler, clock)
    one.started(start.round, Handle())
    three = scheduler.join(request_at(clock))
    waits(three.next())
    start.round.land(flushed(code=65535, error_code=1, reason="broken"), None)
    assert one.next() is None  # settles: the failure is the members'
    four = scheduler.join(request_at(clock))
    assert four.tickets and four.tickets[0].round is three.tickets[0].round


def test_a_shared_flush_carries_its_senders_trace_and_start(scheduler, clock):
    first = scheduler.join(request_at(clock))
    flush_sent(first.next())
    one = scheduler.join(request_at(clock, trace="one"))
    two = scheduler.join(request_at(clock, trace="two"))
    first.answered(flushed(), None)
    clock.advance(0.5)
    start = two.next()  # the later member looks first: it sends
    assert type(start) is Start
    assert start.call.request.trace == "two" and start.call.request.started == clock.now
    assert start.call.request.collection_names == ("docs",)
    two.started(start.round, Handle())
    start.round.land(flushed(), None)
    assert one.next() is None and one.tickets[0].sent_by == "two"


def test_a_throttled_calls_place_names_its_collection_in_the_next_shared_flush(scheduler, clock):
    turn = scheduler.join(request_at(clock, "docs"))
    flush_sent(turn.next())
    turn.answered(throttled(reason="too many"), None)  # now a ticket in a round
    other = scheduler.join(request_at(clock, "docs"))
    clock.advance(0.25)
    start = turn.next()
    assert type(start) is Start
    assert tuple(start.call.message.collection_names) == ("docs",)
    other.leave()


def test_a_led_flush_that_fails_raises_its_own_error_not_marked_coalesced(scheduler, clock):
    turn = scheduler.join(request_at(clock))
    flush_sent(turn.next())
    turn.answered(throttled(reason="too many"), None)
    clock.advance(0.25)
    flush_sent(turn.next())  # its round of one: its own Flush
    error = flushkit.ServerError("broken", code=5)
    turn.answered(None, error)
    with pytest.raises(flushkit.ServerError) as raised:
        assert turn.next() is None
        turn.answers()
    assert raised.value is error and not error.coalesced


def test_a_call_throttled_just_before_its_last_chance_is_refused_at_once(scheduler, clock, looks):
    turn = covered_setup(scheduler, clock, timeout=0.25)  # its last chance: 0.15 s on
    with pytest.raises(flushkit.RateLimitedError):
        turn.next()


@pytest.mark.parametrize("end", ["answered", "left"])
def test_a_multi_collection_lead_ending_rings_the_calls_behind_each_collection(
    scheduler, clock, end
):
    scheduler.seed(1.0)
    admit(scheduler, clock, "a")
    admit(scheduler, clock, "b")
    both = scheduler.join(request_at(clock, "a", "b"))
    waits(both.next())
    clock.now = T0 + 1.0
    flush_sent(both.next(), "a", "b")
    woken: list[str] = []
    for name in ("a", "b"):
        behind = scheduler.join(request_at(clock, name))
        assert waits(behind.next()).bell.arm(lambda name=name: woken.append(name))
    if end == "answered":
        both.answered(flushed("a", "b"), None)
    else:
        both.leave()  # its Flush no longer counts as in flight
    assert sorted(woken) == ["a", "b"]


def test_a_shared_round_that_failed_to_start_rings_the_member_left_to_send_it(scheduler, clock):
    one, two, start = two_gathered(scheduler, clock)
    woken: list[int] = []
    assert waits(two.next()).bell.arm(lambda: woken.append(2))
    one.unsend(start.round)
    assert woken == [2]


def test_a_round_every_member_left_is_not_put_back_when_its_start_fails(scheduler, clock):
    one, two, start = two_gathered(scheduler, clock)
    one.leave()
    two.leave()
    one.unsend(start.round)  # nothing to put back: the end checks nothing is left


def test_a_private_call_leaving_keeps_the_coalescing_calls_round(scheduler, clock):
    scheduler.seed(1.0)
    admit(scheduler, clock)
    shared = scheduler.join(request_at(clock))
    waits(shared.next())
    private = scheduler.join(request_at(clock, coalesce=False))
    waits(private.next())
    private.leave()
    later = scheduler.join(request_at(clock))
    assert later.tickets[0].round is shared.tickets[0].round


def test_a_private_call_throttled_does_not_join_the_coalescing_calls_round(scheduler, clock):
    scheduler.seed(1.0)
    admit(scheduler, clock)
    shared = scheduler.join(request_at(clock))
    waits(shared.next())
    clock.advance(1.0)
    private = scheduler.join(request_at(clock, coalesce=False))
    flush_sent(private.next())
    private.answered(throttled(reason="too many"), None)
    assert private.tickets[0].round is not shared.tickets[0].round


def test_a_throttled_shared_round_gathers_again_where_new_calls_join(scheduler, clock):
    one, two, start = two_gathered(scheduler, clock)
    one.started(start.round, Handle())
    start.round.land(throttled(reason="too many"), None)
    waits(one.next())
    later = scheduler.join(request_at(clock))
    assert later.tickets[0].round is one.tickets[0].round is two.tickets[0].round


def test_gathering_calls_keep_their_collection_after_a_grpc_failure(scheduler, clock):
    first = scheduler.join(request_at(clock))
    flush_sent(first.next())
    two, three = (scheduler.join(request_at(clock)) for _ in range(2))
    for turn in (two, three):
        waits(turn.next())
    first.answered(None, flushkit.ServerError("broken", code=5))  # paces nothing
    four = scheduler.join(request_at(clock))
    assert four.tickets and four.tickets[0].round is two.tickets[0].round
    two.leave()
    five = scheduler.join(request_at(clock))
    assert five.tickets and five.tickets[0].round is three.tickets[0].round


def test_gathering_calls_keep_their_collection_after_a_shared_grpc_failure(scheduler, clock):
    one, _, start = two_gathered(scheduler, clock)
    one.started(start.round, Handle())
    three = scheduler.join(request_at(clock))
    waits(three.next())
    start.round.land(None, flushkit.ServerError("broken", code=5))
    with pytest.raises(flushkit.ServerError):
        one.next()
        one.answers()
    four = scheduler.join(request_at(clock))
    assert four.tickets and four.tickets[0].round is three.tickets[0].round


def test_a_call_leaving_its_alone_flush_keeps_the_collection_for_the_calls_behind(scheduler, clock):
    first = scheduler.join(request_at(clock))
    flush_sent(first.next())
    behind = scheduler.join(request_at(clock))
    waits(behind.next())
    first.leave()
    later = scheduler.join(request_at(clock))
    assert later.tickets and later.tickets[0].round is behind.tickets[0].round


def test_a_private_round_throttled_regathers_alone_beside_a_coalescing_round(scheduler, clock):
    scheduler.seed(1.0)
    admit(scheduler, clock)
    shared = scheduler.join(request_at(clock))
    waits(shared.next())
    private = scheduler.join(request_at(clock, coalesce=False))
    waits(private.next())
    clock.now = T0 + 1.0
    flush_sent(private.next())  # its private round, led (the coalescing call has not looked)
    private.answered(throttled(reason="too many"), None)
    assert private.tickets[0].round is not shared.tickets[0].round


def test_calls_gathering_keep_an_unpaced_collection_after_a_shared_grpc_failure(scheduler, clock):
    first = scheduler.join(request_at(clock))
    flush_sent(first.next())
    one, _two = (scheduler.join(request_at(clock)) for _ in range(2))
    first.answered(None, flushkit.ServerError("broken", code=5))  # no admission: no pacing
    start = one.next()
    assert type(start) is Start
    one.started(start.round, Handle())
    three = scheduler.join(request_at(clock))
    waits(three.next())
    start.round.land(None, flushkit.ServerError("broken", code=5))
    with pytest.raises(flushkit.ServerError):
        one.next()
        one.answers()
    four = scheduler.join(request_at(clock))
    assert four.tickets and four.tickets[0].round is three.tickets[0].round


def test_a_call_leaving_its_flush_keeps_the_admission_that_explains_throttling(scheduler, clock):
    admit(scheduler, clock)  # no interval known yet
    clock.advance(1.0)
    gone = scheduler.join(request_at(clock))
    flush_sent(gone.next())
    gone.leave()
    clock.advance(1.0)
    turn = scheduler.join(request_at(clock))
    flush_sent(turn.next())
    turn.answered(throttled(), None)  # rate=0.1: explained by the admission at T0
    assert waits(turn.next()).slot == pytest.approx(T0 + 10.0)


def test_a_collection_whose_pacing_expired_stays_while_a_call_waits_on_it(scheduler, clock):
    scheduler.seed(100.0)
    admit(scheduler, clock)
    waiter = scheduler.join(request_at(clock))
    assert waits(waiter.next()).slot == pytest.approx(T0 + 100.0)
    clock.now = T0 + 100.0  # the pacing's expiry comes: the waiter still waits on it
    other = scheduler.join(request_at(clock))
    assert other.tickets and other.tickets[0].round is waiter.tickets[0].round


def test_a_call_answered_by_two_flushes_gets_each_its_own_collections(scheduler, clock):
    first = scheduler.join(request_at(clock, "c"))
    flush_sent(first.next(), "c")
    call = scheduler.join(request_at(clock, "a", "b", "c"))
    flush_sent(call.next(), "a", "b")  # c waits behind first's Flush
    both = flushed("a", "b")
    call.answered(both, None)
    first.answered(flushed("c"), None)
    flush_sent(call.next(), "c")
    call.answered(flushed("c"), None)
    assert call.next() is None
    answers = call.answers()
    assert [part.collection_names for _, part, _, _ in answers] == [("a", "b"), ("c",)]
    assert answers[0][0] is both


def test_a_call_sends_a_ready_collection_while_another_is_in_a_shared_flush(scheduler, clock):
    scheduler.seed(1.0)
    admit(scheduler, clock, "b")  # b's slot: T0 + 1
    first = scheduler.join(request_at(clock, "a"))
    flush_sent(first.next(), "a")
    call = scheduler.join(request_at(clock, "a", "b"))
    other = scheduler.join(request_at(clock, "a"))
    waits(call.next())
    first.answered(flushed("a"), None)  # a's slot too: T0 + 1
    clock.now = T0 + 1.0
    start = other.next()  # a's shared round, with call as a member
    assert type(start) is Start and len(start.round.members) == 2
    other.started(start.round, Handle())
    flush_sent(call.next(), "b")  # a is in flight: b goes meanwhile


def test_a_shared_flush_names_only_its_collection_whoever_gathered_first(scheduler, clock):
    first = scheduler.join(request_at(clock, "a"))
    flush_sent(first.next(), "a")
    both = scheduler.join(request_at(clock, "a", "b"))  # the a round's first member
    flush_sent(both.next(), "b")
    other = scheduler.join(request_at(clock, "a"))
    waits(other.next())
    first.answered(flushed("a"), None)
    start = other.next()
    assert type(start) is Start
    assert start.call.request.collection_names == ("a",)
    assert tuple(start.call.message.collection_names) == ("a",)


def test_a_look_answered_after_the_round_was_sent_answers_nobody(scheduler, clock, looks):
    first = covered_setup(scheduler, clock)
    other = scheduler.join(request_at(clock))
    alloc(first.next())
    first.probed(timestamp(4), None)
    clock.now = T0 + 10.0 + SPREAD_DRAWN  # the slot
    look(first.next(), 4)  # its look at the slot
    start = other.next()  # looked at the slot already: the round goes
    assert type(start) is Start
    other.started(start.round, Handle())
    first.probed(flush_state(True), None)  # too late: the Flush is in flight
    wait = waits(first.next())
    assert wait.slot is None  # it waits for the Flush, not covered
    start.round.land(flushed(), None)
    assert first.next() is None and first.answers()[0][3] == "shared"


def test_the_sender_of_a_throttled_shared_flush_keeps_its_last_chance(scheduler, clock, looks):
    first = scheduler.join(request_at(clock))
    flush_sent(first.next())
    one = scheduler.join(request_at(clock, timeout=5.0))
    two = scheduler.join(request_at(clock))
    first.answered(flushed(), None)
    start = one.next()
    assert type(start) is Start
    one.started(start.round, Handle())
    start.round.land(throttled(reason="too many"), None)  # another client's Flush
    alloc(one.next())  # its last chance is ahead: it looks meanwhile
    assert one.throttled == 1 and two.throttled == 0


def test_a_call_settling_two_landed_rounds_rings_the_calls_behind_each(scheduler, clock):
    firsts = [scheduler.join(request_at(clock, name)) for name in ("a", "b")]
    for name, first in zip(("a", "b"), firsts, strict=True):
        flush_sent(first.next(), name)
    both = scheduler.join(request_at(clock, "a", "b"))
    others = [scheduler.join(request_at(clock, name)) for name in ("a", "b")]
    for name, first in zip(("a", "b"), firsts, strict=True):
        first.answered(flushed(name), None)
    starts = []
    for other in others:
        start = other.next()
        assert type(start) is Start
        other.started(start.round, Handle())
        starts.append(start)
    woken: list[str] = []
    for name in ("a", "b"):
        behind = scheduler.join(request_at(clock, name))
        assert waits(behind.next()).bell.arm(lambda name=name: woken.append(name))
    for name, start in zip(("a", "b"), starts, strict=True):
        start.round.land(flushed(name), None)
    assert woken == []  # landing rings the members only
    assert both.next() is None  # settles both rounds: the calls behind each may go
    assert sorted(woken) == ["a", "b"]


def test_a_private_round_covered_leaves_the_coalescing_round_gathering(scheduler, clock, looks):
    private = covered_setup(scheduler, clock, coalesce=False)
    shared = scheduler.join(request_at(clock))  # gathers in the coalescing round
    alloc(private.next())
    private.probed(timestamp(4), None)
    clock.advance(0.2)
    look(private.next(), 4)
    private.probed(flush_state(True), None)
    assert private.next() is None and private.answers()[0][3] == "covered"
    later = scheduler.join(request_at(clock))
    assert later.tickets and later.tickets[0].round is shared.tickets[0].round


def test_a_call_whose_last_chance_was_throttled_does_not_try_again(scheduler, clock, looks):
    turn = covered_setup(scheduler, clock, latency=1.0, timeout=10.0)  # usual latency 1 s
    alloc(turn.next())
    turn.probed(None, flushkit.FlushError("no", grpc_code="UNKNOWN"))  # no looks
    wait = waits(turn.next())
    assert wait.until == pytest.approx(T0 + 10.0 - 2 * 1.0)  # its last chance
    clock.now = wait.until
    flush_sent(turn.next())
    clock.advance(0.1)  # a quicker answer moves the usual latency, and the last chance, later
    turn.answered(throttled(reason="too many"), None)
    with pytest.raises(flushkit.RateLimitedError):
        turn.next()


def test_an_estimated_slot_becomes_the_first_backoff_where_looking_turns_out_impossible(
    scheduler, clock, looks
):
    scheduler.seed(2.0)
    admit(scheduler, clock)  # the slot: T0 + 2, no backoff
    turn = scheduler.join(request_at(clock))
    alloc(turn.next())
    turn.probed(timestamp(4), None)
    clock.now = T0 + 2.0
    look(turn.next(), 4)  # the look at the slot
    turn.probed(flush_state(True), None)  # covered: the next slot is estimated
    assert turn.next() is None and turn.answers()[0][3] == "covered"
    other = scheduler.join(request_at(clock))
    alloc(other.next())
    other.probed(None, flushkit.FlushError("unimplemented", grpc_code="UNIMPLEMENTED"))
    assert waits(other.next()).slot == pytest.approx(T0 + 2.0 + 0.25)


def test_a_call_waiting_for_another_members_look_still_sends_its_ready_collection(
    scheduler, clock, looks
):
    first = covered_setup(scheduler, clock)
    alloc(first.next())
    first.probed(timestamp(4), None)
    clock.now = T0 + 10.0 + SPREAD_DRAWN - 0.1
    look(first.next(), 4)  # in flight at the slot
    both = scheduler.join(request_at(clock, "docs", "b"))
    clock.now = T0 + 10.0 + SPREAD_DRAWN
    flush_sent(both.next(), "b")  # docs waits for first's look; b goes now


def test_a_call_settling_a_landed_round_goes_on_to_its_next_collection(scheduler, clock):
    scheduler.seed(1.0)
    admit(scheduler, clock, "b")  # b's slot: T0 + 1
    first = scheduler.join(request_at(clock, "a"))
    flush_sent(first.next(), "a")
    call = scheduler.join(request_at(clock, "a", "b"))
    other = scheduler.join(request_at(clock, "a"))
    waits(call.next())
    first.answered(flushed("a"), None)  # a's slot: T0 + 1 too
    clock.now = T0 + 1.0
    start = other.next()
    assert type(start) is Start
    other.started(start.round, Handle())
    start.round.land(flushed("a"), None)
    flush_sent(call.next(), "b")  # settles a, then b's Flush goes


def test_the_last_member_leaving_two_landed_rounds_rings_the_calls_behind_each(
    scheduler, clock
):
    firsts = [scheduler.join(request_at(clock, name)) for name in ("a", "b")]
    for name, first in zip(("a", "b"), firsts, strict=True):
        flush_sent(first.next(), name)
    both = scheduler.join(request_at(clock, "a", "b"))
    others = [scheduler.join(request_at(clock, name)) for name in ("a", "b")]
    for name, first in zip(("a", "b"), firsts, strict=True):
        first.answered(flushed(name), None)
    starts = []
    for other in others:
        start = other.next()
        assert type(start) is Start
        other.started(start.round, Handle())
        starts.append(start)
    woken: list[str] = []
    for name in ("a", "b"):
        behind = scheduler.join(request_at(clock, name))
        assert waits(behind.next()).bell.arm(lambda name=name: woken.append(name))
    for name, start in zip(("a", "b"), starts, strict=True):
        start.round.land(flushed(name), None)
    for other in others:
        other.leave()  # the senders go without reading their answers
    assert woken == []  # the rounds still have a member: nobody learned from them
    both.leave()  # the last member of each: the answers are learned, the calls behind go
    assert sorted(woken) == ["a", "b"]
