"""The transport and what it needs of gRPC and pymilvus.

* :mod:`.transport`: performs the core's effects (an RPC, a shared RPC started, a wait)
  on the client's channel, blocking or awaited;
* :mod:`.pymilvus`: the only module that reads pymilvus's internals (the channel, the
  database, the credentials of a ``MilvusClient`` or ``AsyncMilvusClient``);
* :mod:`.completion_thread` and :mod:`.wakeups`: the bridge from gRPC's completion thread
  to event loops, for the async facade on a blocking client.
"""
