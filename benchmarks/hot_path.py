"""flushkit's hot path on Milvus Lite, in one process, for whichever flushkit imports.

Written for before/after comparisons (``benchmarks/ab.py`` runs it against two source
trees): it uses only flushkit's public API (``Flusher``, ``AsyncFlusher``,
``default_middleware``, ``FlushResult``) plus ``flusher._transport.perform`` (which every
flushkit version has), and pymilvus's internals for the bare RPCs:
``client._handler._channel`` and ``client._handler._stub`` (blocking client),
``await client._get_connection()`` and its ``_final_channel`` (AsyncMilvusClient). It
imports nothing of flushkit's private modules and nothing from the other benchmarks (they
import private modules whose names change between versions).

Server: Milvus Lite, ``MilvusClient(<tmp>/hot.db)``, collection ``hot`` (dimension 4).
Every call flushes ``hot`` with ``wait=False`` and ``timeout=60``.

Paired and interleaved: each round runs every variant of a measurement once, in an order
that rotates from round to round, so the noise of a shared machine hits them alike. A
``paired us`` figure is the median over the rounds of (variant - baseline) in the same
round, in microseconds; a ``ratio`` is median(variant) / median(baseline). Each
measurement is repeated ``--repeats`` times (after a warm-up of up to 200 rounds) and the
figure reported is the median over the repeats.

P1, blocking, quiet (structlog configured to filter below WARNING, no OpenTelemetry SDK
installed), ``--rounds`` rounds of:
  bare            the Flush RPC on the client's own channel (``_registered_method=True``,
                  as flushkit's own stubs), metadata ``(("dbname", "default"),)``
  pymilvus stub   pymilvus's own stub (``client._handler._stub.Flush``: its interceptors)
  flushkit        ``flushkit.Flusher(client)``, the default chain
  Figures: each over bare (paired us, ratio); flushkit over pymilvus stub (paired us, and
  the ratio of medians).

Warm CPU per call (``time.process_time``, best of ``--warm-runs`` runs of ``--warm-calls``
calls, the variants taking turns), the transport replaced: the instance attribute
``flusher._transport.perform`` returns a canned ``milvus_pb2.FlushResponse`` (OK status,
two segment IDs of ``hot``) at once; beforehand a checking run makes sure only ``Call``
effects reach it:
  result loop     builds the result's dict from the FlushResponse's fields (the
                  machine's speed: every other figure is also given as a multiple of it)
  empty chain     ``Flusher(client, middleware=[])``
  default chain   ``Flusher(client)``
And the same two transport-replaced calls *in situ*: each timed right after a bare Flush
RPC (untimed), median over ``--rounds`` rotating rounds less the median of timing nothing
(code right after an RPC runs with cold caches: what the paired P1 overhead is made of).

P2, asyncio on an ``AsyncMilvusClient`` of the same Lite server (its URI from the blocking
client, as ``latency.py`` does), ``--rounds`` rounds of:
  bare grpc.aio   the awaited Flush on the AsyncMilvusClient's own grpc.aio channel
                  (pymilvus's interceptors included), metadata ``(("dbname", "default"),)``
  empty chain     ``flushkit.AsyncFlusher(async_client, middleware=[])``
  default chain   ``flushkit.AsyncFlusher(async_client)`` (quiet)
  Figures: each over bare grpc.aio.

Full telemetry, blocking: structlog rendering JSON lines to a file (level, ISO timestamp,
JSON renderer, every debug event kept: ``wrapper_class`` filters below DEBUG, explicitly,
since the quiet global configuration would otherwise apply), an OpenTelemetry SDK
``TracerProvider`` with a ``BatchSpanProcessor`` to an exporter that drops the spans, a
``MeterProvider`` with an ``InMemoryMetricReader``; neither provider installed globally.
``--rounds`` rounds of:
  bare            as in P1
  hand floor      the bare RPC plus what an instrumented service writes by hand: one
                  CLIENT span (``start_as_current_span``) with flushkit's attributes
                  (db.system.name, db.operation.name, db.collection.name, db.namespace,
                  server.address, server.port), the W3C traceparent injected into the
                  RPC's metadata (``opentelemetry.propagate.inject``), the status read,
                  one ``db.client.operation.duration`` histogram record with those
                  attributes, one structlog JSON line with the fields of flushkit's
                  ``flushkit.flush.succeeded`` event (trace and span IDs included)
  flushkit full   ``Flusher(client, middleware=default_middleware(logger=...,
                  tracer_provider=..., meter_provider=...))`` with the same logger and
                  providers
  Figures: floor and flushkit over bare, flushkit over the floor. The JSON's ``checks``
  count the log lines, spans and histogram records each wrote (one per call expected).

Output: the figures as JSON on stdout (``--json FILE`` writes it too), a table on stderr,
and ``flushkit.__file__`` first (stderr, and in the JSON). No timing is asserted.

    . .venv/bin/activate
    python benchmarks/hot_path.py [--rounds 2000] [--repeats 3] [--warm-calls 20000]
        [--warm-runs 3] [--json out.json] [--expect-flushkit SRC_DIR]
    PYTHONPATH=/tmp/old/src python benchmarks/hot_path.py ...   # an older flushkit
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import flushkit

COLLECTION = "hot"
FLUSH = "/milvus.proto.milvus.MilvusService/Flush"
METADATA = (("dbname", "default"),)
TIMEOUT = 60.0
#: The advisory buckets of ``db.client.operation.duration`` (as flushkit's histogram).
BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10)


def source_digest(package_dir: Path) -> str:
    """A short digest of the package's ``.py`` files: which code ran, exactly."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        digest.update(str(path.relative_to(package_dir)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


