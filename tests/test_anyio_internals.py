"""The anyio internals flushkit relies on (flushkit/_grpc/anyio_internals.py): the caller's
cancel-scope deadline is what ``anyio.current_effective_deadline()`` says, in every kind of
task. If a contract test fails, anyio changed them: update anyio_internals.py, not this
test."""

from __future__ import annotations

import asyncio
import math

import anyio
import pytest
import trio

from flushkit._grpc import anyio_internals
from flushkit._grpc.anyio_internals import caller_time_left


def caller_deadline() -> float:
    """The deadline caller_time_left() implies (rounded: the clock moves between reads)."""
    left = caller_time_left()
    return left if math.isinf(left) else round(left + anyio.current_time(), 3)


def anyio_deadline() -> float:
    deadline = anyio.current_effective_deadline()
    return deadline if math.isinf(deadline) else round(deadline, 3)


def both() -> tuple[float, float]:
    return caller_deadline(), anyio_deadline()


def test_anyios_asyncio_task_states_are_where_flushkit_looks():
    assert anyio_internals._TASK_STATES is not None  # else every call takes the slow path


def test_a_plain_asyncio_task_has_no_scope_and_is_answered_without_anyio(monkeypatch):
    async def main() -> None:
        assert both() == (math.inf, math.inf)
        monkeypatch.setattr(anyio, "current_effective_deadline", pytest.fail)
        assert caller_time_left() == math.inf  # the fast path: anyio is not asked

    asyncio.run(main())


def test_an_asyncio_task_in_anyio_scopes_gets_their_deadline():
    async def main() -> None:
        with anyio.move_on_after(5.0):
            first = both()
            assert first[0] == first[1] < math.inf
            with anyio.CancelScope(shield=True):
                assert both() == (math.inf, math.inf)
        assert both() == (math.inf, math.inf)  # the scope is over; the task keeps anyio's state
        with anyio.CancelScope() as scope:
            scope.cancel()
            assert both() == (-math.inf, -math.inf)
            await anyio.lowlevel.checkpoint()  # delivers the cancellation

    asyncio.run(main())


def test_tasks_of_anyio_and_of_asyncio_inside_a_scope_agree_with_anyio():
    async def child(seen: list[tuple[float, float]]) -> None:
        seen.append(both())

    async def main() -> None:
        seen: list[tuple[float, float]] = []
        with anyio.move_on_after(5.0):
            async with anyio.create_task_group() as group:
                group.start_soon(child, seen)  # inherits the scope
            await asyncio.create_task(child(seen))  # a plain task: anyio sees no scope
        (in_group, plain) = seen
        assert in_group[0] == in_group[1] < math.inf
        assert plain == (math.inf, math.inf)

    asyncio.run(main())


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_under_anyio_run_it_is_anyios_answer(backend):
    async def main() -> None:
        assert both() == (math.inf, math.inf)
        with anyio.move_on_after(5.0):
            deadline = both()
            assert deadline[0] == deadline[1] < math.inf

    anyio.run(main, backend=backend)


def test_under_trio_it_is_trios_deadline_and_clock():
    async def main() -> None:
        assert caller_time_left() == math.inf
        with trio.move_on_after(5.0):
            assert 4.0 < caller_time_left() <= 5.0
            deadline = round(trio.current_effective_deadline(), 3)
            assert round(caller_time_left() + trio.current_time(), 3) == deadline

    trio.run(main)
