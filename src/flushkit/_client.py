"""The facades: :class:`Flusher` (blocking) and :class:`AsyncFlusher` (asyncio and trio).

Both build the call's :class:`FlushRequest` and walk the one middleware chain
(:mod:`flushkit._chain`) the same way; they differ only in how they hand what the walk
asks for to the transport (:mod:`flushkit._grpc.transport`): blocking
(RPCs, ``time.sleep``) or awaited (RPCs, ``anyio.sleep``).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypedDict

from ._chain import Chain, Middleware
from ._core import flush_flow
from ._exceptions import ClientClosedError
from ._grpc.transport import Transport, transport_for
from ._models import (
    REQUEST_DEFAULTS,
    FlushRequest,
    FlushResult,
    collection_names_of,
    db_name_of,
    interval_of,
    timeout_of,
    wait_of,
)
from .middleware import default_middleware

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["DEFAULT_TIMEOUT", "USE_FLUSHER_DEFAULT", "AsyncFlusher", "FlushOptions", "Flusher"]


class UseFlusherDefault:
    """The type of :data:`USE_FLUSHER_DEFAULT`."""

    def __repr__(self) -> str:
        return "USE_FLUSHER_DEFAULT"


#: ``flush(timeout=...)``'s default: the flusher's own timeout (``None`` means no limit).
USE_FLUSHER_DEFAULT: Final = UseFlusherDefault()

#: The flusher-wide default budget of one flush, in seconds.
DEFAULT_TIMEOUT = 60.0

#: One collection name, or several.
Names = str | Sequence[str]


class FlushOptions(TypedDict, total=False):
    """The keyword options of ``flush``: ``db_name`` (None: the client's database),
    ``timeout`` (seconds, None for no limit; default: the flusher's own) and ``wait``
    (also wait until the sealed segments are persisted; default False)."""

    db_name: str | None
    timeout: float | UseFlusherDefault | None
    wait: bool


class FlusherBase:
    """Holds the client's transport and the composed chain; builds requests."""

    def __init__(
        self,
        client: Any,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        middleware: Sequence[Middleware] | None = None,
        flush_interval: float = 0.0,
    ) -> None:
        self.timeout = timeout_of(timeout)
        self.flush_interval = interval_of(flush_interval)
        self._transport = self._transport_for(client)
        scheduler = self._transport.scheduler
        if self.flush_interval:
            scheduler.seed(self.flush_interval)
        self._chain = Chain(
            default_middleware() if middleware is None else middleware,
            functools.partial(flush_flow, scheduler=scheduler),
        )
        address, port = _split_address(self._transport.connection.address)
        #: Every field of a call's request: those that are the same for every call of
        #: this flusher filled in, the caller's own (set for each call) as placeholders.
        self._fields: dict[str, Any] = {
            **REQUEST_DEFAULTS,
            "server_address": address,
            "server_port": port,
            "collection_names": (),
            "db_name": "",
            "timeout": None,
            "wait": False,
            "started": 0.0,
        }
        self._closed = False

    def _request(
        self,
        collection_names: Any,
        *,
        db_name: Any = None,
        timeout: Any = USE_FLUSHER_DEFAULT,
        wait: Any = False,
        **unknown: Any,
    ) -> FlushRequest:
        """The call's request, from the caller's arguments, checked before any RPC."""
        if unknown:
            raise TypeError(
                f"flush() got an unexpected keyword argument {next(iter(unknown))!r} "
                "(its options: db_name, timeout, wait)"
            )
        if self._closed:
            raise ClientClosedError(f"{type(self).__name__} is closed")
        fields = self._fields.copy()
        fields["collection_names"] = collection_names_of(collection_names)
        fields["db_name"] = (
            self._transport.connection.db_name if db_name is None else db_name_of(db_name, "")
        )
        fields["timeout"] = self.timeout if timeout is USE_FLUSHER_DEFAULT else timeout_of(timeout)
        fields["wait"] = wait if wait is False or wait is True else wait_of(wait)
        fields["started"] = time.monotonic()
        return self._chain.request(fields)

    @staticmethod
    def _transport_for(client: Any) -> Transport:
        transport = transport_for(client)
        if transport.asyncio_only:
            raise TypeError(
                "Flusher blocks: it needs a pymilvus MilvusClient. For an AsyncMilvusClient "
                "use flushkit.AsyncFlusher (asyncio)"
            )
        return transport

    @property
    def middleware(self) -> tuple[Middleware, ...]:
        """The chain, outermost first."""
        return self._chain.middleware

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._transport.connection!r}, timeout={self.timeout!r}, "
            f"flush_interval={self.flush_interval!r}, middleware={list(self.middleware)!r})"
        )


