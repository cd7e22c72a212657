"""The scripts of examples/ run, with small bounded arguments, and print what they claim.

Each runs as a subprocess in an empty directory (a Milvus Lite file there when it takes one).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .helpers import run_python

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, tmp_path: Path, *args: str) -> str:
    return run_python(tmp_path, EXAMPLES / name, *args).stdout


#: Milvus Lite 3.2.2's error when two Flushes of one collection commit out of order (its
#: server logs it, and answers code 1): seen on a busy machine, where a slow Flush lets
#: the next round go before it answered, and then the rows of one Flush can be lost.
LITE_FLUSH_RACE = "current_seq is monotonic"


@pytest.mark.lite
def test_asyncio_service(tmp_path):
    pytest.importorskip("milvus_lite")
    db = str(tmp_path / "service.db")
    done = run_python(
        tmp_path, EXAMPLES / "asyncio_service.py", "--uri", db, "--requests", "6", "--rows", "2"
    )
    out, err = done.stdout, done.stderr
    assert re.search(r"^requests: 6, flushes OK: 6, persisted: 6$", out, re.M), out
    coalesced = re.search(r"^coalesced: (\d+) of 6 flushes shared a Flush RPC$", out, re.M)
    assert coalesced and int(coalesced[1]) <= 6, out
    satisfied = re.search(r"^satisfied by: (.*)$", out, re.M)
    assert satisfied and sum(int(kv.split("=")[1]) for kv in satisfied[1].split(", ")) == 6
    if (
        not re.search(r"^rows in examples_asyncio_service: 12$", out, re.M)
        and LITE_FLUSH_RACE in err
    ):
        pytest.xfail(f"Milvus Lite lost rows to its own flush race ({LITE_FLUSH_RACE}): {out}")
    assert re.search(r"^rows in examples_asyncio_service: 12$", out, re.M), out + err[-2000:]


def test_multiprocess_bench(tmp_path):
    out = run_example(
        "multiprocess_bench.py", tmp_path, "--processes", "2", "--calls", "3", "--rate", "5"
    )
    rows = re.findall(r"^ +(\d) +3 +[\d.]+ +[\d.]+ +(\d) +(\d) +(\d)$", out, re.M)
    assert [row[0] for row in rows] == ["0", "1"], out
    assert all(int(count) <= 3 for row in rows for count in row[1:]), out
    assert re.search(r"^total calls: 6$", out, re.M), out
    server = re.search(r"^server: (\d+) Flush RPCs, (\d+) throttled$", out, re.M)
    assert server, out
    flushes, throttled = int(server[1]), int(server[2])
    assert 1 <= flushes - throttled <= 6, out  # every admitted Flush answered some call


@pytest.mark.lite
def test_trio_script(tmp_path):
    pytest.importorskip("milvus_lite")
    pytest.importorskip("trio")
    db = str(tmp_path / "trio.db")
    out = run_example("trio_script.py", tmp_path, "--uri", db, "--rows", "20")
    assert re.search(r"^inserted 20 rows into examples_trio_script$", out, re.M), out
    assert re.search(r"^status: Success \(ok=True\)$", out, re.M), out
    assert re.search(r"^persisted: True$", out, re.M), out
    assert re.search(r"^row_count: 20$", out, re.M), out
