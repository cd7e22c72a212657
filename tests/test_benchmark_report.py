"""The benchmarks page is generated from its results: it cannot drift from them.

``benchmarks/report.py --render-only`` re-renders ``docs/benchmarks.md`` from
``benchmarks/benchmarks_page.md`` and ``docs/results/*.json``; the committed page must be
exactly what the committed results render, and every results file must say when, on what
machine and with which versions it was measured. No timings are asserted.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "benchmarks" / "report.py"
RESULTS = ROOT / "docs" / "results"


@pytest.fixture(scope="module")
def report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmarks_report", REPORT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_committed_page_is_what_the_committed_results_render(report: ModuleType) -> None:
    page = report.render_page(report.TEMPLATE.read_text(), report.load_results(RESULTS))
    assert (ROOT / "docs" / "benchmarks.md").read_text() == page


def test_check_command_agrees() -> None:
    done = subprocess.run(
        [sys.executable, str(REPORT), "--render-only", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_every_results_file_has_its_metadata(report: ModuleType) -> None:
    files = sorted(RESULTS.glob("*.json"))
    assert files
    for path in files:
        wrapped = json.loads(path.read_text())
        assert wrapped["benchmark"] == path.stem, path
        if path.stem in report.RECORDED:  # written by another tool: the command it names
            script = report.RECORDED[path.stem].split()[1]
        else:
            assert path.stem in report.BY_NAME, path
            script = f"benchmarks/{report.BY_NAME[path.stem].script}"
        assert wrapped["command"][:2] == ["python", script], path
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", wrapped["date"]), path
        assert {"cpus", "cpu_model", "platform", "python"} <= set(wrapped["machine"]), path
        assert {"flushkit", "pymilvus", "grpcio", "milvus_lite", "milvus"} <= set(
            wrapped["versions"]
        ), path
        assert wrapped["versions"]["flushkit"], path
        assert wrapped["results"], path
        assert not wrapped.get("quick"), f"{path}: smoke sizes committed"


def test_every_placeholder_names_a_benchmark_and_every_benchmark_has_a_section(
    report: ModuleType,
) -> None:
    names = report.PLACEHOLDER.findall(report.TEMPLATE.read_text())
    assert sorted(names) == sorted([*report.BY_NAME, *report.RECORDED])


def test_docs_has_no_dated_or_lettered_dumps() -> None:
    assert not list((ROOT / "docs").glob("*.json"))
    assert not [p for p in (ROOT / "docs" / "img").iterdir() if re.search(r"\d{4}-\d\d", p.name)]


FAKE = {
    "benchmark": "fail-fast",
    "command": ["python", "benchmarks/fail_fast.py", "--calls", "3"],
    "date": "2030-01-02T03:04:05+00:00",
    "machine": {"cpus": 4, "cpu_model": "Fake CPU", "platform": "Linux-x", "python": "3.12.0"},
    "versions": {
        "flushkit": "9.9.9",
        "pymilvus": "1.2.3",
        "grpcio": "4.5.6",
        "milvus_lite": "7.8.9",
        "milvus": None,
    },
    "results": {
        "calls": 3,
        "runtimes": {
            "blocking": {
                "calls": 3,
                "failed_fast": 3,
                "median_ms": 0.0421,
                "slowest_ms": 1.5,
                "flush_rpcs": 1,
            }
        },
    },
}


def test_renderer_fills_placeholders_from_a_fake_results_dict(
    report: ModuleType, tmp_path: Path
) -> None:
    template = "# Page\n\n<!-- results: fail-fast -->\n\ntext\n\n<!-- results: fleet -->\n"
    page = report.render_page(template, {"fail-fast": FAKE}, img_dir=tmp_path)
    assert "<!-- results:" not in page
    assert "*Measured 2030-01-02 03:04:05 UTC on Fake CPU, 4 CPUs, Linux-x, Python 3.12.0;" in page
    assert "flushkit 9.9.9, pymilvus 1.2.3, grpcio 4.5.6, milvus-lite 7.8.9." in page
    assert "`python benchmarks/fail_fast.py --calls 3`" in page
    assert "| blocking | 3 of 3 | 0.042 | 1.500 | 1 |" in page
    # Without results, the section says how to produce them.
    assert "`python benchmarks/report.py --with-server --only fleet`" in page
    assert page.endswith("text\n\n" + report.missing(report.BY_NAME["fleet"], "fleet") + "\n")


def test_a_plot_is_shown_only_when_its_file_exists(report: ModuleType, tmp_path: Path) -> None:
    latency = {
        **FAKE,
        "benchmark": "latency-lite",
        "results": [
            {
                "server": "lite",
                "calls": 10,
                "repeats": 1,
                "blocking": {"bare": {"median_us": 500.0, "paired_diff_us": 0.0, "ratio": 1.0}},
                "throughput": {"1": {"bare": 1000.0}},
            }
        ],
    }
    without = report.render_section("latency-lite", latency, img_dir=tmp_path)
    assert "img/latency-lite.png" not in without
    assert "| blocking | bare | 500.0 | +0.0 | 1.000 |" in without
    (tmp_path / "latency-lite.png").write_bytes(b"")
    assert "![Latency CDF, Milvus Lite](img/latency-lite.png)" in report.render_section(
        "latency-lite", latency, img_dir=tmp_path
    )


def test_ab_record_writes_a_section_the_page_renders(
    report: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ab.py --record wraps its table as report.py wraps results; ab.py imports "report"
    # by name (its own directory on sys.path): that module, with its results elsewhere.
    spec = importlib.util.spec_from_file_location("benchmarks_ab", ROOT / "benchmarks" / "ab.py")
    assert spec is not None and spec.loader is not None
    ab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ab)
    monkeypatch.setitem(sys.modules, "report", report)
    monkeypatch.setattr(sys, "path", [*sys.path])  # record() puts benchmarks/ on it
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", ["ab.py", "--record", "before: a; after: b"])
    rows = ab.table(
        {
            "before": [{"figures": {"P1 flushkit / pymilvus stub, ratio": 1.04}}],
            "after": [{"figures": {"P1 flushkit / pymilvus stub, ratio": 1.03}}],
        }
    )
    ab.record("before: a; after: b", rows, 1, {"before": tmp_path, "after": tmp_path}, [], 1.0)
    wrapped = json.loads((tmp_path / "hot-path-ab.json").read_text())
    assert wrapped["benchmark"] == "hot-path-ab" and wrapped["note"] == "before: a; after: b"
    assert wrapped["command"][:2] == ["python", "benchmarks/ab.py"]
    section = report.render_section("hot-path-ab", wrapped)
    assert "| P1 flushkit / pymilvus stub, ratio | 1.040 | 1.030 | -0.010 | 0.990 |" in section
    assert "*before: a; after: b*" in section
    assert "No results yet: `python benchmarks/ab.py" in report.render_section("hot-path-ab", None)


def test_call_path_renders_the_bytecodes_per_call_by_package(report: ModuleType) -> None:
    counts = {"modules": 14, "functions": 36, "entries": 60}
    bytecodes = {
        "bare RPC": {"total": 100, "grpc": 70, "standard library": 30},
        "flushkit, default chain": {"total": 250, "flushkit": 140, "grpc": 70, "tests": 40},
    }
    text = report.render_call_path({"wait=False": counts, "bytecodes": bytecodes})
    assert "| wait=False | 14 | 36 | 60 |" in text
    assert "bytecodes" not in text.split("\n\n")[0]  # not a row of the first table
    assert "| call | total | flushkit | grpc | pymilvus | standard library | other |" in text
    assert "| bare RPC | 100 | 0 | 70 | 0 | 30 | 0 |" in text
    assert "| flushkit, default chain | 250 | 140 | 70 | 0 | 0 | 40 |" in text


def test_call_path_counts_a_calls_bytecodes_by_package() -> None:
    import textwrap

    import flushkit

    spec = importlib.util.spec_from_file_location("call_path", ROOT / "benchmarks" / "call_path.py")
    assert spec is not None and spec.loader is not None
    call_path = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(call_path)

    tracer = sys.gettrace()  # None, or coverage's: it is given back
    stdlib = call_path.bytecodes(lambda: textwrap.dedent("  a\n  b\n"))
    assert stdlib["standard library"] > 20  # dedent's own code
    assert "flushkit" not in stdlib
    ours = call_path.bytecodes(lambda: flushkit.RetryPolicy(attempts=2))
    assert ours["flushkit"] > 10  # the policy's checks
    assert sys.gettrace() is tracer  # the count's own tracer is gone afterwards
