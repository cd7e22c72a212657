"""Everything flushkit reads from pymilvus's private attributes, in one place.

flushkit sends its RPCs on the gRPC channel of the user's client, so the user's URI, TLS
settings and Milvus Lite files apply. On a ``MilvusClient`` the RPCs go on the raw channel
and flushkit adds the database and credential headers itself (pymilvus's Python
interceptors cost more per call than all of flushkit's quiet chain); pymilvus's client
identifier header, which the server uses only to list connected clients, is not sent: the
handler's ``_identifier`` is not updated when pymilvus 3 reconnects, and a stale one would
name another registration. On an ``AsyncMilvusClient`` the RPCs go through the channel's
interceptors, which add the credential and the identifier, and flushkit adds the database.
This module is the only one that touches pymilvus internals;
``tests/test_pymilvus_internals.py`` fails loudly when they change.

pymilvus replaces a handler's channel when it reconnects, so the channel is looked up on
every call, never kept.
"""

from __future__ import annotations

import base64
from typing import Any

import grpc

from .._exceptions import ClientClosedError

__all__ = ["AsyncMilvusConnection", "MilvusConnection", "is_async_client"]

Metadata = tuple[tuple[str, str], ...]


def is_async_client(client: Any) -> bool:
    """Whether ``client`` is a pymilvus ``AsyncMilvusClient`` (grpc.aio, asyncio only)."""
    return type(client).__name__ == "AsyncMilvusClient"


class MilvusConnection:
    """The channel, address and call metadata of a pymilvus ``MilvusClient``."""

    def __init__(self, client: Any) -> None:
        config = getattr(client, "_config", None)
        if config is not None and hasattr(client, "_handler") and client._handler is None:
            raise ClientClosedError("the MilvusClient is closed")
        if getattr(client, "_handler", None) is None or config is None:
            raise TypeError(
                "expected a connected pymilvus MilvusClient (AsyncFlusher also takes an "
                f"AsyncMilvusClient), not {type(client).__name__}"
            )
        self._setup(client, config)

    def _setup(self, client: Any, config: Any) -> None:
        self._client = client
        #: "host:port" or "unix:/path"; pymilvus strips the URI's user info from it.
        self.address: str = str(config.address)
        self._config = config
        token = str(config.token or "")
        self._auth: Metadata = (
            (("authorization", base64.b64encode(token.encode()).decode()),) if token else ()
        )
        self._metadata: dict[str, Metadata] = {}

    def check_open(self) -> None:
        """Raises ClientClosedError once the client is closed."""
        if self._client._handler is None:
            raise ClientClosedError("the MilvusClient is closed")

    def channel(self) -> grpc.Channel:
        """The client's current raw channel (it changes when pymilvus reconnects)."""
        handler = self._client._handler
        channel = None if handler is None else handler._channel
        if channel is None:
            raise ClientClosedError("the MilvusClient is closed")
        return channel

    @property
    def db_name(self) -> str:
        """The client's current database (``client.use_database`` changes it): read on
        every call, as pymilvus's own calls do; "" means the server's default."""
        return str(self._config.db_name or "default")

    def metadata(self, db_name: str) -> Metadata:
        """gRPC metadata for a call in ``db_name``: the database and the credential, as
        pymilvus's own Flush sends them."""
        metadata = self._metadata.get(db_name)
        if metadata is None:
            metadata = self._metadata[db_name] = self._headers(db_name)
        return metadata

    def _headers(self, db_name: str) -> Metadata:
        return (("dbname", db_name), *self._auth)

    def __repr__(self) -> str:  # never shows the credential
        return f"MilvusConnection(address={self.address!r}, db_name={self.db_name!r})"


class AsyncMilvusConnection(MilvusConnection):
    """The grpc.aio channel, address and call metadata of a pymilvus ``AsyncMilvusClient``.

    The client connects lazily (on its first call, or ``async with``): the channel is
    looked up on every call, connecting the client the way its own calls do.
    """

    def __init__(self, client: Any) -> None:
        config = getattr(client, "_config", None)
        if config is None or not hasattr(client, "_get_connection"):
            raise TypeError(f"expected a pymilvus AsyncMilvusClient, not {type(client).__name__}")
        if getattr(client, "_closed", False):
            raise ClientClosedError("the AsyncMilvusClient is closed")
        self._setup(client, config)

    def channel(self) -> grpc.Channel:
        raise TypeError("an AsyncMilvusClient's channel is grpc.aio: use current_channel()")

    def check_open(self) -> None:
        if getattr(self._client, "_closed", False):
            raise ClientClosedError("the AsyncMilvusClient is closed")

    def _headers(self, db_name: str) -> Metadata:
        # The channel's interceptors add the credential and the identifier.
        return (("dbname", db_name),)

    def current_channel(self) -> Any:
        """The client's current grpc.aio channel (with pymilvus's interceptors), or None
        while the client has not connected yet."""
        client = self._client
        handler = client._handler
        if handler is None:
            if getattr(client, "_closed", False):
                raise ClientClosedError("the AsyncMilvusClient is closed")
            return None
        channel = handler._final_channel
        if channel is None:
            raise ClientClosedError("the AsyncMilvusClient is closed")
        return channel

    async def connect(self) -> Any:
        """Connect the client the way its own first call does; returns its channel.
        pymilvus's failure propagates as it raised it (the transport translates it)."""
        await self._client._get_connection()
        return self.current_channel()
