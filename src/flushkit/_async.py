"""The async facade, for asyncio and trio (through anyio)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import anyio

from ._effects import Await, Call, Start
from ._facade import USE_FLUSHER_DEFAULT, FlusherBase, UseFlusherDefault
from ._models import FlushResult, Pause
from ._transport import transport_for


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

    async def flush(
        self,
        collection_names: str | Sequence[str],
        *,
        db_name: str | None = None,
        timeout: float | UseFlusherDefault | None = USE_FLUSHER_DEFAULT,
        wait: bool = False,
    ) -> FlushResult:
        """Flush ``collection_names``; the same contract as :meth:`Flusher.flush`.

        The budget also ends where the caller's own cancel scope does: the RPC gets that
        deadline, and the scope's cancellation propagates as the runtime's own.
        """
        if self._transport.asyncio_only and not _in_asyncio():
            raise TypeError(
                "an AsyncMilvusClient runs on grpc.aio, which works under asyncio only; "
                "under trio give AsyncFlusher a blocking pymilvus MilvusClient"
            )
        steps = self._steps(self._request(collection_names, db_name, timeout, wait))
        for effect in steps:
            try:
                steps.send(await self._perform(effect))
            except BaseException as exc:  # thrown into the chain, cancellation included
                steps.throw(exc)
        return steps.result

    async def _perform(self, effect: Call | Start | Await | Pause) -> Any:
        if isinstance(effect, Pause):
            return await anyio.sleep(effect.seconds)
        return await self._transport.perform_async(effect)

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
