"""Stopping the embedded standalone server when the milvus wheel's own stop gives up: it
sends SIGKILL and waits 3 s, then raises TimeoutExpired, which a busy machine can cause."""

from __future__ import annotations

import subprocess
import sys

from flushkit._tools.standalone import _stop


class WheelServer:
    """The wheel's ``MilvusServer`` as far as stopping goes, for a process that outlives
    its first stop (the wheel raised after its kill's wait)."""

    def __init__(self) -> None:
        self.server_proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(120)"]
        )
        self.stops = 0

    def stop(self) -> None:
        self.stops += 1
        if self.stops == 1:
            raise subprocess.TimeoutExpired("milvus run standalone", 3)
        assert self.server_proc is not None
        self.server_proc.terminate()
        self.server_proc.wait(timeout=1)
        self.server_proc = None


def test_a_server_the_wheel_could_not_stop_in_time_is_killed_and_waited_for():
    server = WheelServer()
    process = server.server_proc
    assert process is not None
    _stop(server)
    assert process.returncode == -9  # killed, and reaped
    assert server.server_proc is None and server.stops == 2  # the wheel's stop finished
