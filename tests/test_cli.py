"""The ``flushkit`` command against the scripted server, and ``flushkit demo``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import grpc
import pytest
import structlog

from flushkit._cli import main
from flushkit.testing import abort, hang, ok, status


@pytest.fixture(autouse=True)
def _reset_structlog():
    yield
    structlog.reset_defaults()  # the command configures structlog, as applications do


def test_flush_prints_a_table(fake, capsys):
    fake.script_flush(ok({"docs": [11, 12], "images": [13]}))
    assert main(["flush", "docs", "images", "--uri", fake.uri]) == 0
    out = capsys.readouterr().out
    assert "collection" in out and "sealed segments" in out
    assert "docs" in out and "11 12" in out and "13" in out
    assert "Success" in out


def test_flush_json_with_env_uri_and_token(fake, capsys, monkeypatch):
    monkeypatch.setenv("MILVUS_URI", fake.uri)
    monkeypatch.setenv("MILVUS_TOKEN", "root:S3cretToken")
    assert main(["flush", "docs", "--db", "analytics", "--wait", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["db_name"] == "analytics"
    assert result["coll_segIDs"]["docs"]
    assert result["status"]["code"] == 0 and result["persisted"] is True
    assert fake.flush_calls[-1].metadata["authorization"]
    assert "S3cretToken" not in captured.out + captured.err


@pytest.mark.parametrize(
    ("behaviour", "code"),
    [
        (status(100, 4, "collection not found"), 4),
        (status(800, 1, "database not found"), 5),
        (status(8, 49, "rate limit exceeded", retriable=True), 6),
        (status(1, 56, "not ready"), 7),
        (abort(grpc.StatusCode.UNAVAILABLE, "down"), 7),
        (status(1401, 1, "denied"), 8),
        (status(1100, 5, "bad"), 9),
        (status(9, 48, "deny"), 10),
        (status(5, 1, "internal"), 11),
        (hang(), 3),
    ],
)
def test_exit_code_per_error_class(fake, capsys, behaviour, code):
    fake.script_flush(*[behaviour] * 3)
    assert main(["flush", "docs", "--uri", fake.uri, "--timeout", "0.3"]) == code
    err = capsys.readouterr().err
    assert "flushkit:" in err and "Error" in err


@pytest.mark.parametrize(
    "args",
    [["flush", "bad name "], ["flush", "docs", "--timeout", "0"], ["flush", "docs", "--db", ""]],
)
def test_bad_arguments_exit_2_before_any_rpc(fake, capsys, args):
    assert main([*args, "--uri", fake.uri]) == 2
    assert fake.flush_calls == []


def test_unreachable_server_exits_7(capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once closed
    assert main(["flush", "docs", "--uri", f"http://127.0.0.1:{port}", "--timeout", "1"]) == 7
    assert "cannot connect" in capsys.readouterr().err


def test_python_dash_m_and_no_command(fake):
    done = subprocess.run(
        [sys.executable, "-m", "flushkit", "flush", "docs", "--uri", fake.uri, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"]["error_code"] == "Success"
    assert subprocess.run([sys.executable, "-m", "flushkit"], capture_output=True).returncode == 2


@pytest.mark.lite
def test_demo_runs_on_milvus_lite_and_cleans_up(tmp_path):
    pytest.importorskip("milvus_lite")
    script = os.path.join(os.path.dirname(sys.executable), "flushkit")
    command = [script] if os.path.exists(script) else [sys.executable, "-m", "flushkit"]
    done = subprocess.run(
        [*command, "demo", "--rows", "200"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "flushkit.flush.succeeded" in done.stderr
    assert "span 'flush flushkit_demo' CLIENT" in done.stdout
    assert "persisted=True" in done.stdout
    assert "16 concurrent flushes (asyncio tasks): 16 OK, 15 shared" in done.stdout
    assert list(tmp_path.iterdir()) == []
