"""The real Milvus standalone server of the PyPI package ``milvus`` (2.3.5), for
``flushkit demo --server``, the tests and the benchmarks: started in a temporary directory
on free ports, always stopped.

Every port the server listens on is picked free when it starts: the proxy and its internal
port, the coordinators' and nodes' gRPC ports, the metrics/health port and the embedded
etcd's client and peer ports. (The wheel alone leaves its embedded etcd on 2379/2380
whatever else it picks, so two servers on one machine collided; an embed-etcd config file
moves it.) Several servers can therefore run side by side, in one process or in several:
starts are serialized machine-wide by a lock file, so that no two pick the same free port
before either has bound it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import random
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT_TOKEN = "root:Milvus"

#: Seconds a start may take (about 8-20 on a busy 2-core machine).
START_TIMEOUT = 300.0

#: Never handed out: Milvus's and the wheel's defaults, free for a server started the
#: ordinary way beside ours.
_DEFAULT_PORTS = frozenset(
    {2379, 2380, 4222, 9000, 9091, 13333, 19529, 19530, 19531, 21121, 21123, 21124, 22930, 53100}
)
_LOWEST_PORT = 20000
#: A start is retried on fresh ports when the server exits meanwhile (a port taken between
#: the pick and the bind, by a process that does not take the lock).
_ATTEMPTS = 3
#: Under ``etcd:`` in the wheel's milvus.yaml template; ``etcd.config.path`` goes before it.
_ETCD_ANCHOR = "\n  use:\n    embed: true"
_START_LOCK = Path(tempfile.gettempdir()) / "flushkit-milvus-start.lock"


@dataclass(frozen=True)
class Standalone:
    uri: str
    port: int
    token: str
    #: The server's Prometheus metrics: ``http://127.0.0.1:<metrics_port>/metrics``.
    metrics_port: int = 0
    #: The embedded etcd's client and peer ports (never the fixed 2379/2380).
    etcd_port: int = 0
    etcd_peer_port: int = 0
    #: The server's process.
    pid: int = 0
    #: The folder of the server's own log files (``milvus.log`` and friends).
    logs: str = ""


class ServerExited(RuntimeError):
    """The server's process ended while it was starting."""


@contextlib.contextmanager
def standalone(
    base_dir: Path,
    *,
    authorization: bool = False,
    port: int | None = None,
    start_timeout: float = START_TIMEOUT,
    **config: Any,
) -> Iterator[Standalone]:
    """Start a server in ``base_dir`` with ``config`` (dotted milvus.yaml keys) applied,
    on ``port`` if given (else a free one), every other port free too.

    Raises ImportError where the ``milvus`` package is not installed, TimeoutError when the
    server is not healthy within ``start_timeout`` seconds, ServerExited when it exits
    while it starts (logs in ``base_dir/logs``).
    """
    from milvus import MilvusServer

    base_dir = Path(base_dir).resolve()
    _unpack(base_dir)
    for attempt in range(1, _ATTEMPTS + 1):
        server = MilvusServer()
        server.set_base_dir(str(base_dir))
        server.config.set("authorization_enabled", authorization)
        for key, value in config.items():
            server.config.set(key, value)
        atexit.register(server.stop)  # even if the process is interrupted mid-test
        try:
            try:
                with _start_lock():
                    etcd_peer_port = _start(server, base_dir, port, start_timeout)
            except ServerExited:
                if attempt == _ATTEMPTS:
                    raise
                continue
            yield Standalone(
                uri=f"http://127.0.0.1:{server.listen_port}",
                port=int(server.listen_port),
                token=ROOT_TOKEN if authorization else "",
                metrics_port=int(server.webservice_port),
                etcd_port=int(server.config.get("etcd_port")),
                etcd_peer_port=etcd_peer_port,
                pid=int(server.server_proc.pid),
                logs=str(base_dir / "logs"),
            )
            return
        finally:
            _stop(server)
            atexit.unregister(server.stop)


def _stop(server: Any) -> None:
    """The wheel's stop (SIGTERM, 1 s, SIGKILL, 3 s), with the time a busy machine may take
    to end a killed server: the wheel raises TimeoutExpired after those 3 s."""
    try:
        server.stop()
    except subprocess.TimeoutExpired:
        server.server_proc.kill()
        server.server_proc.wait(timeout=START_TIMEOUT)
        server.stop()  # the process has ended: closes its log files


def _unpack(base_dir: Path) -> None:
    """Unpack the server's binaries into ``base_dir/bin`` before the start lock is taken:
    LZMA, a few seconds of CPU that would otherwise hold the lock (the wheel's own start
    then finds them unpacked, by their checksums)."""
    import milvus

    unpack = getattr(milvus, "_initialize_data_files", None)
    if unpack is not None:
        unpack(str(base_dir))


