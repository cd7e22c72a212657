"""flushkit.testing: a real Milvus gRPC server on loopback, scripted per call, for tests.

Test your own service's flushes against it, as flushkit's own tests do::

    from flushkit.testing import MilvusTestServer, delay, disconnect, hang, ok, status

    with MilvusTestServer() as server:
        server.script_flush(status(8, 49, "rate limit exceeded", retriable=True), ok())
        client = MilvusClient(uri=server.uri)
        ...
        assert server.flush_calls[0].metadata["dbname"] == "default"

or, with pytest, take the ``milvus_test_server`` fixture (flushkit registers it as a
pytest plugin): one server per test session, with fresh scripts and records per test.

Every byte crosses a real gRPC channel. Behaviours are consumed one per call; when a
method's script is empty its default applies (``ok()`` for Flush and AllocTimestamp; for
GetFlushState, the fleet model's answer below):

* ``ok(segments=None)``: an OK answer (Flush: two segment IDs per collection by default;
  AllocTimestamp: the oracle's next timestamp; GetFlushState: flushed);
* ``status(code, error_code, reason, retriable, detail)``: a failed status;
* ``delay(seconds, then=ok())``: answer late (ends early if the client goes);
* ``hang()``: never answer until the client cancels or its deadline passes;
* ``abort(grpc.StatusCode.X, details)``: end the RPC with a gRPC error;
* ``disconnect()``: close every connection mid-call (the server restarts on its port);
* ``flushed(value)``: GetFlushState's answer; ``server.flushed_after(n)`` scripts n polls.

Scripts: ``script_flush``, ``script_flush_state``, ``script_alloc_timestamp``.

The fleet model (several clients flushing one server, as Milvus coordinates them): the server
has one timestamp oracle, hybrid timestamps ``(Unix ms << 18) + logical``, strictly
increasing. ``AllocTimestamp`` answers its next timestamp (never rate-limited);
``server.without_alloc_timestamp()`` makes it answer gRPC UNIMPLEMENTED, as Milvus Lite 3.2.2
does. A Flush answered OK is admitted: it takes one oracle timestamp, answers it as
``coll_flush_ts`` of its collections, and records it for each (database, collection) it
names (database: ``db_name``, else the "dbname" header, else "default"). A Flush that is
throttled, names a missing collection, or whose script answers anything but OK (a status,
an abort, a hang, a disconnect) admits nothing; a delayed OK is admitted when it answers.
``server.persist_after(seconds)`` makes an admitted Flush's collections count as persisted
``seconds`` after admission (default 0: at once). GetFlushState, unless scripted, answers
``flushed=true`` iff its ``flush_ts`` is 0 or no later than the server's creation or last
``reset()`` (nothing of a collection predates that, as a real channel checkpoint starts at
the collection's creation), or an admitted Flush of its (database, collection), sent by any
client, has a flush timestamp >= ``flush_ts`` and has persisted. Its segment IDs do not
matter. So a client can take T with AllocTimestamp and poll GetFlushState(T) until somebody
else's Flush covers it.

``server.missing("ghost", ...)`` makes collections not exist: a Flush or GetFlushState
naming one answers "collection not found" (code 100, legacy CollectionNotExists) as Milvus
does, whatever else the call names, without consuming a script.

``server.limit_flush_rate(rate)`` throttles Flush as Milvus's proxy does (2.4+:
``quotaAndLimits.flushRate.collection.max``, per collection; ``per_collection=False``: one
limiter for the whole server, as Milvus 2.3): a Flush arriving less than ``1 / rate``
seconds after the last admitted Flush of a collection it names answers Milvus's rate-limit
status (code 8, RateLimit 49, retriable, "... rate limit exceeded[rate=0.1]"), admits none
of its collections and consumes no script (a missing collection answers "not found"
first). Milvus's token bucket lets a burst through; this limiter is the simpler pacing
rule. ``server.throttled_calls`` lists the throttled Flush calls (``ReceivedCall.throttled``).

Every call is recorded (``server.calls``, ``flush_calls``, ``flush_state_calls``,
``alloc_timestamp_calls``) with
its headers (``metadata`` by name, ``headers`` in order with repeats), its deadline, and
whether the server saw the client cancel it (or its
deadline pass) before answering; ``wait_for_calls`` and ``wait_for_cancellations`` block
until enough have. ``restart()`` stops and starts the server on the same port.

pymilvus's ``MilvusClient(uri=...)`` makes one RPC, ``Connect``, and only for the first
client per address and token: pymilvus pools connections.
"""

