"""Run the benchmarks and regenerate ``docs/benchmarks.md`` from their results.

One command regenerates every table and plot of the benchmarks page::

    python benchmarks/report.py                  # the Milvus Lite / test-server set (~10 min)
    python benchmarks/report.py --with-server    # also the real Milvus 2.3.5 standalone ones
    python benchmarks/report.py --only soak-asyncio fail-fast
    python benchmarks/report.py --render-only    # re-render the page from docs/results/
    python benchmarks/report.py --render-only --check   # exit 1 if the page is stale
    python benchmarks/report.py --quick          # smoke sizes (figures not for the page)

Each benchmark runs as a subprocess with the fixed arguments of ``BENCHMARKS`` below and
writes its figures with ``--json``; this script wraps them with what they were measured on
and writes ``docs/results/<benchmark>.json`` (one file per benchmark, overwritten on each
run)::

    {"benchmark": name, "command": [...], "date": ISO date-time UTC,
     "machine": {"cpus", "cpu_model", "platform", "python"},
     "versions": {"flushkit", "pymilvus", "grpcio", "milvus_lite", "milvus", ...},
     "results": <what the script wrote with --json>}

Benchmarks not run keep their previous results file. The page is the hand-written
template ``benchmarks/benchmarks_page.md`` with each ``<!-- results: NAME -->`` line
replaced by the tables built from ``docs/results/NAME.json`` (and the date, machine,
versions and command of that run), or, without a results file, by how to produce it.
Plots go to ``docs/img/`` under stable names (``latency-lite.png``, ``fleet.png``, ...).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
IMG = ROOT / "docs" / "img"
PAGE = ROOT / "docs" / "benchmarks.md"
TEMPLATE = Path(__file__).resolve().parent / "benchmarks_page.md"

#: Distributions whose versions each results file records (``None`` when not installed).
VERSIONED = {
    "flushkit": "flushkit",
    "pymilvus": "pymilvus",
    "grpcio": "grpcio",
    "milvus_lite": "milvus-lite",
    "milvus": "milvus",
    "anyio": "anyio",
    "trio": "trio",
    "structlog": "structlog",
    "opentelemetry_sdk": "opentelemetry-sdk",
}


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: one script run, one results file."""

    name: str
    script: str
    args: tuple[str, ...]
    quick: tuple[str, ...]
    server: bool = False
    #: Extra arguments that write plots (paths relative to the repository).
    plots: tuple[str, ...] = field(default=())

    def command(self, quick: bool) -> list[str]:
        """The command line, ``python`` standing for this interpreter, without ``--json``."""
        return [
            "python",
            f"benchmarks/{self.script}",
            *(self.quick if quick else self.args),
            *self.plots,
        ]


