"""The fault matrix: every fault, blocking, under asyncio and under trio, with a per-call
timeout and with only the flusher's default one. Each call ends with its documented
outcome, never a raw gRPC or pymilvus exception, and it ends (within its budget and a
generous second: how far past the budget it ends is measured by
``benchmarks/fault_overrun.py``, not asserted here); a hanging RPC is cancelled on the
server; nothing leaks (threads, file descriptors, tasks)."""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import grpc
import pytest
from pymilvus import MilvusClient

import flushkit
from flushkit.testing import MilvusTestServer, abort, delay, disconnect, flushed, hang, status

from .helpers import RecordingLogger, async_flusher, backend_of

BUDGET = 0.6
#: An "it ends" bound, not a speed goal: a busy two-core machine may wake a thread late.
#: The overrun itself (a few ms when idle) is a figure of benchmarks/fault_overrun.py.
ENDS_WITHIN = 1.0
RATE_LIMITED = status(8, 49, "rate limit exceeded[rate=0.1]", retriable=True)


@dataclass(frozen=True)
class Fault:
    name: str
    script: Callable[[MilvusTestServer], None]
    outcome: type[BaseException] | None  # None: success
    wait: bool = False
    cancelled_on_server: bool = False
    address: str | None = None  # send to another address than the test server's
    #: Success, or (documented) RateLimitedError at once when the throttled answer comes
    #: too late for another try within the budget: the call's last chance before its
    #: deadline is then too close to that answer (a busy machine's slow first RPC).
    may_refuse: bool = False


def scripted(*behaviours: Any, state: tuple[Any, ...] = ()) -> Callable[[MilvusTestServer], None]:
    def script(server: MilvusTestServer) -> None:
        server.script_flush(*behaviours)
        server.script_flush_state(*state)

    return script


FAULTS = [
    Fault("none", scripted(), None),
    Fault("slow within budget", scripted(delay(0.1)), None),
    Fault("slower than budget", scripted(delay(5)), flushkit.FlushTimeoutError, False, True),
    Fault("hanging", scripted(hang()), flushkit.FlushTimeoutError, False, True),
    Fault("rate limited, then ok", scripted(RATE_LIMITED), None, may_refuse=True),
    Fault("always rate limited", scripted(*[RATE_LIMITED] * 50), flushkit.RateLimitedError),
    Fault("collection missing", scripted(status(100, 4, "nope")), flushkit.CollectionNotFoundError),
    Fault(
        "unavailable",
        scripted(*[abort(grpc.StatusCode.UNAVAILABLE, "x")] * 50),
        flushkit.ServiceUnavailableError,
    ),
    Fault("internal", scripted(abort(grpc.StatusCode.INTERNAL, "x")), flushkit.ServerError),
    Fault("connection closed mid-call", scripted(disconnect()), None),
    Fault("persisted after polls", scripted(state=(flushed(False),) * 3), None, wait=True),
    Fault(
        "never persisted",
        scripted(state=(flushed(False),) * 1000),
        flushkit.FlushTimeoutError,
        wait=True,
    ),
    Fault(
        "wait hangs",
        scripted(state=(hang(),)),
        flushkit.FlushTimeoutError,
        wait=True,
        cancelled_on_server=True,
    ),
    Fault("nothing listens", scripted(), flushkit.ServiceUnavailableError, address="dead"),
    Fault("accepts, never answers", scripted(), flushkit.FlushTimeoutError, address="silent"),
]


def closed_address() -> str:
    """A loopback address where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"  # closed: nothing listens


@pytest.fixture(scope="module")
def dead_address() -> str:
    return closed_address()


@pytest.fixture(scope="module")
def silent_address() -> Iterator[str]:
    with silent_listener() as address:
        yield address


@contextlib.contextmanager
def silent_listener() -> Iterator[str]:
    """A TCP server that accepts connections and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


@contextlib.contextmanager
def own_client_of(server: MilvusTestServer) -> Iterator[MilvusClient]:
    """A client with a channel of its own (pymilvus pools them per address and token)."""
    client = MilvusClient(uri=server.uri, token=f"matrix-{time.monotonic_ns()}")
    handler = client._handler
    try:
        yield client
    finally:
        client.close()
        handler.close()  # pymilvus keeps a released connection's channel open: close it here


