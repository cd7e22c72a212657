"""A shortened soak (benchmarks/soak.py has the full one): concurrent async callers,
random faults; nothing hangs, every outcome is documented, memory stays flat."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).parent.parent / "benchmarks" / "soak.py"


@pytest.fixture(scope="module")
def soak():
    spec = importlib.util.spec_from_file_location("flushkit_soak", SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_short_soak(soak, backend):
    # faults only: the server's rate limiter off, to compare the faults alone
    report = soak.run_soak(calls=1500, concurrency=64, backend=backend, faults_only=True)
    assert sum(report.outcomes.values()) == 1500
    assert report.undocumented == []
    # A call past its budget by the soak's hang guard (seconds) is hung; how far past
    # their budget calls end is a benchmark's figure (benchmarks/fault_overrun.py).
    assert report.hung == 0, report
    assert report.coalesced > 0  # 64 callers on 50 collections share some RPCs
    assert report.calls_left == 0
    assert report.outcomes["success"] > 500
    assert report.rss_end_mb - report.rss_start_mb < 30, report


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_short_soak_under_the_servers_rate_limit(soak, backend):
    # The default mix: the server throttles each collection as Milvus does, on top of the
    # faults; flushkit paces and shares, and fails fast only when a budget cannot wait.
    report = soak.run_soak(calls=1000, concurrency=64, backend=backend)
    assert sum(report.outcomes.values()) == 1000
    assert report.undocumented == []
    assert report.hung == 0, report
    assert report.calls_left == 0
    assert report.throttled > 0  # the limiter answered, and the calls waited it out
    assert report.outcomes["success"] > 500, report.outcomes