#: The benchmarks of the page, in the order they run. Sizes: moderate, so that the
#: Lite / test-server set takes about 10 minutes on a 2-core machine.
BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("call-path", "call_path.py", (), ()),
    Benchmark(
        "hot-path",
        "hot_path.py",
        ("--rounds", "2000", "--repeats", "3"),
        ("--rounds", "100", "--repeats", "1", "--warm-calls", "2000", "--warm-runs", "1"),
    ),
    Benchmark(
        "overhead-lite",
        "overhead_lite.py",
        ("--rounds", "2000", "--repeats", "3"),
        ("--rounds", "100", "--repeats", "1", "--warm-calls", "2000"),
    ),
    Benchmark(
        "latency-lite",
        "latency.py",
        ("--server", "lite", "--calls", "2000", "--repeats", "3"),
        ("--server", "lite", "--calls", "100", "--repeats", "1", "--seconds", "0.3"),
        plots=("--plots", "docs/img"),
    ),
    Benchmark(
        "async-bridge-lite",
        "async_bridge.py",
        ("--server", "lite"),
        ("--server", "lite", "--blocks", "2", "--calls", "50", "--runs", "2", "--seconds", "0.3"),
    ),
    Benchmark("fail-fast", "fail_fast.py", ("--calls", "200"), ("--calls", "20")),
    Benchmark("fault-overrun", "fault_overrun.py", ("--repeats", "2"), ("--repeats", "1")),
    Benchmark(
        "soak-asyncio",
        "soak.py",
        ("--calls", "10000", "--concurrency", "64", "--backend", "asyncio"),
        ("--calls", "500", "--concurrency", "64", "--backend", "asyncio"),
    ),
    Benchmark(
        "soak-trio",
        "soak.py",
        ("--calls", "10000", "--concurrency", "64", "--backend", "trio"),
        ("--calls", "500", "--concurrency", "64", "--backend", "trio"),
    ),
    Benchmark(
        "soak-faults-only",
        "soak.py",
        ("--calls", "10000", "--concurrency", "64", "--backend", "asyncio", "--faults-only"),
        ("--calls", "500", "--concurrency", "64", "--backend", "asyncio", "--faults-only"),
    ),
    # The real Milvus 2.3.5 standalone server (``--with-server``).
    Benchmark(
        "latency-standalone",
        "latency.py",
        ("--server", "standalone", "--calls", "2000", "--repeats", "3"),
        ("--server", "standalone", "--calls", "100", "--repeats", "1", "--seconds", "0.3"),
        server=True,
        plots=("--plots", "docs/img"),
    ),
    Benchmark(
        "async-bridge-standalone",
        "async_bridge.py",
        ("--server", "standalone", "--runs", "8"),
        ("--server", "standalone", "--blocks", "2", "--calls", "50", "--runs", "2"),
        server=True,
    ),
    Benchmark(
        "wait-real-server",
        "wait_real_server.py",
        ("--idle-rounds", "30", "--insert-rounds", "4"),
        ("--idle-rounds", "3", "--insert-rounds", "1"),
        server=True,
    ),
    Benchmark(
        "coalescing-rate-limit",
        "coalescing_rate_limit.py",
        ("--scenario", "burst", "--rounds", "3"),
        ("--scenario", "burst", "--rounds", "1", "--callers", "8"),
        server=True,
    ),
    Benchmark(
        "rate-limit-arrivals",
        "coalescing_rate_limit.py",
        ("--scenario", "arrivals", "--rounds", "1"),
        ("--scenario", "arrivals", "--rounds", "1", "--callers", "8"),
        server=True,
    ),
    Benchmark(
        "fleet",
        "fleet.py",
        ("--scenario", "both", "--runs", "1"),
        ("--scenario", "six", "--runs", "1", "--processes", "2", "--rounds", "1"),
        server=True,
        plots=("--plot", "docs/img/fleet.png"),
    ),
)
BY_NAME = {bench.name: bench for bench in BENCHMARKS}
#: Sections whose results another tool writes (it needs what this script cannot know,
#: such as the source tree of the version before a change), with the command that does.
RECORDED = {
    "hot-path-ab": 'python benchmarks/ab.py --before <old>/src --record "<what each side is>"',
}


# --- running -------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for key, distribution in VERSIONED.items():
        try:
            found[key] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            found[key] = None
    return found


def run_one(bench: Benchmark, quick: bool, img_dir: Path = IMG) -> dict[str, Any]:
    """Run one benchmark; its results wrapped with the metadata (raises on failure)."""
    command = bench.command(quick)
    if img_dir != IMG:  # --quick and --results-dir: leave docs/img/ alone
        command = [arg.replace("docs/img", str(img_dir)) for arg in command]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        argv = [sys.executable, *command[1:], "--json", str(out)]
        started = datetime.datetime.now(datetime.timezone.utc)
        clock = time.monotonic()
        print(f"[report] {bench.name}: {' '.join(command)}", flush=True)
        done = subprocess.run(argv, cwd=ROOT, check=False)
        took = time.monotonic() - clock
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"{bench.name} exited {done.returncode}")
        results = json.loads(out.read_text())
    print(f"[report] {bench.name}: {took:.0f} s", flush=True)
    return wrap(bench.name, command, started, took, results, quick=quick)


def wrap(
    name: str,
    command: list[str],
    started: datetime.datetime,
    seconds: float,
    results: Any,
    *,
    quick: bool = False,
    note: str | None = None,
) -> dict[str, Any]:
    """A benchmark's results with what they were measured on: a results file's content."""
    wrapped = {
        "benchmark": name,
        "command": command,
        "date": started.replace(microsecond=0).isoformat(),
        "seconds": round(seconds, 1),
        "quick": quick,
        "machine": machine(),
        "versions": versions(),
        "results": results,
    }
    if note is not None:
        wrapped["note"] = note
    return wrapped


