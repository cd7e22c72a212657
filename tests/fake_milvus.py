"""A real Milvus gRPC server on loopback, scripted per call, for flushkit's tests.

    with FakeMilvus() as server:
        server.script_flush(status(8, 49, "rate limit exceeded", retriable=True), ok())
        MilvusClient(uri=server.uri)

Every byte crosses a real gRPC channel. Behaviours are consumed one per call; when a
method's script is empty its default applies (``ok()`` for Flush, ``flushed(True)`` for
GetFlushState). Every call is recorded, with its metadata and whether the server saw the
client cancel it (or its deadline pass) before answering.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from pymilvus.grpc_gen import common_pb2, milvus_pb2, milvus_pb2_grpc, schema_pb2

__all__ = [
    "Call",
    "FakeMilvus",
    "abort",
    "delay",
    "flushed",
    "hang",
    "ok",
    "status",
]


@dataclass(frozen=True)
class Ok:
    segments: dict[str, list[int]] | None = None


@dataclass(frozen=True)
class Status:
    code: int
    error_code: int = 0
    reason: str = ""
    retriable: bool = False
    detail: str = ""


@dataclass(frozen=True)
class Delay:
    seconds: float
    then: Any = None


@dataclass(frozen=True)
class Hang:
    pass


@dataclass(frozen=True)
class Abort:
    code: grpc.StatusCode
    details: str = ""


@dataclass(frozen=True)
class Flushed:
    value: bool


def ok(segments: dict[str, list[int]] | None = None) -> Ok:
    """An OK answer; for Flush, ``segments`` (default: two per collection)."""
    return Ok(segments)


def status(
    code: int, error_code: int = 0, reason: str = "", retriable: bool = False, detail: str = ""
) -> Status:
    """An answer whose status carries these fields."""
    return Status(code, error_code, reason, retriable, detail)


def delay(seconds: float, then: Any = None) -> Delay:
    """Sleep (ending early if the client cancels), then behave as ``then`` (default OK)."""
    return Delay(seconds, then)


def hang() -> Hang:
    """Never answer: wait until the client cancels or its deadline passes."""
    return Hang()


def abort(code: grpc.StatusCode, details: str = "") -> Abort:
    """End the RPC with a gRPC error."""
    return Abort(code, details)


def flushed(value: bool) -> Flushed:
    """GetFlushState's answer."""
    return Flushed(value)


@dataclass
class Call:
    method: str
    request: Any
    metadata: dict[str, str]
    time_remaining: float | None
    started: float
    ended: float = 0.0
    cancelled: bool = False


@dataclass
class _Script:
    default: Any
    queue: deque[Any] = field(default_factory=deque)

    def next(self) -> Any:
        try:
            return self.queue.popleft()
        except IndexError:
            return self.default


