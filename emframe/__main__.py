"""Run the command line: ``python -m emframe``."""

from .cli import main

raise SystemExit(main())
