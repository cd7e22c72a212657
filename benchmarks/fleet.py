"""A fleet of processes flushing one collection on a rate-limited real server: flushkit vs
pymilvus.

Starts the embedded Milvus 2.3.5 standalone server (the ``milvus`` package) with Milvus's
flush rate as a server-wide limit, ``quotaAndLimits.flushRate.enabled=true`` and
``flushRate.max=0.1``: one Flush every 10 s. Every Flush of every process queues for that
one slot; flushkit's fleet sharing lets a call that cannot send its Flush return once
another process's admitted Flush covered its writes (``GetFlushState(flush_ts=T)``,
``T`` from ``AllocTimestamp``), without a Flush of its own.

One collection (``id`` int64 primary key, a 4-dim float ``vector``, indexed and loaded),
created once. Each run spawns ``--processes`` processes (multiprocessing, spawn), each with
a ``MilvusClient`` of its own through a counting gRPC proxy on loopback
(benchmarks/_proxy.py: counts Flush RPCs, throttled answers, GetFlushState and
AllocTimestamp RPCs). Once all are ready they start staggered, evenly over ``--stagger``
seconds (6 processes over 1 s: 0.2 s apart), and each does ``--rounds`` rounds of: insert
one row, then flush the collection with a budget of ``--budget`` seconds:

* pymilvus: ``MilvusClient.flush(name, timeout=budget)`` (its retries on rate limiting;
  it always waits until the flush is persisted);
* flushkit: ``flushkit.Flusher(client).flush(name, timeout=budget, wait=True)``, one
  Flusher per process (``wait=True``, so that both clients wait for persistence;
  ``--no-wait``: flushkit's default, ``wait=False``).

Runs alternate, pymilvus then flushkit, ``--runs`` times each, every run more than the
server's 10 s window (``--gap``) after the previous one ended.

Reports per run: errors by type, latency p50 and max (all calls, errors included), Flush
RPCs (admitted, throttled), GetFlushState and AllocTimestamp RPCs, and calls by
``satisfied_by`` (flushkit: ``flush`` its own Flush, ``shared`` a Flush shared in its
process, ``covered`` another client's Flush; pymilvus: always its own, ``flush``) as a
table; every call (process, round, start, end, latency, error, satisfied_by, throttled,
...) with ``--json``; ``--plot``: each call's latency over its start time, coloured by
``satisfied_by`` (errors red), one panel per client and scenario.

Scenarios: ``--processes 6 --rounds 2 --stagger 1.0`` (the default) and ``--processes 24
--rounds 1 --stagger 1.0``, or ``--scenario six|twentyfour|both``.

    python benchmarks/fleet.py [--scenario six|twentyfour|both] [--processes 6] [--rounds 2]
        [--stagger 1.0] [--budget 90] [--runs 1] [--gap 12] [--no-wait] [--json FILE]
        [--plot FILE.png] [--clients pymilvus flushkit] [--trace-probes]

``--clients``: which clients run (default both). ``--trace-probes`` (diagnostics): each
flushkit process records its Flush answers and its probes (AllocTimestamp and
GetFlushState: T, flushed, status, error) with wall times, in its last call's ``events``
in the JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import queue
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from _proxy import CountingProxy
from pymilvus import MilvusClient

import flushkit
from flushkit._tools.standalone import standalone

RATE_LIMIT = {"quotaAndLimits.flushRate.enabled": "true", "quotaAndLimits.flushRate.max": "0.1"}
#: The server's window at RATE_LIMIT: one Flush per this many seconds.
WINDOW = 10.0
COLLECTION = "fleet"
CLIENTS = ("pymilvus", "flushkit")
SCENARIOS = {
    "six": {"processes": 6, "rounds": 2, "stagger": 1.0},
    "twentyfour": {"processes": 24, "rounds": 1, "stagger": 1.0},
}
#: Seconds a process may take to start (spawn, imports, connect) on a busy 2-core machine.
START_PATIENCE = 300.0
COLOURS = {"flush": "tab:blue", "shared": "tab:green", "covered": "tab:orange", "error": "red"}


def _quiet() -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)


def worker(process: int, settings: dict[str, Any], messages: Any, go: Any, base: Any) -> None:
    """One process of the fleet: connect, say ready, wait for ``go``, start at
    ``base + offset``, then ``rounds`` rounds of insert one row + flush. Puts
    ``("ready", process)``, then ``("done", process, calls)`` or ``("failed", process,
    traceback)`` on ``messages``."""
    calls: list[dict[str, Any]] = []
    try:
        _quiet()
        client = MilvusClient(uri=settings["uri"])
        flusher = flushkit.Flusher(client) if settings["client"] == "flushkit" else None
        events = _traced_probes() if settings.get("trace") else None
        messages.put(("ready", process, None))
        go.wait()
        time.sleep(max(0.0, base.value + settings["offset"] - time.time()))
        for round_ in range(settings["rounds"]):
            row_id = settings["first_id"] + round_
            client.insert(COLLECTION, [{"id": row_id, "vector": [0.1, 0.2, 0.3, 0.4]}])
            calls.append(_one_call(process, round_, client, flusher, settings))
        client.close()
        if events is not None:
            calls[-1]["events"] = events
        messages.put(("done", process, calls))
    except BaseException:
        messages.put(("failed", process, traceback.format_exc()))


def _traced_probes() -> list[list[Any]]:
    """Diagnostics (``--trace-probes``): record the process's Flush answers and probes
    (wall time, RPC, T's physical ms, flushed, status code, error) through the
    scheduler's private hooks: a benchmark may look inside, the library never does."""
    from flushkit import _scheduler

    events: list[list[Any]] = []
    probed, answered = _scheduler.Turn.probed, _scheduler.Turn.answered

    def traced_probed(turn: Any, response: Any, error: BaseException | None) -> None:
        _, method, _, ts, _ = turn.probing
        code = None if response is None else response.status.code
        got = getattr(response, "timestamp", None) if method == "AllocTimestamp" else None
        events.append(
            [
                time.time(),
                method,
                ts and ts >> 18,
                got and got >> 18,
                getattr(response, "flushed", None),
                code,
                error and repr(error)[:200],
            ]
        )
        probed(turn, response, error)

    def traced_answered(turn: Any, response: Any, error: BaseException | None) -> None:
        code = None if response is None else response.status.code
        events.append([time.time(), "Flush", None, None, None, code, error and repr(error)[:200]])
        answered(turn, response, error)

    _scheduler.Turn.probed = traced_probed  # type: ignore[method-assign]
    _scheduler.Turn.answered = traced_answered  # type: ignore[method-assign]
    return events


def _one_call(
    process: int,
    round_: int,
    client: MilvusClient,
    flusher: flushkit.Flusher | None,
    settings: dict[str, Any],
) -> dict[str, Any]:
    budget = settings["budget"]
    call: dict[str, Any] = {"process": process, "round": round_}
    start, began = time.time(), time.perf_counter()
    try:
        if flusher is None:
            client.flush(COLLECTION, timeout=budget)
            outcome: Any = None
        else:
            outcome = flusher.flush(COLLECTION, timeout=budget, wait=settings["wait"])
    except Exception as exc:
        outcome = exc
    latency = time.perf_counter() - began
    call.update(start=start, end=time.time(), latency=latency)
    if isinstance(outcome, Exception):
        call.update(
            error=type(outcome).__name__,
            message=str(outcome)[:300],
            satisfied_by=None,
            throttled=None,
        )
    elif outcome is None:  # pymilvus: its own Flush, always waited for
        call.update(error=None, satisfied_by="flush", throttled=None, persisted=True)
    else:
        call.update(
            error=None,
            satisfied_by=getattr(outcome, "satisfied_by", "flush"),
            throttled=getattr(outcome, "throttled", None),
            paced=getattr(outcome, "paced", None),
            flushing=getattr(outcome, "flushing", None),
            persisting=getattr(outcome, "persisting", None),
            persisted=outcome.persisted,
            attempts=outcome.attempts,
            coalesced=outcome.coalesced,
        )
    return call


def one_run(
    proxy: CountingProxy,
    client_kind: str,
    *,
    processes: int,
    rounds: int,
    stagger: float,
    budget: float,
    wait: bool,
    first_id: int,
    not_before: float,
    trace: bool = False,
) -> dict[str, Any]:
    """Spawn the fleet, release it at ``not_before`` (wall clock) or once all are ready,
    whichever is later; every call and the proxy's counts of the run."""
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    go, base = context.Event(), context.Value("d", 0.0)
    spacing = stagger / (processes - 1) if processes > 1 else 0.0
    fleet = []
    for process in range(processes):
        settings = {
            "uri": proxy.uri,
            "client": client_kind,
            "rounds": rounds,
            "budget": budget,
            "wait": wait,
            "offset": process * spacing,
            "first_id": first_id + process * 1000,
            "trace": trace,
        }
        fleet.append(
            context.Process(
                target=worker, args=(process, settings, messages, go, base), daemon=True
            )
        )
        fleet[-1].start()
    calls: list[dict[str, Any]] = []
    failures: list[str] = []
    pending = set(range(processes))
    starting = set(range(processes))

    def receive(patience: float) -> None:
        """Take the messages of ``patience`` seconds; a process that died silently fails."""
        deadline = time.monotonic() + patience
        while (starting if not go.is_set() else pending) and time.monotonic() < deadline:
            try:
                kind, process, payload = messages.get(timeout=1.0)
            except queue.Empty:
                for p in list(pending):
                    if not fleet[p].is_alive() and fleet[p].exitcode is not None:
                        time.sleep(1.0)  # its last message may still be in the pipe
                        if messages.empty() and p in pending:
                            failures.append(f"process {p} exited ({fleet[p].exitcode})")
                            pending.discard(p)
                            starting.discard(p)
                continue
            if kind == "ready":
                starting.discard(process)
                continue
            pending.discard(process)
            starting.discard(process)
            if kind == "done":
                calls.extend(payload)
            else:
                failures.append(f"process {process}: {payload}")

    try:
        receive(START_PATIENCE)
        if starting:
            failures += [f"process {p} not ready in {START_PATIENCE:.0f} s" for p in starting]
        time.sleep(max(0.0, not_before - time.time()))
        proxy.take()
        base.value = time.time() + 0.2
        go.set()
        receive(rounds * (budget + 60) + 60)
        failures += [f"process {p} did not finish" for p in pending]
        counts = proxy.take()
    finally:
        go.set()
        for member in fleet:
            member.join(timeout=10)
            if member.is_alive():
                member.kill()
    for call in calls:
        call["start"] -= base.value
        call["end"] -= base.value
    calls.sort(key=lambda c: (c["start"], c["process"]))
    return {
        "client": client_kind,
        "summary": summary(calls, counts, failures),
        "rpcs": dict(sorted(counts.items())),
        "failures": failures,
        "calls": calls,
    }


def summary(
    calls: list[dict[str, Any]], counts: Counter[str], failures: list[str]
) -> dict[str, Any]:
    latencies = sorted(c["latency"] for c in calls)
    throttled = [c["throttled"] for c in calls if c.get("throttled") is not None]
    return {
        "calls": len(calls),
        "errors": dict(Counter(c["error"] for c in calls if c["error"])),
        "p50_s": round(statistics.median(latencies), 2) if latencies else None,
        "max_s": round(latencies[-1], 2) if latencies else None,
        "last_end_s": round(max(c["end"] for c in calls), 2) if calls else None,
        "flush_rpcs": counts["flush_rpcs"],
        "admitted_flushes": counts["flush_rpcs"] - counts["rate_limited"] - counts["flush_failed"],
        "throttled_answers": counts["rate_limited"],
        "get_flush_state_rpcs": counts["GetFlushState"],
        "alloc_timestamp_rpcs": counts["AllocTimestamp"],
        "satisfied_by": dict(Counter(c["satisfied_by"] for c in calls if not c["error"])),
        "throttled_reported": sum(throttled) if throttled else None,
        "process_failures": len(failures),
    }


def measure(
    uri: str,
    scenarios: list[tuple[str, dict[str, Any]]],
    *,
    runs: int,
    budget: float,
    wait: bool,
    gap: float,
    clients: tuple[str, ...] = CLIENTS,
    trace: bool = False,
) -> list[dict[str, Any]]:
    """Every scenario: pymilvus and flushkit alternately, ``runs`` times each."""
    results: list[dict[str, Any]] = []
    with CountingProxy(uri.removeprefix("http://")) as proxy:
        setup = MilvusClient(uri=proxy.uri)
        try:
            if setup.has_collection(COLLECTION):
                setup.drop_collection(COLLECTION)
            setup.create_collection(COLLECTION, dimension=4)  # id + vector, indexed, loaded
        finally:
            setup.close()
        not_before = time.time() + gap  # nothing flushed yet; a full window anyway
        first_id = 1
        for scenario, shape in scenarios:
            for index in range(runs):
                for client_kind in clients:
                    run = one_run(
                        proxy,
                        client_kind,
                        budget=budget,
                        wait=wait,
                        trace=trace,
                        first_id=first_id,
                        not_before=not_before,
                        **shape,
                    )
                    not_before = time.time() + gap
                    first_id += 1_000_000
                    run = {"scenario": scenario, **shape, "run": index + 1, **run}
                    results.append(run)
                    print(_row(run), file=sys.stderr, flush=True)
    return results


HEADER = (
    f"{'scenario':<10} {'run':>3} {'client':<8} {'calls':>5} {'errors':<24} {'p50 s':>6} "
    f"{'max s':>6} {'Flush':>5} {'admit':>5} {'thrtl':>5} {'GFS':>5} {'Alloc':>5}  satisfied_by"
)


def _row(run: dict[str, Any]) -> str:
    s = run["summary"]
    errors = ", ".join(f"{k} {v}" for k, v in s["errors"].items()) or "-"
    by = ", ".join(f"{k} {v}" for k, v in sorted(s["satisfied_by"].items())) or "-"
    if s["process_failures"]:
        by += f"  ({s['process_failures']} processes failed)"
    return (
        f"{run['scenario']:<10} {run['run']:>3} {run['client']:<8} {s['calls']:>5} "
        f"{errors:<24} {_num(s['p50_s']):>6} {_num(s['max_s']):>6} {s['flush_rpcs']:>5} "
        f"{s['admitted_flushes']:>5} {s['throttled_answers']:>5} "
        f"{s['get_flush_state_rpcs']:>5} {s['alloc_timestamp_rpcs']:>5}  {by}"
    )


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Each call's latency over its start time, coloured by satisfied_by (errors red):
    one row of panels per scenario, one panel per client, runs by marker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(r["scenario"] for r in results))
    clients = list(dict.fromkeys(r["client"] for r in results))
    figure, axes = plt.subplots(
        len(scenarios),
        len(clients),
        figsize=(6 * len(clients), 4 * len(scenarios)),
        squeeze=False,
        sharex="row",
        sharey="row",
    )
    markers = "os^Dv<>"
    for row, scenario in enumerate(scenarios):
        for column, client_kind in enumerate(clients):
            ax = axes[row][column]
            seen: set[str] = set()
            for run in results:
                if run["scenario"] != scenario or run["client"] != client_kind:
                    continue
                for call in run["calls"]:
                    kind = "error" if call["error"] else (call["satisfied_by"] or "flush")
                    label = kind if kind not in seen else None
                    seen.add(kind)
                    ax.scatter(
                        call["start"],
                        call["latency"],
                        s=22,
                        label=label,
                        color=COLOURS.get(kind, "tab:gray"),
                        marker=markers[(run["run"] - 1) % len(markers)],
                    )
            ax.set_title(f"{client_kind}: {scenario}")
            ax.set_xlabel("call start (s after release)")
            ax.set_ylabel("latency (s)")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            if seen:
                ax.legend(fontsize="small")
    figure.suptitle(
        "One collection, one Flush per 10 s server-wide (Milvus 2.3.5): each call's latency"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=[*SCENARIOS, "both"])
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stagger", type=float, default=1.0, help="seconds, first to last")
    parser.add_argument("--budget", type=float, default=90.0, help="seconds per flush call")
    parser.add_argument("--runs", type=int, default=1, help="runs of each client, alternating")
    parser.add_argument(
        "--gap", type=float, default=WINDOW + 2, help="seconds between runs (> the window)"
    )
    parser.add_argument("--no-wait", action="store_true", help="flushkit with wait=False")
    parser.add_argument("--clients", nargs="+", choices=CLIENTS, default=list(CLIENTS))
    parser.add_argument(
        "--trace-probes", action="store_true", help="record flushkit's probes (diagnostics)"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    _quiet()
    if args.scenario == "both":
        scenarios = list(SCENARIOS.items())
    elif args.scenario:
        scenarios = [(args.scenario, SCENARIOS[args.scenario])]
    else:
        shape = {"processes": args.processes, "rounds": args.rounds, "stagger": args.stagger}
        named = [name for name, known in SCENARIOS.items() if known == shape]
        scenarios = [(named[0] if named else "custom", shape)]
    with tempfile.TemporaryDirectory() as base, standalone(Path(base), **RATE_LIMIT) as server:
        print(HEADER, file=sys.stderr, flush=True)
        results = measure(
            server.uri,
            scenarios,
            runs=args.runs,
            budget=args.budget,
            wait=not args.no_wait,
            gap=args.gap,
            clients=tuple(args.clients),
            trace=args.trace_probes,
        )
    print(HEADER)
    for run in results:
        print(_row(run))
    report = {
        "rate_limit": RATE_LIMIT,
        "budget_s": args.budget,
        "flushkit_wait": not args.no_wait,
        "versions": {
            "flushkit": flushkit.__version__,
            "pymilvus": _version("pymilvus"),
            "milvus": _version("milvus"),
        },
        "runs": results,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot:
        plot(results, args.plot)
    return 0


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