@pytest.fixture
def own_client(milvus_test_server) -> Iterator[MilvusClient]:
    with own_client_of(milvus_test_server) as client:
        yield client


def flush_once(
    runtime: str,
    flusher_kwargs: dict[str, Any],
    call: dict[str, Any],
    client,
    spans: list[tuple[float, float]] | None = None,
) -> Any:
    """One flush of "docs"; appends (start, end) of the flush call itself to ``spans``."""
    spans = [] if spans is None else spans
    policy = flushkit.RetryPolicy(initial=0.05)
    chain = flushkit.default_middleware(logger=RecordingLogger(), retry=policy)
    if runtime == "blocking":
        flusher = flushkit.Flusher(client, middleware=chain, **flusher_kwargs)
        started = time.monotonic()
        try:
            return flusher.flush("docs", **call)
        finally:
            spans.append((started, time.monotonic()))

    async def main() -> Any:
        async with async_flusher(runtime, client, middleware=chain, **flusher_kwargs) as flusher:
            before = len(anyio.get_running_tasks())
            started = time.monotonic()
            try:
                return await flusher.flush("docs", **call)
            finally:
                spans.append((started, time.monotonic()))
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(0.05)  # a task that is finishing is not left behind
                assert len(anyio.get_running_tasks()) == before, "a task was left behind"

    return anyio.run(main, backend=backend_of(runtime))


@dataclass
class Run:
    """How one call of the matrix ended, and how long the flush call itself took."""

    result: Any
    outcome: BaseException | None
    took: float


def run_fault(
    fault: Fault,
    budget_from: str,
    runtime: str,
    server: MilvusTestServer,
    client: MilvusClient,
    dead_address: str,
    silent_address: str,
) -> Run:
    """Script ``fault`` and make one call, its budget from the call or from the flusher."""
    fault.script(server)
    if fault.address is not None:
        address = dead_address if fault.address == "dead" else silent_address
        client._handler._channel.close()
        client._handler._channel = grpc.insecure_channel(address)
        client._config.uri = f"http://{address}"  # where the "aio" runtime's twin connects
    flusher_kwargs = {"timeout": BUDGET} if budget_from == "flusher" else {"timeout": None}
    call: dict[str, Any] = {"wait": fault.wait}
    if budget_from == "call":
        call["timeout"] = BUDGET
    result: Any = None
    outcome: BaseException | None = None
    spans: list[tuple[float, float]] = []
    try:
        result = flush_once(runtime, flusher_kwargs, call, client, spans)
    except BaseException as exc:
        outcome = exc
    ((started, ended),) = spans
    return Run(result, outcome, ended - started)


BUDGET_FROM = ["call", "flusher"]


def outcomes_of(fault: Fault, runtime: str) -> tuple[type[BaseException] | None, ...]:
    """The documented outcomes of ``fault`` for ``runtime``."""
    import pymilvus

    old_pymilvus = int(pymilvus.__version__.split(".")[0]) < 3
    if runtime == "aio" and fault.address == "dead" and old_pymilvus:
        # pymilvus 2.6's AsyncMilvusClient waits for its channel to become ready on its
        # first call: to a port where nothing listens, until the flush's budget ends
        return (fault.outcome, flushkit.FlushTimeoutError)
    return (fault.outcome,)


@pytest.mark.parametrize("budget_from", BUDGET_FROM)
@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault(
    fault, budget_from, runtime, milvus_test_server, own_client, dead_address, silent_address
):
    server = milvus_test_server
    run = run_fault(fault, budget_from, runtime, server, own_client, dead_address, silent_address)
    outcome, took = run.outcome, run.took
    assert took <= BUDGET + ENDS_WITHIN, f"{fault.name}: {took:.3f} s"
    if fault.outcome is None and fault.may_refuse and outcome is not None:
        assert isinstance(outcome, flushkit.RateLimitedError), repr(outcome)
        assert len(server.flush_calls) == 1  # refused, not a second Flush that failed
    elif fault.outcome is None:
        assert outcome is None, repr(outcome)
        assert run.result.status.ok
    else:
        assert type(outcome) in outcomes_of(fault, runtime), repr(outcome)
        assert not isinstance(outcome, grpc.RpcError)
        assert type(outcome).__module__.startswith("flushkit")
    if fault.cancelled_on_server:
        assert server.wait_for_cancellations(1)


