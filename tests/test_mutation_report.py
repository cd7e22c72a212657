"""benchmarks/mutation_report.py: the per-module table and the exit status that tells
whether every module kills 90% of its mutants and every survivor is explained."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path


def report_module():
    path = Path(__file__).parent.parent / "benchmarks" / "mutation_report.py"
    spec = importlib.util.spec_from_file_location("mutation_report", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutation_report"] = module
    spec.loader.exec_module(module)
    return module


def mutants_with(tmp_path: Path, codes: dict[str, int]) -> Path:
    meta = tmp_path / "mutants" / "src" / "pkg" / "_mod.py.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    return tmp_path / "mutants"


def run(tmp_path, capsys, codes, page_text=""):
    page = tmp_path / "mutation.md"
    page.write_text(page_text)
    status = report_module().main(
        ["--mutants", str(mutants_with(tmp_path, codes)), "--page", str(page)]
    )
    return status, capsys.readouterr().out


def test_a_module_at_the_goal_with_its_survivor_explained_passes(tmp_path, capsys):
    codes = {f"pkg._mod.x_f__mutmut_{i}": 1 for i in range(1, 10)}
    codes["pkg._mod.x_f__mutmut_10"] = 0
    page = "- `pkg._mod.x_f__mutmut_10`: equivalent, the value is never read\n"
    status, out = run(tmp_path, capsys, codes, page)
    assert status == 0
    assert "| `pkg._mod` | 10 | 9 | 1 | 0 | 0 | 90.0% |" in out
    assert "unexplained" not in out


def test_an_unexplained_survivor_fails(tmp_path, capsys):
    codes = {f"pkg._mod.x_f__mutmut_{i}": 1 for i in range(1, 20)}
    codes["pkg._mod.x_f__mutmut_20"] = 0
    status, out = run(tmp_path, capsys, codes)
    assert status == 1
    assert "unexplained survivor: pkg._mod.x_f__mutmut_20" in out


def test_a_module_below_the_goal_fails_even_with_its_survivors_explained(tmp_path, capsys):
    codes = {"pkg._mod.x_f__mutmut_1": 1, "pkg._mod.x_f__mutmut_2": 0, "pkg._mod.x_f__mutmut_3": 33}
    page = "- `pkg._mod.x_f__mutmut_2`: equivalent\n"
    status, out = run(tmp_path, capsys, codes, page)
    assert status == 1
    assert "| `pkg._mod` | 3 | 1 | 1 | 0 | 1 | 33.3% |" in out


def test_without_results_it_says_to_run_mutmut(tmp_path, capsys):
    module = report_module()
    status = module.main(["--mutants", str(tmp_path / "none"), "--page", str(tmp_path / "p")])
    assert status == 1 and "run `mutmut run` first" in capsys.readouterr().out
