"""The values that flow through flushkit: requests, results, statuses and pauses, and the
checks of what callers pass, done before any RPC."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    Sequence,
    ValuesView,
)
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict

from pymilvus.grpc_gen import common_pb2

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["FlushRequest", "FlushResult", "Pause", "Status"]

_LEGACY_NAMES: Mapping[int, str] = MappingProxyType(
    {value.number: value.name for value in common_pb2.ErrorCode.DESCRIPTOR.values}
)


@dataclass(frozen=True, slots=True)
class Status:
    """A Milvus ``common.Status``.

    ``code`` is the newer numeric code and ``error_code`` the name of the legacy
    ``ErrorCode`` (``"Success"``, ``"RateLimit"``, ...). The status is OK only when both
    are zero/``"Success"``.
    """

    code: int = 0
    error_code: str = "Success"
    reason: str = ""
    retriable: bool = False
    detail: str = ""
    legacy_code: int = 0
    #: Whether both codes are zero (set from them: read on every call's path).
    ok: bool = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ok", self.code == 0 and self.legacy_code == 0)

    @classmethod
    def from_proto(cls, status: Any) -> Status:
        if not status.code and not status.error_code:
            return _OK if not status.reason else cls(reason=status.reason)
        legacy = int(status.error_code)
        return cls(
            code=int(status.code),
            error_code=_LEGACY_NAMES.get(legacy, str(legacy)),
            reason=status.reason,
            retriable=bool(status.retriable),
            detail=status.detail,
            legacy_code=legacy,
        )


_OK = Status()


_new = object.__new__
_set = object.__setattr__


# Requests and results are frozen dataclasses without __slots__: flushkit makes them by
# filling their __dict__ (a third to a fifth of what a frozen dataclass's __init__,
# which sets every field through object.__setattr__, costs on every call's path).


@dataclass(frozen=True)
class FlushRequest:
    """One flush as the middleware chain sees it.

    Middlewares change a request with :meth:`replace` and yield the new one.
    ``started`` and ``deadline`` are ``time.monotonic()`` seconds; ``deadline`` is
    ``None`` until the timeout middleware sets it from ``timeout``. ``coalesce`` lets the
    call share Flush RPCs with concurrent calls (set by the coalescing middleware).
    ``trace`` is the call's recording flush span and the trace context every RPC of the
    call carries (set by the tracing middleware; ``None``: nothing is propagated).
    """

    collection_names: tuple[str, ...]
    db_name: str
    timeout: float | None
    wait: bool
    started: float
    deadline: float | None = None
    server_address: str | None = None
    server_port: int | None = None
    coalesce: bool = False
    trace: Trace | None = None

    def replace(self, **changes: Unpack[RequestChanges]) -> FlushRequest:
        """A copy of this request with the fields given changed.

        A new ``timeout`` moves a deadline already set to ``started + timeout`` (no
        deadline for ``None``), unless ``deadline`` is given too: the budget follows the
        timeout wherever in the chain it changes.
        """
        if not REQUEST_FIELDS.issuperset(changes):
            unknown = ", ".join(sorted(set(changes) - REQUEST_FIELDS))
            raise TypeError(f"FlushRequest has no field {unknown}")
        fields = {**self.__dict__, **changes}
        check_call_fields(fields, changes)
        if "timeout" in changes and "deadline" not in changes and self.deadline is not None:
            timeout = fields["timeout"]
            fields["deadline"] = None if timeout is None else fields["started"] + timeout
        return new_request(fields)


class RequestChanges(TypedDict, total=False):
    """What :meth:`FlushRequest.replace` may change: any of the request's fields."""

    collection_names: tuple[str, ...]
    db_name: str
    timeout: float | None
    wait: bool
    started: float
    deadline: float | None
    server_address: str | None
    server_port: int | None
    coalesce: bool
    trace: Trace | None


#: The names of a request's fields.
REQUEST_FIELDS = frozenset(field.name for field in dataclasses.fields(FlushRequest))
#: The fields a request has a default for, with their defaults.
REQUEST_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        field.name: field.default
        for field in dataclasses.fields(FlushRequest)
        if field.default is not dataclasses.MISSING
    }
)


def check_call_fields(fields: dict[str, Any], changed: Iterable[str]) -> None:
    """Check the fields among ``changed`` that a caller gives (collection names, database,
    timeout, wait) as the facades check them, normalised in place: a middleware cannot
    send what a caller could not (an empty ``db_name`` would reach the server as its
    default database)."""
    for name in changed:
        check = _CALL_FIELD_CHECKS.get(name)
        if check is not None:
            fields[name] = check(fields[name])


def new_request(fields: dict[str, Any]) -> FlushRequest:
    """The request whose fields ``fields`` are (every field, by name: the caller makes
    sure; the dict becomes the request's own). On every call's path: no ``__init__``."""
    request = _new(FlushRequest)
    _set(request, "__dict__", fields)
    return request


