"""The middleware protocol, stepped by a test driver (pure logic, no server)."""

import dataclasses

import pytest

from flushkit import FlushRequest, FlushResult, Pause, Status
from flushkit._chain import Chain, RequestPreparer
from flushkit._effects import Failed
from flushkit.middleware import CoalescingMiddleware, TimeoutMiddleware

REQUEST = FlushRequest(
    collection_names=("docs",), db_name="default", timeout=None, wait=False, started=0.0
)


def result(**changes):
    base = FlushResult({}, {}, {}, {}, "default", Status(), 0.0)
    return dataclasses.replace(base, **changes)


class Core:
    """A core flow that records the requests it got and answers from a script."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.requests = []

    def __call__(self, request):
        self.requests.append(request)
        yield ("rpc", request)
        outcome = self.outcomes.pop(0) if self.outcomes else result()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def drive(flow, request=REQUEST):
    """A driver: performs 'rpc' effects as no-ops and records pauses."""
    pauses = []
    walk = flow.walk(request)
    try:
        effect = next(walk)
        while True:
            if isinstance(effect, Pause):
                pauses.append(effect.seconds)
            effect = walk.send(None)
    except StopIteration as done:
        return done.value, pauses


def test_no_middleware_runs_the_core():
    core = Core(result(db_name="x"))
    assert drive(Chain([], core))[0].db_name == "x"


def test_order_is_outermost_first():
    seen = []

    def named(name):
        def middleware(request):
            seen.append(f"{name} before")
            answer = yield request
            seen.append(f"{name} after")
            return answer

        return middleware

    drive(Chain([named("a"), named("b")], Core()))
    assert seen == ["a before", "b before", "b after", "a after"]


def test_middleware_changes_the_request():
    def rename(request):
        return (yield request.replace(db_name="other"))

    core = Core()
    drive(Chain([rename], core))
    assert core.requests[0].db_name == "other"


def test_middleware_replaces_the_result():
    def replace(request):
        answer = yield request
        return dataclasses.replace(answer, db_name="replaced")

    assert drive(Chain([replace], Core()))[0].db_name == "replaced"


def test_middleware_sees_and_replaces_the_exception():
    class Mine(Exception):
        pass

    def translate(request):
        try:
            return (yield request)
        except KeyError as exc:
            raise Mine("translated") from exc

    with pytest.raises(Mine, match="translated"):
        drive(Chain([translate], Core(KeyError("x"))))


def test_middleware_swallows_the_exception_with_a_result():
    def fallback(request):
        try:
            return (yield request)
        except KeyError:
            return result(db_name="fallback")

    assert drive(Chain([fallback], Core(KeyError("x"))))[0].db_name == "fallback"


def test_retry_after_a_pause_runs_the_rest_of_the_chain_again():
    inner_calls = []

    def retry(request):
        for _ in range(3):
            try:
                return (yield request)
            except ConnectionError:
                yield Pause(0.25)
        raise AssertionError("unreachable")

    def count(request):
        inner_calls.append(request)
        return (yield request)

    core = Core(ConnectionError(), ConnectionError(), result(db_name="third"))
    answer, pauses = drive(Chain([retry, count], core))
    assert answer.db_name == "third"
    assert pauses == [0.25, 0.25]
    assert len(inner_calls) == 3 and len(core.requests) == 3


class Cancelled(BaseException):
    """A runtime's cancellation, as the driver hands it in."""


def watching(seen):
    """A middleware that records the type of whatever is thrown into it, and re-raises."""

    def watch(request):
        try:
            return (yield request)
        except BaseException as exc:
            seen.append(type(exc))
            raise

    return watch


def test_cancellation_reaches_middleware_and_propagates():
    seen = []
    walk = Chain([watching(seen)], Core()).walk(REQUEST)
    next(walk)
    with pytest.raises(Cancelled):  # the driver's outcome of the core's RPC
        walk.send(Failed(Cancelled()))
    assert seen == [Cancelled]


def test_yielding_something_else_is_a_type_error():
    def bad(request):
        yield "not a request"
        return result()

    with pytest.raises(TypeError, match="may yield only a FlushRequest or a Pause"):
        drive(Chain([bad], Core()))


