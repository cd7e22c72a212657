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
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

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
        #: The client's database; "" means the server's default database.
        self.db_name: str = str(config.db_name or "default")
        token = str(config.token or "")
        self._auth: Metadata = (
            (("authorization", base64.b64encode(token.encode()).decode()),) if token else ()
        )
        self._metadata: dict[str, Metadata] = {}

    def channel(self) -> grpc.Channel:
        """The client's current raw channel (it changes when pymilvus reconnects)."""
        handler = self._client._handler
        channel = None if handler is None else handler._channel
        if channel is None:
            raise ClientClosedError("the MilvusClient is closed")
        return channel

    def aio_channel(self) -> grpc.aio.Channel:
        """A grpc.aio channel to the client's server, with its channel's settings.

        The same address, TLS files, server name and gRPC options as the channel pymilvus
        built (``GrpcHandler._create_grpc_channel``); credentials and database travel as
        call metadata, as on the client's own channel.
        """
        handler = self._client._handler
        if handler is None:
            raise ClientClosedError("the MilvusClient is closed")
        options: dict[str, Any] = {
            "grpc.max_send_message_length": -1,
            "grpc.max_receive_message_length": -1,
            "grpc.enable_retries": 1,
            "grpc.keepalive_time_ms": 10000,
            "grpc.keepalive_timeout_ms": 5000,
            "grpc.keepalive_permit_without_calls": True,
        }
        options.update(getattr(handler, "_grpc_options", None) or {})
        address = str(handler._address)
        if not getattr(handler, "_secure", False):
            return grpc.aio.insecure_channel(address, options=list(options.items()))
        if getattr(handler, "_server_name", ""):
            options["grpc.ssl_target_name_override"] = handler._server_name
        root, key, chain = None, None, None
        if getattr(handler, "_server_pem_path", ""):
            root = Path(handler._server_pem_path).read_bytes()
        elif handler._client_pem_path and handler._client_key_path and handler._ca_pem_path:
            root = Path(handler._ca_pem_path).read_bytes()
            key = Path(handler._client_key_path).read_bytes()
            chain = Path(handler._client_pem_path).read_bytes()
        credentials = grpc.ssl_channel_credentials(
            root_certificates=root, private_key=key, certificate_chain=chain
        )
        return grpc.aio.secure_channel(address, credentials, options=list(options.items()))

    def metadata(self, db_name: str) -> Metadata:
        """gRPC metadata for a call in ``db_name``: database and credentials."""
        metadata = self._metadata.get(db_name)
        if metadata is None:
            metadata = self._metadata[db_name] = (("dbname", db_name), *self._auth)
        return metadata

    def __repr__(self) -> str:  # never shows the credential
        return f"MilvusConnection(address={self.address!r}, db_name={self.db_name!r})"
