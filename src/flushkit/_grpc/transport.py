"""The transport: a client's connection, its flush scheduler, and the last I/O step.

As httpx keeps its connection pool inside its transport, a flushkit transport holds what
belongs to one pymilvus client: its connection (:mod:`.pymilvus_internals`) and its
:class:`~flushkit._scheduler.FlushScheduler` (rounds and pacing). :func:`transport_for`
gives every flusher on one client the same transport, made at the first and dropped with
the client; another client gets its own.

It performs the effects (:mod:`flushkit._effects`) the core yields: a :class:`Call` (an
RPC for the calling task), a :class:`Start` (a shared round's RPC, owned by no caller,
whose outcome lands on the round), a :class:`Wait` (sleep until the call's bell rings or
a time comes) and a :class:`Pause`. Both facades share everything here but the final
wait: :meth:`Transport.perform` blocks, :meth:`Transport.perform_async` awaits without
holding a thread.

Two transports:

* :class:`Transport`, on a blocking ``MilvusClient``'s channel. The async facade runs its
  RPCs as gRPC futures on that channel: no second connection per event loop, the same
  under asyncio and trio (trio has no grpc.aio), no thread held while the RPC is in flight
  (so anyio's thread limiter never caps it), cancelled on the wire with
  ``future.cancel()``. gRPC's completion thread hands the answer back with the loop's
  thread-safe ``call_soon`` (asyncio) or ``run_sync_soon`` (trio), once per burst of
  answers (:mod:`.wakeups`); :mod:`.completion_thread` keeps that thread
  between consecutive calls.
* :class:`AioTransport`, on an ``AsyncMilvusClient``'s own grpc.aio channel (asyncio
  only): the RPC is awaited directly, with no hop between threads. The client, and so the
  channel's lifetime, is the caller's.

What each costs is measured in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import grpc
from pymilvus.grpc_gen import milvus_pb2

from .._effects import (
    ALLOC_TIMESTAMP,
    FLUSH,
    GET_FLUSH_STATE,
    LIST_DATABASES,
    Call,
    Failed,
    Start,
    Wait,
)
from .._exceptions import (
    ClientClosedError,
    FlushError,
    ServiceUnavailableError,
    describe,
    error_from_rpc,
    timeout_error,
)
from .._models import FlushRequest, Pause
from .._scheduler import FlushScheduler
from .completion_thread import ChannelFutures, futures_of
from .pymilvus_internals import (
    AsyncMilvusConnection,
    Metadata,
    MilvusConnection,
    is_async_client,
)
from .wakeups import threadsafe_setter

__all__ = ["AioTransport", "Transport", "transport_for"]

Effect = Call | Start | Wait | Pause

_SERVICE = "/milvus.proto.milvus.MilvusService/"
_METHODS: Mapping[str, tuple[Any, Any]] = {
    FLUSH: (milvus_pb2.FlushRequest, milvus_pb2.FlushResponse),
    GET_FLUSH_STATE: (milvus_pb2.GetFlushStateRequest, milvus_pb2.GetFlushStateResponse),
    LIST_DATABASES: (milvus_pb2.ListDatabasesRequest, milvus_pb2.ListDatabasesResponse),
    ALLOC_TIMESTAMP: (milvus_pb2.AllocTimestampRequest, milvus_pb2.AllocTimestampResponse),
}


def _stubs(channel: Any, **options: Any) -> dict[str, Any]:
    """The callables of flushkit's RPCs on a blocking or a grpc.aio channel."""
    return {
        name: channel.unary_unary(
            _SERVICE + name,
            request_serializer=request.SerializeToString,
            response_deserializer=response.FromString,
            **options,
        )
        for name, (request, response) in _METHODS.items()
    }


# Each client's transport is that client's state, held only as long as the client.
_transports: weakref.WeakKeyDictionary[Any, Transport] = weakref.WeakKeyDictionary()
_transports_lock = threading.Lock()


