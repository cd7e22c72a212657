"""Pacing: when the server will next admit a Flush of one collection, learned from its
answers. Pure logic: every method takes the time (``time.monotonic()`` seconds).

Milvus limits Flush per collection (``quotaAndLimits.flushRate.collection.max``, by
default 0.1/s from Milvus 2.3.9 and 2.4 on; Milvus 2.3 has a server-wide
``flushRate.max``). A throttled Flush is an ordinary answer, ``code=8`` / legacy
``RateLimit``, whose reason names the rate (``"... rate limit exceeded[rate=0.1]"``).

* A throttled answer that names the rate teaches the **interval** (``1 / rate``); the
  next slot is then the last admitted Flush's answer + interval, when that is still
  ahead. Otherwise (another process flushed, or the server named no rate) the slot is
  pushed out by a **backoff** that doubles from :data:`FIRST_BACKOFF` up to the interval
  (:data:`DEFAULT_WINDOW`, Milvus's default, when none is known).
* An admitted Flush resets the backoff and, once an interval is known (learned, or seeded
  with ``flush_interval``), sets the next slot one interval later: a steady caller meets
  no throttling at all.
"""

from __future__ import annotations

import math
import re

from ._models import Status

__all__ = ["DEFAULT_WINDOW", "FIRST_BACKOFF", "Pace", "is_throttled", "rate_named_in"]

#: Milvus's default: one flush per collection every 10 s.
DEFAULT_WINDOW = 10.0
#: The first push after a throttled answer the interval cannot explain.
FIRST_BACKOFF = 0.25

_RATE = re.compile(r"rate=([0-9][0-9.eE+-]*)")
#: New codes 4 (too many requests) and 8 (rate limit), legacy 49 (RateLimit).
_THROTTLED_CODES = frozenset({4, 8})
_THROTTLED_LEGACY = 49


def is_throttled(status: Status) -> bool:
    """Whether the server refused the call for its rate limit (not a quota's deny)."""
    if status.code:
        return status.code in _THROTTLED_CODES
    return status.legacy_code == _THROTTLED_LEGACY


def rate_named_in(reason: str) -> float | None:
    """The rate, in calls per second, that a throttled answer's reason names, if any."""
    match = _RATE.search(reason)
    if match is None:
        return None
    try:
        rate = float(match.group(1))
    except ValueError:
        return None
    return rate if math.isfinite(rate) and rate > 0 else None


class Pace:
    """One collection's pacing (see the module docstring)."""

    __slots__ = ("admitted_at", "backoff", "interval", "last_status", "slot")

    def __init__(self, interval: float = 0.0) -> None:
        #: Seconds between admitted Flushes, learned or seeded; 0 while unknown.
        self.interval = interval
        #: The current push after unexplained throttling; 0 after an admitted Flush.
        self.backoff = 0.0
        #: The earliest time the next Flush may go.
        self.slot = -math.inf
        #: When the last admitted Flush was answered (None: none seen).
        self.admitted_at: float | None = None
        #: The last throttled answer's status, None for gRPC RESOURCE_EXHAUSTED (for the
        #: errors of calls that cannot wait).
        self.last_status: Status | None = None

    def seed(self, interval: float) -> None:
        """A flusher's ``flush_interval``: at least this long between Flushes."""
        if interval > self.interval:
            self.interval = interval
            if self.admitted_at is not None:
                self.slot = max(self.slot, self.admitted_at + interval)

    def admitted(self, now: float) -> None:
        """A Flush was answered without throttling at ``now``."""
        self.admitted_at = now
        self.backoff = 0.0
        self.slot = now + self.interval

    def throttled(self, now: float, status: Status | None) -> None:
        """A Flush was throttled at ``now`` (``status`` None: a gRPC RESOURCE_EXHAUSTED)."""
        self.last_status = status
        rate = None if status is None else rate_named_in(status.reason)
        if rate is not None:
            self.interval = 1.0 / rate
        if self.interval and self.admitted_at is not None:
            due = self.admitted_at + self.interval
            if due > now:  # the interval explains it: the next slot is known exactly
                self.slot = max(self.slot, due)
                return
        window = self.interval or DEFAULT_WINDOW
        self.backoff = min(window, 2 * self.backoff if self.backoff else FIRST_BACKOFF)
        self.slot = max(self.slot, now + self.backoff)

    def neutral(self, now: float) -> bool:
        """Nothing worth remembering: no interval known, no slot ahead, no admission
        recent enough to explain the next throttled answer."""
        recent = self.admitted_at is not None and now - self.admitted_at < DEFAULT_WINDOW
        return not self.interval and not self.backoff and self.slot <= now and not recent

    def __repr__(self) -> str:
        return f"Pace(interval={self.interval!r}, backoff={self.backoff!r}, slot={self.slot!r})"
