"""``python -m flushkit``: the same as the ``flushkit`` command."""

from ._tools.cli import main

raise SystemExit(main())