def transport_for(client: Any) -> Transport:
    """``client``'s transport, shared by every flusher on it: grpc.aio for an
    ``AsyncMilvusClient``, else the blocking client's channel (bridged to the event loop
    for the async facade). Raises ClientClosedError for a closed client."""
    with _transports_lock:
        try:
            transport = _transports.get(client)
        except TypeError:  # a client that cannot be weakly referenced: its own each time
            transport = None
    if transport is not None:
        try:
            transport.connection.check_open()
        except ClientClosedError:
            with _transports_lock:
                _transports.pop(client, None)  # closed for good: its scheduler goes
            raise
        return transport
    made = AioTransport(client) if is_async_client(client) else Transport(client)
    with _transports_lock:
        try:
            transport = _transports.setdefault(client, made)
        except TypeError:
            transport = made
    return transport


class Transport:
    """A MilvusClient's connection and scheduler; performs the effects on its channel."""

    #: Whether it runs only under asyncio (grpc.aio).
    asyncio_only = False

    def __init__(self, client: Any) -> None:
        self.connection = self._connect(client)
        #: The rounds and pacing of every flusher on this client.
        self.scheduler = FlushScheduler()
        self._channel: Any = None
        self._stubs: dict[str, Any] = {}
        self._futures = ChannelFutures()

    @staticmethod
    def _connect(client: Any) -> MilvusConnection:
        return MilvusConnection(client)

    def _route(self, call: Call) -> tuple[grpc.UnaryUnaryMultiCallable, Metadata]:
        """The method's callable on the client's current channel (pymilvus replaces it
        when it reconnects), and the call's metadata: the database and the credential,
        and the flush span's context when it is recording."""
        channel = self.connection.channel()
        if channel is not self._channel:  # first call, or pymilvus reconnected
            self._stubs = _stubs(channel, _registered_method=True)
            self._futures = futures_of(channel)
            self._channel = channel
        request = call.request
        metadata = self.connection.metadata(request.db_name)
        if request.trace is not None:
            metadata += request.trace.metadata
        return self._stubs[call.method], metadata

    def _future(
        self, call: Call, timeout: float | None, when_done: Callable[[grpc.Future], object]
    ) -> grpc.Future:
        """Start ``call`` as a gRPC future; ``when_done(future)`` runs once it has ended,
        on gRPC's thread (or at once, if it ended before the callback could be added)."""
        stub, metadata = self._route(call)
        future = stub.future(call.message, timeout=timeout, metadata=metadata)
        self._futures.track(future, when_done)
        return future

    def _metadata(self, request: FlushRequest) -> Metadata:
        """Database and credential, and the flush span's context when it is recording
        (what :meth:`_route` also gives, for the AsyncMilvusClient's own paths)."""
        metadata = self.connection.metadata(request.db_name)
        return metadata if request.trace is None else metadata + request.trace.metadata

    def perform(self, effect: Effect) -> Any:
        """Perform an RPC, start a shared one, or wait, blocking; the outcome: its answer,
        or :class:`Failed` with what it raised."""
        kind = type(effect)
        try:
            if kind is Call:
                return self.call(effect)  # type: ignore[arg-type]
            if kind is Start:
                return self.start(effect)  # type: ignore[arg-type]
            if kind is Wait:
                return _wait_blocking(effect)  # type: ignore[arg-type]
            return time.sleep(effect.seconds)  # type: ignore[union-attr]
        except BaseException as exc:  # for the chain: KeyboardInterrupt included
            return Failed(exc)

    async def perform_async(self, effect: Effect) -> Any:
        """Perform an RPC, start a shared one, or wait, without blocking the event loop;
        the outcome: its answer, or :class:`Failed` with what it raised (the runtime's
        cancellation included, which the chain raises again)."""
        kind = type(effect)
        try:
            if kind is Call:
                timeout, scope_first = _rpc_timeout(effect)  # type: ignore[arg-type]
                try:
                    return await self._bridge(effect, timeout)  # type: ignore[arg-type]
                except grpc.RpcError as exc:
                    raise await _rpc_error(exc, effect, scope_first) from None  # type: ignore[arg-type]
            if kind is Start:
                return await self.start_async(effect)  # type: ignore[arg-type]
            if kind is Wait:
                return await _wait_async(effect)  # type: ignore[arg-type]
            return await anyio.sleep(effect.seconds)  # type: ignore[union-attr]
        except BaseException as exc:
            return Failed(exc)

    def start(self, effect: Start) -> grpc.Future:
        """Start a shared round's RPC and return its gRPC future; its outcome lands on
        the round, on gRPC's thread."""
        call, round_ = effect

        def when_done(future: grpc.Future) -> None:
            try:
                response, error = future.result(), None
            except grpc.FutureCancelledError:
                response, error = None, None
            except grpc.RpcError as exc:
                response, error = None, error_from_rpc(exc, call)
            round_.land(response, error)

        return self._future(call, _remaining(call), when_done)

    async def start_async(self, effect: Start) -> Any:
        """:meth:`start`, for the async facade (which an AsyncMilvusClient overrides)."""
        return self.start(effect)

    def call(self, call: Call) -> Any:
        """Perform ``call``, blocking until its answer or its deadline."""
        stub, metadata = self._route(call)
        try:
            return stub(call.message, timeout=_remaining(call), metadata=metadata)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, call) from None

    async def _bridge(self, call: Call, timeout: float | None) -> Any:
        """A gRPC future on the client's own channel, awaited without a thread."""
        answered = anyio.Event()
        wake = threadsafe_setter(answered)
        future = self._future(call, timeout, lambda _: wake())
        try:
            await answered.wait()
        finally:
            future.cancel()  # a no-op once answered; else the server sees CANCELLED
        return future.result()