# -- measurement machinery (as in latency.py and overhead_lite.py, copied: those import
# -- flushkit's private modules, whose names differ between versions) ---------------------


def rotation(names: list[str], rounds: int) -> Iterator[str]:
    """Every name once per round, the order rotating from round to round."""
    for i in range(rounds):
        shift = i % len(names)
        yield from names[shift:] + names[:shift]


def measure(
    calls: dict[str, Callable[[], object]],
    rounds: int,
    before: Callable[[], object] | None = None,
) -> dict[str, list[float]]:
    """Each call's wall time (seconds) in ``rounds`` rotating rounds, each call right
    after ``before`` (untimed) if given."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    clock = time.perf_counter
    for name in rotation(list(calls), rounds):
        call = calls[name]
        if before is not None:
            before()
        started = clock()
        call()
        samples[name].append(clock() - started)
    return samples


async def measure_async(
    calls: dict[str, Callable[[], Awaitable[object]]], rounds: int
) -> dict[str, list[float]]:
    """:func:`measure` for awaited calls."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    clock = time.perf_counter
    for name in rotation(list(calls), rounds):
        call = calls[name]
        started = clock()
        await call()
        samples[name].append(clock() - started)
    return samples


def paired_us(samples: dict[str, list[float]], name: str, baseline: str) -> float:
    """Median over the rounds of (name - baseline) in the same round, microseconds."""
    pairs = zip(samples[name], samples[baseline], strict=True)
    return statistics.median(a - b for a, b in pairs) * 1e6


def ratio(samples: dict[str, list[float]], name: str, baseline: str) -> float:
    """median(name) / median(baseline)."""
    return statistics.median(samples[name]) / statistics.median(samples[baseline])


def median_us(samples: dict[str, list[float]], name: str) -> float:
    return statistics.median(samples[name]) * 1e6


def warm_cpu(calls: dict[str, Callable[[], object]], n: int, repeats: int) -> dict[str, float]:
    """Microseconds of CPU per call, best of ``repeats`` runs of ``n`` calls each, the
    variants taking turns."""
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeats):
        for name, call in calls.items():
            started = time.process_time()
            for _ in range(n):
                call()
            best[name] = min(best[name], (time.process_time() - started) / n * 1e6)
    return best


class Figures:
    """Named figures, each a list of per-repeat values; reported as their median."""

    def __init__(self) -> None:
        self.per_repeat: dict[str, list[float]] = {}

    def add(self, name: str, value: float) -> None:
        self.per_repeat.setdefault(name, []).append(value)

    def medians(self) -> dict[str, float]:
        return {name: statistics.median(values) for name, values in self.per_repeat.items()}


def add_paired(
    figures: Figures,
    prefix: str,
    samples: dict[str, list[float]],
    comparisons: list[tuple[str, str]],
) -> None:
    """Every variant's median, and for each (name, baseline): the paired difference and
    the ratio of medians."""
    for name in samples:
        figures.add(f"{prefix} {name}, median us", median_us(samples, name))
    for name, baseline in comparisons:
        figures.add(f"{prefix} {name} - {baseline}, paired us", paired_us(samples, name, baseline))
        figures.add(f"{prefix} {name} / {baseline}, ratio", ratio(samples, name, baseline))


