"""`python -m simulators` runs ``misbridge-sim``."""

from simulators.cli import main

raise SystemExit(main())
