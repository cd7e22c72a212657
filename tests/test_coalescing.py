"""Coalescing: concurrent flushes of one collection share Flush RPCs.

Every test runs its callers as threads (blocking), as asyncio tasks and as trio tasks,
against the scripted gRPC server; a slow first RPC keeps the lane busy while the others
arrive.
"""

from __future__ import annotations

import pickle
import threading
from typing import Any

import anyio
import grpc
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from pymilvus import MilvusClient

import flushkit
from flushkit.testing import abort, delay, flushed, hang, ok, status

from .helpers import (
    CANCELLED,
    PATIENCE,
    Caller,
    RecordingLogger,
    joined_all,
    leader_then,
    observed_chain,
    points,
    run_together,
)


def test_64_simultaneous_flushes_send_at_most_two_rpcs(fake, client, runtime):
    fake.script_flush(delay(0.3))  # the first RPC is still in flight when the rest arrive
    outcomes = run_together(runtime, client, server=fake, callers=leader_then(63))
    assert all(isinstance(o, flushkit.FlushResult) for o in outcomes), outcomes
    assert len(fake.flush_calls) == 2
    assert all(o.coll_segIDs == {"docs": (1001, 1002)} for o in outcomes)
    assert sum(o.coalesced for o in outcomes) == 63  # all but the first caller's own RPC


def test_a_call_joins_only_an_rpc_sent_after_it_began(fake, client, runtime):
    fake.script_flush(delay(0.3), delay(0.3))
    # the 2nd arrives during the 1st RPC, the 3rd during the 2nd RPC
    callers = [Caller(), Caller(after_flushes=1), Caller(after_flushes=2)]
    outcomes = run_together(runtime, client, callers, server=fake)
    assert all(isinstance(o, flushkit.FlushResult) for o in outcomes), outcomes
    _, second, third = fake.flush_calls
    assert second.started >= callers[1].began
    assert third.started >= callers[2].began and third.started >= second.ended
    assert [o.coalesced for o in outcomes] == [False, False, False]  # nobody shared


def test_callers_that_arrive_during_an_rpc_share_the_next(fake, client, runtime):
    started: dict[int, float] = {}  # id(result) -> when its call began, as flushkit saw it

    def remember_start(request):
        result = yield request
        started[id(result)] = request.started
        return result

    fake.script_flush(delay(0.3))
    chain = [remember_start, *flushkit.default_middleware()]
    outcomes = run_together(runtime, client, server=fake, callers=leader_then(5), middleware=chain)
    assert len(fake.flush_calls) == 2
    assert [o.coalesced for o in outcomes] == [False] + [True] * 5
    assert pickle.loads(pickle.dumps(outcomes[1])) == outcomes[1]
    # Their own time, the wait for the first RPC included (not the shared RPC's alone):
    # each result was made after the first RPC ended on the server.
    first_ended = fake.flush_calls[0].ended
    for outcome in outcomes[1:]:
        assert outcome.elapsed >= first_ended - started[id(outcome)]


def test_a_caller_that_times_out_does_not_fail_or_cancel_the_shared_rpc(fake, client, runtime):
    fake.script_flush(delay(0.3), delay(2.0))  # the shared RPC outlasts the quitter's 0.45 s
    callers = [
        Caller(),
        Caller(after_flushes=1, options={"timeout": 0.45}),
        Caller(after_flushes=1),
    ]
    _, quitter, stayer = run_together(runtime, client, server=fake, callers=callers)
    assert isinstance(quitter, flushkit.FlushTimeoutError)
    assert callers[1].ended - callers[1].began >= 0.4  # not before its deadline (a lower bound)
    assert callers[1].ended < fake.flush_calls[1].ended  # gone while the shared RPC was in flight
    assert isinstance(stayer, flushkit.FlushResult) and stayer.coalesced
    assert len(fake.flush_calls) == 2 and not fake.flush_calls[1].cancelled


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_a_cancelled_caller_does_not_cancel_the_shared_rpc(fake, client, runtime):
    fake.script_flush(delay(0.3), delay(2.0))  # the shared RPC outlasts the 0.4 s scope
    callers = [
        Caller(),
        Caller(after_flushes=1, cancel_after=0.4),
        Caller(after_flushes=1),
    ]
    _, quitter, stayer = run_together(runtime, client, server=fake, callers=callers)
    assert quitter == CANCELLED
    assert callers[1].ended < fake.flush_calls[1].ended  # gone while the shared RPC was in flight
    assert isinstance(stayer, flushkit.FlushResult) and stayer.coalesced
    assert len(fake.flush_calls) == 2 and not fake.flush_calls[1].cancelled