# -- the set-up ----------------------------------------------------------------------------


def canned_response() -> Any:
    """An OK FlushResponse for one collection, as Lite answers it."""
    from pymilvus.grpc_gen import common_pb2, milvus_pb2

    response = milvus_pb2.FlushResponse(
        status=common_pb2.Status(error_code=common_pb2.Success, code=0), db_name="default"
    )
    response.coll_segIDs[COLLECTION].data.extend([451, 452])
    response.coll_seal_times[COLLECTION] = 1_700_000_000
    response.coll_flush_ts[COLLECTION] = 449_000_000_000_000_000
    return response


class Setup:
    """The Lite client, the request, and the bare callables."""

    def __init__(self, client: Any) -> None:
        from pymilvus.grpc_gen import milvus_pb2

        self.client = client
        self.request = milvus_pb2.FlushRequest(db_name="default", collection_names=[COLLECTION])
        channel = client._handler._channel
        self.bare_stub = channel.unary_unary(
            FLUSH,
            request_serializer=milvus_pb2.FlushRequest.SerializeToString,
            response_deserializer=milvus_pb2.FlushResponse.FromString,
            _registered_method=True,
        )
        self.pymilvus_stub = client._handler._stub

    def bare(self) -> Any:
        return self.bare_stub(self.request, timeout=TIMEOUT, metadata=METADATA)

    def stub(self) -> Any:
        return self.pymilvus_stub.Flush(self.request, timeout=TIMEOUT, metadata=METADATA)

    def server(self) -> tuple[str | None, int | None]:
        """``server.address`` and ``server.port``, as flushkit splits the client's address."""
        address = str(self.client._config.address)
        if address.startswith("unix:"):
            return address[5:], None
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            return address or None, None
        return host.strip("[]"), int(port)


def warm_up_rounds(rounds: int) -> int:
    return max(20, min(200, rounds))


# -- P1: blocking, quiet -------------------------------------------------------------------


def p1(setup: Setup, rounds: int, repeats: int, figures: Figures) -> None:
    quiet = flushkit.Flusher(setup.client)
    calls: dict[str, Callable[[], object]] = {
        "bare": setup.bare,
        "pymilvus stub": setup.stub,
        "flushkit": lambda: quiet.flush(COLLECTION),
    }
    if not isinstance(calls["flushkit"](), flushkit.FlushResult):
        raise SystemExit("Flusher.flush did not return a FlushResult")
    measure(calls, warm_up_rounds(rounds))
    for _ in range(repeats):
        samples = measure(calls, rounds)
        add_paired(
            figures,
            "P1",
            samples,
            [
                ("pymilvus stub", "bare"),
                ("flushkit", "bare"),
                ("flushkit", "pymilvus stub"),
            ],
        )


# -- warm CPU and in situ, transport replaced --------------------------------------------


