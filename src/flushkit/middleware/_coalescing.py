"""Coalescing: let concurrent flushes of one collection share one Flush RPC.

This middleware only marks each request as willing to share; the core flush does the
sharing (:mod:`flushkit._lanes`). Remove it from the chain and every call sends its
own Flush RPC.
"""

from __future__ import annotations

from .._chain import Flow
from .._models import FlushRequest, FlushResult


class CoalescingMiddleware:
    """Lets the flush share a Flush RPC with concurrent flushes of the same collections.

    A call joins only an RPC sent after it began, so the flush still covers everything
    written before the call. Results and errors say ``coalesced=True`` when shared.
    """

    def __call__(self, request: FlushRequest) -> Flow:
        result: FlushResult = yield request.replace(coalesce=True)
        return result

    def __repr__(self) -> str:
        return "CoalescingMiddleware()"