def test_the_shared_rpc_is_cancelled_once_every_caller_left(fake, client, runtime):
    fake.script_flush(delay(0.3), hang())
    quick = {"timeout": 0.5}
    callers = [
        Caller(),
        Caller(after_flushes=1, options=quick),
        Caller(after_flushes=1, options=quick),
    ]
    outcomes = run_together(runtime, client, server=fake, callers=callers)
    assert isinstance(outcomes[0], flushkit.FlushResult)
    assert all(isinstance(o, flushkit.FlushTimeoutError) for o in outcomes[1:])
    assert fake.wait_for_cancellations(1)
    assert fake.flush_calls[1].cancelled


def test_a_missing_collection_fails_only_the_callers_that_named_it(fake, client, runtime):
    fake.missing("ghost")
    fake.script_flush(delay(0.3), delay(0.3))
    callers = [
        Caller("docs"),
        Caller(["docs", "ghost"], after_flushes=1),
        Caller("ghost", after_flushes=1),
        Caller("docs", after_flushes=1),
        Caller(["images", "docs"], after_flushes=1),
    ]
    lead, both, ghost, docs, images_docs = run_together(runtime, client, callers, server=fake)
    assert isinstance(both, flushkit.CollectionNotFoundError)
    assert isinstance(ghost, flushkit.CollectionNotFoundError)
    assert both is not ghost
    assert lead.coll_segIDs.keys() == {"docs"}
    assert docs.coll_segIDs.keys() == {"docs"}
    assert images_docs.coll_segIDs.keys() == {"images", "docs"}  # each caller's own


def test_a_failed_shared_rpc_gives_each_caller_its_own_error(fake, client, runtime):
    fake.script_flush(delay(0.3), delay(0.2, status(65535, 1, "boom")))
    outcomes = run_together(runtime, client, server=fake, callers=leader_then(3))
    assert isinstance(outcomes[0], flushkit.FlushResult)
    errors = outcomes[1:]
    assert all(isinstance(e, flushkit.ServerError) and e.coalesced for e in errors)
    assert len({id(e) for e in errors}) == 3
    assert all(e.reason == "boom" for e in errors)
    assert pickle.loads(pickle.dumps(errors[0])).coalesced is True


def test_a_grpc_failure_of_the_shared_rpc_is_a_typed_error(fake, client, runtime):
    fake.script_flush(delay(0.3), delay(0.1, abort(grpc.StatusCode.INTERNAL, "kaput")))
    outcomes = run_together(runtime, client, server=fake, callers=leader_then(2))
    assert all(
        isinstance(e, flushkit.ServerError) and e.grpc_code == "INTERNAL" for e in outcomes[1:]
    )


def test_retryable_failures_of_the_shared_rpc_are_retried_together(fake, client, runtime):
    limited = status(2, 1, "service unavailable", retriable=True)
    # The retries' RPC takes 0.1 s: enough for the 16 callers (woken one by one) to
    # join it after the same pause, far too little for pauses jittered over 1 s.
    fake.script_flush(delay(0.3), limited, delay(0.1), delay(0.1))
    policy = flushkit.RetryPolicy(initial=1.0, jitter=1.0)  # jitter, but not for them
    chain = flushkit.default_middleware(retry=policy)
    outcomes = run_together(runtime, client, server=fake, callers=leader_then(16), middleware=chain)
    assert all(isinstance(o, flushkit.FlushResult) for o in outcomes), outcomes
    assert all(o.attempts == 2 for o in outcomes[1:]), [(o.attempts, o.coalesced) for o in outcomes]
    assert len(fake.flush_calls) <= 4  # the 16 retried together, in at most two RPCs


