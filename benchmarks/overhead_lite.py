"""Per-call overhead of flushkit's default chain over the bare Flush RPC, on Milvus Lite.

Paired and interleaved: each round calls every variant once, in a rotating order, so the
noise of this shared machine hits all of them alike; the figure reported is the median of
the per-round differences against the bare RPC (and the ratio of medians).

    python benchmarks/overhead_lite.py [--rounds 2000] [--repeats 3] [--json out.json]

Variants:
  bare        the Flush RPC on the MilvusClient's own channel, nothing else
  pymilvus    pymilvus's own stub (its interceptors), no retry decorator or waiting
  flushkit    Flusher with the default chain (structlog filtering below WARNING, no
              OpenTelemetry SDK: the quiet production set-up)
  no-coalesce Flusher with the default chain minus CoalescingMiddleware: what
              coalescing costs a call that has no one to share with
  no-chain    Flusher with an empty chain: the facade and transport alone

Then the warm CPU per call (``time.process_time``, best of ``--repeats`` runs of
``--warm-calls`` calls, no server), each also as a ratio to a loop that only builds the
result's dict from a FlushResponse (the machine's speed, so runs on different machines
compare):
  transport replaced   Flusher whose transport returns a canned FlushResponse
  channel replaced     Flusher on a channel whose Flush answers at once (the transport's
                       own per-call work counts too)
each with the empty chain and the default chain.

Then the same transport-replaced calls *in situ*: each right after a bare Flush RPC on
Lite (wall time of the call alone, median over ``--rounds`` rotating rounds, less the
median of timing nothing). Code right after an RPC runs with the RPC's code and data in
the caches instead of its own: several times its warm cost, and the figure that the
paired overhead above is made of. And in situ, each middleware of the default chain alone
(transport replaced), less the empty chain: what each costs where it counts, quiet and
with full telemetry (``latency.full_telemetry``: structlog JSON lines to a file, the
OpenTelemetry SDK's tracer provider with a batch processor, a meter provider with a
reader). And two pieces of every call's path alone, warm and in situ: building the call's
request (``Flusher._request``, the default chain's preparers included) and the result
from a FlushResponse (``result_from_proto``).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from latency import full_telemetry
from pymilvus import MilvusClient
from pymilvus.grpc_gen import milvus_pb2

import flushkit
from flushkit._grpc.pymilvus_internals import MilvusConnection
from flushkit._models import Status, result_from_proto

COLLECTION = "bench"


def variants(client: MilvusClient) -> dict[str, Callable[[], object]]:
    connection = MilvusConnection(client)
    channel = connection.channel()
    bare_stub = channel.unary_unary(
        "/milvus.proto.milvus.MilvusService/Flush",
        request_serializer=milvus_pb2.FlushRequest.SerializeToString,
        response_deserializer=milvus_pb2.FlushResponse.FromString,
        _registered_method=True,
    )
    metadata = connection.metadata("default")
    request = milvus_pb2.FlushRequest(db_name="default", collection_names=[COLLECTION])
    pymilvus_stub = client._handler._stub
    flusher = flushkit.Flusher(client, timeout=10.0)
    bare_flusher = flushkit.Flusher(client, timeout=10.0, middleware=[])
    alone = [
        m for m in flushkit.default_middleware() if not isinstance(m, flushkit.CoalescingMiddleware)
    ]
    alone_flusher = flushkit.Flusher(client, timeout=10.0, middleware=alone)
    return {
        "bare": lambda: bare_stub(request, timeout=10.0, metadata=metadata),
        "pymilvus": lambda: pymilvus_stub.Flush(request, timeout=10.0, metadata=metadata),
        "flushkit": lambda: flusher.flush(COLLECTION),
        "no-coalesce": lambda: alone_flusher.flush(COLLECTION),
        "no-chain": lambda: bare_flusher.flush(COLLECTION, timeout=10.0),
    }


class _AnsweringChannel:
    """A stand-in for a gRPC channel: every method answers ``response`` at once."""

    def __init__(self, response: object) -> None:
        self.response = response

    def unary_unary(self, *args: object, **kwargs: object) -> Callable[..., object]:
        return lambda *args, **kwargs: self.response


def canned_response() -> object:
    response = milvus_pb2.FlushResponse(db_name="default")
    response.coll_segIDs[COLLECTION].data.extend([451, 452])
    response.coll_seal_times[COLLECTION] = 1_700_000_000
    response.coll_flush_ts[COLLECTION] = 449_000_000_000_000_000
    return response


def own_transport(flusher: flushkit.Flusher) -> Any:
    """A copy of the flusher's transport (and connection) for it alone, to patch: every
    flusher on one client shares the client's transport."""
    transport = copy.copy(flusher._transport)
    transport.connection = copy.copy(transport.connection)
    flusher._transport = transport
    return transport


