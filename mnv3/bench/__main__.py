"""``python -m mnv3.bench``: see ``python -m mnv3.bench --help``."""
import sys

from . import main


sys.exit(main())
