"""Coalescing: let concurrent flushes of one collection share one Flush RPC.

This middleware only marks each request as willing to share; the connection's scheduler
(:mod:`flushkit._scheduler`) does the sharing. Remove it from the chain and every call
sends its own Flush RPC.
"""

from __future__ import annotations

from .._chain import RequestPreparer
from .._models import RequestChanges


class CoalescingMiddleware(RequestPreparer):
    """Lets the flush share a Flush RPC with concurrent flushes of the same collections.

    A call joins only an RPC sent after it began, so the flush still covers everything
    written before the call. Results and errors say ``coalesced=True`` when shared.
    It marks the request when it is made (a request preparer).
    """

    def prepare(self, fields: RequestChanges) -> None:
        fields["coalesce"] = True

    def __repr__(self) -> str:
        return "CoalescingMiddleware()"
