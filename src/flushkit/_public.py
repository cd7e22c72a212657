"""flushkit's public names, gathered where ``flushkit/__init__.py`` loads them from at the
first use of one (so that importing the package alone, as pytest does for flushkit's
plugin, imports neither grpc nor pymilvus)."""

from __future__ import annotations

from . import (
    middleware as middleware,
)
from ._chain import (
    Flow as Flow,
)
from ._chain import (
    Middleware as Middleware,
)
from ._client import (
    DEFAULT_TIMEOUT as DEFAULT_TIMEOUT,
)
from ._client import (
    USE_FLUSHER_DEFAULT as USE_FLUSHER_DEFAULT,
)
from ._client import (
    AsyncFlusher as AsyncFlusher,
)
from ._client import (
    Flusher as Flusher,
)
from ._client import (
    FlushOptions as FlushOptions,
)
from ._exceptions import (
    ClientClosedError as ClientClosedError,
)
from ._exceptions import (
    CollectionNotFoundError as CollectionNotFoundError,
)
from ._exceptions import (
    DatabaseNotFoundError as DatabaseNotFoundError,
)
from ._exceptions import (
    FlushError as FlushError,
)
from ._exceptions import (
    FlushTimeoutError as FlushTimeoutError,
)
from ._exceptions import (
    InvalidArgumentError as InvalidArgumentError,
)
from ._exceptions import (
    PermissionDeniedError as PermissionDeniedError,
)
from ._exceptions import (
    QuotaExceededError as QuotaExceededError,
)
from ._exceptions import (
    RateLimitedError as RateLimitedError,
)
from ._exceptions import (
    ServerError as ServerError,
)
from ._exceptions import (
    ServiceUnavailableError as ServiceUnavailableError,
)
from ._models import (
    FlushRequest as FlushRequest,
)
from ._models import (
    FlushResult as FlushResult,
)
from ._models import (
    Pause as Pause,
)
from ._models import (
    Status as Status,
)
from ._version import (
    __version__ as __version__,
)
from .middleware import (
    CoalescingMiddleware as CoalescingMiddleware,
)
from .middleware import (
    LoggingMiddleware as LoggingMiddleware,
)
from .middleware import (
    MetricsMiddleware as MetricsMiddleware,
)
from .middleware import (
    RequestPreparer as RequestPreparer,
)
from .middleware import (
    RetryMiddleware as RetryMiddleware,
)
from .middleware import (
    RetryPolicy as RetryPolicy,
)
from .middleware import (
    StatusMiddleware as StatusMiddleware,
)
from .middleware import (
    TimeoutMiddleware as TimeoutMiddleware,
)
from .middleware import (
    TracingMiddleware as TracingMiddleware,
)
from .middleware import (
    default_middleware as default_middleware,
)


def _shown_here() -> None:
    """Reprs, tracebacks, pickles and docs name these ``flushkit.X`` (as httpx does); the
    middlewares stay ``flushkit.middleware.X``."""
    import flushkit

    for name in flushkit.__all__:
        public = globals()[name]
        if isinstance(public, type) and public.__module__ != middleware.__name__:
            public.__module__ = "flushkit"


_shown_here()