class Trace(NamedTuple):
    """A call's recording flush span and the gRPC metadata that carries its context."""

    span: Any
    metadata: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Pause:
    """Yielded by a middleware: the driver sleeps ``seconds``, then resumes it."""

    seconds: float


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return _ResultMap(dict(mapping), None) if mapping else _EMPTY


@dataclass(frozen=True)
class FlushResult:
    """What Milvus said about a flush, and how long the whole call took.

    ``coll_segIDs`` maps each collection to the IDs of the segments the flush sealed,
    ``flush_coll_segIDs`` to its already-flushed segments, ``coll_seal_times`` to the seal
    time (Unix seconds) and ``coll_flush_ts`` to the flush timestamp (a hybrid timestamp).
    ``persisted`` is true when the server reported the call's writes persisted (with
    ``wait=True``, or when another client's Flush covered them). ``elapsed`` is in
    seconds. ``attempts`` counts the tries (retries); ``coalesced`` is true when a Flush
    RPC of this call was shared with other calls; ``throttled`` counts the throttled
    answers to Flush RPCs this call sent.

    ``satisfied_by`` says how the call was satisfied: ``"flush"`` (a Flush RPC of its
    own), ``"shared"`` (a Flush shared with other calls of this process) or
    ``"covered"`` (another client's Flush persisted its writes while it waited for its
    slot; for several collections: ``"flush"`` if any was flushed by its own RPC, else
    ``"shared"`` if any was shared). A covered collection has no segment IDs of its own
    (its ``coll_segIDs`` and ``flush_coll_segIDs`` entries are empty tuples, and it has
    no ``coll_seal_times`` entry); its ``coll_flush_ts`` is the timestamp the server
    vouched for: everything the caller wrote before the call began is older, and
    persisted.

    Where the time went, in seconds: ``flushing`` in Flush RPCs (its own, or shared ones
    it waited for), ``paced`` waiting for its collections' next slots (rate limiting;
    the looks for another client's Flush included), ``persisting`` waiting for the
    sealed segments to persist (``wait=True``).
    """

    coll_segIDs: Mapping[str, tuple[int, ...]]
    flush_coll_segIDs: Mapping[str, tuple[int, ...]]
    coll_seal_times: Mapping[str, int]
    coll_flush_ts: Mapping[str, int]
    db_name: str
    status: Status
    elapsed: float
    persisted: bool = False
    attempts: int = 1
    coalesced: bool = False
    throttled: int = 0
    paced: float = 0.0
    satisfied_by: str = "flush"
    flushing: float = 0.0
    persisting: float = 0.0

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_result, tuple(_plain(getattr(self, f.name)) for f in _RESULT_FIELDS))

    if not TYPE_CHECKING:  # to a type checker every field is there, as declared

        def __getattr__(self, name: str) -> Any:
            # Called only for what __dict__ lacks: a result made from a FlushResponse
            # (result_from_proto) reads its mappings from it when first read, as most
            # callers never do (reading a protobuf map field costs more than the rest).
            fields = self.__dict__
            response = fields.get("_response")
            if response is None or name not in _FROM_RESPONSE:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            source = getattr(response, name)
            value = fields[name] = _ResultMap(source, _FROM_RESPONSE[name]) if source else _EMPTY
            return value


_RESULT_FIELDS = dataclasses.fields(FlushResult)


def _plain(value: Any) -> Any:
    return dict(value) if isinstance(value, MappingProxyType | _ResultMap) else value


def _rebuild_result(*values: Any) -> FlushResult:
    thawed: list[Any] = [_frozen(v) if isinstance(v, dict) else v for v in values]
    return FlushResult(*thawed)


def result_from_proto(
    response: Any, request: FlushRequest, status: Status, persisted: bool, how: str = "flush"
) -> FlushResult:
    """Build a :class:`FlushResult` from a ``FlushResponse``."""
    result = _new(FlushResult)
    _set(
        result,
        "__dict__",
        {
            "_response": response,  # its mappings: read when first read (__getattr__)
            "db_name": response.db_name or request.db_name,
            "status": status,
            "elapsed": time.monotonic() - request.started,
            "persisted": persisted,
            "attempts": 1,
            "coalesced": how == "shared",
            "throttled": 0,
            "paced": 0.0,
            "satisfied_by": how,
            "flushing": 0.0,
            "persisting": 0.0,
        },
    )
    return result


def merged_result(request: FlushRequest, parts: list[FlushResult]) -> FlushResult:
    """One call's result from the results of the RPCs that flushed its collections.

    The status is the first that is not OK (else OK); ``persisted`` only if every part
    is; ``coalesced`` if any part was shared; ``elapsed`` is the call's own.
    """
    status = next((part.status for part in parts if not part.status.ok), parts[0].status)
    return FlushResult(
        coll_segIDs=_union(part.coll_segIDs for part in parts),
        flush_coll_segIDs=_union(part.flush_coll_segIDs for part in parts),
        coll_seal_times=_union(part.coll_seal_times for part in parts),
        coll_flush_ts=_union(part.coll_flush_ts for part in parts),
        db_name=parts[0].db_name or request.db_name,
        status=status,
        elapsed=_elapsed(request),
        persisted=all(part.persisted for part in parts),
        coalesced=any(part.coalesced for part in parts),
        satisfied_by=next(
            (how for how in ("flush", "shared") if any(p.satisfied_by == how for p in parts)),
            "covered",
        ),
    )