ROUNDS = int(os.environ.get("FLUSHKIT_LEAK_ROUNDS", "3"))

#: The name prefix of the test server's worker threads (MilvusTestServer's executor): its
#: pool grows to the most RPCs it ever served at once (a cancelled hanging call still ending
#: while the next one arrives adds one) and keeps them; they are the server's, not the
#: client's, so a pool one worker larger after the matrix is no leak of flushkit's.
SERVER_WORKERS = "fake_"


def resources() -> tuple[int, int]:
    """(threads, file descriptors) of this process, the test server's workers left out."""
    gc.collect()  # channels other tests dropped close their sockets when collected
    threads = sum(not t.name.startswith(SERVER_WORKERS) for t in threading.enumerate())
    return threads, len(os.listdir("/proc/self/fd"))


def leaks(before: tuple[int, int], after: tuple[int, int]) -> list[str]:
    """What grew, threads and file descriptors each on its own (a tuple comparison would
    let fewer threads hide more file descriptors)."""
    grew = []
    if after[0] > before[0]:
        grew.append(f"threads {before[0]} -> {after[0]}")
    if after[1] > before[1]:
        grew.append(f"file descriptors {before[1]} -> {after[1]}")
    return grew


def test_nothing_leaks_across_the_matrix(runtime, milvus_test_server, dead_address):
    # Every runtime on every supported pymilvus: on 2.6 the AsyncMilvusClient runtime was
    # skipped once because the thread count wobbled; the extra thread was the test
    # server's pool worker (see SERVER_WORKERS), which the count now leaves out.
    client = MilvusClient(uri=milvus_test_server.uri, token=f"leaks-{time.monotonic_ns()}")
    try:

        def matrix() -> None:
            for fault in FAULTS:
                if fault.address is not None:
                    continue
                fault.script(milvus_test_server)
                with contextlib.suppress(flushkit.FlushError):
                    flush_once(runtime, {"timeout": 0.3}, {"wait": fault.wait}, client)
                milvus_test_server.reset()

        matrix()  # warm up: grpc starts its threads once
        matrix()
        before = settled(None)
        for _ in range(ROUNDS):
            matrix()
        after = settled(before)
    finally:
        client.close()
    print(f"\n{runtime}: threads {before[0]} -> {after[0]}, fds {before[1]} -> {after[1]}")
    assert leaks(before, after) == []


def test_the_leak_check_sees_an_fd_leak_behind_fewer_threads():
    """The measurement itself: a file descriptor left open while a thread ended is a
    leak (``min((10, 50), (11, 40))`` would have kept the 50 fds and hidden it)."""
    assert leaks((10, 50), (9, 51)) == ["file descriptors 50 -> 51"]
    assert leaks((10, 50), (11, 49)) == ["threads 10 -> 11"]
    assert leaks((10, 50), (10, 50)) == []
    stop = threading.Event()
    transient = threading.Thread(target=stop.wait, name="transient")
    transient.start()
    try:
        before = settled(None)
    finally:
        stop.set()
        transient.join(10)
    assert not transient.is_alive()
    leaked = os.open(os.devnull, os.O_RDONLY)  # a test-only fd, left open while measured
    try:
        after = settled(before, patience=1.0)
    finally:
        os.close(leaked)
    assert after[0] < before[0]  # a thread fewer
    assert leaks(before, after) == [f"file descriptors {before[1]} -> {after[1]}"]
    assert after[1] > before[1]


def settled(limit: tuple[int, int] | None, patience: float = 10.0) -> tuple[int, int]:
    """Thread and fd counts once transient ones (a server restart's thread, a socket being
    closed) are gone: a leak stays, a transient one does not (on a busy machine one may
    take seconds to go). Threads and fds are compared each on its own."""
    deadline = time.monotonic() + patience
    while True:
        time.sleep(0.1)
        counts = resources()
        if limit is None:
            time.sleep(0.2)
            again = resources()
            return min(counts[0], again[0]), min(counts[1], again[1])
        if not leaks(limit, counts) or time.monotonic() > deadline:
            return counts
