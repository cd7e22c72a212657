"""The ``flushkit`` command: ``flushkit flush``, ``flushkit bench`` and ``flushkit demo``.

Every argument is checked before connecting (exit 2 with one line saying why: the
library's reason for ``--timeout``, pymilvus's for a ``--uri`` it cannot use); on Milvus
Lite, which ignores unknown collections, the command checks that the file and the
collections exist before flushing (exit 4) or benchmarking (exit 2 without ``--create``),
and never creates a file it was not asked to (nor keeps one ``bench --create`` made).

Exit codes (also in the README):

====  ===========================================================
0     success
1     an unexpected error
2     bad usage or arguments (before any RPC)
3     FlushTimeoutError
4     CollectionNotFoundError
5     DatabaseNotFoundError
6     RateLimitedError
7     ServiceUnavailableError, or the server could not be reached
8     PermissionDeniedError
9     InvalidArgumentError
10    QuotaExceededError
11    ServerError, ClientClosedError and any other FlushError
====  ===========================================================
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO
from urllib.parse import urlparse

import structlog

from .. import _exceptions as errors
from .._client import Flusher
from .._models import FlushResult, collection_names_of, db_name_of, timeout_of
from .._version import __version__
from .bench import add_arguments as add_bench_arguments
from .bench import (
    at_least_one,
    bench_command,
    check_at_least_one,
    check_directory_is_writable,
    server_of,
)
from .bench import check_arguments as check_bench_arguments

EXIT_CODES: dict[type[errors.FlushError], int] = {
    errors.FlushTimeoutError: 3,
    errors.CollectionNotFoundError: 4,
    errors.DatabaseNotFoundError: 5,
    errors.RateLimitedError: 6,
    errors.ServiceUnavailableError: 7,
    errors.PermissionDeniedError: 8,
    errors.InvalidArgumentError: 9,
    errors.QuotaExceededError: 10,
}
EXIT_OTHER_FLUSH_ERROR = 11
EXIT_UNREACHABLE = 7
EXIT_USAGE = 2


def exit_code_of(error: errors.FlushError) -> int:
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_OTHER_FLUSH_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    _configure_logging(args.verbose)
    try:
        args.check(args)
    except (ValueError, TypeError) as exc:
        print(f"flushkit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


class _Parser(argparse.ArgumentParser):
    """Bad arguments exit 2 with one line saying why, as the checks after parsing do
    (argparse's own would print the usage first)."""

    def error(self, message: str) -> NoReturn:
        reason = message.removeprefix("argument ")  # "--calls: ..." as the checks say it
        self.exit(EXIT_USAGE, f"flushkit: {reason} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flushkit", description="Flush Milvus collections safely and observably.")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log at debug level (logs go to stderr)"
    )
    parser.add_argument("--version", action="version", version=f"flushkit {__version__}")
    commands = parser.add_subparsers(dest="command")

    flush = commands.add_parser(
        "flush",
        help="flush collections and print the result",
        description="Flush collections and print the result. On Milvus Lite (a .db file), "
        "which ignores unknown names, the command checks first that every collection exists. "
        "Exit codes: 0 success, "
        "3 timeout, 4 collection not found, 5 database not found, 6 rate limited, "
        "7 unavailable, 8 permission denied, 9 invalid argument, 10 quota exceeded, "
        "11 other server error, 2 bad arguments, 1 unexpected.",
    )
    flush.add_argument("names", nargs="+", metavar="NAME", help="collection names")
    _add_connection_arguments(flush)
    flush.add_argument("--db", default=None, help="database (default: the server's default)")
    flush.add_argument("--wait", action="store_true", help="wait until persisted")
    flush.add_argument("--json", action="store_true", help="print the result as JSON")
    flush.set_defaults(run=_flush, check=_check_flush_arguments)

    bench = commands.add_parser(
        "bench",
        help="measure flush latency and throughput through flushkit",
        description="Flush one collection many times and print latency percentiles and "
        "throughput. Mind the server's flush rate limit (Milvus 2.5, 2.6 and later 2.4 "
        "releases: one flush per collection every 10 s by default): a call whose budget "
        "cannot reach its collection's next slot counts as an error.",
    )
    _add_connection_arguments(bench)
    add_bench_arguments(bench)
    bench.set_defaults(run=_bench, check=_check_bench_arguments)

    demo = commands.add_parser(
        "demo",
        help="an end-to-end flush on Milvus Lite, with logs and the span",
        description="Create a collection, insert rows, flush through the full default chain "
        "with readable logs and the finished span printed, show the result, clean up.",
    )
    demo.add_argument(
        "--server",
        action="store_true",
        help="use the embedded Milvus standalone server (pip install 'flushkit[server]') "
        "instead of a Milvus Lite file in the current directory",
    )
    demo.add_argument(
        "--rows", type=at_least_one, default=1000, help="rows to insert (default: %(default)s)"
    )
    demo.set_defaults(run=_demo, check=_check_demo_arguments, verbose=True)
    return parser


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--uri",
        default=os.environ.get("MILVUS_URI", "http://localhost:19530"),
        help="server URI or Milvus Lite .db file (default: $MILVUS_URI or http://localhost:19530)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("MILVUS_TOKEN", ""),
        help="credential, user:password or API key (default: $MILVUS_TOKEN; prefer the "
        "variable, which stays out of shell history)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=60.0,
        help="budget in seconds for connecting and for each flush (default: %(default)s)",
    )


