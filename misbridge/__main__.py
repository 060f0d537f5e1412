"""`python -m misbridge` runs the command line (what the service runs: packaging/bin/run)."""

import gc

# No garbage collection while misbridge loads and starts: importing its modules builds ~60 000
# objects that live as long as the process and next to no garbage, yet the collector would walk
# them ~150 times (~40 ms, a tenth of serve's time to ready). The command line collects once and
# turns it back on a moment after serve is ready, or before any other command runs
# (misbridge.app.cli.resume_garbage_collection).
gc.disable()

from misbridge.app.cli import main  # noqa: E402

raise SystemExit(main())
