"""flushkit: Milvus's flush, safe, observable and fast, for sync code, asyncio and trio.

>>> flusher = flushkit.Flusher(MilvusClient("./milvus.db"))
>>> flusher.flush(["docs", "images"], timeout=5.0, wait=True)
"""

from . import (
    _lite_milvus_uri,  # noqa: F401  first: imports pymilvus (see there why)
    middleware,
)
from ._chain import Flow, Middleware
from ._client import DEFAULT_TIMEOUT, USE_FLUSHER_DEFAULT, AsyncFlusher, Flusher
from ._exceptions import (
    ClientClosedError,
    CollectionNotFoundError,
    DatabaseNotFoundError,
    FlushError,
    FlushTimeoutError,
    InvalidArgumentError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitedError,
    ServerError,
    ServiceUnavailableError,
)
from ._models import FlushRequest, FlushResult, Pause, Status
from ._version import __version__
from .middleware import (
    CoalescingMiddleware,
    LoggingMiddleware,
    MetricsMiddleware,
    RequestPreparer,
    RetryMiddleware,
    RetryPolicy,
    StatusMiddleware,
    TimeoutMiddleware,
    TracingMiddleware,
    default_middleware,
)

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


def _shown_here() -> None:
    """Reprs, tracebacks, pickles and docs name these ``flushkit.X`` (as httpx does); the
    middlewares stay ``flushkit.middleware.X``."""
    for name in __all__:
        public = globals()[name]
        if isinstance(public, type) and public.__module__ != middleware.__name__:
            public.__module__ = __name__


_shown_here()
