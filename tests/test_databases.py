"""Databases are kept apart: a collection's name in two databases is two collections, for
coalescing (which Flush RPC serves a call) and for pacing (when the next may go).

Public behaviour only: what the test server received (each Flush's ``db_name`` in its
request and its ``dbname`` header), results and errors. Callers are ordered by events
(the calls the server has received, a call having ended), never by sleeping; each test
runs blocking, under asyncio and trio on a ``MilvusClient``, and under asyncio on an
``AsyncMilvusClient``.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

import flushkit
from flushkit.testing import MilvusTestServer, delay, ok, status

from .helpers import async_flusher, backend_of

#: A Flush throttled by a rate of one per 100 s: far beyond every budget below.
THROTTLED = status(8, 49, "rate limit exceeded[rate=0.01]", retriable=True)
#: How long any one event of these tests may take on a busy machine before a test gives up.
PATIENCE = 10.0


@dataclass
class Step:
    """One flush of a scenario: ``flush(names, **options)``, started once the server has
    received ``after_calls`` calls (``(n, method)``), and once the steps ``after_steps``
    have ended."""

    names: str | list[str]
    options: dict[str, Any] = field(default_factory=dict)
    after_calls: tuple[int, str] | None = None
    after_steps: tuple[int, ...] = ()


def run_steps(
    runtime: str,
    client: Any,
    server: MilvusTestServer,
    steps: list[Step],
    **flusher_options: Any,
) -> list[Any]:
    """Run ``steps`` concurrently through one flusher on ``client`` (the "aio" runtime: on
    an AsyncMilvusClient of the same server), each when its events have happened. Returns
    each step's result or exception, in order."""
    outcomes: list[Any] = [None] * len(steps)

    def server_received(step: Step) -> None:
        if step.after_calls is not None:
            n, method = step.after_calls
            assert server.wait_for_calls(n, method, timeout=PATIENCE), (
                f"the server never received {n} {method} calls: {server.calls}"
            )

    if runtime == "blocking":
        flusher = flushkit.Flusher(client, **flusher_options)
        ended = [threading.Event() for _ in steps]

        def one(i: int, step: Step) -> None:
            try:
                for j in step.after_steps:
                    assert ended[j].wait(PATIENCE), f"step {j} never ended"
                server_received(step)
                outcomes[i] = flusher.flush(step.names, **step.options)
            except BaseException as exc:
                outcomes[i] = exc
            finally:
                ended[i].set()

        threads = [threading.Thread(target=one, args=(i, s)) for i, s in enumerate(steps)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(4 * PATIENCE)
        assert not any(thread.is_alive() for thread in threads), "a caller never ended"
        return outcomes

    async def main() -> None:
        done = [anyio.Event() for _ in steps]
        async with (
            async_flusher(runtime, client, **flusher_options) as flusher,
            anyio.create_task_group() as tasks,
        ):
            for i, step in enumerate(steps):
                tasks.start_soon(one, flusher, done, i, step)

    async def one(flusher: flushkit.AsyncFlusher, done: list[Any], i: int, step: Step) -> None:
        try:
            for j in step.after_steps:
                with anyio.fail_after(PATIENCE):
                    await done[j].wait()
            await anyio.to_thread.run_sync(server_received, step)
            outcomes[i] = await flusher.flush(step.names, **step.options)
        except Exception as exc:
            outcomes[i] = exc
        finally:
            done[i].set()

    anyio.run(main, backend=backend_of(runtime))
    return outcomes


def databases_flushed(server: MilvusTestServer) -> list[tuple[str, str]]:
    """Each Flush the server received: (database in its request, database in its header)."""
    return [(call.request.db_name, call.metadata["dbname"]) for call in server.flush_calls]


def test_concurrent_calls_in_two_databases_each_get_their_own_flush(fake, client, runtime):
    # a's first Flush is in flight for 1 s; meanwhile a second call of a and a call of b,
    # same collection name, arrive. b's must not wait for (or join) a's round: it goes at
    # once, in b; a's second call gets a Flush of a's sent after it began.
    fake.script_flush(delay(1.0))
    outcomes = run_steps(
        runtime,
        client,
        fake,
        [
            Step("c", {"db_name": "a"}),
            Step("c", {"db_name": "a"}, after_calls=(1, "Flush")),
            Step("c", {"db_name": "b"}, after_calls=(1, "Flush")),
        ],
    )
    assert all(isinstance(o, flushkit.FlushResult) for o in outcomes), outcomes
    assert [o.db_name for o in outcomes] == ["a", "a", "b"]
    assert Counter(databases_flushed(fake)) == {("a", "a"): 2, ("b", "b"): 1}
    first, *_ = fake.flush_calls
    (of_b,) = [call for call in fake.flush_calls if call.request.db_name == "b"]
    assert of_b.started < first.ended  # b went while a's Flush was in flight
    assert outcomes[2].satisfied_by == "flush" and not outcomes[2].coalesced


def test_calls_of_each_database_share_only_their_own_databases_flush(fake, client, runtime):
    # While a's first Flush is in flight, two calls of a and two of b arrive: b's two go
    # each on a Flush of b (the first at once, the second after it, as the first was in
    # flight when it came); a's two share the next Flush of a. No call rides on another
    # database's Flush.
    fake.script_flush(delay(1.0), delay(1.0))
    outcomes = run_steps(
        runtime,
        client,
        fake,
        [
            Step("c", {"db_name": "a"}),
            Step("c", {"db_name": "a"}, after_calls=(1, "Flush")),
            Step("c", {"db_name": "b"}, after_calls=(1, "Flush")),
            Step("c", {"db_name": "a"}, after_calls=(1, "Flush")),
            Step("c", {"db_name": "b"}, after_calls=(1, "Flush")),
        ],
    )
    assert all(isinstance(o, flushkit.FlushResult) for o in outcomes), outcomes
    assert [o.db_name for o in outcomes] == ["a", "a", "b", "a", "b"]
    sent = Counter(databases_flushed(fake))
    assert set(sent) == {("a", "a"), ("b", "b")}
    assert sent["a", "a"] == 2  # the first call's, then one for both later calls of a
    assert sent["b", "b"] == 2  # the first call of b's own, then the second's
    assert outcomes[1].coalesced and outcomes[3].coalesced  # a's later calls shared it


def test_a_throttled_collection_does_not_pace_its_namesake_in_another_database(
    fake, client, runtime
):
    # c in a: admitted, then throttled at a rate of one per 100 s, so a's next slot is
    # 100 s away and a call with a 5 s budget fails at once. c in b has never flushed:
    # its call goes at once, unpaced and unthrottled.
    fake.script_flush(ok(), THROTTLED)
    outcomes = run_steps(
        runtime,
        client,
        fake,
        [
            Step("c", {"db_name": "a", "timeout": 5.0}),
            Step("c", {"db_name": "a", "timeout": 5.0}, after_steps=(0,)),
            Step("c", {"db_name": "b", "timeout": 5.0}, after_steps=(1,)),
        ],
    )
    first, refused, of_b = outcomes
    assert isinstance(first, flushkit.FlushResult), first
    assert isinstance(refused, flushkit.RateLimitedError), refused
    assert refused.retry_after > 5.0 and refused.db_name == "a"
    assert isinstance(of_b, flushkit.FlushResult), of_b
    assert of_b.db_name == "b" and of_b.satisfied_by == "flush"
    assert of_b.throttled == 0 and of_b.paced == 0
    assert databases_flushed(fake) == [("a", "a"), ("a", "a"), ("b", "b")]


def test_the_servers_rate_limit_of_one_database_does_not_refuse_another(fake, client, runtime):
    # The test server's limiter, as Milvus's: per collection, so per database too.
    fake.limit_flush_rate(0.01)  # one Flush of a collection per 100 s
    outcomes = run_steps(
        runtime,
        client,
        fake,
        [
            Step("c", {"db_name": "a", "timeout": 5.0}),
            Step("c", {"db_name": "a", "timeout": 5.0}, after_steps=(0,)),
            Step("c", {"db_name": "b", "timeout": 5.0}, after_steps=(1,)),
            Step("c", {"db_name": "a", "timeout": 5.0}, after_steps=(2,)),
        ],
    )
    first, refused, of_b, again = outcomes
    assert isinstance(first, flushkit.FlushResult), first
    assert isinstance(refused, flushkit.RateLimitedError), refused
    assert isinstance(of_b, flushkit.FlushResult), of_b
    assert of_b.db_name == "b" and of_b.throttled == 0 and of_b.paced == 0
    # a's slot is still 100 s away: refused at once, sending nothing
    assert isinstance(again, flushkit.RateLimitedError), again
    assert databases_flushed(fake) == [("a", "a"), ("a", "a"), ("b", "b")]
    assert [call.request.db_name for call in fake.throttled_calls] == ["a"]


def test_a_call_waiting_for_its_slot_does_not_hold_the_same_name_in_another_database(
    fake, client, runtime
):
    # c in a is paced (flush_interval 2 s): its second call waits for its slot, looking
    # for another client's Flush of c in a meanwhile. A call of c in b, arriving while it
    # waits, neither joins that wait nor waits for a's slot: it flushes b at once.
    outcomes = run_steps(
        runtime,
        client,
        fake,
        [
            Step("c", {"db_name": "a", "timeout": 10.0}),
            Step("c", {"db_name": "a", "timeout": 10.0}, after_steps=(0,)),
            # the waiting call asks for its T once it waits: then b's call comes
            Step("c", {"db_name": "b", "timeout": 10.0}, after_calls=(1, "AllocTimestamp")),
        ],
        flush_interval=2.0,
    )
    _, paced, of_b = outcomes
    assert all(isinstance(o, flushkit.FlushResult) for o in outcomes), outcomes
    assert paced.db_name == "a" and paced.paced > 0 and paced.satisfied_by == "flush"
    assert of_b.db_name == "b" and of_b.paced == 0 and of_b.satisfied_by == "flush"
    assert databases_flushed(fake) == [("a", "a"), ("b", "b"), ("a", "a")]
    of_b_call = fake.flush_calls[1]
    assert of_b_call.ended < fake.flush_calls[2].started  # b did not wait for a's slot
    # the waiting call's looks named its own database
    looks = [call for call in fake.flush_state_calls if call.request.flush_ts]
    assert looks and {(c.request.db_name, c.request.collection_name) for c in looks} == {("a", "c")}


@pytest.mark.parametrize("wait", [False, True])
def test_one_call_naming_a_collection_in_one_database_flushes_only_there(
    fake, client, runtime, wait
):
    # The plain case, sequential: the same name in a then b, each its own Flush (and
    # its own GetFlushState with wait=True), in its own database.
    outcomes = run_steps(
        runtime,
        client,
        fake,
        [
            Step("c", {"db_name": "a", "wait": wait}),
            Step("c", {"db_name": "b", "wait": wait}, after_steps=(0,)),
        ],
    )
    assert all(isinstance(o, flushkit.FlushResult) for o in outcomes), outcomes
    assert [o.db_name for o in outcomes] == ["a", "b"]
    assert databases_flushed(fake) == [("a", "a"), ("b", "b")]
    states = [(c.request.db_name, c.request.collection_name) for c in fake.flush_state_calls]
    assert states == ([("a", "c"), ("b", "c")] if wait else [])
