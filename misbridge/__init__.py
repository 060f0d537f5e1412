"""misbridge: cashier-side middleware for the e-Buy payment and redemption protocol."""

import sys

__version__ = "0.1.0"

# httpx's package imports its command-line client (httpx._main) whenever click, pygments and rich
# happen to be installed, as they are in a development venv (not in the till's, which lacks
# pygments and rich): ~45 ms and 3 MB of every start for a tool misbridge never runs. None in
# sys.modules makes that one import fail as if they were missing, and httpx falls back to a stub
# of its `httpx` command. Here because every module of misbridge that imports httpx is imported
# after this package (tests/system/test_serve_imports.py checks the daemon never loads them).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
