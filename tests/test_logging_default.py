"""The default logger: stdlib ``logging`` while structlog is unconfigured, structlog once the
application configures it, chosen at each call; blocking, under asyncio and under trio."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest
import structlog

import flushkit
from flushkit.testing import ok, status

from .helpers import RecordingLogger, flush_in

NOT_FOUND = status(100, 4, "collection not found")
UNAVAILABLE = status(2, 1, "service unavailable", retriable=True)
FAST_RETRY = flushkit.RetryPolicy(initial=0.01, maximum=0.01)


@pytest.fixture(autouse=True)
def unconfigured_structlog():
    """structlog at its built-in defaults (as in an application that never configured it),
    then the configuration as it was."""
    was_configured = structlog.is_configured()
    saved = structlog.get_config()
    structlog.reset_defaults()
    yield
    if was_configured:
        structlog.configure(**saved)
    else:
        structlog.reset_defaults()


def flushkit_records(caplog):
    return [record for record in caplog.records if record.name == "flushkit"]


def test_success_prints_nothing_and_configures_nothing(runtime, client, capfd):
    root_handlers = list(logging.getLogger().handlers)
    flush_in(runtime, client)(["docs", "images"])
    assert capfd.readouterr() == ("", "")
    assert logging.getLogger().handlers == root_handlers
    # The one handler flushkit adds is the library's NullHandler (at import, not per call).
    handlers = logging.getLogger("flushkit").handlers
    assert [type(h) for h in handlers] == [logging.NullHandler]
    assert not structlog.is_configured()


def test_success_is_a_debug_record_on_the_flushkit_logger(runtime, client, caplog):
    caplog.set_level(logging.DEBUG, logger="flushkit")
    flush_in(runtime, client)(["docs", "images"], db_name="analytics")
    (record,) = flushkit_records(caplog)
    assert record.levelno == logging.DEBUG
    assert record.funcName == "__call__"  # the middleware's line, not the helper's
    fields = record.flushkit
    assert fields["event"] == "flushkit.flush.succeeded"
    assert fields["collections"] == ["docs", "images"]
    assert fields["db_name"] == "analytics"
    assert fields["segments"] == 4
    assert fields["outcome"] == "success"
    assert fields["wait"] is False
    assert fields["duration_s"] > 0
    message = record.getMessage()
    assert message.startswith(
        "flushkit.flush.succeeded collections=['docs', 'images'] db_name='analytics' wait=False"
    )
    assert " segments=4 " in message
    assert message.endswith(" outcome='success'")


def test_failure_is_a_warning_record_with_its_fields(runtime, client, fake, caplog):
    fake.script_flush(NOT_FOUND)
    with pytest.raises(flushkit.CollectionNotFoundError):
        flush_in(runtime, client)("docs")
    (record,) = flushkit_records(caplog)  # caplog's default level: warnings and above
    assert record.levelno == logging.WARNING
    fields = record.flushkit
    assert fields["event"] == "flushkit.flush.failed"
    assert fields["error"] == "CollectionNotFoundError"
    assert fields["code"] == 100
    assert fields["error_code"] == "CollectionNotExists"
    assert fields["retryable"] is False
    assert fields["outcome"] == "error"
    message = record.getMessage()
    assert message.startswith("flushkit.flush.failed collections=['docs'] db_name='default'")
    assert " error='CollectionNotFoundError' code=100 error_code='CollectionNotExists' " in message


def test_retry_is_an_info_record(runtime, client, fake, caplog):
    fake.script_flush(UNAVAILABLE, ok())
    flush = flush_in(runtime, client, middleware=flushkit.default_middleware(retry=FAST_RETRY))
    flush("docs")
    assert flushkit_records(caplog) == []  # info is below the default level
    caplog.set_level(logging.INFO, logger="flushkit")
    fake.script_flush(UNAVAILABLE, ok())
    assert flush("docs").attempts == 2
    (record,) = flushkit_records(caplog)
    assert record.levelno == logging.INFO
    assert record.funcName == "_report"
    assert record.flushkit["event"] == "flushkit.flush.retrying"
    assert record.flushkit["attempt"] == 1
    assert record.flushkit["error"] == "ServiceUnavailableError"
    assert record.getMessage().startswith("flushkit.flush.retrying collections=['docs'] ")


def test_configured_structlog_gets_the_events(runtime, client, fake, caplog):
    caplog.set_level(logging.DEBUG, logger="flushkit")
    fake.script_flush(UNAVAILABLE, ok(), NOT_FOUND)
    flush = flush_in(runtime, client, middleware=flushkit.default_middleware(retry=FAST_RETRY))
    with structlog.testing.capture_logs() as logs:
        flush("docs")
        with pytest.raises(flushkit.CollectionNotFoundError):
            flush("docs")
    assert [(entry["log_level"], entry["event"]) for entry in logs] == [
        ("info", "flushkit.flush.retrying"),
        ("debug", "flushkit.flush.succeeded"),
        ("warning", "flushkit.flush.failed"),
    ]
    assert logs[2]["error"] == "CollectionNotFoundError"
    assert flushkit_records(caplog) == []


def test_configured_structlog_with_a_level_filter_is_obeyed(runtime, client, capsys):
    events = []

    def capture(logger, method, event_dict):
        events.append(event_dict["event"])
        raise structlog.DropEvent

    flush = flush_in(runtime, client)
    structlog.configure(
        processors=[capture],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    flush("docs")
    assert events == []
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    flush("docs")
    assert events == ["flushkit.flush.succeeded"]
    assert capsys.readouterr() == ("", "")


def test_the_choice_follows_configuration_made_after_the_flusher(runtime, client, caplog):
    flush = flush_in(runtime, client)  # created while structlog is unconfigured
    flush("docs")
    assert flushkit_records(caplog) == []  # debug: below the stdlib level
    caplog.set_level(logging.DEBUG, logger="flushkit")  # the stdlib level, set later
    flush("docs")
    assert [r.flushkit["event"] for r in flushkit_records(caplog)] == ["flushkit.flush.succeeded"]
    caplog.clear()
    with structlog.testing.capture_logs() as logs:  # configures structlog
        flush("docs")
    assert [entry["event"] for entry in logs] == ["flushkit.flush.succeeded"]
    assert flushkit_records(caplog) == []
    structlog.reset_defaults()  # back to unconfigured: back to stdlib logging
    flush("docs")
    assert [r.flushkit["event"] for r in flushkit_records(caplog)] == ["flushkit.flush.succeeded"]


def test_an_explicit_logger_is_used_as_is(runtime, client, fake, caplog):
    logger = RecordingLogger()
    fake.script_flush(UNAVAILABLE, ok())
    chain = flushkit.default_middleware(logger=logger, retry=FAST_RETRY)
    flush_in(runtime, client, middleware=chain)("docs")
    assert [(level, event) for level, event, _ in logger.events] == [
        ("info", "flushkit.flush.retrying"),
        ("debug", "flushkit.flush.succeeded"),  # though stdlib and structlog say nothing
    ]
    assert flushkit_records(caplog) == []


@pytest.mark.parametrize("wrap", [lambda log: log, logging.LoggerAdapter], ids=["log", "adapter"])
def test_a_stdlib_logger_passed_in_gets_records_like_the_default(
    runtime, client, fake, caplog, wrap
):
    """``default_middleware(logger=logging.getLogger("myapp"))``: the records go to that
    logger (its level applies), made as the default logger makes them; before, every
    event was a TypeError from ``Logger._log`` that failed the flush itself."""
    caplog.set_level(logging.INFO, logger="myapp")
    fake.script_flush(UNAVAILABLE, ok(), NOT_FOUND)
    chain = flushkit.default_middleware(logger=wrap(logging.getLogger("myapp")), retry=FAST_RETRY)
    flush = flush_in(runtime, client, middleware=chain)
    assert flush("docs").attempts == 2
    with pytest.raises(flushkit.CollectionNotFoundError):
        flush("docs")
    records = [record for record in caplog.records if record.name == "myapp"]
    assert [(r.levelno, r.getMessage().split()[0]) for r in records] == [
        (logging.INFO, "flushkit.flush.retrying"),  # the success is debug: below INFO
        (logging.WARNING, "flushkit.flush.failed"),
    ]
    assert records[1].getMessage().startswith("flushkit.flush.failed collections=['docs'] ")
    assert " error='CollectionNotFoundError' " in records[1].getMessage()
    if wrap is logging.LoggerAdapter:  # an adapter replaces the extra with its own (none)
        assert not hasattr(records[1], "flushkit")  # the message alone carries the fields
    else:
        assert records[1].flushkit["error"] == "CollectionNotFoundError"
    assert flushkit_records(caplog) == []


@pytest.mark.parametrize("configured", [False, True])
def test_an_unconfigured_application_sees_nothing_a_configured_one_the_failure(fake, configured):
    """A plain process: with no logging configured anywhere, neither a successful nor a
    failed flush prints anything (a library's NullHandler, no last-resort line); after
    ``logging.basicConfig()``, a failed one is one line on stderr (warnings and up)."""
    fake.script_flush(ok(), NOT_FOUND)
    setup = "import logging; logging.basicConfig()" if configured else ""
    program = textwrap.dedent(
        f"""
        {setup}
        import flushkit
        from pymilvus import MilvusClient

        client = MilvusClient(uri={fake.uri!r})
        flusher = flushkit.Flusher(client)
        flusher.flush("docs")
        try:
            flusher.flush("docs")
        except flushkit.CollectionNotFoundError:
            pass
        client.close()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if "flushkit." in line]
    if not configured:
        assert lines == []
        return
    (line,) = lines
    assert "flushkit.flush.failed collections=['docs'] db_name='default' " in line
    assert "error='CollectionNotFoundError'" in line