class _Servicer(milvus_pb2_grpc.MilvusServiceServicer):  # type: ignore[misc]
    def __init__(self, server: FakeMilvus) -> None:
        self.server = server

    def Connect(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.server._record("Connect", request, context)
        return milvus_pb2.ConnectResponse(
            status=common_pb2.Status(), identifier=1, server_info=common_pb2.ServerInfo()
        )

    def Flush(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.server._answer("Flush", request, context)

    def GetFlushState(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.server._answer("GetFlushState", request, context)


def _remaining(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None or remaining > 1e9 else remaining  # no deadline


class FakeMilvus:
    """The scripted server: ``start()``/``stop()`` or a context manager."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server: grpc.Server | None = None
        self._sleepers: set[threading.Event] = set()
        self.port = 0
        self.calls: list[Call] = []
        self.reset()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeMilvus:
        self._stopping.clear()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=256))
        milvus_pb2_grpc.add_MilvusServiceServicer_to_server(_Servicer(self), self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{self.port}")
        self._server.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            for sleeper in self._sleepers:
                sleeper.set()
        if self._server is not None:
            self._server.stop(grace=0).wait(5)
            self._server = None

    def __enter__(self) -> FakeMilvus:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # scripting
    def reset(self) -> None:
        with self._lock:
            self._scripts = {"Flush": _Script(ok()), "GetFlushState": _Script(flushed(True))}
            self.calls = []

    def script_flush(self, *behaviours: Any) -> None:
        with self._lock:
            self._scripts["Flush"].queue.extend(behaviours)

    def script_flush_state(self, *behaviours: Any) -> None:
        with self._lock:
            self._scripts["GetFlushState"].queue.extend(behaviours)

    def flushed_after(self, n: int) -> None:
        """GetFlushState answers not flushed n-1 times, then flushed."""
        self.script_flush_state(*[flushed(False)] * (n - 1), flushed(True))

    # records
    @property
    def flush_calls(self) -> list[Call]:
        return [call for call in self.calls if call.method == "Flush"]

    @property
    def flush_state_calls(self) -> list[Call]:
        return [call for call in self.calls if call.method == "GetFlushState"]

    def wait_for_cancellations(self, n: int, timeout: float = 2.0) -> bool:
        """Block until the server saw ``n`` calls end without an answer."""
        with self._cancelled:
            return self._cancelled.wait_for(
                lambda: sum(call.cancelled for call in self.calls) >= n, timeout
            )

    # serving
    def _record(self, method: str, request: Any, context: grpc.ServicerContext) -> Call:
        call = Call(
            method=method,
            request=request,
            metadata={key.lower(): str(value) for key, value in context.invocation_metadata()},
            time_remaining=_remaining(context),
            started=time.monotonic(),
        )
        with self._lock:
            self.calls.append(call)
        return call

    def _answer(self, method: str, request: Any, context: grpc.ServicerContext) -> Any:
        call = self._record(method, request, context)
        with self._lock:
            behaviour = self._scripts[method].next()
        try:
            return self._behave(behaviour, method, request, context, call)
        finally:
            call.ended = time.monotonic()

    def _behave(
        self, behaviour: Any, method: str, request: Any, context: grpc.ServicerContext, call: Call
    ) -> Any:
        if isinstance(behaviour, Delay | Hang):
            seconds = behaviour.seconds if isinstance(behaviour, Delay) else None
            if not self._sleep(seconds, context):
                self._saw_cancel(call)
                context.abort(grpc.StatusCode.CANCELLED, "ended by the client")
            if isinstance(behaviour, Hang):  # stopping
                context.abort(grpc.StatusCode.UNAVAILABLE, "server stopping")
            return self._behave(behaviour.then or ok(), method, request, context, call)
        if isinstance(behaviour, Abort):
            context.abort(behaviour.code, behaviour.details)
        if isinstance(behaviour, Status):
            failed = common_pb2.Status(
                code=behaviour.code,
                error_code=behaviour.error_code,
                reason=behaviour.reason,
                retriable=behaviour.retriable,
                detail=behaviour.detail,
            )
            if method == "Flush":
                return milvus_pb2.FlushResponse(status=failed)
            return milvus_pb2.GetFlushStateResponse(status=failed)
        if method == "GetFlushState":
            value = behaviour.value if isinstance(behaviour, Flushed) else True
            return milvus_pb2.GetFlushStateResponse(status=common_pb2.Status(), flushed=value)
        return self._flush_response(behaviour, request, context)

    @staticmethod
    def _flush_response(behaviour: Any, request: Any, context: grpc.ServicerContext) -> Any:
        names = list(request.collection_names)
        segments = getattr(behaviour, "segments", None)
        if segments is None:
            segments = {name: [1001 + 10 * i, 1002 + 10 * i] for i, name in enumerate(names)}
        metadata = dict(context.invocation_metadata())
        now = int(time.time())
        return milvus_pb2.FlushResponse(
            status=common_pb2.Status(),
            db_name=request.db_name or str(metadata.get("dbname", "default")),
            coll_segIDs={n: schema_pb2.LongArray(data=ids) for n, ids in segments.items()},
            flush_coll_segIDs={n: schema_pb2.LongArray(data=ids) for n, ids in segments.items()},
            coll_seal_times={name: now for name in segments},
            coll_flush_ts={name: (now << 18) + 1 for name in segments},
        )

    def _sleep(self, seconds: float | None, context: grpc.ServicerContext) -> bool:
        """Sleep; False as soon as the client is gone (cancel or deadline)."""
        ended = threading.Event()
        context.add_callback(ended.set)  # runs when the RPC terminates, however it ends
        with self._lock:
            self._sleepers.add(ended)
        try:
            ended.wait(seconds)
        finally:
            with self._lock:
                self._sleepers.discard(ended)
        return context.is_active() or self._stopping.is_set()

    def _saw_cancel(self, call: Call) -> None:
        with self._cancelled:
            call.cancelled = True
            self._cancelled.notify_all()
