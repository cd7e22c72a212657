"""Retry: run the rest of the chain again after a pause, for retryable failures only,
within the call's one budget.

The decision is pure logic (:meth:`RetryPolicy.pause_after`); the middleware only yields
the pause, so the blocking driver sleeps with ``time.sleep`` and the async one with
``anyio.sleep``, and one implementation serves all three runtimes.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from .._chain import Flow
from .._exceptions import FlushError
from .._models import FlushRequest, FlushResult, Pause
from ._logging import given_logger


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how long to wait before trying a failed flush again.

    ``attempts`` counts every try, the first included. The pause before try ``n + 1`` is
    ``min(initial * multiplier ** (n - 1), maximum)``, scaled by a random factor in
    ``[1 - jitter, 1]`` so that callers failing together do not retry together, except
    after a coalesced failure (``error.coalesced``): the callers that shared the failed RPC
    pause the full backoff and retry together, to share one RPC again rather than send
    one each.
    """

    attempts: int = 3
    initial: float = 0.2
    multiplier: float = 2.0
    maximum: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"attempts must be an int, not {self.attempts!r}")
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts!r}")
        if not (0 <= self.initial <= self.maximum) or self.multiplier < 1:
            raise ValueError("need 0 <= initial <= maximum and multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, not {self.jitter!r}")

    def pause_after(
        self, attempt: int, error: BaseException, remaining: float | None, chance: float
    ) -> float | None:
        """The pause before trying again after ``error`` ended try ``attempt``, or None.

        None means give up now and raise ``error``: it is not retryable, the tries are
        used up, or the next try could not start before the deadline (``remaining``
        seconds away; None for no deadline). ``chance`` is a random number in [0, 1).

        Throttled answers never reach this policy: the core flush waits for the
        collection's next slot itself, so they use up no attempts. A
        :class:`~flushkit.RateLimitedError` with ``retry_after`` is the core's verdict
        that the call's budget ends before the server admits its Flush and answers it
        (and, with ``wait=True``, persists it): it is given up at once, as another try
        could only end in a timeout (the caller may try again after ``retry_after``).
        """
        if not (isinstance(error, FlushError) and error.retryable) or attempt >= self.attempts:
            return None
        if error.retry_after is not None:  # refused: no slot within the budget
            return None
        backoff = min(self.initial * self.multiplier ** (attempt - 1), self.maximum)
        pause = backoff if error.coalesced else backoff * (1 - self.jitter * chance)
        if remaining is not None and pause >= remaining:
            return None
        return pause


class RetryMiddleware:
    """Tries a flush again when it fails with a retryable :class:`~flushkit.FlushError`.

    Retryable: the server's ``retriable`` flag, rate limited, unavailable or not ready, a
    dropped connection. Each retry is a ``flushkit.flush.retrying`` log event (info) and a
    ``flushkit.retry`` event on the flush's span; the result and the final error carry
    ``attempts``. All tries share the call's one budget (the timeout middleware's
    deadline), and no pause reaches past it.
    """

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        *,
        logger: Any = None,
        chance: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy if policy is not None else RetryPolicy()
        self.logger = given_logger(logger)
        self._chance = chance

    def __call__(self, request: FlushRequest) -> Flow:
        attempt = 1
        while True:
            try:
                result: FlushResult = yield request
            except FlushError as error:
                remaining = (
                    None if request.deadline is None else request.deadline - time.monotonic()
                )
                pause = self.policy.pause_after(attempt, error, remaining, self._chance())
                if pause is None:
                    error.attempts = attempt
                    raise
                self._report(request, attempt, error, pause)
                yield Pause(pause)
                attempt += 1
            else:
                return result if attempt == 1 else dataclasses.replace(result, attempts=attempt)

    def _report(self, request: FlushRequest, attempt: int, error: FlushError, pause: float) -> None:
        self.logger.info(
            "flushkit.flush.retrying",
            collections=list(request.collection_names),
            db_name=request.db_name,
            attempt=attempt,
            pause_s=pause,
            error=type(error).__qualname__,
            code=error.code,
            grpc_code=error.grpc_code,
        )
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(
                "flushkit.retry",
                {
                    "flushkit.attempt": attempt,
                    "flushkit.retry.pause_s": pause,
                    "error.type": f"flushkit.{type(error).__qualname__}",
                },
            )

    def __repr__(self) -> str:
        return f"RetryMiddleware({self.policy!r})"