def run_all(selected: Iterable[Benchmark], quick: bool, results_dir: Path) -> list[str]:
    """Run the benchmarks; the names of those that failed."""
    results_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    for bench in selected:
        try:
            wrapped = run_one(bench, quick, IMG if results_dir == RESULTS else results_dir)
        except RuntimeError as error:
            print(f"[report] FAILED {error}; its previous results are kept", flush=True)
            failed.append(bench.name)
            continue
        path = results_dir / f"{bench.name}.json"
        path.write_text(json.dumps(wrapped, indent=2) + "\n")
    return failed


# --- rendering -----------------------------------------------------------------------


def fmt(value: Any, digits: int = 1, sign: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:+,}" if sign else f"{value:,}"
    return f"{value:+,.{digits}f}" if sign else f"{value:,.{digits}f}"


def table(header: list[str], rows: list[list[str]], right: Iterable[int] = ()) -> str:
    aligned = set(right)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if i in aligned else "---" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def meta_line(name: str, wrapped: dict[str, Any]) -> str:
    machine_ = wrapped.get("machine", {})
    versions_ = wrapped.get("versions", {})
    listed = ", ".join(
        f"{key.replace('_', '-')} {value}"
        for key, value in versions_.items()
        if value and key in ("flushkit", "pymilvus", "grpcio", "milvus_lite", "milvus")
    )
    date = str(wrapped.get("date", "?")).replace("T", " ").replace("+00:00", " UTC")
    known = [
        str(value)
        for value in (
            machine_.get("cpu_model"),
            f"{machine_.get('cpus')} CPUs" if machine_.get("cpus") else None,
            machine_.get("platform"),
            f"Python {machine_['python']}"
            if machine_.get("python") not in (None, "not recorded")
            else None,
        )
        if value and value != "not recorded"
    ]
    where = ", ".join(known) if known else "a machine not recorded"
    command = " ".join(wrapped.get("command", []))
    lines = [
        f"*Measured {date} on {where}; {listed}.*",
        f"*Command: `{command}`; results: `docs/results/{name}.json`.*",
    ]
    if wrapped.get("note"):
        lines.append(f"*{wrapped['note']}*")
    if wrapped.get("quick"):
        lines.append("*Smoke sizes (`--quick`): not figures to read.*")
    return "\n".join(lines)


def missing(bench: Benchmark | None, name: str) -> str:
    if name in RECORDED:
        return f"*No results yet: `{RECORDED[name]}` writes `docs/results/{name}.json`.*"
    flag = " --with-server" if bench is not None and bench.server else ""
    return (
        f"*No results yet: `python benchmarks/report.py{flag} --only {name}` "
        f"writes `docs/results/{name}.json` and this section.*"
    )


def render_call_path(results: dict[str, Any]) -> str:
    rows = [
        [case, fmt(c["modules"]), fmt(c["functions"]), fmt(c["entries"])]
        for case, c in results.items()
        if case != "bytecodes"
    ]
    text = table(["flush", "modules", "functions", "entries"], rows, right=(1, 2, 3))
    cases = results.get("bytecodes")
    if cases:
        packages = ["flushkit", "grpc", "pymilvus", "standard library"]
        rows = []
        for name, counts in cases.items():
            other = counts["total"] - sum(counts.get(p, 0) for p in packages)
            rows.append(
                [name, fmt(counts["total"]), *(fmt(counts.get(p, 0)) for p in packages), fmt(other)]
            )
        text += (
            "\n\nPython bytecodes one warm call executes (wait=False), by the package of the "
            "code:\n\n"
            + table(["call", "total", *packages, "other"], rows, right=(1, 2, 3, 4, 5, 6))
        )
    return text


def render_hot_path(results: dict[str, Any]) -> str:
    figures = results["figures"]
    per_repeat = results.get("per_repeat", {})
    rows = []
    for name, value in figures.items():
        runs = per_repeat.get(name, [])
        digits = 3 if ("ratio" in name or "x loop" in name) else 2 if abs(value) < 100 else 1
        rows.append([name, fmt(value, digits), ", ".join(fmt(v, digits) for v in runs) or "-"])
    text = table(["figure", "median", "repeats"], rows, right=(1,))
    problems = results.get("checks", {}).get("problems")
    text += f"\n\nChecks: {'; '.join(problems) if problems else 'ok'}."
    return text


