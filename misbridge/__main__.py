"""`python -m misbridge` runs the command line."""

from misbridge.cli import main

raise SystemExit(main())