class AioTransport(Transport):
    """Performs the effects on an ``AsyncMilvusClient``'s own grpc.aio channel, beneath
    pymilvus's interceptors: asyncio only (trio has no grpc.aio).

    A call's RPC is awaited directly (cancelling the task cancels it on the server); a
    shared round's RPC is a grpc.aio call awaited by a task of the event loop that belongs
    to no caller, whose outcome lands on the round.
    """

    asyncio_only = True

    connection: AsyncMilvusConnection

    @staticmethod
    def _connect(client: Any) -> AsyncMilvusConnection:
        return AsyncMilvusConnection(client)

    def _ready_stub(self, method: str) -> Any:
        """The method's callable on the client's current channel; None before the
        client's first connection."""
        channel = self.connection.current_channel()
        if channel is None:
            return None
        if channel is not self._channel:  # first call, or pymilvus reconnected
            self._stubs = _stubs(channel)
            self._channel = channel
        return self._stubs[method]

    async def _aio_stub(self, call: Call) -> Any:
        stub = self._ready_stub(call.method)
        if stub is not None:
            return stub
        remaining = _remaining(call)  # first: a spent budget creates no coroutine
        try:  # the client's first call: connect it within the budget
            await asyncio.wait_for(self.connection.connect(), remaining)
        except asyncio.TimeoutError:
            raise timeout_error(call.request, "connecting the AsyncMilvusClient") from None
        except FlushError:
            raise
        except Exception as exc:  # pymilvus's: typed by the gRPC failure beneath it
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, grpc.RpcError):
                raise error_from_rpc(cause, call) from None
            raise ServiceUnavailableError(
                f"{describe(call.request)} failed: cannot connect the AsyncMilvusClient to "
                f"{self.connection.address}: {exc}",
                collection_names=call.request.collection_names,
                db_name=call.request.db_name,
                retryable=True,
            ) from None
        return self._ready_stub(call.method)

    def perform(self, effect: Effect) -> Any:
        raise TypeError("an AsyncMilvusClient is for flushkit.AsyncFlusher under asyncio")

    async def _bridge(self, call: Call, timeout: float | None) -> Any:
        """The grpc.aio call, waited for through a future of the loop's own: cancelling
        the caller (its cancel scope, its task) cancels the RPC on the server. (Awaiting
        the grpc.aio call itself would let the CancelledError grpc.aio raises anew escape
        anyio's cancel scopes.)"""
        stub = self._ready_stub(call.method) or await self._aio_stub(call)
        rpc = stub(call.message, timeout=timeout, metadata=self._metadata(call.request))
        try:
            await _ended(rpc)
        finally:
            if not rpc.done():  # the caller left: the server sees CANCELLED
                rpc.cancel()
                # Let gRPC report the call's end on this loop while it runs: grpc.aio
                # would otherwise deliver it to a loop closed by then.
                with anyio.move_on_after(1.0, shield=True):
                    await _ended(rpc)
        return await rpc

    async def start_async(self, effect: Start) -> Any:
        """Start a shared round's RPC; returns the grpc.aio call (to cancel it)."""
        call = effect.call
        stub = await self._aio_stub(call)
        rpc = stub(call.message, timeout=_remaining(call), metadata=self._metadata(call.request))
        task = asyncio.get_running_loop().create_task(_answer_shared(rpc, effect))
        _shared_tasks.add(task)  # the loop keeps only a weak reference to its tasks
        task.add_done_callback(_shared_tasks.discard)
        return rpc


