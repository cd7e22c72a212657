"""Everything flushkit reads from pymilvus's private attributes, in one place.

flushkit sends its RPCs on the gRPC channel of the user's ``MilvusClient``, beneath
pymilvus's retry decorator and interceptors, so the user's URI, credentials, TLS settings,
database and Milvus Lite files all apply. This module is the only one that touches
pymilvus internals; ``tests/test_pymilvus_internals.py`` fails loudly when they change.

pymilvus replaces a handler's channel when it reconnects, so the channel is looked up on
every call, never kept.
"""

from __future__ import annotations

import base64
from typing import Any

import grpc

from ._exceptions import ClientClosedError

__all__ = ["MilvusConnection"]

Metadata = tuple[tuple[str, str], ...]


class MilvusConnection:
    """The channel, address and call metadata of a pymilvus ``MilvusClient``."""

    def __init__(self, client: Any) -> None:
        if type(client).__name__ == "AsyncMilvusClient":
            raise TypeError(
                "flushkit needs a pymilvus MilvusClient; AsyncFlusher takes the same "
                "blocking MilvusClient and runs its RPCs without blocking the event loop"
            )
        config = getattr(client, "_config", None)
        if config is not None and hasattr(client, "_handler") and client._handler is None:
            raise ClientClosedError("the MilvusClient is closed")
        if getattr(client, "_handler", None) is None or config is None:
            raise TypeError(
                f"expected a connected pymilvus MilvusClient, not {type(client).__name__}"
            )
        self._client = client
        #: "host:port" or "unix:/path"; pymilvus strips the URI's user info from it.
        self.address: str = str(config.address)
        self._config = config
        token = str(config.token or "")
        self._auth: Metadata = (
            (("authorization", base64.b64encode(token.encode()).decode()),) if token else ()
        )
        self._metadata: dict[str, Metadata] = {}
        #: Calls with equal identities may share an RPC: same server, same credential.
        self.identity: tuple[str, Metadata] = (self.address, self._auth)

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
        """gRPC metadata for a call in ``db_name``: database and credentials."""
        metadata = self._metadata.get(db_name)
        if metadata is None:
            metadata = self._metadata[db_name] = (("dbname", db_name), *self._auth)
        return metadata

    def __repr__(self) -> str:  # never shows the credential
        return f"MilvusConnection(address={self.address!r}, db_name={self.db_name!r})"
