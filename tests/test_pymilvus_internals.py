"""The pymilvus internals flushkit relies on (flushkit/_grpc/pymilvus.py). If one of these
fails, pymilvus changed them: update _grpc/pymilvus.py, not this test."""

import grpc
import pytest
from pymilvus import MilvusClient
from pymilvus.grpc_gen import milvus_pb2

from flushkit._grpc.pymilvus import MilvusConnection

from .helpers import replace_channel


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
    import pymilvus

    if int(pymilvus.__version__.split(".")[0]) < 3:
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

    from flushkit._grpc.pymilvus import AsyncMilvusConnection, is_async_client

    async def main() -> None:
        client = AsyncMilvusClient(uri=fake.uri, token="root:Milvus", db_name="prod")
        assert is_async_client(client)
        connection = AsyncMilvusConnection(client)
        assert client._handler is None and connection.current_channel() is None  # lazy
        assert connection.address == f"127.0.0.1:{fake.port}"
        assert connection.db_name == "prod"
        assert dict(connection.metadata("prod"))["authorization"] == "cm9vdDpNaWx2dXM="
        channel = await connection.connect()
        assert isinstance(channel, grpc.aio.Channel)
        assert channel is client._handler._final_channel  # pymilvus's interceptors on it
        await client.close()
        assert client._handler is None

    anyio.run(main, backend="asyncio")