#: The shared rounds' tasks: the event loop keeps only a weak reference to its tasks.
_shared_tasks: set[asyncio.Task[None]] = set()


def _ended(rpc: Any) -> asyncio.Future[None]:
    """A future of the running loop, done once the grpc.aio call ``rpc`` has ended."""
    ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def end(_: object) -> None:
        if not ended.done():
            ended.set_result(None)

    rpc.add_done_callback(end)
    return ended


async def _answer_shared(rpc: Any, effect: Start) -> None:
    """Await a shared round's grpc.aio call; its outcome lands on the round."""
    call, round_ = effect
    response = error = None
    try:
        response = await rpc
    except asyncio.CancelledError:  # every caller left, or the loop is closing
        pass
    except grpc.RpcError as exc:
        error = error_from_rpc(exc, call)
    round_.land(response, error)


def _rpc_timeout(call: Call) -> tuple[float | None, bool]:
    """The gRPC deadline of an async facade's RPC, in seconds: the flush's own deadline or
    the caller's cancel scope's, whichever comes first, so the server sees the call end
    either way (the blocking facade relies on the same gRPC deadline); and whether it is
    the scope's."""
    own = _remaining(call)
    scope = anyio.current_effective_deadline()
    if scope != math.inf:  # the caller's cancel scope has a deadline: seconds left
        scope -= anyio.current_time()
    if scope < (math.inf if own is None else own):
        return max(scope, 0.0), True
    return own, False


async def _rpc_error(exc: grpc.RpcError, call: Call, scope_first: bool) -> FlushError:
    """The error an async facade's failed RPC raises."""
    if scope_first and exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
        # The caller's own cancel scope set this deadline: let it cancel us, so the caller
        # sees its runtime's cancellation, not a FlushTimeoutError. (Once the scope is
        # cancelled its deadline reads -inf: sleep_until then only checkpoints, which
        # delivers the cancellation.)
        await anyio.sleep_until(anyio.current_effective_deadline())
    return error_from_rpc(exc, call)


def _remaining(call: Call) -> float | None:
    deadline = call.request.deadline
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        during = f"before {call.method}"
        if call.method == GET_FLUSH_STATE:  # between polls
            during = "waiting for the sealed segments to persist"
        raise timeout_error(call.request, during)
    return remaining


def _wait_blocking(effect: Wait) -> None:
    """Sleep until the bell rings or ``until`` comes."""
    answered = threading.Event()
    if effect.bell.arm(answered.set):
        try:
            answered.wait(_until(effect))
        finally:
            effect.bell.disarm()


async def _wait_async(effect: Wait) -> None:
    """Sleep until the bell rings or ``until`` comes, within the caller's cancel scope."""
    answered = anyio.Event()
    if effect.bell.arm(threadsafe_setter(answered)):
        try:
            left = _until(effect)
            with anyio.move_on_after(math.inf if left is None else left):
                await answered.wait()
        finally:
            effect.bell.disarm()


def _until(effect: Wait) -> float | None:
    return None if effect.until is None else max(effect.until - time.monotonic(), 0.0)
