"""``python -m clipviz``: see ``clipviz.cli``."""

import sys

from clipviz.cli import main

sys.exit(main())