from __future__ import annotations

import itertools
import math
import numbers
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeAlias

import grpc
from pymilvus.grpc_gen import common_pb2, milvus_pb2, milvus_pb2_grpc, schema_pb2

__all__ = [
    "ALLOC_TIMESTAMP",
    "FLUSH",
    "FLUSH_STATE",
    "Abort",
    "Behaviour",
    "Delay",
    "Disconnect",
    "Flushed",
    "Hang",
    "MilvusTestServer",
    "Ok",
    "ReceivedCall",
    "StatusAnswer",
    "abort",
    "delay",
    "disconnect",
    "flushed",
    "hang",
    "ok",
    "status",
]

FLUSH = "Flush"
FLUSH_STATE = "GetFlushState"
ALLOC_TIMESTAMP = "AllocTimestamp"

_LOGICAL_BITS = 18  # a hybrid timestamp: physical Unix ms << 18 | logical counter

# Milvus's keepalive policy (MinTime 5 s, PermitWithoutStream): pymilvus pings every 10 s.
_SERVER_OPTIONS = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.so_reuseport", 0),  # a restart on a taken port fails instead of sharing it
]
_NO_DEADLINE = 1e9  # grpc reports "no deadline" as ~9.2e18 seconds remaining


# behaviours


@dataclass(frozen=True)
class Ok:
    """An OK answer; for Flush, ``segments`` per collection (None: two per requested one)."""

    segments: dict[str, list[int]] | None = None


@dataclass(frozen=True)
class StatusAnswer:
    """An answer whose ``common.Status`` carries these fields (and no segments)."""

    code: int
    error_code: int = 0
    reason: str = ""
    retriable: bool = False
    detail: str = ""


@dataclass(frozen=True)
class Delay:
    """Sleep ``seconds`` (ending early if the client goes), then behave as ``then``."""

    seconds: float
    then: Behaviour = field(default_factory=Ok)


@dataclass(frozen=True)
class Hang:
    """Never answer: wait until the client cancels or its deadline passes."""


@dataclass(frozen=True)
class Abort:
    """End the RPC with a gRPC error status."""

    code: grpc.StatusCode
    details: str = ""


@dataclass(frozen=True)
class Disconnect:
    """Close every connection while this call is in flight."""


@dataclass(frozen=True)
class Flushed:
    """GetFlushState's OK answer with ``flushed=value``."""

    value: bool


Behaviour: TypeAlias = Ok | StatusAnswer | Delay | Hang | Abort | Disconnect | Flushed


def ok(segments: dict[str, list[int]] | None = None) -> Ok:
    """An OK answer; for Flush, ``segments`` (default: two per requested collection)."""
    return Ok(segments)


def status(
    code: int, error_code: int = 0, reason: str = "", retriable: bool = False, detail: str = ""
) -> StatusAnswer:
    """An answer whose status carries these fields."""
    return StatusAnswer(code, error_code, reason, retriable, detail)


def delay(seconds: float, then: Behaviour | None = None) -> Delay:
    """Sleep (ending early if the client cancels), then behave as ``then`` (default OK)."""
    if not seconds >= 0:
        raise ValueError(f"delay needs seconds >= 0, not {seconds!r}")
    return Delay(seconds, ok() if then is None else then)


def hang() -> Hang:
    """Never answer: wait until the client cancels or its deadline passes."""
    return Hang()


def abort(code: grpc.StatusCode, details: str = "") -> Abort:
    """End the RPC with ``context.abort(code, details)``."""
    if code is grpc.StatusCode.OK:
        raise ValueError("abort needs an error code, not OK")
    return Abort(code, details)


def disconnect() -> Disconnect:
    """Close every connection mid-call: the server restarts on its port."""
    return Disconnect()


def flushed(value: bool) -> Flushed:
    """GetFlushState's answer."""
    return Flushed(value)


# records