def test_waiting_callers_share_the_flush_and_each_polls_within_its_own_budget(
    fake, client, runtime
):
    fake.script_flush(delay(0.3))
    outcomes = run_together(runtime, client, server=fake, callers=leader_then(8, wait=True))
    assert all(o.persisted for o in outcomes), outcomes
    assert len(fake.flush_calls) == 2
    polls = fake.flush_state_calls
    assert len(polls) == 9  # each caller polls GetFlushState in its own driver
    shared = fake.flush_calls[1]
    assert shared.time_remaining is not None
    assert all(p.time_remaining is not None and p.started >= shared.ended for p in polls[1:])


def test_each_waiting_caller_polls_until_persisted(fake, client, runtime):
    fake.script_flush(delay(0.3))
    fake.script_flush_state(*[flushed(False)] * 6)  # then persisted (the default)
    outcomes = run_together(runtime, client, server=fake, callers=leader_then(4, wait=True))
    assert all(o.persisted for o in outcomes), outcomes
    assert len(fake.flush_state_calls) == 5 + 6


def test_callers_that_do_not_wait_are_answered_at_the_flush(fake, client, runtime):
    fake.script_flush(delay(0.3))
    fake.script_flush_state(delay(1.0, flushed(True)))  # the waiter's poll
    callers = [
        Caller(),
        Caller(after_flushes=1),
        Caller(after_flushes=1, options={"wait": True}),
    ]
    _, quick, waiter = run_together(runtime, client, server=fake, callers=callers)
    assert not quick.persisted and waiter.persisted
    assert quick.coalesced and waiter.coalesced
    assert callers[1].ended < fake.flush_state_calls[-1].ended  # not held for the 1 s poll


def test_a_waiter_that_times_out_leaves_the_others_waiting(fake, client, runtime):
    fake.script_flush(delay(0.3))
    # The quitter has 0.9 s to send its poll after the shared Flush, and its poll would
    # end 0.3 s after its deadline.
    fake.script_flush_state(delay(1.5, flushed(True)), delay(1.5, flushed(True)))
    callers = [
        Caller(),
        Caller(after_flushes=1, options={"wait": True, "timeout": 1.2}),
        Caller(after_flushes=1, options={"wait": True}),
    ]
    _, quitter, stayer = run_together(runtime, client, server=fake, callers=callers)
    assert isinstance(quitter, flushkit.FlushTimeoutError)
    assert stayer.persisted
    assert fake.wait_for_cancellations(1)
    assert sum(p.cancelled for p in fake.flush_state_calls) == 1  # the quitter's own poll


def test_coalescing_is_removable(fake, client, runtime):
    fake.script_flush(*[delay(0.1)] * 8)
    chain = [
        m for m in flushkit.default_middleware() if not isinstance(m, flushkit.CoalescingMiddleware)
    ]
    outcomes = run_together(runtime, client, [Caller() for _ in range(8)], middleware=chain)
    assert all(isinstance(o, flushkit.FlushResult) and not o.coalesced for o in outcomes)
    assert len(fake.flush_calls) == 8


def test_several_collections_without_contention_are_one_rpc(fake, client, runtime):
    outcomes = run_together(runtime, client, [Caller(["a", "b", "c"])])
    assert outcomes[0].coll_segIDs.keys() == {"a", "b", "c"}
    (call,) = fake.flush_calls
    assert list(call.request.collection_names) == ["a", "b", "c"]