def render_overhead_lite(results: dict[str, Any]) -> str:
    rows = [
        [name, fmt(v["median_us"]), fmt(v["paired_diff_us"], sign=True), fmt(v["ratio"], 3)]
        for name, v in results.items()
        if isinstance(v, dict) and "median_us" in v
    ]
    parts = [table(["variant", "median us", "paired diff us", "ratio"], rows, right=(1, 2, 3))]
    warm = results.get("warm_cpu_us", {})
    situ = results.get("in_situ_us", {})
    if warm:
        loop = warm.get("result loop")
        rows = [
            [
                name,
                fmt(us, 2),
                fmt(us / loop, 1) if loop else "-",
                fmt(situ.get(name), 2) if name in situ else "-",
            ]
            for name, us in warm.items()
        ]
        parts.append(
            "Warm CPU per call (transport replaced) and in situ (right after a bare RPC):\n\n"
            + table(["variant", "warm us", "x result loop", "in situ us"], rows, (1, 2, 3))
        )
    alone = results.get("in_situ_alone_us", {})
    alone_full = results.get("in_situ_alone_full_telemetry_us", {})
    if alone and "empty chain" in alone:
        rows = [
            [
                name,
                fmt(us, 2),
                fmt(us - alone["empty chain"], sign=True),
                fmt(alone_full.get(name), 2),
                fmt(alone_full[name] - alone_full["empty chain"], sign=True)
                if name in alone_full and "empty chain" in alone_full
                else "-",
            ]
            for name, us in alone.items()
        ]
        parts.append(
            "Each default middleware alone in the chain, in situ (quiet, and with full "
            "telemetry):\n\n"
            + table(["chain", "quiet us", "+ us", "full us", "+ us"], rows, right=(1, 2, 3, 4))
        )
    piece_warm = results.get("pieces_warm_us", {})
    piece_situ = results.get("pieces_in_situ_us", {})
    if piece_warm:
        rows = [
            [name, fmt(us, 2), fmt(piece_situ.get(name), 2)] for name, us in piece_warm.items()
        ]
        parts.append(
            "Two pieces of every call's path, alone: warm, and in situ (right after a bare "
            "RPC):\n\n" + table(["piece", "warm us", "in situ us"], rows, right=(1, 2))
        )
    return "\n\n".join(parts)


LATENCY_BASELINES = {"blocking": "bare", "asyncio": "bare grpc.aio", "trio": "bare blocking"}


def render_latency(results: list[dict[str, Any]]) -> str:
    parts = []
    if len(results) > 1:
        parts.append(f"The last of the {len(results)} runs in the results file.")
    for report in results[-1:]:
        rows = []
        for runtime in ("blocking", "asyncio", "trio"):
            for variant, v in report.get(runtime, {}).items():
                rows.append(
                    [
                        runtime,
                        variant,
                        fmt(v["median_us"]),
                        fmt(v["paired_diff_us"], sign=True),
                        fmt(v["ratio"], 3),
                    ]
                )
        parts.append(
            f"Per call, {report['server']}: {report['repeats']} repeats of "
            f"{fmt(report['calls'])} paired rounds (baselines: blocking `bare`, asyncio "
            "`bare grpc.aio`, trio `bare blocking`):\n\n"
            + table(
                ["runtime", "variant", "median us", "paired diff us", "ratio"],
                rows,
                right=(2, 3, 4),
            )
        )
        throughput = report.get("throughput", {})
        if throughput:
            variants = list(next(iter(throughput.values())))
            rows = [
                [fmt(int(callers)), *(fmt(rate.get(v), 0) for v in variants)]
                for callers, rate in throughput.items()
            ]
            parts.append(
                f"Throughput, {report['server']}, calls/s:\n\n"
                + table(["callers", *variants], rows, right=range(len(variants) + 1))
            )
    return "\n\n".join(parts)


def render_async_bridge(results: dict[str, Any]) -> str:
    rows = []
    for runtime in ("asyncio", "trio"):
        consecutive = results.get(f"{runtime} consecutive", {})
        on, off = consecutive.get("linger on", {}), consecutive.get("linger off", {})
        callers = results.get(f"{runtime} 64 coalescing callers", {})
        batched, per = callers.get("batched", {}), callers.get("per waiter", {})
        rows.append(
            [
                runtime,
                f"{fmt(on.get('median_us'))} / {fmt(off.get('median_us'))} us",
                f"{fmt(on.get('threads_started'))} / {fmt(off.get('threads_started'))} "
                f"(of {fmt(on.get('calls'))})",
                f"{fmt(batched.get('median_calls_per_s'), 0)} / "
                f"{fmt(per.get('median_calls_per_s'), 0)}",
            ]
        )
    return table(
        [
            "runtime",
            "consecutive calls, median, linger on / off",
            "threads started, linger on / off",
            "64 coalescing callers, calls/s, batched / one wake-up per waiter",
        ],
        rows,
        right=(1, 2, 3),
    )