def warm_variants(client: MilvusClient) -> dict[str, Callable[[], object]]:
    response: Any = canned_response()

    def loop() -> object:
        return {name: tuple(ids.data) for name, ids in response.coll_segIDs.items()}

    def transport_replaced(middleware: list[Any] | None) -> Callable[[], object]:
        flusher = flushkit.Flusher(client, timeout=10.0, middleware=middleware)
        own_transport(flusher).call = lambda call: response  # type: ignore[method-assign]
        return functools.partial(flusher.flush, COLLECTION)

    def channel_replaced(middleware: list[Any] | None) -> Callable[[], object]:
        flusher = flushkit.Flusher(client, timeout=10.0, middleware=middleware)
        channel = _AnsweringChannel(response)
        own_transport(flusher).connection.channel = lambda: channel  # type: ignore[method-assign]
        return functools.partial(flusher.flush, COLLECTION)

    return {
        "result loop": loop,
        "transport replaced, empty chain": transport_replaced([]),
        "transport replaced, default chain": transport_replaced(None),
        "channel replaced, empty chain": channel_replaced([]),
        "channel replaced, default chain": channel_replaced(None),
    }


def middleware_alone(
    client: MilvusClient, telemetry: dict[str, Any] | None = None
) -> dict[str, Callable[[], object]]:
    """Transport-replaced calls through the empty chain and through each default
    middleware alone (named by its class), made by ``default_middleware(**telemetry)``."""
    response: Any = canned_response()

    def alone(middleware: list[Any]) -> Callable[[], object]:
        flusher = flushkit.Flusher(client, timeout=10.0, middleware=middleware)
        own_transport(flusher).call = lambda call: response  # type: ignore[method-assign]
        return functools.partial(flusher.flush, COLLECTION)

    calls = {"empty chain": alone([])}
    for middleware in flushkit.default_middleware(**(telemetry or {})):
        calls[type(middleware).__name__] = alone([middleware])
    return calls


def pieces(client: MilvusClient) -> dict[str, Callable[[], object]]:
    """Two pieces of every call's path, alone (private functions): building the call's
    request (the default chain's preparers included) and the result from a response."""
    flusher = flushkit.Flusher(client, timeout=10.0)
    request = flusher._request(COLLECTION)
    return {
        "the call's request": functools.partial(flusher._request, COLLECTION),
        "the result from a response": functools.partial(
            result_from_proto, canned_response(), request, Status(), False
        ),
    }


def warm_cpu(calls: dict[str, Callable[[], object]], n: int, repeats: int) -> dict[str, float]:
    """Microseconds of CPU per call, best of ``repeats`` runs of ``n`` calls each,
    the variants taking turns."""
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeats):
        for name, call in calls.items():
            started = time.process_time()
            for _ in range(n):
                call()
            best[name] = min(best[name], (time.process_time() - started) / n * 1e6)
    return best


def in_situ(
    rpc: Callable[[], object], calls: dict[str, Callable[[], object]], rounds: int
) -> dict[str, float]:
    """Microseconds each call takes right after ``rpc``: median over ``rounds`` rotating
    rounds, less the median of timing nothing."""
    samples = measure({"nothing": lambda: None, **calls}, rounds, before=rpc)
    floor = statistics.median(samples["nothing"])
    return {name: (statistics.median(samples[name]) - floor) * 1e6 for name in calls}