def test_calls_with_other_credentials_never_share(fake, runtime):
    fake.script_flush(delay(0.3))
    alice = MilvusClient(uri=fake.uri, token="alice:secret")
    bob = MilvusClient(uri=fake.uri, token="bob:secret")
    try:
        first = run_together(runtime, alice, [Caller()])
        assert isinstance(first[0], flushkit.FlushResult)
        fake.reset()
        fake.script_flush(delay(0.3))
        flushers = [flushkit.Flusher(alice), flushkit.Flusher(bob)]
        outcomes: list[Any] = [None, None, None]

        def call(i: int, flusher: flushkit.Flusher, after_flushes: int) -> None:
            # alice's second call and bob's start while alice's first Flush is in flight
            fake.wait_for_calls(after_flushes, "Flush", timeout=PATIENCE)
            outcomes[i] = flusher.flush("docs")

        threads = [
            threading.Thread(target=call, args=(0, flushers[0], 0)),
            threading.Thread(target=call, args=(1, flushers[0], 1)),
            threading.Thread(target=call, args=(2, flushers[1], 1)),
        ]
        for thread in threads:
            thread.start()
        joined_all(threads)
        assert all(isinstance(o, flushkit.FlushResult) for o in outcomes), outcomes
        assert outcomes[1].coalesced is False  # alone in alice's second round
        tokens = [c.metadata.get("authorization") for c in fake.flush_calls]
        assert len(tokens) == 3  # bob's flush did not ride on alice's credential
        assert len(set(tokens)) == 2
    finally:
        alice.close()
        bob.close()


def test_threads_and_event_loops_share_one_round(fake, client):
    fake.script_flush(delay(0.4))
    flusher = flushkit.Flusher(client)
    async_flusher = flushkit.AsyncFlusher(client)
    outcomes: list[Any] = []

    def blocking(after_flushes: int) -> None:
        fake.wait_for_calls(after_flushes, "Flush", timeout=PATIENCE)
        outcomes.append(flusher.flush("docs"))

    def in_loop(backend: str) -> None:
        async def main() -> None:  # once the first Flush is in flight
            await anyio.to_thread.run_sync(fake.wait_for_calls, 1, "Flush", PATIENCE)
            async with anyio.create_task_group() as tasks:
                for _ in range(4):
                    tasks.start_soon(lambda: _append(outcomes, async_flusher))

        anyio.run(main, backend=backend)

    threads = [threading.Thread(target=blocking, args=(0,))]
    threads += [threading.Thread(target=blocking, args=(1,)) for _ in range(4)]
    threads += [threading.Thread(target=in_loop, args=(b,)) for b in ("asyncio", "trio")]
    for thread in threads:
        thread.start()
    joined_all(threads)
    assert len(outcomes) == 13
    assert len(fake.flush_calls) == 2
    assert sum(o.coalesced for o in outcomes) == 12


async def _append(outcomes: list[Any], flusher: flushkit.AsyncFlusher) -> None:
    outcomes.append(await flusher.flush("docs"))


def test_logs_spans_and_metrics_say_when_a_call_was_coalesced(fake, client, runtime, spans):
    chain, logger, reader = observed_chain(spans)
    fake.script_flush(delay(0.3))
    outcomes = run_together(runtime, client, server=fake, callers=leader_then(3), middleware=chain)
    assert [o.coalesced for o in outcomes] == [False, True, True, True]
    logged = [
        fields["coalesced"] for _, event, fields in logger.events if event.endswith("succeeded")
    ]
    assert sorted(logged) == [False, True, True, True]
    marked = [s.attributes.get("flushkit.coalesced", False) for s in spans.get_finished_spans()]
    assert sorted(marked) == [False, True, True, True]
    counter = points(reader)["flushkit.flush.coalesced"]
    assert counter.unit == "{call}"
    (point,) = counter.data.data_points
    assert point.value == 3
    assert point.attributes["db.collection.name"] == "docs"


def test_failed_coalesced_calls_are_logged_and_counted(fake, client, runtime):
    reader = InMemoryMetricReader()
    logger = RecordingLogger()
    chain = flushkit.default_middleware(
        logger=logger, meter_provider=MeterProvider(metric_readers=[reader])
    )
    fake.script_flush(delay(0.3), status(65535, 1, "boom"))
    run_together(runtime, client, server=fake, callers=leader_then(2), middleware=chain)
    failed = [fields for _, event, fields in logger.events if event.endswith("failed")]
    assert [f["coalesced"] for f in failed] == [True, True]
    (point,) = points(reader)["flushkit.flush.coalesced"].data.data_points
    assert point.value == 2 and point.attributes["error.type"] == "flushkit.ServerError"