def _seconds(text: str) -> float:
    """``--timeout`` as a number; whether it is a budget is the library's check, after
    parsing (``_check_connection_arguments``), in the library's words."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"timeout must be a finite number of seconds greater than 0, not {text!r}"
        ) from None


def _check_flush_arguments(args: argparse.Namespace) -> None:
    collection_names_of(args.names)
    db_name_of(args.db, "default")
    _check_connection_arguments(args)


def _check_bench_arguments(args: argparse.Namespace) -> None:
    _check_connection_arguments(args)
    check_bench_arguments(args)


def _check_demo_arguments(args: argparse.Namespace) -> None:
    check_at_least_one("--rows", args.rows)


def _check_connection_arguments(args: argparse.Namespace) -> None:
    """Raise the library's ``ValueError`` for ``--timeout`` (less its "None" choice, which
    the command has not); check ``--uri``."""
    try:
        timeout_of(args.timeout)
    except ValueError as exc:
        raise ValueError(f"--timeout: {str(exc).replace(_NO_LIMIT, '')}") from None
    if is_milvus_lite(args.uri):
        _check_milvus_lite_can_open(args.uri)
    else:
        _check_port_of(args.uri)


_NO_LIMIT = " (or None for no limit)"


def is_milvus_lite(uri: str) -> bool:
    """pymilvus's own rule: a URI ending in ``.db`` is a Milvus Lite file."""
    return uri.endswith(".db")


def _check_milvus_lite_can_open(uri: str) -> None:
    if importlib.util.find_spec("milvus_lite") is None:
        raise ValueError(
            f"--uri {uri!r} is a Milvus Lite file, which needs milvus-lite: "
            "pip install 'flushkit[lite]'"
        )
    check_directory_is_writable("--uri", uri)


def _check_port_of(uri: str) -> None:
    try:
        _ = urlparse(uri).port  # pymilvus reads it the same way, with a raw ValueError
    except ValueError as exc:
        raise ValueError(f"--uri {server_of(uri)!r}: {exc}") from None


