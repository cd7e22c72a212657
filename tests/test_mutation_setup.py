"""The mutation run's setup (docs/mutation.md): mutmut copies the sources, the tests,
pyproject.toml and ``also_copy`` into ``mutants/`` and collects the tests there, so a test
module that reads another file when it is collected needs that file in ``also_copy``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_pure_tests_collect_in_a_copy_made_as_mutmut_makes_it(tmp_path):
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    copied = ["src", "tests", "pyproject.toml", *config.get("also_copy", [])]
    for name in copied:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            *config["pytest_add_cli_args_test_selection"],
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    collected = re.search(r"^(\d+)/\d+ tests collected", done.stdout, re.M)
    assert collected and int(collected[1]) > 0, done.stdout[-500:]  # the pure tests
