"""Let ``import pymilvus`` succeed while ``MILVUS_URI`` names a Milvus Lite file.

pymilvus reads ``MILVUS_URI`` when it is imported (``pymilvus.settings.Config``) for the
default connection of its ORM (``pymilvus.orm.connections``), which accepts only
``http[s]://host[:port]`` and raises ``ConnectionConfigException: Illegal uri`` for
anything else, such as ``./milvus.db``, which ``MilvusClient`` and the ``flushkit``
command accept. So the first import of pymilvus happens here, with such a value emptied
for that moment (emptied rather than unset, so that pymilvus's ``load_dotenv`` does not
fill it in from a ``.env`` file), and then put back: ``os.environ`` is unchanged
afterwards, and the ORM's default connection is ``localhost:19530``, as without the
variable. ``flushkit/__init__.py`` imports this module first, so that ``import flushkit``,
the ``flushkit`` command and ``python -m flushkit`` all work with such a value.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlparse


def import_pymilvus() -> None:
    uri = os.environ.get("MILVUS_URI", "")
    if "pymilvus" in sys.modules or not uri or _orm_accepts(uri):
        return
    os.environ["MILVUS_URI"] = ""
    try:
        import pymilvus  # noqa: F401
    finally:
        os.environ["MILVUS_URI"] = uri


def _orm_accepts(uri: str) -> bool:
    """A host in the URI, and a valid port if any (what pymilvus's ORM parses)."""
    try:
        parsed = urlparse(uri)
        _ = parsed.port  # a ValueError when out of range
    except ValueError:
        return False
    return bool(parsed.netloc)


import_pymilvus()
