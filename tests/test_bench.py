"""``flushkit bench`` against the scripted server."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import sys

import pytest
import structlog

from flushkit._tools import bench
from flushkit._tools.bench import (
    cdf_figure,
    latency_ticks,
    ms_text,
    percentile,
    plain_ms,
    server_of,
)
from flushkit._tools.cli import main
from flushkit.testing import delay, status

from .helpers import PYMILVUS_MAJOR

#: ``--plot`` needs matplotlib, which the ``bench`` and ``dev`` extras install (the
#: ``test`` extra does not: plotting is not needed to test anything else).
needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None,
    reason="--plot needs matplotlib: pip install -e '.[dev]'",
)


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


@needs_matplotlib
def test_bench_counts_errors_and_plots(fake, capsys, tmp_path):
    fake.script_flush(*[status(100, 4, "nope")] * 5)
    plot = tmp_path / "cdf.png"
    assert main(["bench", "--uri", fake.uri, "--calls", "20", "--plot", str(plot)]) == 1
    out = capsys.readouterr().out
    assert "p50" in out and "p99" in out and "CollectionNotFoundError" in out
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_bench_prints_one_row_of_percentiles(fake, capsys):
    assert main(["bench", "--uri", fake.uri, "--calls", "10"]) == 0
    assert rows_of(capsys.readouterr().out) == ["flushkit"]


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
        == f"flushkit: {option}: must be an integer of at least 1, not {value}\n"
    )
    assert fake.calls == []


@pytest.mark.parametrize(("option", "value"), [("--calls", "many"), ("--concurrency", "1.5")])
def test_a_count_that_is_no_integer_exits_2_with_one_line_saying_why(fake, capsys, option, value):
    """The same words as for 0, not argparse's usage dump."""
    with pytest.raises(SystemExit) as exited:
        main(["bench", "--uri", fake.uri, option, value])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        f"flushkit: {option}: must be an integer of at least 1, not {value!r} "
        "(see flushkit bench --help)\n"
    )
    assert fake.calls == []


@needs_matplotlib
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


