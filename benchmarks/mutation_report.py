"""The mutation score of the modules that decide, per module, from the last `mutmut run`.

    mutmut run && python benchmarks/mutation_report.py

Reads mutmut's results (``mutants/**/*.py.meta``) and the survivors that
``docs/mutation.md`` lists as equivalent (lines ``- `<mutant name>`: <reason>``), prints a
Markdown table per module, and lists every survivor the page does not explain. Exits 1
when a module kills less than 90% of its mutants or a survivor is unexplained.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
GOAL = 0.90
KILLED = {1, 3, 36, 24, -24, 152, 255, 37}  # failed tests, timeouts, the type checker
SURVIVED = {0}
NO_TESTS = {5, 33}


def explained(page: pathlib.Path) -> set[str]:
    """The mutant names the page lists as equivalent."""
    if not page.exists():
        return set()
    return set(re.findall(r"^- `([^`]+__mutmut_\d+)`", page.read_text(), re.MULTILINE))


def results(mutants: pathlib.Path) -> dict[str, dict[str, int | None]]:
    """Each mutated module's exit code per mutant."""
    found = {}
    for meta in sorted(mutants.glob("src/**/*.py.meta")):
        module = ".".join(meta.relative_to(mutants / "src").with_suffix("").with_suffix("").parts)
        found[module] = json.loads(meta.read_text())["exit_code_by_key"]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=pathlib.Path, default=ROOT / "mutants")
    parser.add_argument("--page", type=pathlib.Path, default=ROOT / "docs" / "mutation.md")
    options = parser.parse_args(argv)
    by_module = results(options.mutants)
    if not by_module:
        print(f"no mutmut results under {options.mutants}: run `mutmut run` first")
        return 1
    equivalent = explained(options.page)
    print("| module | mutants | killed | survived (equivalent) | survived | no tests | killed % |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    unexplained: list[str] = []
    failing = False
    totals = [0, 0, 0, 0, 0]
    for module, codes in by_module.items():
        killed = sum(code in KILLED for code in codes.values())
        survivors = [name for name, code in codes.items() if code in SURVIVED]
        known = [name for name in survivors if name in equivalent]
        untested = sum(code in NO_TESTS for code in codes.values())
        unexplained += [name for name in survivors if name not in equivalent]
        share = killed / len(codes) if codes else 1.0
        failing |= share < GOAL
        counts = [len(codes), killed, len(known), len(survivors) - len(known), untested]
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
        print(f"| `{module}` | " + " | ".join(map(str, counts)) + f" | {share:.1%} |")
    share = totals[1] / totals[0]
    print("| all | " + " | ".join(map(str, totals)) + f" | {share:.1%} |")
    for name in unexplained:
        print(f"unexplained survivor: {name} (see `mutmut show {name}`)")
    return 1 if failing or unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
