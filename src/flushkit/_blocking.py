"""The blocking facade."""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from ._effects import Await, Call, Start
from ._facade import USE_FLUSHER_DEFAULT, FlusherBase, UseFlusherDefault
from ._models import FlushResult, Pause


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

    def flush(
        self,
        collection_names: str | Sequence[str],
        *,
        db_name: str | None = None,
        timeout: float | UseFlusherDefault | None = USE_FLUSHER_DEFAULT,
        wait: bool = False,
    ) -> FlushResult:
        """Flush ``collection_names`` (one name or several) and return what Milvus said.

        ``db_name`` overrides the client's database for this call; ``timeout`` is the
        budget of the whole call in seconds (``None``: no limit); ``wait=True`` also waits
        until the sealed segments are persisted. Raises :class:`FlushError` subclasses,
        and ``ValueError`` or ``TypeError`` for bad arguments before any RPC.
        """
        steps = self._steps(self._request(collection_names, db_name, timeout, wait))
        for effect in steps:
            try:
                steps.send(self._perform(effect))
            except BaseException as exc:  # thrown into the chain, cancellation included
                steps.throw(exc)
        return steps.result

    def _perform(self, effect: Call | Start | Await | Pause) -> Any:
        if isinstance(effect, Pause):
            return time.sleep(effect.seconds)
        return self._transport.perform(effect)

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
