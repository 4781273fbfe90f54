"""`python -m tools.diagram`: see `tools/diagram/__init__.py`."""

from tools.diagram.cli import main

raise SystemExit(main())