@dataclass
class ReceivedCall:
    """One RPC as the server saw it."""

    method: str
    request: Any
    metadata: dict[str, str]  # the headers by lower-case name (the last of a repeated one)
    time_remaining: float | None  # at arrival; None without a deadline
    started: float  # time.monotonic()
    ended: float = 0.0  # time.monotonic(); 0.0 while in flight
    cancelled: bool = False  # the client cancelled or its deadline passed before an answer
    throttled: bool = False  # a Flush answered by ``limit_flush_rate``'s limiter
    #: Every header as received, in order, repeats included: a header sent twice shows
    #: twice here, once in ``metadata``.
    headers: tuple[tuple[str, str], ...] = ()


def _headers(context: grpc.ServicerContext) -> tuple[tuple[str, str], ...]:
    return tuple(
        (
            key.lower(),
            value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value),
        )
        for key, value in context.invocation_metadata() or ()
    )


def _time_remaining(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None or remaining > _NO_DEADLINE else remaining


def _status_pb(behaviour: StatusAnswer) -> Any:
    return common_pb2.Status(
        code=behaviour.code,
        error_code=behaviour.error_code,
        reason=behaviour.reason,
        retriable=behaviour.retriable,
        detail=behaviour.detail,
    )


def _go_float(value: float) -> str:
    """``value`` as Go's ``%v`` prints a float64: 0.1, 1, 2.5, 100000, 1e+06, 1e-05."""
    shortest = Decimal(repr(value)).normalize()  # repr: the shortest round-tripping digits
    _, digits, exponent = shortest.as_tuple()
    assert isinstance(exponent, int)  # finite
    point = len(digits) - 1 + exponent  # the decimal exponent of the first digit
    if point < -4 or point >= 6:  # strconv's %g for the shortest digits: %e outside [-4, 6)
        mantissa = "".join(map(str, digits))
        fraction = f".{mantissa[1:]}" if len(mantissa) > 1 else ""
        return f"{mantissa[0]}{fraction}e{'-' if point < 0 else '+'}{abs(point):02d}"
    return format(shortest, "f")


def _rate_limited(rate: float) -> StatusAnswer:
    """Milvus's answer to a Flush its proxy's rate limiter rejects."""
    return status(
        8,  # merr.ErrServiceRateLimit
        49,  # commonpb.ErrorCode_RateLimit
        "request is rejected by grpc RateLimiter middleware, please retry later: "
        f"rate limit exceeded[rate={_go_float(rate)}]",
        retriable=True,
    )


_UNIMPLEMENTED = Abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")


def _check(method: str, behaviour: object) -> None:
    while isinstance(behaviour, Delay):
        behaviour = behaviour.then
    if not isinstance(behaviour, Ok | StatusAnswer | Hang | Abort | Disconnect | Flushed):
        raise TypeError(f"not a flushkit.testing behaviour: {behaviour!r}")
    if isinstance(behaviour, Flushed) and method != FLUSH_STATE:
        raise TypeError(f"flushed() answers GetFlushState, not {method}")


class _Servicer(milvus_pb2_grpc.MilvusServiceServicer):  # type: ignore[misc]
    """The RPCs pymilvus needs; everything else is the base class's UNIMPLEMENTED."""

    def __init__(self, fake: MilvusTestServer) -> None:
        self._fake = fake
        self._identifiers = itertools.count(1)

    def Connect(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._fake._record_answered("Connect", request, context)
        return milvus_pb2.ConnectResponse(
            status=common_pb2.Status(),
            identifier=next(self._identifiers),  # a session id; pymilvus sends it back
            server_info=common_pb2.ServerInfo(
                build_tags=MilvusTestServer.VERSION,
                build_time="fake",
                git_commit="fake",
                go_version="fake",
                deploy_mode="STANDALONE",
            ),
        )

    def GetVersion(self, request: Any, context: grpc.ServicerContext) -> Any:
        self._fake._record_answered("GetVersion", request, context)
        return milvus_pb2.GetVersionResponse(
            status=common_pb2.Status(), version=MilvusTestServer.VERSION
        )

    def ListDatabases(self, request: Any, context: grpc.ServicerContext) -> Any:
        """ "default", and the databases named with ``server.databases(...)``."""
        self._fake._record_answered("ListDatabases", request, context)
        with self._fake._lock:
            names = ["default", *sorted(self._fake._databases)]
        return milvus_pb2.ListDatabasesResponse(status=common_pb2.Status(), db_names=names)

    def DescribeDatabase(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Every database exists (``MilvusClient.use_database`` asks first)."""
        self._fake._record_answered("DescribeDatabase", request, context)
        return milvus_pb2.DescribeDatabaseResponse(
            status=common_pb2.Status(), db_name=request.db_name
        )

    def Flush(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._fake._serve(FLUSH, request, context)

    def GetFlushState(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._fake._serve(FLUSH_STATE, request, context)

    def AllocTimestamp(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._fake._serve(ALLOC_TIMESTAMP, request, context)


class MilvusTestServer:
    """The scripted server on ``127.0.0.1``: ``start()``/``stop()`` or a context manager."""

    VERSION = "v2.6.0"

    def __init__(self, grpc_options: dict[str, Any] | None = None) -> None:
        """``grpc_options`` override the server's channel arguments (a keepalive policy
        stricter than Milvus's, say, to provoke "too_many_pings" GOAWAYs)."""
        self._options = [*dict(_SERVER_OPTIONS, **(grpc_options or {})).items()]
        self.port = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a call arrived or was cancelled
        self._calls: list[ReceivedCall] = []
        self._scripts: dict[str, deque[Behaviour]] = {
            FLUSH: deque(),
            FLUSH_STATE: deque(),
            ALLOC_TIMESTAMP: deque(),
        }
        self._defaults: dict[str, Behaviour] = {FLUSH: ok(), ALLOC_TIMESTAMP: ok()}
        self._missing: set[str] = set()
        self._databases: set[str] = set()
        self._flush_rate: float | None = None
        self._flush_per_collection = True
        #: (database, collection) (None: all) -> when its last Flush was admitted (monotonic)
        self._last_admitted: dict[tuple[str, str] | None, float] = {}
        self._last_timestamp = 0  # the oracle's last hybrid timestamp
        self._baseline = self._next_timestamp()  # GetFlushState(T <= this) is flushed
        # (database, collection): admitted Flushes as (flush timestamp, monotonic time it
        # persists at); an entry goes once a newer one persists no later than it does
        self._admissions: dict[tuple[str, str], list[tuple[int, float]]] = {}
        self._persist_delay = 0.0
        self._alloc_timestamp_unimplemented = False
        self._waiters: set[threading.Event] = set()
        self._stopping = False
        self._server: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self._restarting = threading.Lock()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # lifecycle

    def start(self) -> MilvusTestServer:
        """Serve on a free port (or, after ``stop()``, on the same port again)."""
        if self._server is not None:
            raise RuntimeError("MilvusTestServer is already serving")
        self._stopping = False
        self._executor = futures.ThreadPoolExecutor(max_workers=256, thread_name_prefix="fake")
        server = grpc.server(self._executor, options=self._options)
        milvus_pb2_grpc.add_MilvusServiceServicer_to_server(_Servicer(self), server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Stop at once; hanging and sleeping calls end with UNAVAILABLE."""
        with self._lock:
            self._stopping = True
            for waiter in self._waiters:
                waiter.set()
        if self._server is not None:
            self._server.stop(grace=0).wait(5)
            self._server = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def restart(self) -> None:
        """Stop (closing every connection) and serve again on the same port."""
        with self._restarting:
            self.stop()
            self.start()

    def __enter__(self) -> MilvusTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # scripting

    def script_flush(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next Flush calls, one each."""
        self._script(FLUSH, behaviours)

    def script_flush_state(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next GetFlushState calls, one each."""
        self._script(FLUSH_STATE, behaviours)

    def script_alloc_timestamp(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next AllocTimestamp calls, one each (``ok()``: the
        oracle's next timestamp)."""
        self._script(ALLOC_TIMESTAMP, behaviours)

    def without_alloc_timestamp(self) -> None:
        """From now on (until ``reset()``), every AllocTimestamp answers gRPC UNIMPLEMENTED
        ("Method not implemented!"), as Milvus Lite 3.2.2 does, without consuming a script."""
        with self._lock:
            self._alloc_timestamp_unimplemented = True

    def persist_after(self, seconds: float) -> None:
        """From now on (until ``reset()``), a Flush admitted from now persists its collections
        ``seconds`` after its admission (0: at once, the default): only then does
        GetFlushState count it."""
        if not (
            isinstance(seconds, numbers.Real)
            and not isinstance(seconds, bool)
            and math.isfinite(seconds)
            and seconds >= 0
        ):
            raise ValueError(f"persist_after needs finite seconds >= 0, not {seconds!r}")
        with self._lock:
            self._persist_delay = float(seconds)

    def flushed_after(self, n: int) -> None:
        """The next ``n - 1`` GetFlushState calls answer not flushed, the n-th flushed."""
        if n < 1:
            raise ValueError(f"flushed_after needs n >= 1, not {n!r}")
        self.script_flush_state(*[flushed(False)] * (n - 1), flushed(True))

    def missing(self, *collection_names: str) -> None:
        """From now on, these collections do not exist (until ``reset()``)."""
        with self._lock:
            self._missing.update(collection_names)

    def limit_flush_rate(self, rate: float | None, *, per_collection: bool = True) -> None:
        """From now on, throttle Flush to ``rate`` per second (None: stop throttling).

        A Flush is admitted when at least ``1 / rate`` seconds have passed since the last
        admitted Flush of every collection it names in its database (the first Flush of a
        collection always is; the same name in another database is another collection, as
        Milvus limits each collection ID); otherwise it answers Milvus's rate-limit status
        (code 8, error_code 49 RateLimit, retriable, reason "request is rejected by grpc
        RateLimiter middleware, please retry later: rate limit exceeded[rate=<rate>]"),
        admits none of its collections, consumes no script, and its ``ReceivedCall`` is
        marked ``throttled``. ``per_collection=False``: one limiter for every Flush of the
        server, as Milvus 2.3's proxy. An admitted Flush counts whatever its script then
        answers. Each call forgets the limiter's past admissions; ``reset()`` turns it off.
        """
        if rate is not None and not (
            isinstance(rate, numbers.Real)
            and not isinstance(rate, bool)
            and math.isfinite(rate)
            and rate > 0
        ):
            raise ValueError(f"limit_flush_rate needs a finite rate > 0 or None, not {rate!r}")
        with self._lock:
            self._flush_rate = None if rate is None else float(rate)
            self._flush_per_collection = per_collection
            self._last_admitted.clear()

    def databases(self, *db_names: str) -> None:
        """ListDatabases names these too (beside "default"), until ``reset()``."""
        with self._lock:
            self._databases.update(db_names)

    def reset(self) -> None:
        """Forget scripts, missing collections, databases, the Flush rate limit, admitted
        Flushes, the persist delay, ``without_alloc_timestamp()`` and records. Calls in
        flight keep running. The oracle keeps counting: GetFlushState counts every
        timestamp it gave before as flushed.

        What flushkit learned of the server (pacing, latency) belongs to the pymilvus
        client, shared by every flusher on it: a scenario that must start afresh after a
        rate-limited one uses a new ``MilvusClient`` (as the pytest fixtures do)."""
        with self._lock:
            for queue in self._scripts.values():
                queue.clear()
            self._missing.clear()
            self._databases.clear()
            self._flush_rate = None
            self._last_admitted.clear()
            self._admissions.clear()
            self._persist_delay = 0.0
            self._alloc_timestamp_unimplemented = False
            self._baseline = self._next_timestamp()
            self._calls = []

    def clear_calls(self) -> None:
        """Forget the records but keep the scripts (for long runs: records take memory)."""
        with self._lock:
            self._calls = []

    def _script(self, method: str, behaviours: tuple[Behaviour, ...]) -> None:
        for behaviour in behaviours:
            _check(method, behaviour)
        with self._lock:
            self._scripts[method].extend(behaviours)

    # records

    @property
    def calls(self) -> list[ReceivedCall]:
        """Every call since the last ``reset()``, in arrival order (a snapshot)."""
        with self._lock:
            return list(self._calls)

    @property
    def flush_calls(self) -> list[ReceivedCall]:
        return [call for call in self.calls if call.method == FLUSH]

    @property
    def flush_state_calls(self) -> list[ReceivedCall]:
        return [call for call in self.calls if call.method == FLUSH_STATE]

    @property
    def alloc_timestamp_calls(self) -> list[ReceivedCall]:
        return [call for call in self.calls if call.method == ALLOC_TIMESTAMP]

    @property
    def throttled_calls(self) -> list[ReceivedCall]:
        """The Flush calls ``limit_flush_rate``'s limiter answered "rate limit exceeded"."""
        return [call for call in self.calls if call.throttled]

    def wait_for_calls(self, n: int, method: str | None = None, timeout: float = 2.0) -> bool:
        """Block until ``n`` calls (of ``method``, if given) have arrived."""
        return self._wait_until(
            lambda: sum(method in (None, call.method) for call in self._calls) >= n, timeout
        )

    def wait_for_cancellations(self, n: int, timeout: float = 2.0) -> bool:
        """Block until the server saw ``n`` calls cancelled (or past their deadline)."""
        return self._wait_until(lambda: sum(call.cancelled for call in self._calls) >= n, timeout)

    def _wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    def _record_answered(self, method: str, request: Any, context: grpc.ServicerContext) -> None:
        """Record a call the server answers at once."""
        call = _new_call(method, request, context)
        call.ended = call.started
        with self._changed:
            self._calls.append(call)
            self._changed.notify_all()

    # serving

    def _serve(self, method: str, request: Any, context: grpc.ServicerContext) -> Any:
        call = _new_call(method, request, context)
        names: Any = []
        if method == FLUSH:
            names = request.collection_names
        elif method == FLUSH_STATE:
            names = [request.collection_name]
        with self._changed:  # recorded and decided at once: records never show a stale call
            self._calls.append(call)
            self._changed.notify_all()
            ghost = next((name for name in names if name in self._missing), None)
            rate = self._flush_rate if method == FLUSH else None
            if ghost is not None:
                behaviour: Behaviour = status(100, 4, f"collection not found[collection={ghost}]")
            elif method == ALLOC_TIMESTAMP and self._alloc_timestamp_unimplemented:
                behaviour = _UNIMPLEMENTED
            elif rate is not None and not self._admit(
                _db_name(request, call.metadata), names, rate
            ):
                call.throttled = True
                behaviour = _rate_limited(rate)
            elif queue := self._scripts[method]:
                behaviour = queue.popleft()
            elif method == FLUSH_STATE:
                behaviour = flushed(self._persisted(request, call.metadata))
            else:
                behaviour = self._defaults[method]
        try:
            if not context.is_active() and not self._stopping:  # deadline passed on the way
                self._cancelled(call, context)
            return self._behave(behaviour, method, request, context, call)
        finally:
            call.ended = time.monotonic()

    def _admit(self, db_name: str, names: Any, rate: float) -> bool:
        """The Flush rate limiter (under the lock): admit a Flush naming ``names`` in
        ``db_name``? Per collection as Milvus's proxy limits it: per collection ID, so a
        collection of the same name in another database has a limiter of its own."""
        keys: list[tuple[str, str] | None] = [None]  # one limiter for the whole server
        if self._flush_per_collection:
            keys = [(db_name, name) for name in dict.fromkeys(names)]  # unique, in order
        now = time.monotonic()
        for key in keys:
            last = self._last_admitted.get(key)
            if last is not None and (now - last) * rate < 1:
                return False
        for key in keys:
            self._last_admitted[key] = now
        return True

    def _next_timestamp(self) -> int:
        """The oracle (under the lock, or before serving): the next hybrid timestamp."""
        physical = int(time.time() * 1000) << _LOGICAL_BITS
        self._last_timestamp = max(physical, self._last_timestamp + 1)
        return self._last_timestamp

    def _admit_flush(self, names: set[str], db_name: str) -> int:
        """Admit an OK-answered Flush of ``names`` in ``db_name``: its flush timestamp."""
        with self._lock:
            flush_ts = self._next_timestamp()
            persisted_at = time.monotonic() + self._persist_delay
            for name in names:
                kept = self._admissions.setdefault((db_name, name), [])
                kept[:] = [entry for entry in kept if entry[1] < persisted_at]
                kept.append((flush_ts, persisted_at))
            return flush_ts

    def _persisted(self, request: Any, metadata: dict[str, str]) -> bool:
        """GetFlushState's default answer (under the lock)."""
        flush_ts = request.flush_ts
        if flush_ts <= self._baseline:  # 0 included
            return True
        key = (_db_name(request, metadata), request.collection_name)
        now = time.monotonic()
        return any(
            ts >= flush_ts and persisted_at <= now
            for ts, persisted_at in self._admissions.get(key, ())
        )

    def _behave(
        self,
        behaviour: Behaviour,
        method: str,
        request: Any,
        context: grpc.ServicerContext,
        call: ReceivedCall,
    ) -> Any:
        if isinstance(behaviour, Delay | Hang):
            seconds = behaviour.seconds if isinstance(behaviour, Delay) else None
            while True:
                self._wait(seconds, context)
                if self._stopping:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "the test server is stopping")
                if not context.is_active():
                    self._cancelled(call, context)
                if isinstance(behaviour, Delay):
                    return self._behave(behaviour.then, method, request, context, call)
        if isinstance(behaviour, Abort):
            context.abort(behaviour.code, behaviour.details)
        if isinstance(behaviour, Disconnect):
            threading.Thread(target=self.restart, name="test-server-restart").start()
            self._wait(None, context)
            context.abort(grpc.StatusCode.UNAVAILABLE, "the test server closed the connection")
        if isinstance(behaviour, StatusAnswer):
            if method == FLUSH:
                return milvus_pb2.FlushResponse(status=_status_pb(behaviour))
            if method == ALLOC_TIMESTAMP:
                return milvus_pb2.AllocTimestampResponse(status=_status_pb(behaviour))
            return milvus_pb2.GetFlushStateResponse(status=_status_pb(behaviour))
        if method == FLUSH_STATE:
            value = behaviour.value if isinstance(behaviour, Flushed) else True
            return milvus_pb2.GetFlushStateResponse(status=common_pb2.Status(), flushed=value)
        if method == ALLOC_TIMESTAMP and isinstance(behaviour, Ok):
            with self._lock:
                timestamp = self._next_timestamp()
            return milvus_pb2.AllocTimestampResponse(
                status=common_pb2.Status(), timestamp=timestamp
            )
        if isinstance(behaviour, Ok):
            segments = _segments(behaviour, request)
            db_name = _db_name(request, call.metadata)
            flush_ts = self._admit_flush({*request.collection_names, *segments}, db_name)
            return _flush_response(segments, db_name, flush_ts)
        context.abort(
            grpc.StatusCode.INTERNAL, f"the test server cannot answer {method} {behaviour}"
        )

    def _wait(self, seconds: float | None, context: grpc.ServicerContext) -> None:
        """Sleep ``seconds`` (None: forever) or until the RPC ends or the server stops."""
        woken = threading.Event()
        if not context.add_callback(woken.set):  # the RPC has already ended
            woken.set()
        with self._lock:
            if self._stopping:
                woken.set()
            self._waiters.add(woken)
        try:
            woken.wait(seconds)
        finally:
            with self._lock:
                self._waiters.discard(woken)

    def _cancelled(self, call: ReceivedCall, context: grpc.ServicerContext) -> None:
        """Record that the client went before an answer, and end the handler."""
        with self._changed:
            call.cancelled = True
            self._changed.notify_all()
        context.abort(grpc.StatusCode.CANCELLED, "the client went before the answer")


def _new_call(method: str, request: Any, context: grpc.ServicerContext) -> ReceivedCall:
    headers = _headers(context)
    return ReceivedCall(
        method=method,
        request=request,
        metadata=dict(headers),
        time_remaining=_time_remaining(context),
        started=time.monotonic(),
        headers=headers,
    )


def _db_name(request: Any, metadata: dict[str, str]) -> str:
    """The database a Flush or GetFlushState names: its field, else the header."""
    return str(request.db_name or metadata.get("dbname") or "default")


def _segments(behaviour: Ok, request: Any) -> dict[str, list[int]]:
    """A Flush's segment IDs per collection: scripted, else two per requested collection."""
    if behaviour.segments is not None:
        return behaviour.segments
    names = dict.fromkeys(request.collection_names)  # unique, in order
    return {name: [1001 + 10 * i, 1002 + 10 * i] for i, name in enumerate(names)}


def _flush_response(segments: dict[str, list[int]], db_name: str, flush_ts: int) -> Any:
    """An admitted Flush's OK answer."""
    now = time.time()
    return milvus_pb2.FlushResponse(
        status=common_pb2.Status(),
        db_name=db_name,
        coll_segIDs={name: schema_pb2.LongArray(data=ids) for name, ids in segments.items()},
        flush_coll_segIDs={name: schema_pb2.LongArray(data=ids) for name, ids in segments.items()},
        coll_seal_times=dict.fromkeys(segments, int(now)),
        coll_flush_ts=dict.fromkeys(segments, flush_ts),  # from the oracle, at admission
    )