def test_forgetting_to_return_the_result_is_a_type_error():
    def forgetful(request):
        yield request

    with pytest.raises(TypeError, match="must return the FlushResult"):
        drive(Chain([forgetful], Core()))


def test_a_plain_function_is_not_a_middleware():
    def plain(request):
        return result()

    with pytest.raises(TypeError, match="generator function"):
        drive(Chain([plain], Core()))


def test_non_callable_middleware_is_refused_at_composition():
    with pytest.raises(TypeError, match="callable"):
        Chain([42], Core())


def test_a_chain_that_is_not_a_list_is_a_clear_error(client):
    import flushkit

    with pytest.raises(TypeError, match=r"middlewares.*not function \(did you mean to call"):
        flushkit.Flusher(client, middleware=flushkit.default_middleware)
    with pytest.raises(TypeError, match=r"list of middlewares.*not StatusMiddleware; pass \[one\]"):
        flushkit.Flusher(client, middleware=flushkit.StatusMiddleware())


def test_a_flusher_of_something_else_names_both_clients():
    import flushkit

    for make in (flushkit.Flusher, flushkit.AsyncFlusher):
        with pytest.raises(TypeError, match=r"MilvusClient \(AsyncFlusher also takes an Async"):
            make(None)


def test_an_inner_middleware_raising_at_once_is_thrown_into_the_outer_one():
    seen = []

    def outer(request):
        try:
            return (yield request)
        except ZeroDivisionError as exc:
            seen.append(exc)
            return result(db_name="recovered")

    def inner(request):
        raise ZeroDivisionError("at once")
        yield request  # pragma: no cover

    assert drive(Chain([outer, inner], Core()))[0].db_name == "recovered"
    assert len(seen) == 1


def test_a_middleware_may_yield_the_request_after_the_inner_chain_raised_twice():
    def retry_forever(request):
        while True:
            try:
                return (yield request)
            except KeyError:
                continue

    core = Core(KeyError(), KeyError(), result(db_name="third"))
    assert drive(Chain([retry_forever], core))[0].db_name == "third"
    assert len(core.requests) == 3


def test_a_middleware_that_fails_to_start_is_thrown_into_the_outer_one():
    seen = []

    def outer(request):
        try:
            return (yield request)
        except ValueError as exc:
            seen.append(exc)
            return result(db_name="recovered")

    class Broken:
        def __call__(self, request):
            raise ValueError("cannot start")

    assert drive(Chain([outer, Broken()], Core()))[0].db_name == "recovered"
    assert len(seen) == 1


class Stamp(RequestPreparer):
    """A preparer that appends its name to the request's database name."""

    def __init__(self, name):
        self.name = name

    def prepare(self, fields):
        fields["db_name"] += f"+{self.name}"


def test_preparers_shape_the_request_before_any_flow_and_run_no_flow():
    seen = []

    def outer(request):
        seen.append(request.db_name)
        return (yield request)

    class NoFlow(Stamp):
        def __call__(self, request):
            raise AssertionError("a preparer in a chain runs no flow")

    core = Core()
    chain = Chain([outer, NoFlow("a"), Stamp("b")], core)
    assert len(chain.middleware) == 3 and len(chain.flows) == 1  # all listed, one walked
    request = chain.request(
        {
            "deadline": None,
            "server_address": None,
            "server_port": None,
            "trace": None,
            "collection_names": ("docs",),
            "db_name": "db",
            "timeout": None,
            "wait": False,
            "started": 0.0,
            "coalesce": False,
        }
    )
    assert request.db_name == "db+a+b"  # in chain order
    drive(chain, request)
    assert seen == ["db+a+b"]  # the outer flow sees the prepared request
    assert core.requests == [request]


def test_a_preparer_called_as_a_flow_yields_the_prepared_copy():
    flow = Stamp("x")(REQUEST)
    prepared = next(flow)
    assert prepared.db_name == "default+x" and REQUEST.db_name == "default"
    with pytest.raises(StopIteration) as done:
        flow.send(result(db_name="answered"))
    assert done.value.value.db_name == "answered"


