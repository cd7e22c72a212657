"""Two real Milvus 2.3.5 standalone servers side by side: every port each listens on is
picked free at start, none is the embedded etcd's fixed 2379/2380, and both answer."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pymilvus import MilvusClient

import flushkit
from flushkit._tools.standalone import Standalone, Standalones

#: One pair of servers for the module, on one pytest-xdist worker.
pytestmark = [
    pytest.mark.server,
    pytest.mark.timeout(900),
    pytest.mark.xdist_group("milvus-two-servers"),
]

ETCD_FIXED_PORTS = {2379, 2380}


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on, from /proc (its socket inodes matched in
    /proc/net/tcp and tcp6, state 0A = LISTEN)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def wait_listening(server: Standalone, patience: float = 60.0) -> set[int]:
    """Its listening ports once every port it reports is among them."""
    expected = {server.port, server.metrics_port, server.etcd_port, server.etcd_peer_port}
    deadline = time.monotonic() + patience
    while True:
        ports = listening_ports(server.pid)
        if expected <= ports or time.monotonic() > deadline:
            return ports
        time.sleep(0.5)


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Standalone]]:
    """Two servers in separate directories, started at the same time, both running."""
    pytest.importorskip(
        "milvus", reason="the milvus package (the standalone server) is not installed"
    )
    groups = [Standalones(tmp_path_factory.mktemp(f"milvus-{name}")) for name in "ab"]
    try:
        with ThreadPoolExecutor(2) as pool:
            started = [pool.submit(group.get) for group in groups]
            servers = [future.result() for future in started]
        yield servers
    finally:
        for group in groups:
            group.close()


def test_both_servers_answer_and_flush(two_servers):
    assert two_servers[0].uri != two_servers[1].uri
    for index, server in enumerate(two_servers):
        client = MilvusClient(uri=server.uri, token=server.token, timeout=60)
        try:
            name = f"side_by_side_{index}"
            client.create_collection(name, dimension=4)
            client.insert(name, [{"id": i, "vector": [0.1, 0.2, 0.3, i / 10]} for i in range(10)])
            result = flushkit.Flusher(client).flush(name, wait=True, timeout=60.0)
            assert result.status.ok
            assert result.coll_segIDs[name]
            assert name in client.list_collections()
        finally:
            client.close()


def test_neither_listens_on_the_fixed_etcd_ports(two_servers):
    for server in two_servers:
        ports = wait_listening(server)
        assert ports, f"server {server.pid} listens on nothing"
        assert not ports & ETCD_FIXED_PORTS, sorted(ports)
        assert server.etcd_port not in ETCD_FIXED_PORTS
        assert server.etcd_peer_port not in ETCD_FIXED_PORTS


def test_every_listening_port_is_its_own(two_servers):
    """Each reports the proxy, metrics and etcd ports it listens on; the two share none."""
    first, second = (wait_listening(server) for server in two_servers)
    for server, ports in zip(two_servers, (first, second), strict=True):
        reported = {server.port, server.metrics_port, server.etcd_port, server.etcd_peer_port}
        assert len(reported) == 4
        assert reported <= ports, (sorted(reported), sorted(ports))
        # proxy + internal, metrics, etcd client + peer, the coordinators and the nodes
        assert len(ports) >= 9, sorted(ports)
    assert not first & second, sorted(first & second)
