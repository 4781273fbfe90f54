"""`python -m tools.verify`: see `tools/verify/__init__.py`."""

import sys

from tools.verify.cli import main

sys.exit(main())
