"""``python -m flushkit``: the same as the ``flushkit`` command."""

from ._cli import main

raise SystemExit(main())
