"""Fleets: several clients (each its own scheduler, as separate processes are) flushing one
collection through flushkit.testing's server, which models Milvus's timestamp oracle and
GetFlushState(flush_ts). A call that waits for its slot takes T and looks; another
client's admitted Flush answers it, covered, with no Flush of its own.

Ordering is by events (the server's records), never by sleeps; a time bound appears only
as "the call ended long before its slot", with seconds of margin.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from pymilvus import MilvusClient

import flushkit
from flushkit.testing import (
    ALLOC_TIMESTAMP,
    FLUSH,
    FLUSH_STATE,
    MilvusTestServer,
    abort,
    flushed,
    status,
)

from .helpers import RUNTIMES, flush_in

#: Long enough that a call which waited for its own slot could not end before it.
INTERVAL = 30.0


class Background:
    """A blocking flush run on a thread; ``result()`` joins it (and checks it ended)."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.outcome: Any = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.outcome = call()
        except BaseException as exc:  # handed to the test by result()
            self.outcome = exc

    def result(self, timeout: float = 20.0) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the flush did not end"
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


@pytest.fixture
def clients(fake: MilvusTestServer) -> Iterator[Callable[[], MilvusClient]]:
    """Make MilvusClients on the test server: each has a scheduler of its own."""
    made: list[MilvusClient] = []

    def new() -> MilvusClient:
        made.append(MilvusClient(uri=fake.uri))
        return made[-1]

    yield new
    for client in made:
        client.close()


def probing(fake: MilvusTestServer, looks: int = 1) -> None:
    """Block until a waiting call took its T and looked ``looks`` times."""
    assert fake.wait_for_calls(1, ALLOC_TIMESTAMP, timeout=10)
    assert fake.wait_for_calls(looks, FLUSH_STATE, timeout=10)


def looks(fake: MilvusTestServer) -> list[Any]:
    """The GetFlushState requests that looked for coverage (a T, no segment IDs)."""
    return [c.request for c in fake.flush_state_calls if not c.request.segmentIDs]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("wait", [False, True])
def test_a_call_waiting_for_its_slot_is_covered_by_another_clients_flush(
    fake, clients, runtime, wait
):
    mine = flush_in(runtime, clients(), flush_interval=INTERVAL)
    assert mine("docs").satisfied_by == "flush"  # admitted: its next slot is far ahead
    waiting = Background(lambda: mine("docs", wait=wait, timeout=INTERVAL + 10))
    probing(fake)
    other = flushkit.Flusher(clients()).flush("docs")  # another client: admitted at once
    result = waiting.result()

    assert result.satisfied_by == "covered" and result.persisted
    assert not result.coalesced and result.throttled == 0
    assert result.coll_segIDs == {"docs": ()} and result.flush_coll_segIDs == {"docs": ()}
    # Its flush_ts is the T it took, which the server vouched for, older than the Flush
    # that covered it.
    (taken,) = [c for c in fake.alloc_timestamp_calls]
    assert result.coll_flush_ts == {"docs": looks(fake)[-1].flush_ts}
    assert looks(fake)[-1].flush_ts < other.coll_flush_ts["docs"]
    assert taken.ended <= fake.flush_calls[1].started
    assert len(fake.flush_calls) == 2  # no Flush of its own
    assert result.elapsed < INTERVAL - 5 and result.paced > 0
    assert all(r.collection_name == "docs" and r.db_name == "default" for r in looks(fake))


def test_looks_are_paced_and_stop_once_covered(fake, clients):
    mine = flush_in("blocking", clients(), flush_interval=INTERVAL)
    mine("docs")
    waiting = Background(lambda: mine("docs", timeout=INTERVAL + 10))
    probing(fake, looks=3)
    flushkit.Flusher(clients()).flush("docs")
    waiting.result()
    times = [c.started for c in fake.flush_state_calls]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.15  # README: at most five looks a second per waiting collection
    fake.clear_calls()
    assert not fake.wait_for_calls(1, FLUSH_STATE, timeout=1.0)  # nobody looks any more


def test_a_looked_for_database_is_the_calls_own(fake, clients):
    fake.databases("a", "b")
    mine = flush_in("blocking", clients(), flush_interval=INTERVAL)
    mine("docs", db_name="a")
    waiting = Background(lambda: mine("docs", db_name="a", timeout=INTERVAL + 10))
    probing(fake)
    other = flushkit.Flusher(clients())
    other.flush("docs", db_name="b")  # the same collection name in another database
    seen = len(fake.flush_state_calls)
    assert fake.wait_for_calls(seen + 3, FLUSH_STATE, timeout=10)  # still looking
    assert waiting.thread.is_alive()
    other.flush("docs", db_name="a")
    result = waiting.result()
    assert result.satisfied_by == "covered" and result.db_name == "a"
    assert {(r.db_name, r.collection_name) for r in looks(fake)} == {("a", "docs")}
    assert len(fake.flush_calls) == 3


def test_a_call_that_began_after_t_was_taken_is_not_covered_by_it(fake, clients):
    client = clients()
    mine = flush_in("blocking", client, flush_interval=3.0)
    mine("docs")
    early = Background(lambda: mine("docs", timeout=20))
    probing(fake)
    late = Background(lambda: mine("docs", timeout=20))  # joins the same waiting round
    assert fake.wait_for_calls(len(fake.flush_state_calls) + 2, FLUSH_STATE, timeout=10)
    flushkit.Flusher(clients()).flush("docs")
    assert early.result().satisfied_by == "covered"
    # The later call's writes may be newer than T: it takes a T of its own, which nobody
    # else's Flush covers, and sends its own Flush at its slot.
    late_result = late.result()
    assert late_result.satisfied_by == "flush"
    assert len(fake.flush_calls) == 3
    assert len(fake.alloc_timestamp_calls) == 2


