"""``python -m mnv3.search``: see ``python -m mnv3.search --help``."""
import sys

from .cli import main

sys.exit(main())
