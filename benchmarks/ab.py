"""Before/after: ``hot_path.py`` run on two flushkit source trees in alternating processes.

Runs ``benchmarks/hot_path.py`` in fresh subprocesses, A B A B ... (``--pairs`` pairs),
with the same interpreter (this venv's) and the same arguments; A with
``PYTHONPATH=<--before>`` (default ``/tmp/old/src``, the code before the rewrite), B with
``PYTHONPATH=<--after>`` (default this repository's ``src``). ``PYTHONPATH`` comes before
the venv's editable install of flushkit, so each process imports the tree it was given;
each process checks that at once (``hot_path.py --expect-flushkit``, which prints
``flushkit.__file__``), and this script checks it again in the JSON the run wrote.
Alternating the sides spreads the drift of a shared machine over both.

Then, for every figure ``hot_path.py`` reports (its docstring says what each measures:
P1 blocking on Lite, warm CPU and in situ with the transport replaced, P2 asyncio on an
AsyncMilvusClient, full telemetry against a hand-written floor), the median over the A
runs and over the B runs, and B - A and B / A; printed as a table, and with every run's
JSON written to ``--json``. No timing is asserted.

Arguments after ``--`` go to ``hot_path.py`` as they are:

    . .venv/bin/activate
    python benchmarks/ab.py [--pairs 4] [--before /tmp/old/src] [--after src]
        [--json ab.json] [--verbose] [-- --rounds 2000 --repeats 3]
    python benchmarks/ab.py --pairs 1 -- --rounds 50 --repeats 1   # a smoke run
    python benchmarks/ab.py --record "before: <commit>; after: <commit>" -- ...

``--record NOTE`` also writes ``docs/results/hot-path-ab.json``, from which
``benchmarks/report.py`` renders the benchmarks page's before/after section.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HOT_PATH = HERE / "hot_path.py"
SIDES = ("before", "after")


def run_once(side: str, src: Path, passed: list[str], verbose: bool) -> dict[str, Any]:
    """One ``hot_path.py`` process on ``src``; its JSON report."""
    env = os.environ.copy()
    inherited = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(src) if not inherited else os.pathsep.join([str(src), inherited])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "hot.json"
        command = [
            sys.executable,
            str(HOT_PATH),
            "--expect-flushkit",
            str(src),
            "--json",
            str(out),
            *passed,
        ]
        done = subprocess.run(
            command,
            env=env,
            cwd=HERE,
            stdout=subprocess.DEVNULL,  # the JSON: read from the file
            stderr=None if verbose else subprocess.PIPE,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            if not verbose:
                sys.stderr.write(done.stderr)
            raise SystemExit(f"{side}: hot_path.py exited with {done.returncode}")
        report: dict[str, Any] = json.loads(out.read_text())
    imported = Path(report["flushkit"]["file"]).resolve()
    if not imported.is_relative_to(src.resolve()):
        raise SystemExit(f"{side}: imported {imported}, not from {src}")
    return report


def record(
    note: str,
    rows: dict[str, dict[str, Any]],
    pairs: int,
    sources: dict[str, Path],
    passed: list[str],
    seconds: float,
) -> None:
    """Write ``docs/results/hot-path-ab.json`` as ``benchmarks/report.py`` wraps results
    (it renders the page's before/after section from it)."""
    if str(HERE) not in sys.path:  # run as a script it is there already
        sys.path.insert(0, str(HERE))
    from report import RESULTS, wrap

    wrapped = wrap(
        "hot-path-ab",
        ["python", "benchmarks/ab.py", *map(shlex.quote, sys.argv[1:])],
        datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds),
        seconds,
        {
            "pairs": pairs,
            "hot_path_args": passed,
            "sources": {side: str(src) for side, src in sources.items()},
            "table": rows,
        },
        note=note,
    )
    path = RESULTS / "hot-path-ab.json"
    path.write_text(json.dumps(wrapped, indent=2) + "\n")
    print(f"wrote {path}", file=sys.stderr)


def table(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each figure: the median over each side's runs, B - A and B / A."""
    names: list[str] = []
    for side in SIDES:
        for report in runs[side]:
            names.extend(name for name in report["figures"] if name not in names)
    rows = {}
    for name in names:
        row: dict[str, Any] = {}
        for side in SIDES:
            values = [r["figures"][name] for r in runs[side] if name in r["figures"]]
            row[side] = statistics.median(values) if values else None
            row[f"{side} runs"] = values
        before, after = row["before"], row["after"]
        both = before is not None and after is not None
        row["after - before"] = after - before if both else None
        row["after / before"] = after / before if both and before else None
        rows[name] = row
    return rows


def show(rows: dict[str, dict[str, Any]], pairs: int) -> None:
    width = max(len(name) for name in rows)

    def cell(value: float | None, fmt: str) -> str:
        return format(value, fmt) if value is not None else "-"

    print(f"\nmedians over {pairs} run(s) each; before = A, after = B")
    columns = ("before", "after", "after-before", "after/before")
    print(
        f"{'figure':<{width}}  {columns[0]:>10} {columns[1]:>10} {columns[2]:>12} {columns[3]:>12}"
    )
    section = None
    for name, row in rows.items():
        head = name.split(" ", 1)[0]
        if head != section:
            print()
            section = head
        print(
            f"{name:<{width}}  {cell(row['before'], '10.3f')} {cell(row['after'], '10.3f')} "
            f"{cell(row['after - before'], '+12.3f')} {cell(row['after / before'], '12.3f')}"
        )


def main() -> int:
    argv = sys.argv[1:]
    passed: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, passed = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="arguments after -- go to hot_path.py",
    )
    parser.add_argument("--pairs", type=int, default=4, help="A B pairs of runs")
    parser.add_argument("--before", type=Path, default=Path("/tmp/old/src"), help="A's src")
    parser.add_argument("--after", type=Path, default=HERE.parent / "src", help="B's src")
    parser.add_argument("--json", type=Path, help="write the table and every run here")
    parser.add_argument("--verbose", action="store_true", help="show each run's own table")
    parser.add_argument(
        "--record",
        metavar="NOTE",
        help="also write docs/results/hot-path-ab.json (the benchmarks page's before/after "
        "section), NOTE saying what the two sides are",
    )
    args = parser.parse_args(argv)
    sources = {"before": args.before.resolve(), "after": args.after.resolve()}
    for side, src in sources.items():
        if not (src / "flushkit" / "__init__.py").is_file():
            parser.error(f"--{side} {src}: no flushkit package there")

    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    started = time.monotonic()
    for pair in range(args.pairs):
        for side, label in zip(SIDES, "AB", strict=True):
            began = time.monotonic()
            report = run_once(side, sources[side], passed, args.verbose)
            runs[side].append(report)
            problems = report["checks"]["problems"]
            print(
                f"pair {pair + 1}/{args.pairs} {label} ({side}): flushkit from "
                f"{report['flushkit']['file']} (source {report['flushkit']['source_digest']}), "
                f"{time.monotonic() - began:.0f} s"
                + (f"; CHECKS: {'; '.join(problems)}" if problems else ""),
                file=sys.stderr,
                flush=True,
            )
    rows = table(runs)
    show(rows, args.pairs)
    if args.record:
        record(args.record, rows, args.pairs, sources, passed, time.monotonic() - started)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": [sys.executable, *sys.argv],
                    "hot_path_args": passed,
                    "pairs": args.pairs,
                    "sources": {side: str(src) for side, src in sources.items()},
                    "seconds": time.monotonic() - started,
                    "table": rows,
                    "runs": runs,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