def render_fail_fast(results: dict[str, Any]) -> str:
    rows = [
        [
            runtime,
            f"{fmt(v['failed_fast'])} of {fmt(v['calls'])}",
            fmt(v["median_ms"], 3),
            fmt(v["slowest_ms"], 3),
            fmt(v["flush_rpcs"]),
        ]
        for runtime, v in results["runtimes"].items()
    ]
    return table(
        ["runtime", "failed fast", "median ms", "slowest ms", "Flush RPCs sent"],
        rows,
        right=(1, 2, 3, 4),
    )


def render_fault_overrun(results: dict[str, Any]) -> str:
    rows = [
        [
            "`AsyncMilvusClient`" if runtime == "aio" else runtime,
            f"{fmt(v['timeouts'])} of {fmt(v['calls'])}",
            fmt(v["median_overrun_ms"]),
            fmt(v["worst_overrun_ms"]),
            v["worst_fault"],
            ", ".join(v["past_budget_otherwise"]) or "none",
        ]
        for runtime, v in results["runtimes"].items()
    ]
    text = table(
        [
            "runtime",
            "ended at the budget",
            "median ms past",
            "worst ms past",
            "worst fault",
            "other outcomes past the budget",
        ],
        rows,
        right=(1, 2, 3),
    )
    wrong = results.get("unexpected_outcomes", [])
    text += (
        f"\n\nBudget {fmt(results['budget_s'])} s; {fmt(results['repeats'])} x "
        f"{fmt(results['faults'])} faults x {len(results['budgets'])} budgets "
        f"({', '.join(results['budgets'])}) per runtime; unexpected outcomes: "
        f"{'; '.join(wrong) if wrong else 'none'}."
    )
    return text


def render_soak(results: dict[str, Any]) -> str:
    outcomes = ", ".join(f"{k} {fmt(v)}" for k, v in results["outcomes"].items())
    rows = [
        [
            "calls, callers, runtime",
            f"{fmt(results['calls'])}, {results['concurrency']}, {results['backend']}",
        ],
        ["rate limiter", "none (faults only)" if results["faults_only"] else "5 Flushes/s"],
        [
            "time, throughput",
            f"{fmt(results['seconds'])} s, {fmt(results['calls_per_s'], 0)} calls/s",
        ],
        ["outcomes", outcomes],
        ["coalesced calls", fmt(results["coalesced"])],
        ["throttled answers waited out", fmt(results["throttled"])],
        ["undocumented outcomes, hung calls", f"{results['undocumented']}, {results['hung']}"],
        [
            "slowest call",
            f"{fmt(results['slowest_ms'], 0)} ms (budget {fmt(results['budget_s'] * 1000, 0)} ms)",
        ],
        ["lanes left in use", fmt(results["calls_left"])],
        [
            "resident memory, 20% -> end",
            f"{fmt(results['rss_start_mb'])} -> {fmt(results['rss_end_mb'])} MiB",
        ],
    ]
    return table(["soak", "figure"], rows)


def render_wait(results: dict[str, Any]) -> str:
    rows = []
    for phase in ("idle", "inserts"):
        ratio = results.get(f"{phase} ratio", {})
        rows.append(
            [
                "idle collection" if phase == "idle" else "after inserts",
                fmt(results[f"{phase} pymilvus"]["n"]),
                fmt(results[f"{phase} pymilvus"]["median_ms"]),
                fmt(results[f"{phase} flushkit"]["median_ms"]),
                fmt(results[f"{phase} floor"]["median_ms"]),
                fmt(ratio.get("flushkit/floor"), 3),
                fmt(ratio.get("flushkit GetFlushState RPCs per wait (median)")),
            ]
        )
    return table(
        [
            "",
            "waits",
            "pymilvus ms",
            "flushkit ms",
            "floor ms",
            "flushkit / floor",
            "GetFlushState RPCs per wait",
        ],
        rows,
        right=(1, 2, 3, 4, 5, 6),
    )


