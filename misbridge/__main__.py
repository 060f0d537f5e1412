"""`python -m misbridge` runs the command line."""

from misbridge.app.cli import main

raise SystemExit(main())
