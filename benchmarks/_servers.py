"""The servers the benchmarks run against: Milvus Lite, or the real standalone server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pymilvus import MilvusClient


@contextmanager
def server(kind: str, tmp: Path) -> Iterator[MilvusClient]:
    """A client of a fresh ``"lite"`` database file or ``"standalone"`` server in ``tmp``."""
    if kind == "lite":
        client = MilvusClient(str(tmp / "bench.db"))
        try:
            yield client
        finally:
            client.close()
        return
    from flushkit._tools.standalone import standalone

    with standalone(tmp / "standalone") as found:
        client = MilvusClient(uri=found.uri)
        try:
            yield client
        finally:
            client.close()
