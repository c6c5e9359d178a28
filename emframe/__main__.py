"""Run the command line: ``python -m emframe``."""

from emframe.interfaces.cli import main

raise SystemExit(main())
