"""Checks of what callers pass, done before any RPC."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

#: Milvus rejects collection and database names longer than this.
MAX_NAME_LENGTH = 255


def collection_names_of(value: Any) -> tuple[str, ...]:
    """One name or a sequence of names, as a tuple without duplicates (first one wins)."""
    if isinstance(value, str):  # the usual call: one name
        return (check_name("collection name", value),)
    names: Sequence[Any]
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        names = value
        if not names:
            raise ValueError("collection_names is empty: give at least one collection name")
    else:
        raise TypeError(
            f"collection_names must be a str or a sequence of str, not {type(value).__name__}"
        )
    for name in names:
        check_name("collection name", name)
    return tuple(dict.fromkeys(names))


def check_name(what: str, name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}: {name!r}")
    if not name or name.isspace():
        raise ValueError(f"{what} is empty or blank: {name!r}")
    if name != name.strip():
        raise ValueError(f"{what} has leading or trailing whitespace: {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"{what} is {len(name)} characters long; Milvus allows at most {MAX_NAME_LENGTH}"
        )
    return name


def db_name_of(value: Any, default: str) -> str:
    return default if value is None else check_name("db_name", value)


def timeout_of(value: Any) -> float | None:
    """``None`` (no limit) or a finite number of seconds greater than zero."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"timeout must be None or a number of seconds, not {type(value).__name__}: {value!r}"
        )
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"timeout must be a finite number of seconds greater than 0 (or None for no "
            f"limit), not {value!r}"
        )
    return float(value)


def wait_of(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"wait must be True or False, not {type(value).__name__}: {value!r}")
    return value


def interval_of(value: Any) -> float:
    """``flush_interval``: a finite number of seconds, 0 or more."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"flush_interval must be a number of seconds, not {type(value).__name__}: {value!r}"
        )
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"flush_interval must be a finite number of seconds, 0 or more, not {value!r}"
        )
    return float(value)
