"""Helpers shared by the test modules (fixtures live in conftest.py).

Test modules import these from here, never from each other, so that each one can be
collected and run on its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from pymilvus import MilvusClient

import flushkit

RUNTIMES = ("blocking", "asyncio", "trio")

FlushCall = Callable[..., flushkit.FlushResult]


def flush_in(runtime: str, client: Any, **flusher_options: Any) -> FlushCall:
    """A blocking callable that flushes with a new flusher, run the ``runtime`` way."""
    if runtime == "blocking":
        flusher = flushkit.Flusher(client, **flusher_options)
        return flusher.flush
    async_flusher = flushkit.AsyncFlusher(client, **flusher_options)

    def flush(*args: Any, **kwargs: Any) -> flushkit.FlushResult:
        async def main() -> flushkit.FlushResult:
            return await async_flusher.flush(*args, **kwargs)

        return anyio.run(main, backend=runtime)

    return flush


def replace_channel(client: MilvusClient) -> None:
    """Make pymilvus replace the client's channel, as it does when it reconnects."""
    handler = client._handler
    if hasattr(handler, "reconnect"):  # pymilvus >= 3.0
        handler.reconnect()
    else:  # older pymilvus swaps the channel in its connection manager's recovery
        import grpc

        handler._channel = grpc.insecure_channel(handler._address)


class RecordingLogger:
    """A structlog-like logger that records ``(level, event, fields)`` in ``events``."""

    def __init__(self):
        self.events = []

    def _record(self, level):
        def log(event, **fields):
            self.events.append((level, event, fields))

        return log

    def __getattr__(self, level):
        return self._record(level)


def points(reader):
    """The metrics an ``InMemoryMetricReader`` collected, by name (all from flushkit)."""
    data = reader.get_metrics_data()
    found = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "flushkit"
            for metric in scope.metrics:
                found[metric.name] = metric
    return found


CANCELLED = "cancelled"


@dataclass
class Caller:
    """One concurrent flush: its names, when it starts, its flush options, and (async
    only) a cancel scope it gives up in."""

    names: str | list[str] = "docs"
    at: float = 0.0
    cancel_after: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    began: float = 0.0
    ended: float = 0.0


def run_together(runtime: str, client: Any, callers: list[Caller], **flusher_options: Any):
    """Run every caller concurrently; their outcomes (a result, an exception or
    CANCELLED), in order."""
    outcomes: list[Any] = [None] * len(callers)
    if runtime == "blocking":
        flusher = flushkit.Flusher(client, **flusher_options)
        barrier = threading.Barrier(len(callers))

        def one(i: int, caller: Caller) -> None:
            barrier.wait()
            time.sleep(caller.at)
            caller.began = time.monotonic()
            try:
                outcomes[i] = flusher.flush(caller.names, **caller.options)
            except BaseException as exc:
                outcomes[i] = exc
            caller.ended = time.monotonic()

        threads = [threading.Thread(target=one, args=(i, c)) for i, c in enumerate(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        return outcomes

    async def main() -> None:
        flusher = flushkit.AsyncFlusher(client, **flusher_options)

        async def one(i: int, caller: Caller) -> None:
            await anyio.sleep(caller.at)
            caller.began = time.monotonic()
            limit = caller.cancel_after if caller.cancel_after is not None else float("inf")
            with anyio.move_on_after(limit) as scope:
                try:
                    outcomes[i] = await flusher.flush(caller.names, **caller.options)
                except Exception as exc:
                    outcomes[i] = exc
            if scope.cancelled_caught:
                outcomes[i] = CANCELLED
            caller.ended = time.monotonic()

        async with anyio.create_task_group() as tasks:
            for i, caller in enumerate(callers):
                tasks.start_soon(one, i, caller)

    anyio.run(main, backend=runtime)
    return outcomes


def leader_then(n: int, **options: Any) -> list[Caller]:
    """One caller, then ``n`` more 50 ms later while its RPC is in flight."""
    return [Caller(options=dict(options))] + [
        Caller(at=0.05, options=dict(options)) for _ in range(n)
    ]
