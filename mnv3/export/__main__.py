"""``python -m mnv3.export``: the command line lives in :mod:`mnv3.export.cli` (importing it from
the package's ``__init__`` here would make runpy warn about a module imported twice)."""
import sys

from .cli import main

sys.exit(main())
