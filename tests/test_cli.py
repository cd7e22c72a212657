"""The ``flushkit`` command against the scripted server, and ``flushkit demo``."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys

import grpc
import pytest
import structlog

import flushkit
from flushkit._tools.cli import _parser, main  # the command line interface itself
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
    assert result["attempts"] == 1 and result["coalesced"] is False
    assert result["throttled"] == 0 and result["paced"] == 0.0
    assert result["satisfied_by"] == "flush" and result["flushing"] > 0
    assert result["persisting"] > 0  # --wait
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
    assert err.startswith("flushkit: ") and "Error" in err
    assert err.count("\n") == 1  # the command's line only: no log event repeating it


def test_verbose_logs_the_failure_too(fake, capsys):
    fake.script_flush(status(100, 4, "collection not found"))
    assert main(["-v", "flush", "docs", "--uri", fake.uri]) == 4
    err = capsys.readouterr().err
    assert "flushkit.flush.failed" in err and "flushkit: CollectionNotFoundError" in err


@pytest.mark.parametrize(
    "args",
    [["flush", "bad name "], ["flush", "docs", "--timeout", "0"], ["flush", "docs", "--db", ""]],
)
def test_bad_arguments_exit_2_before_any_rpc(fake, capsys, args):
    assert main([*args, "--uri", fake.uri]) == 2
    assert fake.flush_calls == []


@pytest.mark.parametrize("command", [["flush", "docs"], ["bench"]])
@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "inf", "-inf"])
def test_bad_timeout_exits_2_with_the_librarys_reason_before_connecting(
    tmp_path, capsys, client, fake, command, timeout
):
    lite_file = tmp_path / "test.db"
    assert main([*command, "--uri", str(lite_file), f"--timeout={timeout}"]) == 2
    with pytest.raises(ValueError) as library:  # what the library says of that timeout
        flushkit.Flusher(client).flush("docs", timeout=float(timeout))
    assert fake.flush_calls == []
    said = str(library.value).replace(" (or None for no limit)", "")  # not on the command line
    assert said != str(library.value)
    assert capsys.readouterr().err == f"flushkit: --timeout: {said}\n"
    assert list(tmp_path.iterdir()) == []  # Milvus Lite never opened the file


@pytest.mark.parametrize("command", [["flush", "docs"], ["bench"]])
def test_a_timeout_that_is_no_number_exits_2_in_the_librarys_words(fake, capsys, command):
    """One line, as for -1 (not argparse's usage dump), before any RPC."""
    with pytest.raises(SystemExit) as exited:
        main([*command, "--uri", fake.uri, "--timeout", "abc"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        "flushkit: --timeout: timeout must be a finite number of seconds greater than 0, "
        f"not 'abc' (see flushkit {command[0]} --help)\n"
    )
    assert fake.calls == []


@pytest.mark.parametrize(
    "uri", ["ftp://x", "localhost:19530", "ftp://root:s3cret@milvus:19530"]
)
def test_a_uri_pymilvus_refuses_exits_2_with_its_reason_and_no_secret(capsys, uri):
    assert main(["flush", "docs", "--uri", uri, "--timeout", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flushkit: --uri '") and "illegal" in err, err  # pymilvus's reason
    assert "s3cret" not in err and "cannot connect" not in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("uri", "message"),
    [("missing/test.db", "does not exist"), ("http://localhost:99999", "out of range")],
)
def test_bad_uri_exits_2_before_connecting(tmp_path, capsys, uri, message):
    uri = str(tmp_path / uri) if uri.endswith(".db") else uri
    assert main(["flush", "docs", "--uri", uri]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"flushkit: --uri {uri!r}: ") and message in err


def test_every_option_has_help_and_shows_its_default():
    commands = next(
        action for action in _parser()._actions if isinstance(action, argparse._SubParsersAction)
    )
    for name, parser in commands.choices.items():
        for action in parser._actions:
            assert action.help, f"flushkit {name} {action.option_strings or action.dest}"
            shows_default = action.default in (None, False, True, argparse.SUPPRESS)
            shows_default = shows_default or "(default: " in action.help
            assert shows_default, f"flushkit {name} {action.option_strings}: {action.help}"


def test_bench_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as done:
        main(["bench", "--help"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for shown in ("(default: 1000)", "(default: 1)", "(default: blocking)", "(default: 60.0)"):
        assert shown in out


@pytest.fixture
def lite_file(tmp_path):
    """A Milvus Lite file with the collection ``docs``, and ``only_there`` in database
    ``second``."""
    pytest.importorskip("milvus_lite")
    from pymilvus import MilvusClient

    path = str(tmp_path / "test.db")
    client = MilvusClient(path)
    client.create_collection("docs", dimension=4)
    client.create_database("second")
    client.use_database("second")
    client.create_collection("only_there", dimension=4)
    yield path
    client.close()


@pytest.mark.lite
def test_unknown_collection_on_milvus_lite_exits_4(lite_file, capsys):
    assert main(["flush", "docs", "ghost", "--uri", lite_file]) == 4
    captured = capsys.readouterr()
    assert captured.err.startswith("flushkit: CollectionNotFoundError: no collection 'ghost'")
    assert "'docs'" not in captured.err and captured.out == ""


@pytest.mark.lite
@pytest.mark.parametrize(("command", "code"), [(["flush", "docs"], 4), (["bench"], 2)])
def test_a_missing_milvus_lite_file_is_not_created(tmp_path, capsys, command, code):
    pytest.importorskip("milvus_lite")
    uri = str(tmp_path / "fresh.db")
    assert main([*command, "--uri", uri]) == code
    assert capsys.readouterr().err.startswith("flushkit: ")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.lite
def test_milvus_lite_collections_are_looked_up_in_the_database(lite_file, capsys):
    assert main(["flush", "only_there", "--db", "second", "--uri", lite_file]) == 0
    assert "database second: Success" in capsys.readouterr().out
    assert main(["flush", "only_there", "--uri", lite_file]) == 4
    assert main(["flush", "docs", "--db", "no_such_db", "--uri", lite_file]) == 5


@pytest.mark.lite
def test_milvus_uri_may_name_a_lite_file(tmp_path):
    # pymilvus reads MILVUS_URI when imported, and rejects a file path there
    pytest.importorskip("milvus_lite")
    from milvus_lite.server_manager import server_manager_instance
    from pymilvus import MilvusClient

    path = str(tmp_path / "test.db")
    client = MilvusClient(path)
    client.create_collection("docs", dimension=4)
    client.close()
    server_manager_instance.release_server(path)  # the command opens the file itself
    env = {**os.environ, "MILVUS_URI": path}
    env.pop("MILVUS_TOKEN", None)

    def flushkit(*args):
        command = [sys.executable, "-m", "flushkit", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    done = flushkit("flush", "docs", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"]["error_code"] == "Success"
    done = flushkit("flush", "ghost")
    assert done.returncode == 4, done.stderr
    assert "Traceback" not in done.stderr


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


def test_version_names_the_installed_package(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"flushkit {version('flushkit')}\n"