VARIANT_NAMES = {
    "flushkit-blocking": "flushkit blocking, threads",
    "flushkit-asyncio": "flushkit asyncio, tasks",
    "flushkit-trio": "flushkit trio, tasks",
    "pymilvus": "pymilvus `MilvusClient.flush`, threads",
}


def render_rate_limit(results: dict[str, Any]) -> str:
    def errors(runs: list[dict[str, Any]]) -> str:
        counts = [sum(r["errors"].values()) for r in runs]
        kinds = sorted({k for r in runs for k in r["errors"]})
        return ", ".join(map(str, counts)) + (f" ({', '.join(kinds)})" if kinds else "")

    def each(runs: list[dict[str, Any]], key: str) -> str:
        return ", ".join(fmt(r.get(key)) for r in runs)

    rows = []
    for variant, runs in results["runs"].items():
        flushkit_ = variant.startswith("flushkit")
        rows.append(
            [
                VARIANT_NAMES.get(variant, variant),
                errors(runs),
                each(runs, "flush_rpcs"),
                each(runs, "rate_limited_answers"),
                each(runs, "coalesced_calls") if flushkit_ else "-",
                " / ".join(fmt(r["median_ms"] / 1000, 2) for r in runs) + " s",
                fmt(max(r["max_ms"] for r in runs) / 1000, 2) + " s",
            ]
        )
    limit = results.get("rate_limit", {})
    text = table(
        [
            "variant (per run)",
            "errors",
            "Flush RPCs",
            "throttled answers",
            "coalesced calls",
            "median call",
            "slowest call",
        ],
        rows,
        right=(1, 2, 3, 4, 5, 6),
    )
    settings = ", ".join(f"`{k}={v}`" for k, v in limit.items())
    return text + f"\n\n{fmt(results['callers'])} callers; server: {settings}."


def render_fleet(results: dict[str, Any]) -> str:
    scenario_names = {"six": "6 x 2", "twentyfour": "24 x 1"}
    rows = []
    for run in results["runs"]:
        s = run["summary"]
        errors = sum(s["errors"].values())
        kinds = ", ".join(sorted(s["errors"]))
        satisfied = ", ".join(
            f"{'own Flush' if k == 'flush' else k} {v}"
            for k, v in sorted(s["satisfied_by"].items())
        )
        rows.append(
            [
                scenario_names.get(run["scenario"], run["scenario"]),
                fmt(run["run"]),
                run["client"],
                f"{errors} ({kinds})" if errors else "0",
                f"{fmt(s['p50_s'])} / {fmt(s['max_s'])} s",
                f"{fmt(s['flush_rpcs'])} ({fmt(s['throttled_answers'])})",
                fmt(s["get_flush_state_rpcs"]),
                fmt(s["alloc_timestamp_rpcs"]),
                satisfied,
            ]
        )
    return table(
        [
            "scenario",
            "run",
            "client",
            "errors",
            "latency p50 / max",
            "Flush RPCs (throttled)",
            "GetFlushState",
            "AllocTimestamp",
            "satisfied by",
        ],
        rows,
        right=(1, 6, 7),
    )


def render_hot_path_ab(results: dict[str, Any]) -> str:
    """``benchmarks/ab.py``'s table: each figure's median on each side, and the change."""
    rows = []
    for name, row in results["table"].items():
        ratio_like = "ratio" in name or "x loop" in name
        digits = 3 if ratio_like else 1
        rows.append(
            [
                name,
                fmt(row["before"], digits),
                fmt(row["after"], digits),
                fmt(row["after - before"], digits, sign=True),
                fmt(row["after / before"], 3),
            ]
        )
    text = table(
        ["figure", "before", "after", "after - before", "after / before"], rows, (1, 2, 3, 4)
    )
    pairs = results.get("pairs", "?")
    return f"Medians over {pairs} runs of each side, alternating (the note says which).\n\n{text}"


RENDERERS: dict[str, Callable[[Any], str]] = {
    "call-path": render_call_path,
    "hot-path": render_hot_path,
    "hot-path-ab": render_hot_path_ab,
    "overhead-lite": render_overhead_lite,
    "latency-lite": render_latency,
    "latency-standalone": render_latency,
    "async-bridge-lite": render_async_bridge,
    "async-bridge-standalone": render_async_bridge,
    "fail-fast": render_fail_fast,
    "fault-overrun": render_fault_overrun,
    "soak-asyncio": render_soak,
    "soak-trio": render_soak,
    "soak-faults-only": render_soak,
    "wait-real-server": render_wait,
    "coalescing-rate-limit": render_rate_limit,
    "rate-limit-arrivals": render_rate_limit,
    "fleet": render_fleet,
}

