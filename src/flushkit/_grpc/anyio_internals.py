"""Everything flushkit reads from anyio's private state, in one place.

An async flush gives its RPC the deadline of the caller's cancel scope when that comes
before the flush's own (:meth:`flushkit._grpc.transport.Transport.call_async`).
``anyio.current_effective_deadline()`` finds it; for an asyncio task that never entered an
anyio cancel scope (the tasks of a plain asyncio service) it finds none, but only after
looking the task up in its task states and catching the ``KeyError``: right after an RPC,
a good part of what the async transport costs (docs/benchmarks.md).
:func:`caller_time_left` answers at once for such a task, checking what anyio itself
would find (no state for the task, so no scope of anyio's on it); other asyncio tasks, and
anyio internals that are not what it expects, take anyio's public functions, as trio does.
``tests/test_anyio_internals.py`` fails loudly when they change.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from typing import Any

import anyio

__all__ = ["caller_time_left"]


def _asyncio_task_states() -> Any:
    """anyio's per-task state of its asyncio backend (None: not as expected)."""
    try:
        from anyio._backends import _asyncio
    except ImportError:  # pragma: no cover (anyio without its asyncio backend)
        return None
    states = getattr(_asyncio, "_task_states", None)
    return states if type(states) is weakref.WeakKeyDictionary else None


_TASK_STATES = _asyncio_task_states()


def caller_time_left() -> float:
    """Seconds until the deadline of the caller's cancel scopes (``math.inf``: none;
    ``-math.inf``: cancelled): ``anyio.current_effective_deadline()`` less
    ``anyio.current_time()``, at once for an asyncio task without anyio's state."""
    states = _TASK_STATES
    if states is not None:
        loop = asyncio._get_running_loop()  # None, not an exception, outside asyncio
        task = None if loop is None else asyncio.current_task(loop)
        if task is not None and task not in states:
            return math.inf  # no cancel scope of anyio's has been entered in this task
    deadline = anyio.current_effective_deadline()
    return deadline if deadline == math.inf else deadline - anyio.current_time()