def test_ok_results_of_a_shared_round_are_the_servers(fake, client, runtime):
    fake.script_flush(delay(0.3), ok({"docs": [7, 8, 9]}))
    outcomes = run_together(runtime, client, server=fake, callers=leader_then(2))
    assert [o.coll_segIDs["docs"] for o in outcomes] == [(1001, 1002), (7, 8, 9), (7, 8, 9)]


@pytest.mark.parametrize("where", ["innermost", "outermost"])
def test_a_middleware_can_keep_one_call_out_of_coalescing(fake, client, runtime, where):
    # Anywhere in the chain: coalescing is a request preparer, set before any flow runs.
    def alone(request):
        result = yield request.replace(coalesce=False)
        return result

    fake.script_flush(*[delay(0.1)] * 6)
    defaults = flushkit.default_middleware()
    chain = [*defaults, alone] if where == "innermost" else [alone, *defaults]
    outcomes = run_together(runtime, client, [Caller() for _ in range(6)], middleware=chain)
    assert all(isinstance(o, flushkit.FlushResult) and not o.coalesced for o in outcomes)
    assert len(fake.flush_calls) == 6


@pytest.mark.parametrize("seed", [1, 2])
def test_many_overlapping_calls_keep_every_promise(fake, client, runtime, seed):
    """Randomised: callers of overlapping collection sets, with and without waiting, with
    tight and loose budgets, against a slow, sometimes failing server."""
    import random

    rng = random.Random(seed)
    fake.missing("ghost")
    fake.script_flush(
        *[
            rng.choice(
                [delay(rng.uniform(0.02, 0.1))] * 6
                + [status(8, 49, "rate limit exceeded", retriable=True), status(65535, 1, "x")]
            )
            for _ in range(200)
        ]
    )
    fake.script_flush_state(*[rng.choice([flushed(True), flushed(False)]) for _ in range(200)])
    names = ["a", "b", "c", "ghost"]
    callers = [
        Caller(
            sorted(rng.sample(names, rng.choice([1, 1, 2]))),
            at=rng.uniform(0, 0.3),  # spread over time (load only: no check depends on it)
            options={"timeout": rng.choice([0.15, 0.4, 5.0]), "wait": rng.random() < 0.3},
        )
        for _ in range(48)
    ]
    policy = flushkit.RetryPolicy(initial=0.02)
    outcomes = run_together(
        runtime, client, callers, middleware=flushkit.default_middleware(retry=policy)
    )
    for caller, outcome in zip(callers, outcomes, strict=True):
        assert isinstance(outcome, flushkit.FlushResult | flushkit.FlushError), outcome
        # within its budget (the +50 ms figure is the benchmarks'; here: it ends)
        assert caller.ended - caller.began < caller.options["timeout"] + 1.0
        if isinstance(outcome, flushkit.FlushResult):
            assert set(outcome.coll_segIDs) == set(caller.names)
            assert "ghost" not in caller.names
            if outcome.satisfied_by == "covered":  # the server said its writes persisted
                assert outcome.persisted
                assert set(outcome.coll_flush_ts) == set(caller.names)
                assert all(ts > 0 for ts in outcome.coll_flush_ts.values())
            else:
                assert outcome.persisted == caller.options["wait"]
        if isinstance(outcome, flushkit.CollectionNotFoundError):
            assert "ghost" in caller.names
    # Every place was given up: each collection's next flush is its own Flush at once.
    fake.reset()
    with flushkit.Flusher(client) as flusher:
        for name in ["a", "b", "c"]:
            assert not flusher.flush(name, timeout=5.0).coalesced
    assert len(fake.flush_calls) == 3