#: Plots each benchmark writes to docs/img/, shown under its tables when present.
PLOTS = {
    "latency-lite": [("latency-lite.png", "Latency CDF, Milvus Lite")],
    "latency-standalone": [("latency-standalone.png", "Latency CDF, standalone 2.3.5")],
    "fleet": [("fleet.png", "each call's latency over its start, by how it was satisfied")],
}

PLACEHOLDER = re.compile(r"^<!-- results: ([a-z0-9-]+) -->$", re.MULTILINE)


def render_section(name: str, wrapped: dict[str, Any] | None, img_dir: Path = IMG) -> str:
    """The markdown for one ``<!-- results: NAME -->`` placeholder."""
    bench = BY_NAME.get(name)
    if wrapped is None:
        return missing(bench, name)
    body = RENDERERS.get(name, render_generic)(wrapped["results"])
    parts = [meta_line(name, wrapped), body]
    for file, alt in PLOTS.get(name, []):
        if (img_dir / file).exists():
            parts.append(f"![{alt}](img/{file})")
    return "\n\n".join(parts)


def render_generic(results: Any) -> str:
    return "```json\n" + json.dumps(results, indent=2)[:4000] + "\n```"


def load_results(results_dir: Path) -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(results_dir.glob("*.json"))}


def render_page(template: str, results: dict[str, dict[str, Any]], img_dir: Path = IMG) -> str:
    """The page: the template with each placeholder replaced by its section."""

    def section(match: re.Match[str]) -> str:
        return render_section(match.group(1), results.get(match.group(1)), img_dir)

    page = PLACEHOLDER.sub(section, template)
    return page.rstrip("\n") + "\n"


def summary_seconds(results: dict[str, dict[str, Any]]) -> float:
    return sum(r.get("seconds", 0) for r in results.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(BY_NAME))
    parser.add_argument("--render-only", action="store_true", help="run nothing")
    parser.add_argument(
        "--check",
        action="store_true",
        help="with --render-only: exit 1 "
        "if docs/benchmarks.md differs from what the results render",
    )
    parser.add_argument("--quick", action="store_true", help="smoke sizes")
    parser.add_argument(
        "--with-server",
        action="store_true",
        help="also the benchmarks on the real Milvus 2.3.5 standalone server",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--results-dir",
        type=Path,
        help="default: docs/results (with "
        "--quick: a temporary directory, the page written there too)",
    )
    args = parser.parse_args(argv)

    if args.list:
        for bench in BENCHMARKS:
            flag = "  (--with-server)" if bench.server else ""
            print(f"{bench.name:<24} {' '.join(bench.command(False))}{flag}")
        return 0
    failed: list[str] = []
    results_dir, page_path = args.results_dir or RESULTS, PAGE
    if args.quick and not args.results_dir:
        results_dir = Path(tempfile.mkdtemp(prefix="flushkit-bench-quick-"))
    if results_dir != RESULTS:
        page_path = results_dir / "benchmarks.md"
    if not args.render_only:
        if args.only:
            selected = [BY_NAME[name] for name in args.only]
        else:
            selected = [b for b in BENCHMARKS if args.with_server or not b.server]
        skipped = [b.name for b in BENCHMARKS if b not in selected]
        if skipped:
            print(f"[report] not run (previous results kept): {', '.join(skipped)}")
        clock = time.monotonic()
        failed = run_all(selected, args.quick, results_dir)
        print(f"[report] ran {len(selected)} benchmarks in {time.monotonic() - clock:.0f} s")
    page = render_page(TEMPLATE.read_text(), load_results(results_dir))
    if args.check:
        if page_path.read_text() != page:
            print(
                "docs/benchmarks.md differs from what docs/results/ renders: run "
                "python benchmarks/report.py --render-only",
                file=sys.stderr,
            )
            return 1
        print("docs/benchmarks.md matches docs/results/")
        return 0
    page_path.write_text(page)
    print(f"[report] wrote {page_path}")
    if failed:
        print(f"[report] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