def measure(
    calls: dict[str, Callable[[], object]],
    rounds: int,
    before: Callable[[], object] | None = None,
) -> dict[str, list[float]]:
    """Each call's wall time in ``rounds`` rounds, the calls in a rotating order, each
    right after ``before`` (untimed) if given."""
    names = list(calls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter
    for i in range(rounds):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            call = calls[name]
            if before is not None:
                before()
            started = clock()
            call()
            samples[name].append(clock() - started)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warm-calls", type=int, default=20000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    with tempfile.TemporaryDirectory() as tmp:
        client = MilvusClient(str(Path(tmp) / "bench.db"))
        client.create_collection(COLLECTION, dimension=4)
        calls = variants(client)
        measure(calls, 200)  # warm up
        report: dict[str, dict[str, float]] = {}
        runs = [measure(calls, args.rounds) for _ in range(args.repeats)]
        warm_calls = warm_variants(client)
        warm = warm_cpu(warm_calls, args.warm_calls, args.repeats)
        situ_calls = {k: v for k, v in warm_calls.items() if k.startswith("transport")}
        situ = in_situ(calls["bare"], situ_calls, args.rounds)
        each = in_situ(calls["bare"], middleware_alone(client), args.rounds)
        piece_calls = pieces(client)
        piece_warm = warm_cpu(piece_calls, args.warm_calls, args.repeats)
        piece_situ = in_situ(calls["bare"], piece_calls, args.rounds)
        with Path(tmp, "log.jsonl").open("w") as log_file:
            telemetry = full_telemetry(log_file)
            full_calls = middleware_alone(client, telemetry)
            each_full = in_situ(calls["bare"], full_calls, args.rounds)
            telemetry["tracer_provider"].shutdown()
            telemetry["meter_provider"].shutdown()
        client.close()

    print(f"Milvus Lite, {args.repeats} x {args.rounds} interleaved rounds")
    print(f"{'variant':<10} {'median us':>10} {'paired diff us':>15} {'ratio':>7}")
    for name in calls:
        medians = [statistics.median(run[name]) * 1e6 for run in runs]
        diffs = [
            statistics.median(a - b for a, b in zip(run[name], run["bare"], strict=True)) * 1e6
            for run in runs
        ]
        ratios = [statistics.median(run[name]) / statistics.median(run["bare"]) for run in runs]
        report[name] = {
            "median_us": statistics.median(medians),
            "paired_diff_us": statistics.median(diffs),
            "ratio": statistics.median(ratios),
            "paired_diff_us_per_repeat": diffs,  # type: ignore[dict-item]
        }
        print(
            f"{name:<10} {report[name]['median_us']:>10.1f} "
            f"{report[name]['paired_diff_us']:>+15.1f} {report[name]['ratio']:>7.3f}"
        )
    print(f"\nwarm CPU per call, best of {args.repeats} x {args.warm_calls} calls")
    print(f"{'variant':<34} {'us':>7} {'x loop':>7}")
    for name, micros in warm.items():
        print(f"{name:<34} {micros:>7.2f} {micros / warm['result loop']:>7.1f}")
    print(f"\nin situ: right after a bare RPC, median of {args.rounds} rounds")
    print(f"{'variant':<34} {'us':>7} {'x warm':>7}")
    for name, micros in situ.items():
        print(f"{name:<34} {micros:>7.2f} {micros / warm[name]:>7.1f}")
    print(f"\nin situ, each default middleware alone, median of {args.rounds} rounds")
    print(f"{'variant':<34} {'quiet us':>9} {'+ us':>7} {'full us':>9} {'+ us':>7}")
    for name, micros in each.items():
        full = each_full[name]
        print(
            f"{name:<34} {micros:>9.2f} {micros - each['empty chain']:>+7.1f} "
            f"{full:>9.2f} {full - each_full['empty chain']:>+7.1f}"
        )
    print(f"\npieces of every call's path, alone: warm (best of {args.repeats}) and in situ")
    for name, micros in piece_warm.items():
        print(f"{name:<34} {micros:>7.2f} {piece_situ[name]:>7.2f}")
    if args.json:
        report_all = {
            "pieces_warm_us": piece_warm,
            "pieces_in_situ_us": piece_situ,
            **report,
            "warm_cpu_us": warm,
            "in_situ_us": situ,
            "in_situ_alone_us": each,
            "in_situ_alone_full_telemetry_us": each_full,
        }
        args.json.write_text(json.dumps(report_all, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
