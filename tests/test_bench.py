"""``flushkit bench`` against the scripted server."""

from __future__ import annotations

import json
import sys

import pytest
import structlog

from flushkit._bench import percentile
from flushkit._cli import main
from flushkit.testing import delay, status


@pytest.fixture(autouse=True)
def _reset_structlog():
    yield
    structlog.reset_defaults()


def test_percentile_nearest_rank():
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.9) == 90
    assert percentile(values, 0.99) == 99
    assert percentile([3.0], 0.99) == 3.0


@pytest.mark.parametrize("runtime", ["blocking", "asyncio", "trio"])
def test_bench_reports_percentiles_and_throughput(fake, capsys, runtime):
    args = ["bench", "--uri", fake.uri, "--calls", "60", "--concurrency", "4"]
    assert main([*args, "--runtime", runtime, "--json", "--no-coalesce"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["calls"] == 60 and report["runtime"] == runtime
    assert 0 < report["p50_ms"] <= report["p90_ms"] <= report["p99_ms"] <= report["max_ms"]
    assert report["throughput"] > 0
    assert report["errors"] == {}
    assert report["coalesce"] is False and report["coalesced"] == 0
    assert len(fake.flush_calls) == 60


@pytest.mark.parametrize("runtime", ["blocking", "asyncio", "trio"])
def test_bench_coalesces_concurrent_callers_by_default(fake, capsys, runtime):
    fake.script_flush(*[delay(0.02)] * 60)  # an RPC in flight while the others arrive
    args = ["bench", "--uri", fake.uri, "--calls", "60", "--concurrency", "6"]
    assert main([*args, "--runtime", runtime, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] == {} and report["coalesce"] is True
    assert report["coalesced"] > 0
    assert len(fake.flush_calls) < 60


def test_bench_counts_errors_and_plots(fake, capsys, tmp_path):
    fake.script_flush(*[status(100, 4, "nope")] * 5)
    plot = tmp_path / "cdf.png"
    assert main(["bench", "--uri", fake.uri, "--calls", "20", "--plot", str(plot)]) == 1
    out = capsys.readouterr().out
    assert "p50" in out and "p99" in out and "CollectionNotFoundError" in out
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_bench_wait(fake, capsys):
    assert main(["bench", "--uri", fake.uri, "--calls", "10", "--wait", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["wait"] is True
    assert len(fake.flush_state_calls) == 10


@pytest.mark.parametrize(
    ("option", "value"), [("--calls", "0"), ("--concurrency", "0"), ("--concurrency", "-3")]
)
def test_bad_counts_exit_2_before_connecting(fake, capsys, option, value):
    assert main(["bench", "--uri", fake.uri, option, value]) == 2
    assert (
        capsys.readouterr().err
        == f"flushkit: {option} must be an integer of at least 1, not {value}\n"
    )
    assert fake.calls == []


@pytest.mark.parametrize(
    ("plot", "message"),
    [("missing-dir/cdf.png", "does not exist"), ("cdf.notaformat", "cannot write .notaformat")],
)
def test_plot_that_cannot_be_written_exits_2_before_any_work(fake, capsys, tmp_path, plot, message):
    assert main(["bench", "--uri", fake.uri, "--calls", "5", "--plot", str(tmp_path / plot)]) == 2
    assert message in capsys.readouterr().err
    assert fake.calls == []


def test_plot_without_matplotlib_exits_2_before_any_work(fake, capsys, tmp_path, monkeypatch):
    for module in ("matplotlib", "matplotlib.backend_bases"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    plot = str(tmp_path / "cdf.png")
    assert main(["bench", "--uri", fake.uri, "--calls", "5", "--plot", plot]) == 2
    assert "--plot needs matplotlib: pip install 'flushkit[bench]'" in capsys.readouterr().err
    assert fake.calls == []


@pytest.fixture
def lite_file(tmp_path):
    pytest.importorskip("milvus_lite")
    from pymilvus import MilvusClient

    path = str(tmp_path / "bench.db")
    client = MilvusClient(path)
    yield path, client
    client.close()


@pytest.mark.lite
def test_missing_collection_on_milvus_lite_needs_create(lite_file, capsys):
    path, client = lite_file
    assert main(["bench", "--uri", path, "--calls", "5"]) == 2
    err = capsys.readouterr().err
    assert "no collection 'flushkit_bench'" in err and "--create" in err
    assert main(["bench", "--uri", path, "--calls", "5", "--create", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["calls"] == 5
    assert not client.has_collection("flushkit_bench")  # --create drops what it created
