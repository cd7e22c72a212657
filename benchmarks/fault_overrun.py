"""How far past its budget a call of the fault matrix ends.

The fault matrix of ``tests/test_faults.py`` (every fault x blocking, asyncio, trio and
AsyncMilvusClient x a per-call budget and the flusher's), ``--repeats`` times, each call
with a 0.6 s budget against flushkit.testing's server in this process. The tests check
each outcome and only that a call ends; this prints how far past the budget they end:
the median and the worst overrun per runtime of the calls that ran into their budget
(``FlushTimeoutError``), and any other call that ended past it. Exit code 1 when an
outcome differs from the documented one (the figures are not judged).

    python benchmarks/fault_overrun.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests package

from tests.helpers import RUNTIMES
from tests.test_faults import (
    BUDGET,
    BUDGET_FROM,
    FAULTS,
    closed_address,
    outcomes_of,
    own_client_of,
    run_fault,
    silent_listener,
)

import flushkit
from flushkit.testing import MilvusTestServer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    overruns: dict[str, list[tuple[float, str, bool]]] = defaultdict(list)
    wrong: list[str] = []
    with MilvusTestServer() as server, silent_listener() as silent:
        dead = closed_address()
        for _ in range(args.repeats):
            for runtime in RUNTIMES:
                for fault in FAULTS:
                    for budget_from in BUDGET_FROM:
                        server.reset()
                        with own_client_of(server) as client:
                            run = run_fault(
                                fault, budget_from, runtime, server, client, dead, silent
                            )
                        timeout = isinstance(run.outcome, flushkit.FlushTimeoutError)
                        overruns[runtime].append((run.took - BUDGET, fault.name, timeout))
                        expected = outcomes_of(fault, runtime)
                        if (None if run.outcome is None else type(run.outcome)) not in expected:
                            wrong.append(f"{runtime} {fault.name} ({budget_from}): {run.outcome!r}")
    print(f"budget {BUDGET} s, {args.repeats} x {len(FAULTS)} faults x {len(BUDGET_FROM)} budgets")
    print("overrun: end - budget, of the calls that ended at their budget (FlushTimeoutError)")
    print(f"{'runtime':<9} {'timeouts':>8} {'median ms':>10} {'worst ms':>9}  worst fault")
    figures: dict[str, dict[str, Any]] = {}
    for runtime, runs in overruns.items():
        timed_out = [(took * 1000, name) for took, name, timeout in runs if timeout]
        past = [ms for ms, _ in timed_out]
        worst_ms, worst_fault = max(timed_out)
        print(
            f"{runtime:<9} {len(past):>8} {statistics.median(past):>10.1f} "
            f"{worst_ms:>9.1f}  {worst_fault}"
        )
        over = [name for took, name, timeout in runs if took > 0 and not timeout]
        if over:
            print(f"{'':<9} also past the budget: {', '.join(sorted(set(over)))}")
        figures[runtime] = {
            "calls": len(runs),
            "timeouts": len(past),
            "median_overrun_ms": statistics.median(past),
            "worst_overrun_ms": worst_ms,
            "worst_fault": worst_fault,
            "past_budget_otherwise": sorted(set(over)),
        }
    for line in wrong:
        print("unexpected outcome:", line)
    if args.json:
        report = {
            "budget_s": BUDGET,
            "repeats": args.repeats,
            "faults": len(FAULTS),
            "budgets": list(BUDGET_FROM),
            "runtimes": figures,
            "unexpected_outcomes": wrong,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
