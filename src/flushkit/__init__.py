"""flushkit: Milvus's flush, safe, observable and fast, for sync code, asyncio and trio.

>>> flusher = flushkit.Flusher(MilvusClient("./milvus.db"))
>>> flusher.flush(["docs", "images"], timeout=5.0, wait=True)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from . import _lite_milvus_uri  # noqa: F401  first: see there why
from ._version import __version__

# A library's logger is silent until the application configures logging (the logging
# HOWTO's advice): no last-resort line on stderr for a failure the caller handles.
logging.getLogger("flushkit").addHandler(logging.NullHandler())

if TYPE_CHECKING:  # the names of __all__, for type checkers (loaded lazily below)
    from ._public import *  # noqa: F403

__all__ = [
    "DEFAULT_TIMEOUT",
    "USE_FLUSHER_DEFAULT",
    "AsyncFlusher",
    "ClientClosedError",
    "CoalescingMiddleware",
    "CollectionNotFoundError",
    "DatabaseNotFoundError",
    "Flow",
    "FlushError",
    "FlushOptions",
    "FlushRequest",
    "FlushResult",
    "FlushTimeoutError",
    "Flusher",
    "InvalidArgumentError",
    "LoggingMiddleware",
    "MetricsMiddleware",
    "Middleware",
    "Pause",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RateLimitedError",
    "RequestPreparer",
    "RetryMiddleware",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailableError",
    "Status",
    "StatusMiddleware",
    "TimeoutMiddleware",
    "TracingMiddleware",
    "__version__",
    "default_middleware",
    "middleware",
]


def __getattr__(name: str) -> Any:
    """Loads the public names at the first use of one: ``import flushkit`` alone (as
    pytest does for flushkit's plugin) imports neither grpc nor pymilvus."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import _public

    globals().update({public: getattr(_public, public) for public in __all__})
    return globals()[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
