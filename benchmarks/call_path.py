"""How far one warm flush travels inside flushkit: the modules and functions it enters,
and the Python bytecodes it executes beside pymilvus's own Flush.

Counted with ``sys.setprofile`` on one blocking ``Flusher.flush`` with the default chain
(quiet: no OpenTelemetry SDK, stdlib logging below WARNING), after warm-up calls, against
``flushkit.testing``'s server: every Python function whose module is ``flushkit`` or under
it counts once, however often it runs (a generator resumed five times is one function).

Bytecodes: ``sys.settrace`` with opcode events counts the Python bytecode instructions
one warm call executes in the calling thread, by the top-level package of the code
(``flushkit``, ``grpc``, ``pymilvus``, the standard library), for four ways to send the
same Flush (wait=False): the bare RPC on the client's channel (as flushkit sends it:
registered method, the database header), pymilvus's own stub (its interceptors), and
flushkit with no middleware and with the default chain. A bytecode is not a fixed time,
but the counts say where a call's Python goes, and what a change to the path saves.
No timing: the counts are the same on a busy machine.

    python benchmarks/call_path.py [--json out.json] [--list]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable
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


def bytecodes(call: Callable[[], object]) -> Counter[str]:
    """The Python bytecodes one warm ``call()`` executes in this thread, by the top-level
    package of the code that executes them (the standard library's as one)."""
    for _ in range(WARM_UP):
        call()
    counts: Counter[str] = Counter()

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        if event == "opcode":
            package = frame.f_globals.get("__name__", "").partition(".")[0]
            if package != "__main__":  # this script's own call
                # (a namedtuple's generated methods are the collections module's code)
                stdlib = package in sys.stdlib_module_names or package.startswith("namedtuple_")
                counts["standard library" if stdlib else package] += 1
        return trace

    previous = sys.gettrace()  # a debugger's or coverage's, given back afterwards
    sys.settrace(trace)
    try:
        call()
    finally:
        sys.settrace(previous)
    return counts


def bytecode_cases(client: MilvusClient) -> dict[str, dict[str, int]]:
    """Bytecodes per call, by package, of four ways to send one Flush (wait=False)."""
    from pymilvus.grpc_gen import milvus_pb2

    request = milvus_pb2.FlushRequest(db_name="default", collection_names=["docs"])
    bare = client._handler._channel.unary_unary(
        "/milvus.proto.milvus.MilvusService/Flush",
        request_serializer=milvus_pb2.FlushRequest.SerializeToString,
        response_deserializer=milvus_pb2.FlushResponse.FromString,
        _registered_method=True,
    )
    stub = client._handler._stub
    metadata = (("dbname", "default"),)
    with (
        flushkit.Flusher(client, middleware=[]) as empty,
        flushkit.Flusher(client) as default,
    ):
        calls: dict[str, Callable[[], object]] = {
            "bare RPC": lambda: bare(request, timeout=60.0, metadata=metadata),
            "pymilvus stub": lambda: stub.Flush(request, timeout=60.0, metadata=metadata),
            "flushkit, no middleware": lambda: empty.flush("docs"),
            "flushkit, default chain": lambda: default.flush("docs"),
        }
        cases = {}
        for name, call in calls.items():
            counts = bytecodes(call)
            cases[name] = {"total": sum(counts.values()), **dict(counts.most_common())}
    return cases


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
            report["bytecodes"] = bytecode_cases(client)
        finally:
            client.close()
    cases = report.pop("bytecodes")
    for case, counts in report.items():
        print(
            f"{case}: {counts['modules']} modules, {counts['functions']} functions "
            f"({counts['entries']} entries, generator resumptions included)"
        )
        if args.list:
            for name in counts["function_names"]:
                print(f"    {name}")
    print("Python bytecodes per call (wait=False), by package:")
    for name, counts in cases.items():
        parts = ", ".join(f"{package} {n}" for package, n in counts.items() if package != "total")
        print(f"    {name}: {counts['total']} ({parts})")
    report["bytecodes"] = cases
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
