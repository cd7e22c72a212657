"""Tooling around the library, none of it on a flush's path: the ``flushkit`` command
(:mod:`.cli`, with :mod:`.bench` and :mod:`.demo`), the embedded standalone Milvus
server helper (:mod:`.standalone`) and the pytest plugin (:mod:`.pytest_plugin`)."""
