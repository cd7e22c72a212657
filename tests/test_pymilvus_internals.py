"""The pymilvus internals flushkit relies on (flushkit/_grpc/pymilvus_internals.py). If one of these
fails, pymilvus changed them: update _grpc/pymilvus_internals.py, not this test."""

import grpc
import pytest
from pymilvus import MilvusClient
from pymilvus.grpc_gen import milvus_pb2

from flushkit._grpc.pymilvus_internals import MilvusConnection

from .helpers import PYMILVUS_MAJOR, replace_channel


def test_client_exposes_handler_channel_and_config(fake):
    client = MilvusClient(uri=fake.uri, token="root:Milvus", db_name="prod")
    try:
        assert isinstance(client._handler._channel, grpc.Channel)
        assert client._config.address == f"127.0.0.1:{fake.port}"
        assert client._config.token == "root:Milvus"
        assert client._config.db_name == "prod"
        connection = MilvusConnection(client)
        assert connection.db_name == "prod"
        assert dict(connection.metadata("prod")) == {
            "dbname": "prod",
            "authorization": "cm9vdDpNaWx2dXM=",  # base64 of root:Milvus, as pymilvus sends
        }
        assert "root:Milvus" not in repr(connection) and "cm9vdD" not in repr(connection)
    finally:
        client.close()


def test_uri_user_info_becomes_the_token_and_leaves_the_address(fake):
    if PYMILVUS_MAJOR < 3:
        pytest.skip("pymilvus < 3 cannot connect with user info in the URI (it hangs)")
    client = MilvusClient(uri=f"http://alice:s3cret@127.0.0.1:{fake.port}")
    try:
        assert client._config.token == "alice:s3cret"
        assert "s3cret" not in client._config.address
    finally:
        client.close()


def test_reconnect_replaces_the_channel_and_close_clears_it(fake):
    client = MilvusClient(uri=fake.uri)
    connection = MilvusConnection(client)
    before = connection.channel()
    replace_channel(client)
    assert connection.channel() is not before
    client.close()
    assert client._handler is None


def test_flush_messages_have_the_fields_flushkit_fills():
    request = milvus_pb2.FlushRequest(db_name="d", collection_names=["c"])
    assert list(request.collection_names) == ["c"]
    response_fields = {f.name for f in milvus_pb2.FlushResponse.DESCRIPTOR.fields}
    assert {
        "status",
        "db_name",
        "coll_segIDs",
        "flush_coll_segIDs",
        "coll_seal_times",
        "coll_flush_ts",
    } <= response_fields
    state = milvus_pb2.GetFlushStateRequest(
        segmentIDs=[1], flush_ts=2, db_name="d", collection_name="c"
    )
    assert state.collection_name == "c"


def test_async_client_connects_lazily_and_exposes_its_grpc_aio_channel(fake):
    import anyio
    from pymilvus import AsyncMilvusClient

    from flushkit._grpc.pymilvus_internals import AsyncMilvusConnection, is_async_client

    async def main() -> None:
        client = AsyncMilvusClient(uri=fake.uri, token="root:Milvus", db_name="prod")
        assert is_async_client(client)
        connection = AsyncMilvusConnection(client)
        assert client._handler is None and connection.current_channel() is None  # lazy
        assert connection.address == f"127.0.0.1:{fake.port}"
        assert connection.db_name == "prod"
        # The channel's interceptors add the credential and identifier: only the database
        assert connection.metadata("prod") == (("dbname", "prod"),)
        channel = await connection.connect()
        assert isinstance(channel, grpc.aio.Channel)
        assert channel is client._handler._final_channel  # pymilvus's interceptors on it
        await client.close()
        assert client._handler is None

    anyio.run(main, backend="asyncio")


PER_CALL_HEADERS = {"client-request-id", "client-request-unixmsec", "user-agent"}


def raw_headers(server) -> list[list[tuple[str, str]]]:
    """Every Flush's headers as the test server received them, repeats included."""
    return [list(call.headers) for call in server.flush_calls]


def _sent(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted(h for h in headers if h[0] not in PER_CALL_HEADERS)


def test_flushkit_sends_the_headers_pymilvus_sends_but_its_identifier(fake):
    """Blocking MilvusClient: database and credential, each once, as pymilvus's own flush
    sends them (flushkit adds them itself on the raw channel). Not pymilvus's client
    identifier: after a reconnect the handler's ``_identifier`` is not the one its
    channel's interceptor sends (pymilvus 3), so reading it would send a stale one."""
    import flushkit

    client = MilvusClient(uri=fake.uri, token="root:Milvus", db_name="prod")
    try:
        for _ in range(2):
            client.flush("docs")
            flushkit.Flusher(client).flush("docs")
            replace_channel(client)  # as pymilvus does when it reconnects
    finally:
        client.close()
    received = raw_headers(fake)
    assert len(received) == 4
    for pymilvus_sent, ours in zip(received[0::2], received[1::2], strict=True):
        assert _sent(ours) == [h for h in _sent(pymilvus_sent) if h[0] != "identifier"]
        assert {k for k, _ in _sent(ours)} == {"dbname", "authorization"}


def test_async_client_flushes_carry_the_headers_pymilvus_sends_each_once(fake):
    """AsyncMilvusClient: its interceptors add credential and identifier, flushkit the
    database; nothing twice."""
    import anyio
    from pymilvus import AsyncMilvusClient

    import flushkit

    async def main() -> None:
        client = AsyncMilvusClient(uri=fake.uri, token="root:Milvus", db_name="prod")
        try:
            await client.flush("docs")
            await flushkit.AsyncFlusher(client).flush("docs")
        finally:
            await client.close()
            await anyio.sleep(0.05)  # gRPC's last events for this loop arrive while it runs

    anyio.run(main, backend="asyncio")
    pymilvus_sent, ours = raw_headers(fake)
    assert _sent(ours) == _sent(pymilvus_sent)
    assert {k for k, _ in _sent(ours)} == {"dbname", "authorization", "identifier"}
