"""What the blocking and the async facade share: set-up, requests, stepping a flow."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any, Final

from ._chain import Chain, Middleware, Steps
from ._core import flush_flow
from ._effects import Await, Call, Start
from ._exceptions import ClientClosedError
from ._lanes import Lanes
from ._middleware import default_middleware
from ._models import FlushRequest, Pause
from ._transport import Transport
from ._validation import collection_names_of, db_name_of, interval_of, timeout_of, wait_of


class UseFlusherDefault:
    """The type of :data:`USE_FLUSHER_DEFAULT`."""

    def __repr__(self) -> str:
        return "USE_FLUSHER_DEFAULT"


#: ``flush(timeout=...)``'s default: the flusher's own timeout (``None`` means no limit).
USE_FLUSHER_DEFAULT: Final = UseFlusherDefault()

#: The flusher-wide default budget of one flush, in seconds.
DEFAULT_TIMEOUT = 60.0


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
        lanes = Lanes(self._transport.identity, self.flush_interval)
        self._chain = Chain(
            default_middleware() if middleware is None else middleware,
            functools.partial(flush_flow, lanes=lanes),
        )
        self._server_address, self._server_port = _split_address(self._transport.connection.address)
        self._closed = False

    def _request(
        self, collection_names: Any, db_name: Any, timeout: Any, wait: Any
    ) -> FlushRequest:
        if self._closed:
            raise ClientClosedError(f"{type(self).__name__} is closed")
        return FlushRequest(
            collection_names=collection_names_of(collection_names),
            db_name=db_name_of(db_name, self._transport.connection.db_name),
            timeout=self.timeout if timeout is USE_FLUSHER_DEFAULT else timeout_of(timeout),
            wait=wait_of(wait),
            started=time.monotonic(),
            server_address=self._server_address,
            server_port=self._server_port,
        )

    @staticmethod
    def _transport_for(client: Any) -> Transport:
        return Transport(client)

    @property
    def middleware(self) -> tuple[Middleware, ...]:
        """The chain, outermost first."""
        return self._chain.middleware

    def _steps(self, request: FlushRequest) -> Steps[Call | Start | Await | Pause]:
        return self._chain.steps(request)

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