def _start(server: Any, base_dir: Path, port: int | None, timeout: float) -> int:
    """Give ``server`` free ports (the proxy ``port`` if given), start it, wait until it is
    healthy; return the embedded etcd's peer port."""
    # The wheel's own ports: proxy, proxy internal, etcd client, coordinators and nodes.
    port_keys = sorted(key for key in server.config.configurable_items if key.endswith("_port"))
    picked = free_ports(len(port_keys) + 2, exclude=() if port is None else (port,))
    ports = dict(zip(port_keys, picked, strict=False))
    etcd_peer_port, metrics_port = picked[len(port_keys) :]
    if port is not None:
        ports["proxy_port"] = port
        # A restart takes its old port back at once, as the Go server binds (with
        # SO_REUSEADDR): the wheel's own check would wait out the port's TIME_WAIT.
        server.config.try_bind_port = _bind_through_time_wait
    etcd_config = base_dir / "configs" / "embed-etcd.yaml"
    _write_etcd_config(etcd_config, ports["etcd_port"], etcd_peer_port, base_dir)
    template = server.config.template_text
    if _ETCD_ANCHOR not in template:
        raise RuntimeError("the milvus package's config template has no etcd.use.embed")
    server.config.template_text = template.replace(
        _ETCD_ANCHOR, f"\n  config:\n    path: {json.dumps(str(etcd_config))}{_ETCD_ANCHOR}", 1
    )
    server.config.update(**ports)  # the wheel binds each to check it, else raises
    server.webservice_port = metrics_port  # METRICS_PORT: /metrics and /healthz
    server.wait_for_started = False  # its own wait misses an exit and waits out 180 s
    server.start()
    _wait_healthy(server, base_dir, timeout)
    return etcd_peer_port


def _bind_through_time_wait(port: int) -> socket.socket | None:
    """The wheel's port check with SO_REUSEADDR: a listening socket on ``port``, or None
    where another process listens there."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError:
        sock.close()
        return None
    return sock


def _write_etcd_config(path: Path, client_port: int, peer_port: int, base_dir: Path) -> None:
    """An embed-etcd config (etcd's own YAML keys) on loopback ``client_port``/``peer_port``."""
    client = f"http://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    settings = {
        "name": "default",
        "data-dir": str(base_dir / "data" / "etcd.data"),  # Milvus sets it from milvus.yaml too
        "listen-client-urls": client,
        "advertise-client-urls": client,
        "listen-peer-urls": peer,
        "initial-advertise-peer-urls": peer,
        "initial-cluster": f"default={peer}",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items()),
        encoding="utf-8",
    )


def _wait_healthy(server: Any, base_dir: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    health = f"http://127.0.0.1:{server.webservice_port}/healthz"
    while True:
        code = server.server_proc.poll()
        if code is not None:
            raise ServerExited(
                f"the Milvus server exited with {code} while starting (logs: {base_dir}/logs)"
            )
        # OSError covers URLError, HTTPError, a reset connection and a timeout.
        with contextlib.suppress(OSError), urllib.request.urlopen(health, timeout=10) as response:
            if b"OK" in response.read():
                time.sleep(1)  # as the wheel does: healthy a moment before it serves
                return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the Milvus server was not healthy in {timeout:.0f} s (logs: {base_dir}/logs)"
            )
        time.sleep(0.2)


@contextlib.contextmanager
def _start_lock() -> Iterator[None]:
    """Held from the pick of ports until the server listens on them: machine-wide, as an
    exclusive ``flock`` on a file in the temporary directory (none where that fails)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the milvus package is Linux-only anyway
        yield
        return
    try:
        lock = _START_LOCK.open("a")
    except OSError:
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def free_ports(count: int, exclude: Iterable[int] = ()) -> list[int]:
    """``count`` distinct ports nobody listens on, at random below the ephemeral range
    (where the server's own outgoing connections could not take one before it binds it)
    and away from Milvus's defaults and ``exclude``."""
    avoid = set(_DEFAULT_PORTS) | set(exclude)
    candidates = [p for p in _port_range() if p not in avoid]
    random.SystemRandom().shuffle(candidates)
    found: list[int] = []
    for candidate in candidates:
        if _bindable(candidate):
            found.append(candidate)
            if len(found) == count:
                return found
    raise OSError(f"fewer than {count} free ports")


def _port_range() -> range:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="ascii")
        ephemeral = int(text.split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    if ephemeral - _LOWEST_PORT < 2000:  # the ephemeral range starts too low to stay below
        return range(_LOWEST_PORT, 65536)
    return range(_LOWEST_PORT, ephemeral)


def _bindable(port: int) -> bool:
    """Free on every IPv4 address (the gRPC servers bind them all), without SO_REUSEADDR as
    the wheel checks: a port in TIME_WAIT is not free."""
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


class Standalones:
    """One running server per instance (several instances run side by side); :meth:`get`
    restarts it with other settings."""

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
        """Stop the running server and start it again on its data and its proxy port (its
        other ports are picked afresh). The killed server's sessions stay in etcd until
        their lease ends: the new one is healthy after about twice ``common.session.ttl``
        (30 s unless set)."""
        if self._server is None or self._settings is None:
            raise RuntimeError("no server is running")
        settings, base, port = self._settings, self._base, self._server.port
        self.close()
        self._server = self._stack.enter_context(standalone(base, port=port, **settings))
        self._settings, self._base = settings, base
        return self._server

    def close(self) -> None:
        self._stack.close()
        self._stack = contextlib.ExitStack()
        self._server = self._settings = None