def _split_address(address: str) -> tuple[str | None, int | None]:
    """``server.address`` and ``server.port`` from "host:port", "[v6]:port" or "unix:path"."""
    if address.startswith("unix:"):
        return address[5:], None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return address or None, None
    return host.strip("[]"), int(port)


class Flusher(FlusherBase):
    """Flushes Milvus collections through the middleware chain, blocking.

    ``Flusher(client, timeout=60.0, middleware=None, flush_interval=0.0)``: ``client`` is
    a pymilvus ``MilvusClient``, whose connection flushkit uses; ``timeout`` the default
    budget of each flush in seconds (``None``: no limit); ``middleware`` the chain,
    outermost first (``None``: :func:`default_middleware`); ``flush_interval`` the least
    time between two Flushes of one collection the server admits (its
    ``quotaAndLimits.flushRate.collection.max`` is ``1 / flush_interval``; 0: learn it
    from the server's first throttled answer). Thread-safe: share one per client.
    """

    def flush(self, collection_names: Names, **options: Unpack[FlushOptions]) -> FlushResult:
        """Flush ``collection_names`` (one name or several) and return what Milvus said.

        The options (:class:`FlushOptions`, all keyword-only): ``db_name`` overrides the
        client's database for this call; ``timeout`` is the budget of the whole call in
        seconds (``None``: no limit; by default the flusher's); ``wait=True`` also waits
        until the sealed segments are persisted. Raises :class:`FlushError` subclasses,
        and ``ValueError`` or ``TypeError`` for bad arguments before any RPC.
        """
        walk = self._chain.walk(self._request(collection_names, **options))
        try:
            effect = next(walk)
            while True:  # each outcome, failures and cancellation included, to the walk
                effect = walk.send(self._transport.perform(effect))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def close(self) -> None:
        """Refuse further flushes. The MilvusClient stays open: it is the caller's."""
        self._closed = True

    def __enter__(self) -> Flusher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncFlusher(FlusherBase):
    """Flushes Milvus collections through the middleware chain, under asyncio or trio.

    Takes the same arguments as :class:`Flusher`. ``client`` is a pymilvus
    ``AsyncMilvusClient`` (asyncio: its RPCs run on the client's own grpc.aio channel) or
    a blocking ``MilvusClient`` (asyncio and trio: its RPCs run as gRPC futures on the
    client's channel). Either way an in-flight flush holds no thread and never blocks the
    event loop, and cancelling the calling task cancels the RPC on the server. Also an
    async context manager.
    """

    _transport_for = staticmethod(transport_for)

    async def flush(self, collection_names: Names, **options: Unpack[FlushOptions]) -> FlushResult:
        """Flush ``collection_names``; the same contract as :meth:`Flusher.flush`.

        The budget also ends where the caller's own cancel scope does: the RPC gets that
        deadline, and the scope's cancellation propagates as the runtime's own.
        """
        if self._transport.asyncio_only and not _in_asyncio():
            raise TypeError(
                "an AsyncMilvusClient runs on grpc.aio, which works under asyncio only; "
                "under trio give AsyncFlusher a blocking pymilvus MilvusClient"
            )
        walk = self._chain.walk(self._request(collection_names, **options))
        try:
            effect = next(walk)
            while True:
                effect = walk.send(await self._transport.perform_async(effect))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Refuse further flushes. The MilvusClient stays open: it is the caller's."""
        self._closed = True

    async def __aenter__(self) -> AsyncFlusher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _in_asyncio() -> bool:
    """Whether the caller runs in an asyncio event loop (not trio)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
