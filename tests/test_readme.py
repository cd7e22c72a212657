"""The README's examples run as pasted, on Milvus Lite in an empty directory, and print
what they say they print; its links into docs/ point at files that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .helpers import python_blocks, run_python

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
EXAMPLES = python_blocks(README)


def test_the_readme_has_one_example_per_runtime():
    assert len(EXAMPLES) == 3
    assert "flushkit.Flusher(" in EXAMPLES[0]
    assert "asyncio.run(main())" in EXAMPLES[1] and "trio.run(main)" in EXAMPLES[2]


@pytest.mark.lite
@pytest.mark.parametrize(
    ("index", "printed"),
    [
        (0, r"^Success True \{.*\}$"),
        (1, r"^\d of 8 calls shared another call's Flush$"),
        (2, r"^Success True$"),
    ],
    ids=["blocking", "asyncio", "trio"],
)
def test_a_readme_example_runs_as_pasted(tmp_path, index, printed):
    pytest.importorskip("milvus_lite")
    out = run_python(tmp_path, EXAMPLES[index]).stdout
    assert re.search(printed, out, re.M), out


def test_every_relative_link_of_the_readme_exists():
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README)
    assert "docs/services.md" in links
    missing = [link for link in links if not (ROOT / link).exists()]
    assert missing == []