def _union(mappings: Iterable[Mapping[str, Any]]) -> Mapping[str, Any]:
    merged: dict[str, Any] = {}
    for mapping in mappings:
        merged.update(mapping)
    return _frozen(merged)


def _ids(ids: Any) -> tuple[int, ...]:
    return tuple(ids.data)


#: The result's mappings that a FlushResponse's map fields of the same names give, with
#: the conversion of each value (None: as it is).
_FROM_RESPONSE: Mapping[str, Callable[[Any], Any] | None] = MappingProxyType(
    {
        "coll_segIDs": _ids,
        "flush_coll_segIDs": _ids,
        "coll_seal_times": None,
        "coll_flush_ts": None,
    }
)


class _ResultMap(Mapping[str, Any]):
    """A result's read-only mapping: of a response's map field, converted at its first
    use (most callers never read the segment IDs, and converting a protobuf map costs
    more than the rest of building the result), or of a dict (``convert`` None).

    A deep copy of it is a plain dict (so ``dataclasses.asdict(result)`` gives dicts)."""

    __slots__ = ("_convert", "_converted", "_source")

    def __init__(self, source: Any, convert: Any) -> None:
        self._source = source
        self._convert = convert
        self._converted: dict[str, Any] | None = None

    def _dict(self) -> dict[str, Any]:
        converted = self._converted
        if converted is None:  # two threads may both convert: the same dict either way
            convert = self._convert
            if convert is None:
                converted = dict(self._source)
            else:
                converted = {name: convert(value) for name, value in self._source.items()}
            self._converted = converted
        return converted

    def __getitem__(self, name: str) -> Any:
        return self._dict()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return dict(self._dict())  # its values are immutable (ints, tuples of ints)

    # The converted dict's own views: the mixins' would look up every key again.
    def keys(self) -> KeysView[str]:
        return self._dict().keys()

    def values(self) -> ValuesView[Any]:
        return self._dict().values()

    def items(self) -> ItemsView[str, Any]:
        return self._dict().items()

    def __repr__(self) -> str:
        return repr(self._dict())


_EMPTY: Mapping[str, Any] = _ResultMap({}, None)


def _elapsed(request: FlushRequest) -> float:
    return time.monotonic() - request.started


# Checks of what callers pass, done before any RPC.

#: Milvus rejects collection and database names longer than this.
MAX_NAME_LENGTH = 255


def collection_names_of(value: Any) -> tuple[str, ...]:
    """One name or a sequence of names, as a tuple without duplicates (first one wins)."""
    if isinstance(value, str):  # the usual call: one name
        return (check_name("collection name", value),)
    names: Sequence[Any]
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        names = value
        if not names:
            raise ValueError("collection_names is empty: give at least one collection name")
    else:
        raise TypeError(
            f"collection_names must be a str or a sequence of str, not {type(value).__name__}"
        )
    for name in names:
        check_name("collection name", name)
    return tuple(dict.fromkeys(names))


def check_name(what: str, name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}: {name!r}")
    if not name or name.isspace():
        raise ValueError(f"{what} is empty or blank: {name!r}")
    if name != name.strip():
        raise ValueError(f"{what} has leading or trailing whitespace: {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"{what} is {len(name)} characters long; Milvus allows at most {MAX_NAME_LENGTH}"
        )
    return name


def db_name_of(value: Any, default: str) -> str:
    return default if value is None else check_name("db_name", value)


def timeout_of(value: Any) -> float | None:
    """``None`` (no limit) or a finite number of seconds greater than zero."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"timeout must be None or a number of seconds, not {type(value).__name__}: {value!r}"
        )
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"timeout must be a finite number of seconds greater than 0 (or None for no "
            f"limit), not {value!r}"
        )
    return float(value)


def wait_of(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"wait must be True or False, not {type(value).__name__}: {value!r}")
    return value


def _db_name(value: Any) -> str:
    return check_name("db_name", value)


#: The checks of the fields a caller gives, by field (``check_call_fields``).
_CALL_FIELD_CHECKS: Mapping[str, Callable[[Any], Any]] = MappingProxyType(
    {
        "collection_names": collection_names_of,
        "db_name": _db_name,
        "timeout": timeout_of,
        "wait": wait_of,
    }
)


def interval_of(value: Any) -> float:
    """``flush_interval``: a finite number of seconds, 0 or more."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"flush_interval must be a number of seconds, not {type(value).__name__}: {value!r}"
        )
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"flush_interval must be a finite number of seconds, 0 or more, not {value!r}"
        )
    return float(value)