def test_timeout_and_coalescing_are_preparers():
    # The facade's request already carries their fields; their flows never run.
    timeout, coalescing = TimeoutMiddleware(), CoalescingMiddleware()
    chain = Chain([timeout, coalescing], Core())
    assert chain.flows == () and len(chain.preparers) == 2
    fixed = {"deadline": None, "server_address": None, "server_port": None, "trace": None}
    fields = {"collection_names": ("c",), "db_name": "d", "wait": False, "coalesce": False}
    request = chain.request({**fixed, **fields, "timeout": 2.5, "started": 100.0})
    assert (request.deadline, request.coalesce) == (102.5, True)
    assert chain.request({**fixed, **fields, "timeout": None, "started": 100.0}).deadline is None
    # An earlier deadline already there stays.
    early = {**fixed, **fields, "deadline": 101.0, "timeout": 2.5, "started": 100.0}
    assert chain.request(early).deadline == 101.0


def test_a_preparer_that_adds_or_drops_a_field_is_a_clear_error():
    class Typo(RequestPreparer):
        def prepare(self, fields):
            fields["colection_names"] = ("x",)

    class Drop(RequestPreparer):
        def prepare(self, fields):
            del fields["wait"]

    fields = {field.name: getattr(REQUEST, field.name) for field in dataclasses.fields(REQUEST)}
    with pytest.raises(TypeError, match=r"unknown: \['colection_names'\]"):
        Chain([Typo()], Core()).request(dict(fields))
    with pytest.raises(TypeError, match=r"missing: \['wait'\]"):
        Chain([Drop()], Core()).request(dict(fields))
    assert Chain([Stamp("ok")], Core()).request(dict(fields)).db_name == "default+ok"
    class Rename(RequestPreparer):  # as many fields as before, one of them unknown
        def prepare(self, fields):
            fields["dbname"] = fields.pop("db_name")

    with pytest.raises(TypeError, match=r"unknown: \['dbname'\], missing: \['db_name'\]"):
        Chain([Rename()], Core()).request(dict(fields))
    with pytest.raises(TypeError, match="colection_names"):  # called as a flow too
        next(Typo()(REQUEST))


def test_a_middleware_that_returns_none_stays_out_of_the_call():
    seen = []

    def named(name):
        def middleware(request):
            seen.append(name)
            return (yield request)

        return middleware

    def absent(request):
        seen.append("absent")
        return None

    core = Core(result(db_name="x"), RuntimeError("boom"))
    chain = Chain([named("outer"), absent, named("inner"), absent], core)
    assert drive(chain)[0].db_name == "x"
    assert seen == ["outer", "absent", "inner", "absent"]
    with pytest.raises(RuntimeError, match="boom"):  # failures pass it by too
        drive(chain)
    only_absent = Chain([absent], Core(result(db_name="y")))
    assert drive(only_absent)[0].db_name == "y"


def test_closing_a_walk_closes_the_core_and_every_running_flow_innermost_first():
    closed = []

    def named(name, pause=False):
        def flow(request):
            try:
                if pause:
                    yield Pause(1.0)
                return (yield request)
            finally:
                closed.append(name)

        return flow

    def core(request):
        try:
            yield ("rpc", request)
            return result()
        finally:
            closed.append("core")

    walk = Chain([named("outer"), named("inner")], core).walk(REQUEST)
    assert next(walk) == ("rpc", REQUEST)  # waiting for the core's RPC
    walk.close()
    assert closed == ["core", "inner", "outer"]

    closed.clear()
    walk = Chain([named("outer"), named("pausing", pause=True)], core).walk(REQUEST)
    assert next(walk) == Pause(1.0)  # the inner flow's pause, before the core ran
    walk.close()
    assert closed == ["pausing", "outer"]


def test_a_cancellation_as_an_inner_middleware_starts_reaches_the_outer_flows():
    seen = []

    def interrupted(request):
        raise Cancelled

    with pytest.raises(Cancelled):
        drive(Chain([watching(seen), interrupted], Core()))
    assert seen == [Cancelled]  # as it would if the inner flow had started, then raised
