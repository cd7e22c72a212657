"""Helpers shared by the test modules (fixtures live in conftest.py).

Test modules import these from here, never from each other, so that each one can be
collected and run on its own.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pymilvus
from pymilvus import AsyncMilvusClient, MilvusClient

import flushkit
from flushkit.testing import MilvusTestServer

#: How a test flushes: Flusher in threads; AsyncFlusher on the blocking client under
#: asyncio and under trio; "aio": AsyncFlusher on an AsyncMilvusClient (grpc.aio) of the
#: same server, under asyncio.
RUNTIMES = ("blocking", "asyncio", "trio", "aio")

FlushCall = Callable[..., flushkit.FlushResult]


def python_blocks(markdown: str) -> list[str]:
    """The ```python code blocks of a Markdown page, in order."""
    return re.findall(r"```python\n(.*?)```", markdown, re.S)


def run_python(cwd: Path, script: str | Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (a file, or code to write to ``cwd/example.py``) with ``args`` in
    ``cwd``, as a user runs it; the test fails with its output's end unless it exits 0."""
    if isinstance(script, str):
        (cwd / "example.py").write_text(script)
        script = cwd / "example.py"
    done = subprocess.run(
        [sys.executable, str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


#: The installed pymilvus's major version (2: the 2.6 line, 3: 3.x).
PYMILVUS_MAJOR = int(pymilvus.__version__.split(".")[0])


def backend_of(runtime: str) -> str:
    """The anyio backend an async runtime runs on."""
    return "asyncio" if runtime == "aio" else runtime


def async_client_like(client: MilvusClient) -> AsyncMilvusClient:
    """An AsyncMilvusClient of the same server, credential and database as ``client``
    (create it inside the event loop that uses it)."""
    config = client._config
    # dedicated: a channel of its own, closed with it (pymilvus 2.6 otherwise pools one
    # channel per address across event loops, and a closed loop's events leak into the next)
    return AsyncMilvusClient(
        uri=config.uri, token=config.token, db_name=config.db_name, dedicated=True
    )


@contextlib.asynccontextmanager
async def async_flusher(
    runtime: str, client: MilvusClient, **flusher_options: Any
) -> AsyncIterator[flushkit.AsyncFlusher]:
    """An AsyncFlusher for ``runtime``: on ``client``, or ("aio") on an AsyncMilvusClient
    of the same server, closed at the end."""
    if runtime != "aio":
        yield flushkit.AsyncFlusher(client, **flusher_options)
        return
    twin = async_client_like(client)
    try:
        yield flushkit.AsyncFlusher(twin, **flusher_options)
    finally:
        with anyio.CancelScope(shield=True):
            await twin.close()


class _AioService:
    """An AsyncMilvusClient of ``client``'s server and an AsyncFlusher on it, kept on an
    event loop of their own (a thread), as a service keeps them: every flush of one
    ``flush_in`` goes through the same client (grpc.aio binds a client to its loop)."""

    def __init__(self, client: MilvusClient, flusher_options: dict[str, Any]) -> None:
        import asyncio

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def open_() -> flushkit.AsyncFlusher:
            self._twin = async_client_like(client)
            return flushkit.AsyncFlusher(self._twin, **flusher_options)

        self.flusher = self.run(open_())
        _aio_services.append(self)

    def run(self, coroutine: Any) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def flush(self, *args: Any, **kwargs: Any) -> flushkit.FlushResult:
        return self.run(self.flusher.flush(*args, **kwargs))  # type: ignore[no-any-return]

    def another(self, **flusher_options: Any) -> FlushCall:
        """Flushes through another AsyncFlusher on the same AsyncMilvusClient."""

        async def open_() -> flushkit.AsyncFlusher:
            return flushkit.AsyncFlusher(self._twin, **flusher_options)

        flusher = self.run(open_())
        return lambda *args, **kwargs: self.run(flusher.flush(*args, **kwargs))

    def close(self) -> None:
        self.run(self._twin.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        joined(self._thread, 10, "the aio service's event loop thread")
        self._loop.close()


_aio_services: list[_AioService] = []


def close_aio_services() -> None:
    """Close every ``_AioService`` a test opened (conftest does, after each test)."""
    while _aio_services:
        _aio_services.pop().close()


def flushes_on_one_client(
    runtime: str, client: Any, *option_sets: dict[str, Any]
) -> list[FlushCall]:
    """Like ``flush_in``, one flusher per option set, every flusher on one client."""
    if runtime != "aio":
        return [flush_in(runtime, client, **options) for options in option_sets]
    service = _AioService(client, option_sets[0])
    return [service.flush] + [service.another(**options) for options in option_sets[1:]]


def flush_in(runtime: str, client: Any, **flusher_options: Any) -> FlushCall:
    """A blocking callable that flushes with a new flusher, run the ``runtime`` way:
    "aio" keeps one AsyncMilvusClient for every call, on an event loop of its own."""
    if runtime == "blocking":
        flusher = flushkit.Flusher(client, **flusher_options)
        return flusher.flush
    if runtime == "aio":
        return _AioService(client, flusher_options).flush

    def flush(*args: Any, **kwargs: Any) -> flushkit.FlushResult:
        async def main() -> flushkit.FlushResult:
            async with async_flusher(runtime, client, **flusher_options) as flusher:
                return await flusher.flush(*args, **kwargs)

        return anyio.run(main, backend=backend_of(runtime))

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


def observed_chain(spans: Any) -> tuple[list[Any], RecordingLogger, Any]:
    """The default chain with a recording logger, the ``spans`` fixture's tracer provider
    and an in-memory metric reader: ``(chain, logger, reader)``."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    logger = RecordingLogger()
    chain = flushkit.default_middleware(
        logger=logger,
        tracer_provider=spans.provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    return chain, logger, reader


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

#: How long a helper waits for an event (a call the server received, a thread's end)
#: before it gives up: far beyond any test's own timing, so only a hang reaches it.
PATIENCE = 30.0


def joined(thread: threading.Thread, timeout: float = PATIENCE, what: str = "") -> None:
    """Join ``thread`` and check that it ended (a join that times out returns silently)."""
    thread.join(timeout)
    assert not thread.is_alive(), (
        f"{what or thread.name} still running {timeout} s after the test joined it: a hang"
    )


async def received(server: MilvusTestServer, n: int = 1, method: str | None = "Flush") -> None:
    """Wait (in an event loop, without blocking it) until ``server`` has received ``n``
    calls of ``method``; fail after PATIENCE."""
    give_up = time.monotonic() + PATIENCE
    while sum(method in (None, call.method) for call in server.calls) < n:
        assert time.monotonic() < give_up, f"the test server never received {n} {method} calls"
        await anyio.sleep(0.001)


def joined_all(threads: list[threading.Thread], timeout: float = PATIENCE) -> None:
    """Join every thread of ``threads``, each within ``timeout``, and check each ended."""
    for thread in threads:
        joined(thread, timeout)


@dataclass
class Caller:
    """One concurrent flush: its names, when it starts, its flush options, and (async
    only) a cancel scope it gives up in.

    Callers are ordered by events, never by sleeping: ``after_flushes`` waits for the
    test server to have received that many Flush calls. ``at`` only spreads callers out
    (load, not order): no test's checks may depend on it."""

    names: str | list[str] = "docs"
    at: float = 0.0
    #: Start only once the server has received this many Flush calls (an event, not a
    #: guess at how fast the others start): needs ``server``.
    after_flushes: int = 0
    cancel_after: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    began: float = 0.0
    ended: float = 0.0


def run_together(
    runtime: str,
    client: Any,
    callers: list[Caller],
    *,
    server: MilvusTestServer | None = None,
    **flusher_options: Any,
):
    """Run every caller concurrently; their outcomes (a result, an exception or
    CANCELLED), in order. ``server``: the test server, for callers ``after_flushes``.
    Every caller's thread or task has ended when this returns."""
    if server is None and any(caller.after_flushes for caller in callers):
        raise TypeError("callers after_flushes need the test server: run_together(server=...)")
    outcomes: list[Any] = [None] * len(callers)
    if runtime == "blocking":
        flusher = flushkit.Flusher(client, **flusher_options)
        barrier = threading.Barrier(len(callers))
        unmet: list[AssertionError] = []  # a caller whose event never came

        def one(i: int, caller: Caller) -> None:
            barrier.wait(PATIENCE)
            time.sleep(caller.at)
            if caller.after_flushes and not server.wait_for_calls(  # type: ignore[union-attr]
                caller.after_flushes, "Flush", timeout=PATIENCE
            ):
                unmet.append(AssertionError(_never(caller.after_flushes)))
                return
            caller.began = time.monotonic()
            try:
                outcomes[i] = flusher.flush(caller.names, **caller.options)
            except BaseException as exc:
                outcomes[i] = exc
            caller.ended = time.monotonic()

        threads = [threading.Thread(target=one, args=(i, c)) for i, c in enumerate(callers)]
        for thread in threads:
            thread.start()
        joined_all(threads)
        if unmet:
            raise unmet[0]
        return outcomes

    #: One event per number of Flush calls some caller waits for, set by one watcher.
    arrived = {c.after_flushes: anyio.Event() for c in callers if c.after_flushes}

    async def watch() -> None:
        give_up = time.monotonic() + PATIENCE
        while arrived:
            received = sum(call.method == "Flush" for call in server.calls)  # type: ignore[union-attr]
            for n in [n for n in arrived if n <= received]:
                arrived.pop(n).set()
            if arrived:
                assert time.monotonic() < give_up, _never(min(arrived))
                await anyio.sleep(0.001)

    async def main() -> None:
        async with (
            async_flusher(runtime, client, **flusher_options) as flusher,
            anyio.create_task_group() as tasks,
        ):
            if arrived:
                tasks.start_soon(watch)
            for i, caller in enumerate(callers):
                tasks.start_soon(one, flusher, i, caller, arrived.get(caller.after_flushes))

    async def one(
        flusher: flushkit.AsyncFlusher, i: int, caller: Caller, event: anyio.Event | None
    ) -> None:
        await anyio.sleep(caller.at)
        if event is not None:
            await event.wait()  # the watcher fails the run if it never comes
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

    anyio.run(main, backend=backend_of(runtime))
    return outcomes


def _never(n: int) -> str:
    return f"the test server never received {n} Flush calls (waited {PATIENCE} s)"


def leader_then(n: int, **options: Any) -> list[Caller]:
    """One caller, then ``n`` more once the server has received its Flush (needs
    ``server``; script that Flush slow, so that they arrive while it is in flight)."""
    return [Caller(options=dict(options))] + [
        Caller(after_flushes=1, options=dict(options)) for _ in range(n)
    ]
