"""How far one warm flush travels inside flushkit: the modules and functions it enters.

Counted with ``sys.setprofile`` on one blocking ``Flusher.flush`` with the default chain
(quiet: no OpenTelemetry SDK, stdlib logging below WARNING), after warm-up calls, against
``flushkit.testing``'s server: every Python function whose module is ``flushkit`` or under
it counts once, however often it runs (a generator resumed five times is one function).
No timing: the counts are the same on a busy machine.

    python benchmarks/call_path.py [--json out.json] [--list]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from types import FrameType
from typing import Any

from pymilvus import MilvusClient

import flushkit
from flushkit.testing import MilvusTestServer

WARM_UP = 50


def entered(flusher: flushkit.Flusher, wait: bool) -> Counter[tuple[str, str]]:
    """The flushkit functions one ``flush("docs", wait=wait)`` enters, with how many
    times each was entered (a generator's resumptions included)."""
    for _ in range(WARM_UP):
        flusher.flush("docs", wait=wait)
    seen: Counter[tuple[str, str]] = Counter()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        if module == "flushkit" or module.startswith("flushkit."):
            code = frame.f_code
            seen[(module, f"{code.co_qualname}:{code.co_firstlineno}")] += 1

    sys.setprofile(profile)
    try:
        flusher.flush("docs", wait=wait)
    finally:
        sys.setprofile(None)
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the counts here")
    parser.add_argument("--list", action="store_true", help="print every function entered")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {}
    with MilvusTestServer() as server:
        client = MilvusClient(uri=server.uri)
        try:
            with flushkit.Flusher(client) as flusher:
                for wait in (False, True):
                    seen = entered(flusher, wait)
                    modules = sorted({module for module, _ in seen})
                    report[f"wait={wait}"] = {
                        "modules": len(modules),
                        "functions": len(seen),
                        "entries": sum(seen.values()),
                        "module_names": modules,
                        "function_names": sorted(f"{m}.{f}" for m, f in seen),
                    }
        finally:
            client.close()
    for case, counts in report.items():
        print(
            f"{case}: {counts['modules']} modules, {counts['functions']} functions "
            f"({counts['entries']} entries, generator resumptions included)"
        )
        if args.list:
            for name in counts["function_names"]:
                print(f"    {name}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