@pytest.mark.lite
def test_create_on_a_new_milvus_lite_file_leaves_nothing_behind(tmp_path, capsys):
    pytest.importorskip("milvus_lite")
    path = str(tmp_path / "bench.db")
    assert main(["bench", "--uri", path, "--calls", "3", "--create", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["calls"] == 3
    assert list(tmp_path.iterdir()) == []  # the file it made went with the collection


def test_one_caller_is_one_thread_or_task():
    assert bench.flushkit_label("blocking", 1, False) == "flushkit Flusher, 1 thread, wait=False"
    assert bench.flushkit_label("trio", 1, True) == "flushkit AsyncFlusher, 1 trio task, wait=True"
    assert bench.pymilvus_label(1) == "pymilvus MilvusClient.flush, 1 thread, always waits"
    assert bench.pymilvus_label(2) == "pymilvus MilvusClient.flush, 2 threads, always waits"


# the picture


@pytest.fixture
def drawn(monkeypatch):
    """The figures the bench draws (each as ``plot_cdf`` saved it), to inspect."""
    figures = []
    draw = bench.cdf_figure

    def keep(*args, **kwargs):
        figures.append(draw(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(bench, "cdf_figure", keep)
    yield figures
    import matplotlib.pyplot as plt

    for figure in figures:
        plt.close(figure)


def close(figure) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)


def texts_of(figure) -> list[str]:
    from matplotlib.text import Text

    return [text.get_text() for text in figure.findobj(Text)]


def rows_of(out: str) -> list[str]:
    """The libraries of the report's rows of percentiles."""
    return [line.split()[0] for line in out.splitlines() if re.match(r"\w+( +[\d.]+){6}$", line)]


@pytest.mark.parametrize(
    ("milliseconds", "label"),
    [
        (0.05, "0.05"),
        (0.43, "0.43"),
        (0.5, "0.5"),
        (3 * 0.1, "0.3"),
        (1.0, "1"),
        (2.0, "2"),
        (10.0, "10"),
        (20.0, "20"),
        (1500.0, "1500"),
        (60000.0, "60000"),
    ],
)
def test_tick_labels_are_plain_milliseconds(milliseconds, label):
    assert plain_ms(milliseconds) == label


@pytest.mark.parametrize(
    ("milliseconds", "text"), [(3.04, "3.04"), (14.811, "14.8"), (0.5, "0.500"), (1234.4, "1234")]
)
def test_marked_values_keep_three_significant_digits(milliseconds, text):
    assert ms_text(milliseconds) == text


@pytest.mark.parametrize(("low", "high"), [(0.61, 0.95), (0.43, 52.6), (0.05, 60000.0), (2, 2)])
def test_latency_ticks_span_the_data_from_a_tick_at_its_low_end(low, high):
    ticks = latency_ticks(low, high)
    assert low / 1.1 <= ticks[0] <= low and ticks[-1] >= high
    assert 2 <= len(ticks) <= 9 and ticks == sorted(set(ticks))


@needs_matplotlib
def test_latency_axis_has_plain_millisecond_ticks_and_percent_of_calls():
    latencies = [0.00043 * 1.05**i for i in range(100)]  # 0.43 ms to 53.9 ms
    figure = cdf_figure([("flushkit", latencies)], "title", "caption")
    figure.canvas.draw()
    axes = figure.axes[0]
    labels = [text.get_text() for text in axes.get_xticklabels()]
    assert labels == ["0.43", "1", "2", "5", "10", "20", "54"]
    shares = [text.get_text() for text in axes.get_yticklabels()]
    assert {"0%", "100%"} <= set(shares) and all(share.endswith("%") for share in shares)
    close(figure)


@needs_matplotlib
def test_p50_and_p99_are_marked_on_the_curve_with_their_values():
    latencies = [i / 1000 for i in range(100, 0, -1)]  # 1 to 100 ms, in no order
    figure = cdf_figure([("flushkit", latencies)], "title", "caption")
    axes = figure.axes[0]
    assert sorted(text.get_text() for text in axes.texts) == ["p50 50.0 ms", "p99 99.0 ms"]
    dots = [line for line in axes.lines if line.get_marker() == "o"]
    dots = sorted((dot.get_xdata()[0], dot.get_ydata()[0]) for dot in dots)
    assert dots == [pytest.approx((50.0, 0.50)), pytest.approx((99.0, 0.99))]
    close(figure)


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://root:s3cret@milvus:19530", "http://milvus:19530"),
        ("https://u:p@in01.example.com:443/db1?token=s3cret#x", "https://in01.example.com:443/db1"),
        ("http://[::1]:19530", "http://[::1]:19530"),
        ("root:s3cret@milvus:19530", "milvus:19530"),
        ("/data/me@work/milvus.db", "/data/me@work/milvus.db"),
    ],
)
def test_server_is_shown_without_credentials(uri, shown):
    assert server_of(uri) == shown


@needs_matplotlib
def test_plot_caption_shows_the_settings_and_no_secret(fake, capsys, tmp_path, drawn):
    plot = tmp_path / "cdf.png"
    uri = fake.uri.replace("://", "://root:s3cret@")
    if PYMILVUS_MAJOR < 3:
        uri = fake.uri  # pymilvus 2 cannot connect with user info in the URI
    args = ["--calls", "7", "--concurrency", "3", "--runtime", "trio", "--wait", "--no-coalesce"]
    args += ["--timeout", "9", "--token", "root:t0ken", "--plot", str(plot)]
    assert main(["bench", "--uri", uri, *args]) == 0
    [figure] = drawn
    caption = figure.axes[0].get_title()
    for setting in (f"server {fake.uri} ", "collection flushkit_bench", "runtime trio"):
        assert setting in caption
    for setting in ("7 calls", "concurrency 3", "wait on", "coalescing off", "timeout 9 s"):
        assert setting in caption
    shown = " ".join(texts_of(figure))
    assert "s3cret" not in shown and "t0ken" not in shown and "root" not in shown
    assert plot.read_bytes().startswith(b"\x89PNG")


# --against pymilvus


@needs_matplotlib
@pytest.mark.parametrize("runtime", ["blocking", "asyncio", "trio"])
def test_against_pymilvus_reports_and_plots_both(fake, capsys, tmp_path, drawn, runtime):
    plot = tmp_path / "cdf.png"
    args = ["--calls", "12", "--concurrency", "3", "--runtime", runtime, "--plot", str(plot)]
    assert main(["bench", "--uri", fake.uri, *args, "--against", "pymilvus"]) == 0
    assert rows_of(capsys.readouterr().out) == ["flushkit", "pymilvus"]
    assert len(fake.flush_state_calls) == 12  # pymilvus's flush waits; flushkit's did not
    [figure] = drawn
    axes = figure.axes[0]
    callers = "3 threads" if runtime == "blocking" else f"3 {runtime} tasks"
    assert [text.get_text() for text in axes.get_legend().get_texts()] == [
        f"flushkit {'Flusher' if runtime == 'blocking' else 'AsyncFlusher'}, {callers}, wait=False",
        "pymilvus MilvusClient.flush, 3 threads, always waits",
    ]
    marks = sorted(text.get_text().split()[0] for text in axes.texts)
    assert marks == ["p50", "p50", "p99", "p99"]
    assert "flushkit vs pymilvus" in figure.texts[0].get_text()  # the title
    assert "pymilvus in threads, taking turns with flushkit in blocks" in axes.get_title()


def test_against_pymilvus_json_has_both_reports(fake, capsys):
    args = ["--calls", "8", "--concurrency", "2", "--no-coalesce", "--json"]
    assert main(["bench", "--uri", fake.uri, *args, "--against", "pymilvus"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["library"] == "flushkit" and report["calls"] == 8 and report["errors"] == {}
    theirs = report["against"]
    assert theirs["library"] == "pymilvus" and theirs["calls"] == 8 and theirs["errors"] == {}
    assert theirs["wait"] is True and theirs["concurrency"] == 2 and theirs["coalesced"] == 0
    assert 0 < theirs["p50_ms"] <= theirs["p90_ms"] <= theirs["p99_ms"] <= theirs["max_ms"]
    assert len(fake.flush_calls) == 16


def test_against_pymilvus_takes_turns_in_blocks(fake, capsys):
    assert main(["bench", "--uri", fake.uri, "--calls", "20", "--against", "pymilvus"]) == 0
    rpcs = "".join(
        "F" if call.method == "Flush" else "G"
        for call in fake.calls
        if call.method in ("Flush", "GetFlushState")
    )
    # 10 blocks of 2 calls each: flushkit's 2 Flushes, then pymilvus's 2 Flush + GetFlushState
    assert rpcs == ("FF" + "FGFG") * 10


@pytest.fixture
def pymilvus_logs():
    """What pymilvus logs at ERROR or above (a traceback for each failed call)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("pymilvus").addHandler(handler)
    yield records
    logging.getLogger("pymilvus").removeHandler(handler)


@needs_matplotlib
def test_pymilvus_failures_are_counted_not_raised(fake, capsys, tmp_path, pymilvus_logs):
    fake.missing("flushkit_bench")
    plot = str(tmp_path / "cdf.png")
    args = ["--calls", "6", "--concurrency", "2", "--json", "--plot", plot]
    assert main(["bench", "--uri", fake.uri, *args, "--against", "pymilvus"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] == {"CollectionNotFoundError": 6}
    assert report["against"]["errors"] == {"MilvusException": 6}
    assert report["against"]["calls"] == 6
    assert pymilvus_logs == []  # counted in the report, not logged with a traceback each


def test_only_flushkit_failures_make_the_exit_code(fake, capsys):
    fake.script_flush(*[delay(0.0)] * 5, status(100, 4, "nope"))  # pymilvus's first Flush
    args = ["--calls", "5", "--concurrency", "5", "--no-coalesce", "--json"]
    assert main(["bench", "--uri", fake.uri, *args, "--against", "pymilvus"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] == {} and report["against"]["errors"] == {"MilvusException": 1}


def test_pymilvus_throttled_by_the_rate_limit_counts_failures(fake, capsys):
    fake.limit_flush_rate(0.001)  # the first Flush of the collection, then one per 1000 s
    args = ["--calls", "3", "--concurrency", "3", "--timeout", "0.5", "--json"]
    # flushkit's first Flush is admitted; its other two calls cannot reach the next slot
    assert main(["bench", "--uri", fake.uri, *args, "--against", "pymilvus"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] == {"RateLimitedError": 2}  # flushkit's failures: the exit code
    theirs = report["against"]
    assert theirs["calls"] == 3 and theirs["errors"] == {"MilvusException": 3}
    assert all(call.throttled for call in fake.flush_calls[-3:])
