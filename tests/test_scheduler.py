"""One scheduler per client: what it shares, what it keeps apart, and what it remembers.

Public behaviour only: what the test server received, what results and errors say, and
how much memory the scheduler's module holds (tracemalloc).
"""

from __future__ import annotations

import gc
import time
import tracemalloc

import pytest
from pymilvus import MilvusClient

import flushkit
from flushkit.testing import delay

from .helpers import Caller, flush_in, run_together


def test_coalescing_tells_databases_apart(fake, client, runtime):
    fake.script_flush(delay(0.3))
    callers = [
        Caller(options={"db_name": "a"}),
        Caller(after_flushes=1, options={"db_name": "a"}),
        Caller(after_flushes=1, options={"db_name": "b"}),
        Caller(after_flushes=1, options={"db_name": "b"}),
    ]
    outcomes = run_together(runtime, client, callers, server=fake)
    assert all(isinstance(o, flushkit.FlushResult) for o in outcomes), outcomes
    assert [o.db_name for o in outcomes] == ["a", "a", "b", "b"]
    sent = [call.metadata["dbname"] for call in fake.flush_calls]
    assert sent.count("a") == 2  # the leader's, then one shared by the second a call
    assert "b" in sent  # b's calls never ride on a's Flush
    assert outcomes[1].coalesced is False  # alone in a's second round


def test_pacing_tells_databases_apart(fake, client, runtime):
    flush = flush_in(runtime, client, flush_interval=30.0)
    flush("docs", db_name="a", timeout=5.0)
    with pytest.raises(flushkit.RateLimitedError):  # a's next slot is 30 s away
        flush("docs", db_name="a", timeout=1.0)
    result = flush("docs", db_name="b", timeout=1.0)  # b has not flushed: it goes at once
    assert result.db_name == "b" and result.paced == 0
    assert [call.metadata["dbname"] for call in fake.flush_calls] == ["a", "b"]


def test_each_client_has_its_own_scheduler(fake, client, runtime):
    flush = flush_in(runtime, client, flush_interval=30.0)
    flush("docs", timeout=5.0)
    with pytest.raises(flushkit.RateLimitedError):
        flush("docs", timeout=1.0)
    other = MilvusClient(uri=fake.uri)
    try:  # another client knows nothing of the first one's slot: the server arbitrates
        assert flush_in(runtime, other)("docs", timeout=1.0).status.ok
    finally:
        other.close()


def test_a_closed_flusher_refuses_and_its_client_stays_usable(fake, client):
    flusher = flushkit.Flusher(client)
    flusher.close()
    with pytest.raises(flushkit.ClientClosedError):
        flusher.flush("docs")
    with flushkit.Flusher(client) as again:  # the client is the caller's: still open
        assert again.flush("docs").status.ok
    client.close()
    with pytest.raises(flushkit.ClientClosedError):
        flushkit.Flusher(client)


def _held_by_the_scheduler() -> int:
    """Bytes allocated by flushkit's scheduler module and still alive."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, "*flushkit/_scheduler.py")]
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))


def test_state_goes_once_it_can_no_longer_pace_a_call(fake, client):
    """Memory holds what carries information: after thousands of collections flushed
    once, the scheduler keeps only those whose pacing can still matter."""
    interval = 2.0  # known: a collection's pacing matters this long after its Flush
    flusher = flushkit.Flusher(client, flush_interval=interval, middleware=[])
    tracemalloc.start()
    try:
        for i in range(1000):
            flusher.flush(f"c{i}")
        while_paced = _held_by_the_scheduler()
        time.sleep(interval + 0.5)
        flusher.flush("last")  # the scheduler looks at what has expired as calls come
        after = _held_by_the_scheduler()
    finally:
        tracemalloc.stop()
    assert while_paced > 100_000  # hundreds of collections within their interval
    assert after < 20_000, f"{after} bytes still held for collections long flushed"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_closed_async_flusher_refuses_and_its_client_stays_usable(fake, client, backend):
    import anyio

    async def main() -> None:
        async with flushkit.AsyncFlusher(client) as flusher:
            assert (await flusher.flush("docs")).status.ok
        with pytest.raises(flushkit.ClientClosedError):
            await flusher.flush("docs")
        again = flushkit.AsyncFlusher(client)
        assert (await again.flush("docs")).status.ok  # the client is the caller's
        await again.aclose()
        with pytest.raises(flushkit.ClientClosedError):
            await again.flush("docs")

    anyio.run(main, backend=backend)
    assert len(fake.flush_calls) == 2  # no RPC once closed