def replaced_transport(
    setup: Setup, warm_calls: int, warm_runs: int, rounds: int, repeats: int, figures: Figures
) -> dict[str, Any]:
    response = canned_response()
    empty = flushkit.Flusher(setup.client, middleware=[])
    default = flushkit.Flusher(setup.client)
    # A flushkit may share one transport between the flushers of a client: patch each
    # distinct one, and take the patches off afterwards.
    transports = {id(f._transport): f._transport for f in (empty, default)}
    seen: set[str] = set()

    def checking(effect: Any) -> Any:
        seen.add(type(effect).__name__)
        return response

    def loop() -> object:
        return {name: tuple(ids.data) for name, ids in response.coll_segIDs.items()}

    calls: dict[str, Callable[[], object]] = {
        "result loop": loop,
        "empty chain": lambda: empty.flush(COLLECTION),
        "default chain": lambda: default.flush(COLLECTION),
    }
    try:
        for transport in transports.values():
            transport.perform = checking
        for _ in range(10):
            for name in ("empty chain", "default chain"):
                result = calls[name]()
                if not isinstance(result, flushkit.FlushResult):
                    raise SystemExit(f"{name}: {result!r} is not a FlushResult")
        if seen != {"Call"}:
            raise SystemExit(f"the replaced transport saw effects {sorted(seen)}, not only Call")
        for transport in transports.values():
            transport.perform = lambda effect: response
        warm_cpu(calls, max(1000, warm_calls // 10), 1)  # warm up
        warm = warm_cpu(calls, warm_calls, warm_runs)
        for name, micros in warm.items():
            figures.add(f"warm CPU {name}, us", micros)
            if name != "result loop":
                figures.add(f"warm CPU {name}, x loop", micros / warm["result loop"])
        figures.add(
            "warm CPU default chain - empty chain, us", warm["default chain"] - warm["empty chain"]
        )
        situ_calls: dict[str, Callable[[], object]] = {
            "nothing": lambda: None,
            "empty chain": calls["empty chain"],
            "default chain": calls["default chain"],
        }
        measure(situ_calls, warm_up_rounds(rounds), before=setup.bare)
        for _ in range(repeats):
            samples = measure(situ_calls, rounds, before=setup.bare)
            floor = statistics.median(samples["nothing"])
            situ = {
                name: (statistics.median(samples[name]) - floor) * 1e6
                for name in ("empty chain", "default chain")
            }
            for name, micros in situ.items():
                figures.add(f"in situ {name}, us", micros)
            figures.add(
                "in situ default chain - empty chain, us",
                situ["default chain"] - situ["empty chain"],
            )
    finally:
        for transport in transports.values():
            vars(transport).pop("perform", None)
    return {"effects seen": sorted(seen), "transports patched": len(transports)}


# -- P2: asyncio on an AsyncMilvusClient --------------------------------------------------


def p2(setup: Setup, rounds: int, repeats: int, figures: Figures) -> None:
    from pymilvus import AsyncMilvusClient
    from pymilvus.grpc_gen import milvus_pb2

    async def main() -> None:
        config = setup.client._config
        async_client = AsyncMilvusClient(uri=config.uri, token=config.token, db_name=config.db_name)
        try:
            handler = await async_client._get_connection()
            bare = handler._final_channel.unary_unary(
                FLUSH,
                request_serializer=milvus_pb2.FlushRequest.SerializeToString,
                response_deserializer=milvus_pb2.FlushResponse.FromString,
            )
            async with (
                flushkit.AsyncFlusher(async_client, middleware=[]) as empty,
                flushkit.AsyncFlusher(async_client) as default,
            ):
                calls: dict[str, Callable[[], Awaitable[object]]] = {
                    "bare grpc.aio": lambda: bare(
                        setup.request, timeout=TIMEOUT, metadata=METADATA
                    ),
                    "empty chain": lambda: empty.flush(COLLECTION),
                    "default chain": lambda: default.flush(COLLECTION),
                }
                await measure_async(calls, warm_up_rounds(rounds))
                for _ in range(repeats):
                    samples = await measure_async(calls, rounds)
                    add_paired(
                        figures,
                        "P2",
                        samples,
                        [
                            ("empty chain", "bare grpc.aio"),
                            ("default chain", "bare grpc.aio"),
                            ("default chain", "empty chain"),
                        ],
                    )
        finally:
            await async_client.close()

    asyncio.run(main())


# -- full telemetry ------------------------------------------------------------------------


def full_telemetry(
    setup: Setup, rounds: int, repeats: int, figures: Figures, tmp: Path
) -> dict[str, Any]:
    import structlog
    from opentelemetry import propagate
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.trace import SpanKind

    class CountSpans(SpanExporter):
        """Drops the spans, counting them by instrumentation scope."""

        def __init__(self) -> None:
            self.counts: dict[str, int] = {}

        def export(self, spans: Any) -> SpanExportResult:
            for span in spans:
                scope = span.instrumentation_scope.name
                self.counts[scope] = self.counts.get(scope, 0) + 1
            return SpanExportResult.SUCCESS

    def json_logger(log_file: Any) -> Any:
        return structlog.wrap_logger(
            structlog.PrintLogger(log_file),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso"),
                structlog.processors.JSONRenderer(),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
            cache_logger_on_first_use=True,
        )

    exporter = CountSpans()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    floor_log_path, flushkit_log_path = tmp / "floor.jsonl", tmp / "flushkit.jsonl"
    with floor_log_path.open("w") as floor_log, flushkit_log_path.open("w") as flushkit_log:
        full = flushkit.Flusher(
            setup.client,
            middleware=flushkit.default_middleware(
                logger=json_logger(flushkit_log),
                tracer_provider=tracer_provider,
                meter_provider=meter_provider,
            ),
        )
        logger = json_logger(floor_log)
        tracer = tracer_provider.get_tracer("handwritten")
        histogram = meter_provider.get_meter("handwritten").create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of database client operations.",
            explicit_bucket_boundaries_advisory=BUCKETS,
        )
        address, port = setup.server()
        attributes: dict[str, Any] = {
            "db.system.name": "milvus",
            "db.operation.name": "flush",
            "db.namespace": "default",
            "db.collection.name": COLLECTION,
        }
        if address is not None:
            attributes["server.address"] = address
        if port is not None:
            attributes["server.port"] = port
        bare_stub, request = setup.bare_stub, setup.request
        span_name = f"flush {COLLECTION}"
        # A flushkit that says how each call was satisfied and where its time went (its
        # results' satisfied_by, flushing, paced, persisting) writes that to its log line,
        # span and histogram; the floor writes the same, by hand.
        says_how = "satisfied_by" in {f.name for f in dataclasses.fields(flushkit.FlushResult)}

        def floor() -> Any:
            started = time.monotonic()
            with tracer.start_as_current_span(
                span_name, kind=SpanKind.CLIENT, attributes=attributes
            ) as span:
                carrier: dict[str, str] = {}
                propagate.inject(carrier)
                response = bare_stub(
                    request, timeout=TIMEOUT, metadata=METADATA + tuple(carrier.items())
                )
                if response.status.code or response.status.error_code:
                    raise RuntimeError(f"Flush failed: {response.status}")
                duration = time.monotonic() - started
                context = span.get_span_context()
                how: dict[str, Any] = {}
                if says_how:
                    span.set_attributes(
                        {
                            "flushkit.satisfied_by": "flush",
                            "flushkit.flushing_s": duration,
                            "flushkit.paced_s": 0.0,
                            "flushkit.persisting_s": 0.0,
                        }
                    )
                    histogram.record(duration, {**attributes, "flushkit.satisfied_by": "flush"})
                    how = {
                        "satisfied_by": "flush",
                        "flushing_s": duration,
                        "paced_s": 0.0,
                        "persisting_s": 0.0,
                    }
                else:
                    histogram.record(duration, attributes)
                logger.debug(
                    "flushkit.flush.succeeded",
                    collections=[COLLECTION],
                    db_name="default",
                    wait=False,
                    trace_id=format(context.trace_id, "032x"),
                    span_id=format(context.span_id, "016x"),
                    duration_s=duration,
                    segments=sum(len(ids.data) for ids in response.coll_segIDs.values()),
                    persisted=False,
                    attempts=1,
                    coalesced=False,
                    **how,
                    outcome="success",
                )
                return response

        calls: dict[str, Callable[[], object]] = {
            "bare": setup.bare,
            "hand floor": floor,
            "flushkit full": lambda: full.flush(COLLECTION),
        }
        warm_up = warm_up_rounds(rounds)
        measure(calls, warm_up)
        for _ in range(repeats):
            samples = measure(calls, rounds)
            add_paired(
                figures,
                "full",
                samples,
                [
                    ("hand floor", "bare"),
                    ("flushkit full", "bare"),
                    ("flushkit full", "hand floor"),
                ],
            )
        tracer_provider.force_flush()
        metrics = reader.get_metrics_data()
    tracer_provider.shutdown()
    meter_provider.shutdown()

    records: dict[str, int] = {}
    for resource_metrics in metrics.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == "db.client.operation.duration":
                    count = sum(point.count for point in metric.data.data_points)
                    records[scope_metrics.scope.name] = count
    calls_each = warm_up + rounds * repeats
    floor_lines = floor_log_path.read_text().splitlines()
    flushkit_lines = flushkit_log_path.read_text().splitlines()
    return {
        "calls each": calls_each,
        "log lines": {
            "hand floor": len(floor_lines),
            "flushkit full": len(flushkit_lines),
        },
        "log fields": {
            "hand floor": sorted(json.loads(floor_lines[-1])) if floor_lines else [],
            "flushkit full": sorted(json.loads(flushkit_lines[-1])) if flushkit_lines else [],
        },
        "spans by scope": exporter.counts,
        "histogram records by scope": records,
        "server.address": address,
        "server.port": port,
    }


def check_telemetry(checks: dict[str, Any]) -> list[str]:
    """What in the full-telemetry checks is not one record per call (not a timing)."""
    expected = checks["calls each"]
    problems = []
    for kind in ("log lines", "spans by scope", "histogram records by scope"):
        for who, count in checks[kind].items():
            if count != expected:
                problems.append(f"{kind}, {who}: {count}, expected {expected}")
    fields = checks["log fields"]
    if fields["hand floor"] != fields["flushkit full"]:
        problems.append(f"log fields differ: {fields}")
    if set(checks["spans by scope"]) != {"handwritten", "flushkit"}:
        problems.append(f"span scopes: {sorted(checks['spans by scope'])}")
    return problems


# -- report --------------------------------------------------------------------------------


def show(report: dict[str, Any], out: Any) -> None:
    print(
        f"\nflushkit {report['flushkit']['version']} from {report['flushkit']['file']}"
        f" (source {report['flushkit']['source_digest']}); {report['repeats']} x "
        f"{report['rounds']} rounds, warm CPU best of {report['warm_runs']} x "
        f"{report['warm_calls']} calls; {report['seconds']:.0f} s",
        file=out,
    )
    width = max(len(name) for name in report["figures"])
    section = None
    for name, value in report["figures"].items():
        head = name.split(" ", 1)[0]
        if head != section:
            print(file=out)
            section = head
        print(f"{name:<{width}}  {value:>10.3f}", file=out)
    problems = report["checks"]["problems"]
    print(f"\nchecks: {'; '.join(problems) if problems else 'ok'}", file=out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000, help="rounds per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warm-calls", type=int, default=20000, help="calls per warm CPU run")
    parser.add_argument("--warm-runs", type=int, default=3, help="warm CPU: best of this many")
    parser.add_argument("--json", type=Path, help="also write the JSON here")
    parser.add_argument(
        "--expect-flushkit",
        type=Path,
        help="exit at once unless the imported flushkit lies under this directory",
    )
    args = parser.parse_args()

    package_dir = Path(flushkit.__file__).resolve().parent
    print(f"flushkit.__file__ = {flushkit.__file__}", file=sys.stderr, flush=True)
    if args.expect_flushkit is not None and not package_dir.is_relative_to(
        args.expect_flushkit.resolve()
    ):
        print(f"expected flushkit under {args.expect_flushkit}", file=sys.stderr)
        return 2

    import grpc
    import pymilvus
    import structlog
    from opentelemetry import trace
    from pymilvus import MilvusClient

    # Quiet: structlog filtering below WARNING; no OpenTelemetry SDK installed globally.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    started = time.monotonic()
    figures = Figures()
    checks: dict[str, Any] = {
        "global tracer provider": type(trace.get_tracer_provider()).__name__,
    }
    with tempfile.TemporaryDirectory() as tmp:
        client = MilvusClient(str(Path(tmp) / "hot.db"))
        try:
            if not client.has_collection(COLLECTION):
                client.create_collection(COLLECTION, dimension=4)
            setup = Setup(client)
            p1(setup, args.rounds, args.repeats, figures)
            checks["replaced transport"] = replaced_transport(
                setup, args.warm_calls, args.warm_runs, args.rounds, args.repeats, figures
            )
            p2(setup, args.rounds, args.repeats, figures)
            checks["full telemetry"] = full_telemetry(
                setup, args.rounds, args.repeats, figures, Path(tmp)
            )
        finally:
            client.close()
    checks["problems"] = check_telemetry(checks["full telemetry"])
    report = {
        "flushkit": {
            "file": flushkit.__file__,
            "version": flushkit.__version__,
            "source_digest": source_digest(package_dir),
        },
        "versions": {
            "python": sys.version.split()[0],
            "pymilvus": pymilvus.__version__,
            "grpcio": grpc.__version__,
        },
        "rounds": args.rounds,
        "repeats": args.repeats,
        "warm_calls": args.warm_calls,
        "warm_runs": args.warm_runs,
        "seconds": time.monotonic() - started,
        "figures": figures.medians(),
        "per_repeat": figures.per_repeat,
        "checks": checks,
    }
    show(report, sys.stderr)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
