"""The documentation site's Python examples run as a reader would paste them, on Milvus
Lite in an empty directory (the README's own are tests/test_readme.py's)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .helpers import python_blocks, run_python

DOCS = Path(__file__).resolve().parents[1] / "docs"


def examples(page: str) -> list[str]:
    return python_blocks((DOCS / page).read_text())


def run(tmp_path: Path, code: str) -> str:
    return run_python(tmp_path, code).stdout


@pytest.mark.parametrize(
    "page", sorted(path.name for path in DOCS.glob("*.md") if python_blocks(path.read_text()))
)
def test_every_example_compiles(page):
    for number, code in enumerate(examples(page)):
        compile(code, f"{page} example {number}", "exec")


@pytest.mark.lite
def test_the_trio_service_example_runs_as_pasted(tmp_path):
    pytest.importorskip("milvus_lite")
    pytest.importorskip("trio")
    code = next(code for code in examples("services.md") if "trio.run(main)" in code)
    assert run(tmp_path, code).splitlines() == ["True"]


@pytest.mark.lite
def test_the_threaded_service_example_runs_as_pasted(tmp_path):
    pytest.importorskip("milvus_lite")
    code = next(code for code in examples("services.md") if "ThreadPoolExecutor" in code)
    assert re.fullmatch(r"\d of 8 calls shared another call's Flush\n", run(tmp_path, code))


@pytest.mark.lite
def test_the_usage_example_runs_as_pasted(tmp_path):
    pytest.importorskip("milvus_lite")
    (code,) = examples("usage.md")
    run(tmp_path, code + "\nprint(result.status.error_code, sorted(result.coll_segIDs))\n")


@pytest.mark.lite
def test_the_testing_example_runs_with_a_flush_in_place_of_your_code(tmp_path):
    pytest.importorskip("milvus_lite")
    (code,) = examples("testing.md")
    placeholder = "    ...  # your code flushes\n"
    assert placeholder in code
    flush = '    print(flushkit.Flusher(client).flush("docs", wait=True).attempts)\n'
    code = "import flushkit\n" + code.replace(placeholder, flush)
    # Unavailable twice, retried by the default chain, then OK.
    assert run(tmp_path, code).splitlines() == ["3"]


def test_the_middleware_examples_run_in_the_order_the_page_gives_them(tmp_path):
    """Each fragment on the page after the one before, with a client of flushkit.testing's
    server: the flows they add do what the page says, seen from the server."""
    middleware = examples("middleware.md")
    (rate_limits,) = examples("rate-limits.md")
    # The page: a preparer, four flows and a conditional wrapper, the chain that holds
    # them; then a flow that falls back to the default database; then chain variants.
    assert len(middleware) == 9
    prelude = """
import flushkit
from pymilvus import MilvusClient
from flushkit import testing  # the page names a variable "status"
server = testing.MilvusTestServer().start()
client = MilvusClient(uri=server.uri)
my_logger = my_tracers = my_meters = None
"""
    first = """
server.script_flush(testing.status(2, 1, "service unavailable"), testing.ok({"docs": [7, 8]}))
print(flusher.flush("docs").status.error_code)
print(len(server.flush_calls), all(c.time_remaining < 6 for c in server.flush_calls))
server.clear_calls()
"""
    second = """
server.script_flush(testing.status(800, 0, "database not found: tenant_a"))
print(flusher.flush("docs").status.error_code)
print([call.metadata["dbname"] for call in server.flush_calls])
"""
    last = """
flusher = flushkit.Flusher(client, middleware=chain)
print(flusher.flush("docs").status.error_code)
client.close()
server.stop()
"""
    code = "\n".join(
        [prelude, *middleware[:7], first, middleware[7], second, middleware[8], rate_limits, last]
    )
    assert run(tmp_path, code).splitlines() == [
        "docs: 2 segments sealed",  # report_segments, under OnlyFor("docs")
        "Success",  # retry_once_when_unavailable sent the Flush again
        # five_seconds: both RPCs within a 5 s budget, not the flusher's 60 s (the
        # deadline travels rounded up, to 10 ms here: 5.0 can arrive as 5.00x)
        "2 True",
        "Success",
        "['tenant_a', 'default']",  # tenant_database fell back to the default database
        "Success",
    ]