def _configure_logging(verbose: bool) -> None:
    """The command is an application: it may configure structlog (to stderr). Without
    ``--verbose`` only errors: the command reports a failed flush itself."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if verbose else logging.ERROR
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


def _connect(uri: str, token: str, timeout: float) -> Any:
    from pymilvus import MilvusClient
    from pymilvus.exceptions import ConnectionConfigException, MilvusException

    try:
        return MilvusClient(uri=uri, token=token, timeout=timeout)
    except ConnectionConfigException as exc:  # pymilvus refuses the URI before connecting
        shown = server_of(uri)
        raise ValueError(f"--uri {shown!r}: {str(exc.message).replace(uri, shown)}") from None
    except MilvusException as exc:
        raise _Unreachable(str(exc.message)) from None


class _Unreachable(Exception):
    pass


def _with_client(args: argparse.Namespace, run: Callable[[Any], int]) -> int:
    """Connect with ``--uri``, ``--token`` and ``--timeout``, run, and close."""
    try:
        client = _connect(args.uri, args.token, args.timeout)
    except ValueError as exc:
        print(f"flushkit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _Unreachable as exc:
        print(f"flushkit: cannot connect: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        return run(client)
    finally:
        client.close()


def _flush(args: argparse.Namespace) -> int:
    if is_milvus_lite(args.uri) and not os.path.exists(args.uri):  # connecting creates it
        print(
            f"flushkit: CollectionNotFoundError: no Milvus Lite file {args.uri!r}, so no "
            f"collection {', '.join(map(repr, args.names))}",
            file=sys.stderr,
        )
        return EXIT_CODES[errors.CollectionNotFoundError]
    return _with_client(args, lambda client: _flush_with(args, client))


def _flush_with(args: argparse.Namespace, client: Any) -> int:
    missing = missing_on_milvus_lite(args.uri, client, args.names, args.db)
    if missing:
        print(
            f"flushkit: CollectionNotFoundError: no collection {', '.join(map(repr, missing))} "
            f"in database {args.db or 'default'!r} (checked first: Milvus Lite does not "
            "report unknown collections)",
            file=sys.stderr,
        )
        return EXIT_CODES[errors.CollectionNotFoundError]
    try:
        flusher = Flusher(client)
        result = flusher.flush(args.names, db_name=args.db, timeout=args.timeout, wait=args.wait)
    except (ValueError, TypeError) as exc:
        print(f"flushkit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except errors.FlushError as exc:
        print(f"flushkit: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exit_code_of(exc)
    if args.json:
        json.dump(result_as_json(result), sys.stdout, indent=2)
        print()
    else:
        print_table(result, sys.stdout)
    return 0


def result_as_json(result: FlushResult) -> dict[str, Any]:
    status = result.status
    return {
        "db_name": result.db_name,
        "coll_segIDs": {name: list(ids) for name, ids in result.coll_segIDs.items()},
        "flush_coll_segIDs": {name: list(ids) for name, ids in result.flush_coll_segIDs.items()},
        "coll_seal_times": dict(result.coll_seal_times),
        "coll_flush_ts": dict(result.coll_flush_ts),
        "status": {
            "code": status.code,
            "error_code": status.error_code,
            "reason": status.reason,
            "retriable": status.retriable,
            "detail": status.detail,
        },
        "elapsed": result.elapsed,
        "persisted": result.persisted,
        "attempts": result.attempts,
        "coalesced": result.coalesced,
        "throttled": result.throttled,
        "satisfied_by": result.satisfied_by,
        "flushing": result.flushing,
        "paced": result.paced,
        "persisting": result.persisting,
    }


def print_table(result: FlushResult, out: TextIO) -> None:
    names = sorted(
        set(result.coll_segIDs) | set(result.coll_flush_ts) | set(result.flush_coll_segIDs)
    )
    rows = [("collection", "sealed segments", "flushed segments", "sealed at", "flush ts")]
    for name in names:
        sealed_at = result.coll_seal_times.get(name)
        rows.append(
            (
                name,
                " ".join(map(str, result.coll_segIDs.get(name, ()))) or "-",
                " ".join(map(str, result.flush_coll_segIDs.get(name, ()))) or "-",
                datetime.datetime.fromtimestamp(sealed_at).isoformat(sep=" ") if sealed_at else "-",
                str(result.coll_flush_ts.get(name, "-")),
            )
        )
    if len(rows) > 1:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip(),
                file=out,
            )
    else:
        print("(the server reported no segments)", file=out)
    print(
        f"database {result.db_name}: {result.status.error_code}, "
        f"{'persisted' if result.persisted else 'sealed'} in {result.elapsed * 1000:.1f} ms",
        file=out,
    )


def missing_on_milvus_lite(
    uri: str, client: Any, names: Sequence[str], db_name: str | None
) -> list[str]:
    """The collections of ``names`` that a Milvus Lite file lacks.

    Milvus Lite answers a flush of an unknown collection with success, so the command asks
    first; a server answers collection-not-found itself, so there it asks nothing.
    """
    if not is_milvus_lite(uri):
        return []
    if db_name is not None:
        if db_name not in client.list_databases():
            return []  # the flush reports the missing database (DatabaseNotFoundError)
        client.use_database(db_name)  # has_collection asks the client's database
    return [name for name in names if not client.has_collection(name)]


def _bench(args: argparse.Namespace) -> int:
    new_file = is_milvus_lite(args.uri) and not os.path.exists(args.uri)
    if new_file and not args.create:
        print(f"flushkit: no Milvus Lite file {args.uri!r} to bench: {_CREATE_IT}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _with_client(args, lambda client: _bench_with(args, client))
    finally:
        if new_file:  # --create made it for the run: it goes with the collection
            _remove_milvus_lite_file(args.uri)


def _remove_milvus_lite_file(path: str) -> None:
    """Milvus Lite's file (a directory in milvus-lite 3) and its lock file, if made."""
    lock = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock")
    for made in (path, lock):
        if os.path.isdir(made):
            shutil.rmtree(made, ignore_errors=True)
        elif os.path.exists(made):
            os.remove(made)


_CREATE_IT = (
    "pass --create to create the collection for the run (and drop it afterwards), or "
    "--collection with an existing collection"
)


def _bench_with(args: argparse.Namespace, client: Any) -> int:
    if not args.create and missing_on_milvus_lite(args.uri, client, [args.collection], None):
        print(
            f"flushkit: no collection {args.collection!r} to bench: {_CREATE_IT}", file=sys.stderr
        )
        return EXIT_USAGE
    return bench_command(args, client)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(use_server=args.server, rows=args.rows)
