"""The wait for persistence as pure logic: the pause between GetFlushState polls
(``flushkit._core``'s own schedule, against the README's numbers written out) and the
transport's budget check between polls (no server)."""

from __future__ import annotations

import time

import pytest

import flushkit
from flushkit import FlushRequest

pytestmark = pytest.mark.pure

#: The README's numbers: 15% of the time waited, at least 10 ms, at most 250 ms.
README_POLL_MIN, README_POLL_SHARE, README_POLL_MAX = 0.010, 0.15, 0.25


def test_the_poll_pause_is_a_share_of_the_wait_between_its_bounds():
    from flushkit._core import poll_pause  # this module's own logic

    # The README's numbers, written out: 15% of the time waited, at least 10 ms, at most
    # 250 ms.
    assert poll_pause(0.0) == pytest.approx(0.010)
    assert poll_pause(0.05) == pytest.approx(0.010)
    assert poll_pause(0.1) == pytest.approx(0.015)
    assert poll_pause(1.0) == pytest.approx(0.15)
    assert poll_pause(1.5) == pytest.approx(0.225)
    assert poll_pause(2.0) == pytest.approx(0.25)
    assert poll_pause(100.0) == pytest.approx(0.25)
    for waited in [0.0, 0.01, 0.05, 0.2, 0.5, 1.0, 1.6, 1.7, 3.0, 60.0]:
        documented = min(max(README_POLL_SHARE * waited, README_POLL_MIN), README_POLL_MAX)
        assert poll_pause(waited) == pytest.approx(documented), waited
    waited, polls = 0.0, 0
    while waited < 0.306:  # the server's median floor on an idle collection, measured
        waited += poll_pause(waited)
        polls += 1
    assert waited <= 0.306 * 1.15 + 0.010  # ends close to the floor
    assert polls < 25  # without polling the server every millisecond


def _polls_of(request):
    """``wait_until_persisted``'s steps for ``request``: the first poll, and a function
    that answers "not yet" and returns what it yields next."""
    from pymilvus.grpc_gen import common_pb2, milvus_pb2

    from flushkit._core import wait_until_persisted  # this module's own logic

    response = milvus_pb2.FlushResponse(db_name="default")
    response.coll_segIDs["docs"].data.extend([1, 2])
    polls = wait_until_persisted(request, response)
    first = next(polls)
    not_yet = milvus_pb2.GetFlushStateResponse(status=common_pb2.Status(), flushed=False)
    return first, lambda: polls.send(not_yet)


def test_a_pause_between_polls_never_reaches_past_the_deadline():
    def request(deadline):
        return FlushRequest(
            collection_names=("docs",),
            db_name="default",
            timeout=1.0,
            wait=True,
            started=time.monotonic(),
            deadline=deadline,
        )

    first, not_yet = _polls_of(request(None))
    assert first.message.collection_name == "docs" and list(first.message.segmentIDs) == [1, 2]
    assert not_yet() == flushkit.Pause(0.010)  # no deadline: the documented least pause
    _, not_yet = _polls_of(request(time.monotonic() - 1.0))
    assert not_yet() == flushkit.Pause(0.0)  # the deadline has passed: no pause at all
    _, not_yet = _polls_of(request(time.monotonic() + 0.005))
    assert not_yet().seconds <= 0.005  # cut at the deadline, 5 ms away at most


def test_a_budget_that_ends_between_polls_says_the_call_was_waiting_to_persist():
    from flushkit._effects import GET_FLUSH_STATE, Call
    from flushkit._grpc.transport import _remaining

    spent = FlushRequest(
        collection_names=("docs",),
        db_name="default",
        wait=True,
        timeout=1.0,
        started=0.0,
        deadline=time.monotonic() - 1,
    )
    with pytest.raises(flushkit.FlushTimeoutError, match=r"\(waiting for the sealed segments"):
        _remaining(Call(GET_FLUSH_STATE, None, spent))
