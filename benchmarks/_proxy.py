"""A counting gRPC proxy on loopback, for the benchmarks and real-server tests that count
RPCs: it forwards every unary RPC to the server byte for byte and counts them.

Counts (:meth:`CountingProxy.take`), by key:

* ``<Method>`` (``Flush``, ``GetFlushState``, ``AllocTimestamp``, ``Insert``, ...): the
  RPCs of that method the server answered (a gRPC status other than OK is counted as
  ``failed:<Method>`` instead);
* ``flush_rpcs``: Flush RPCs answered (the same as ``Flush``), ``rate_limited``: those
  answered "rate limit exceeded" (code 8 / legacy RateLimit 49), ``flush_failed``: those
  answered with another non-OK status;
* ``flushed_answers``: GetFlushState answers that said ``flushed=true``.

Imported by name from the scripts in benchmarks/ (``from _proxy import CountingProxy``)
and by path from tests (it needs only grpc and pymilvus's generated messages).
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent import futures

import grpc
from pymilvus.grpc_gen import milvus_pb2

_HOP_BY_HOP = {"user-agent", "content-type", "te", "grpc-timeout"}


class CountingProxy:
    """A gRPC proxy on loopback that forwards every unary RPC to ``target`` unchanged and
    counts them by method, and the Flush RPCs' rate-limited answers."""

    def __init__(self, target: str) -> None:
        self._channel = grpc.insecure_channel(target)
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        # pymilvus pings every 10 s, idle or not: accept that as Milvus does (gRPC's default
        # policy answers it with GOAWAY "too_many_pings", which drops the connection).
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=300),
            options=[
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
                ("grpc.http2.max_ping_strikes", 0),
            ],
        )
        self._server.add_generic_rpc_handlers([_Forwarder(self)])
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.uri = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> CountingProxy:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop(grace=0).wait(5)
        self._channel.close()

    def take(self) -> Counter[str]:
        """The counts since the last take."""
        with self._lock:
            counts, self.counts = self.counts, Counter()
        return counts

    def _forward(self, method: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        name = method.rsplit("/", 1)[-1]
        metadata = [(k, v) for k, v in context.invocation_metadata() if k not in _HOP_BY_HOP]
        remaining = context.time_remaining()
        timeout = None if remaining is None or remaining > 1e6 else remaining
        try:
            response: bytes = self._channel.unary_unary(method)(
                request, metadata=metadata, timeout=timeout
            )
        except grpc.RpcError as exc:
            with self._lock:
                self.counts[f"failed:{name}"] += 1
            context.abort(exc.code(), exc.details() or "")
        with self._lock:
            self.counts[name] += 1
        if name == "Flush":
            status = milvus_pb2.FlushResponse.FromString(response).status
            with self._lock:
                self.counts["flush_rpcs"] += 1
                if status.code == 8 or status.error_code == 49:
                    self.counts["rate_limited"] += 1
                elif status.code or status.error_code:
                    self.counts["flush_failed"] += 1
        elif name == "GetFlushState" and (
            milvus_pb2.GetFlushStateResponse.FromString(response).flushed
        ):
            with self._lock:
                self.counts["flushed_answers"] += 1
        return response


class _Forwarder(grpc.GenericRpcHandler):
    def __init__(self, proxy: CountingProxy) -> None:
        self._proxy = proxy

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = details.method

        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            return self._proxy._forward(method, request, context)

        return grpc.unary_unary_rpc_method_handler(handle)