def test_a_call_throttled_at_its_slot_keeps_its_t_and_is_covered(fake, clients):
    # Another client's Flush was admitted just before this call's slot, and has not
    # persisted when the call looks and sends: its own Flush is throttled. Its T, taken
    # before that admission, is still covered by it: no new T, no second Flush.
    fake.persist_after(6.0)
    mine = flush_in("blocking", clients(), flush_interval=3.0)
    mine("docs")
    waiting = Background(lambda: mine("docs", timeout=40))
    probing(fake)
    flushkit.Flusher(clients()).flush("docs")  # admitted; persists 6 s later
    fake.script_flush(status(8, 49, "rate limit exceeded[rate=0.1]", retriable=True))
    result = waiting.result(timeout=40)
    assert result.satisfied_by == "covered" and result.throttled == 1
    assert len(fake.flush_calls) == 3
    assert len(fake.alloc_timestamp_calls) == 1
    assert result.elapsed < 20  # not its next slot, ten seconds after the throttled answer


def test_without_alloc_timestamp_a_call_waits_for_its_slot_as_before(fake, clients):
    fake.without_alloc_timestamp()  # Milvus Lite answers UNIMPLEMENTED
    mine = flush_in("blocking", clients(), flush_interval=1.0)
    mine("docs")
    second = mine("docs", timeout=10)
    third = mine("docs", timeout=10)
    assert (second.satisfied_by, third.satisfied_by) == ("flush", "flush")
    assert second.paced > 0 and third.paced > 0
    assert len(fake.flush_calls) == 3
    assert len(fake.alloc_timestamp_calls) == 1  # asked once per connection, never again
    assert fake.flush_state_calls == []


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(lambda fake: fake.script_alloc_timestamp(status(65535, 1, "oops")), id="ts"),
        pytest.param(
            lambda fake: fake.script_flush_state(abort(grpc.StatusCode.INTERNAL)),
            id="look",
        ),
    ],
)
def test_a_failed_probe_falls_back_to_the_slot(fake, clients, failure):
    failure(fake)
    mine = flush_in("blocking", clients(), flush_interval=1.0)
    mine("docs")
    result = mine("docs", timeout=10)  # no error: it waits for its slot and flushes
    assert result.satisfied_by == "flush" and result.paced > 0
    assert len(fake.flush_calls) == 2


def test_a_budget_short_of_the_slot_and_the_usual_persistence_fails_at_once(fake, clients):
    fake.persist_after(2.0)
    mine = flush_in("blocking", clients(), flush_interval=6.0)
    assert mine("docs", wait=True, timeout=20).persisted  # the usual persistence: ~2 s
    with pytest.raises(flushkit.RateLimitedError) as caught:
        mine("docs", wait=True, timeout=5.0)  # the slot comes in ~4 s; persisting takes 2
    assert 1.0 < caught.value.retry_after <= 6.0
    assert caught.value.retryable
    assert len(fake.flush_calls) == 1
    assert fake.alloc_timestamp_calls == []  # refused before it looked


def test_a_covered_call_keeps_the_slot_its_clients_own_flush_made_known(fake, clients):
    # The server may say a T is covered with no Flush at all (nothing was written since
    # the last one): the slot the client's own admitted Flush made known stays known, so
    # a call whose budget cannot reach it still fails at once, sending nothing.
    fake.limit_flush_rate(0.1)
    mine = flush_in("blocking", clients())
    assert mine("docs").satisfied_by == "flush"
    fake.script_flush_state(flushed(True))  # the next look: covered
    covered = mine("docs", timeout=30)  # throttled (learns rate=0.1), then looks
    assert covered.satisfied_by == "covered" and covered.throttled == 1
    sent = len(fake.calls)
    with pytest.raises(flushkit.RateLimitedError) as caught:
        mine("docs", timeout=2.0)
    assert len(fake.calls) == sent  # refused before any RPC
    assert 2.0 < caught.value.retry_after <= 10.0


def test_a_fleet_on_a_rate_limited_server_flushes_without_errors(fake, clients):
    fake.limit_flush_rate(0.5)  # one Flush per collection every 2 s
    flushers = [flushkit.Flusher(clients()) for _ in range(6)]
    barrier = threading.Barrier(len(flushers))

    def one(flusher: flushkit.Flusher) -> flushkit.FlushResult:
        barrier.wait()
        return flusher.flush("docs", wait=True, timeout=20)

    calls = [Background(lambda f=f: one(f)) for f in flushers]
    results = [call.result(timeout=40) for call in calls]
    assert all(r.persisted for r in results)
    how = [r.satisfied_by for r in results]
    assert "covered" in how, how
    admitted = [c for c in fake.flush_calls if not c.throttled]
    assert len(admitted) < len(flushers)
    assert len(fake.flush_calls) <= 2 * len(flushers)


def test_the_fast_path_asks_nothing_more(fake, clients):
    flusher = flushkit.Flusher(clients())
    for _ in range(3):
        assert flusher.flush(["docs"], wait=True).satisfied_by == "flush"
    assert [c.method for c in fake.calls if c.method != "Connect"] == [
        m for _ in range(3) for m in (FLUSH, FLUSH_STATE)
    ]
