"""The real Milvus standalone server of the PyPI package ``milvus`` (2.3.5), for
``flushkit demo --server``, the tests and the benchmarks: started in a temporary directory
on free loopback ports, always stopped.

Two of these servers cannot run at once on one machine (their embedded etcd peers share
a fixed port), so :class:`Standalones` keeps at most one running and restarts it when a
test asks for another configuration.
"""

from __future__ import annotations

import atexit
import contextlib
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT_TOKEN = "root:Milvus"


@dataclass(frozen=True)
class Standalone:
    uri: str
    port: int
    token: str
    #: The server's Prometheus metrics: ``http://127.0.0.1:<metrics_port>/metrics``.
    metrics_port: int = 0


@contextlib.contextmanager
def standalone(
    base_dir: Path, *, authorization: bool = False, port: int | None = None, **config: Any
) -> Iterator[Standalone]:
    """Start a server in ``base_dir`` with ``config`` (dotted milvus.yaml keys) applied,
    on ``port`` if given (else the first free one from 19530).

    Raises ImportError where the ``milvus`` package is not installed.
    """
    from milvus import MilvusServer

    server = MilvusServer()
    server.set_base_dir(str(base_dir))
    server.config.set("authorization_enabled", authorization)
    if port is not None:
        server.config.update(proxy_port=port)
    for key, value in config.items():
        server.config.set(key, value)
    atexit.register(server.stop)  # even if the process is interrupted mid-test
    try:
        server.start()
        yield Standalone(
            uri=f"http://127.0.0.1:{server.listen_port}",
            port=int(server.listen_port),
            token=ROOT_TOKEN if authorization else "",
            metrics_port=int(server.webservice_port),
        )
    finally:
        server.stop()
        atexit.unregister(server.stop)


class Standalones:
    """At most one running server; :meth:`get` restarts it with other settings."""

    def __init__(self, base_dir: Path) -> None:
        self._base_dir = base_dir
        self._stack = contextlib.ExitStack()
        self._settings: dict[str, Any] | None = None
        self._server: Standalone | None = None
        self._base = base_dir

    def get(self, **settings: Any) -> Standalone:
        if self._server is None or settings != self._settings:
            self.close()
            base = Path(tempfile.mkdtemp(prefix="milvus-", dir=self._base_dir))
            self._server = self._stack.enter_context(standalone(base, **settings))
            self._settings = settings
            self._base = base
        return self._server

    def restart(self) -> Standalone:
        """Stop the running server and start it again on its data (and, when it is still
        free, on its port)."""
        if self._server is None or self._settings is None:
            raise RuntimeError("no server is running")
        settings, base, port = self._settings, self._base, self._server.port
        self.close()
        _wait_until_free(port)
        self._server = self._stack.enter_context(standalone(base, port=port, **settings))
        self._settings, self._base = settings, base
        return self._server

    def close(self) -> None:
        self._stack.close()
        self._stack = contextlib.ExitStack()
        self._server = self._settings = None


def _wait_until_free(port: int, patience: float = 120.0) -> None:
    """The milvus package binds without SO_REUSEADDR: wait out the port's TIME_WAIT."""
    deadline = time.monotonic() + patience
    while True:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.2)
