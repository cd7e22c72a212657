"""Bad input is refused with a clear error before any RPC (pure logic, no server)."""

import math

import pytest

from flushkit._models import collection_names_of, db_name_of, timeout_of, wait_of

pytestmark = pytest.mark.pure


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("docs", ("docs",)),
        (["docs"], ("docs",)),
        (("docs", "images"), ("docs", "images")),
        (["docs", "images", "docs"], ("docs", "images")),
        (["b", "a", "b", "a"], ("b", "a")),
        (["x" * 255], ("x" * 255,)),
    ],
)
def test_collection_names_accepted(value, expected):
    assert collection_names_of(value) == expected


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ([], ValueError, "empty"),
        ((), ValueError, "empty"),
        ("", ValueError, "empty or blank"),
        ("   ", ValueError, "empty or blank"),
        (["docs", " "], ValueError, "empty or blank"),
        ([" docs"], ValueError, "whitespace"),
        (["x" * 256], ValueError, "at most 255"),
        (None, TypeError, "NoneType"),
        (b"docs", TypeError, "bytes"),
        ([b"docs"], TypeError, "bytes"),
        ([1], TypeError, "int"),
        ([None], TypeError, "NoneType"),
        ([["docs"]], TypeError, "list"),
        ({"docs"}, TypeError, "set"),
        (42, TypeError, "int"),
    ],
)
def test_collection_names_refused(value, error, match):
    with pytest.raises(error, match=match):
        collection_names_of(value)


@pytest.mark.parametrize("value", [None, 0.001, 1, 5.0, 1e6])
def test_timeout_accepted(value):
    result = timeout_of(value)
    assert result == value
    assert result is None or isinstance(result, float)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (0.0, ValueError),
        (-1, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (-math.inf, ValueError),
        (True, TypeError),
        (False, TypeError),
        ("5", TypeError),
        ([5], TypeError),
    ],
)
def test_timeout_refused(value, error):
    with pytest.raises(error, match="timeout"):
        timeout_of(value)


def test_db_name():
    assert db_name_of(None, "default") == "default"
    assert db_name_of("other", "default") == "other"
    with pytest.raises(ValueError, match="db_name"):
        db_name_of("", "default")
    with pytest.raises(TypeError, match="db_name"):
        db_name_of(b"x", "default")


def test_wait_must_be_bool():
    assert wait_of(True) is True
    with pytest.raises(TypeError, match="wait"):
        wait_of(1)
