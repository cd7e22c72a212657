"""What the blocking and the async facade share: set-up, requests, stepping a flow."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Sequence
from typing import Any, Final

from ._chain import Middleware, compose
from ._core import Call, flush_flow
from ._exceptions import ClientClosedError
from ._middleware import default_middleware
from ._models import FlushRequest, FlushResult, Pause
from ._transport import Transport
from ._validation import collection_names_of, db_name_of, timeout_of, wait_of


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
    ) -> None:
        self.timeout = timeout_of(timeout)
        self.middleware: tuple[Middleware, ...] = tuple(
            default_middleware() if middleware is None else middleware
        )
        self._transport = Transport(client)
        self._flow = compose(self.middleware, flush_flow)
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

    def _steps(self, request: FlushRequest) -> Steps:
        return Steps(self._flow(request))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._transport.connection!r}, timeout={self.timeout!r}, "
            f"middleware={list(self.middleware)!r})"
        )


class Steps(Iterator[Call | Pause]):
    """Steps through a flow: iterate to get each effect, report how it went.

    A driver performs each effect it gets and reports the answer with :meth:`send` or the
    exception with :meth:`throw`; when the flow is done, :attr:`result` holds its result
    (or the iteration raises its exception).
    """

    __slots__ = ("_answer", "_error", "_flow", "result")

    def __init__(self, flow: Generator[Call | Pause, Any, FlushResult]) -> None:
        self._flow = flow
        self._answer: Any = None
        self._error: BaseException | None = None

    def __next__(self) -> Call | Pause:
        error, self._error = self._error, None
        try:
            return self._flow.send(self._answer) if error is None else self._flow.throw(error)
        except StopIteration as done:
            self.result: FlushResult = done.value
            raise StopIteration from None

    def send(self, answer: Any) -> None:
        self._answer = answer

    def throw(self, error: BaseException) -> None:
        self._answer, self._error = None, error


def _split_address(address: str) -> tuple[str | None, int | None]:
    """``server.address`` and ``server.port`` from "host:port", "[v6]:port" or "unix:path"."""
    if address.startswith("unix:"):
        return address[5:], None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return address or None, None
    return host.strip("[]"), int(port)
