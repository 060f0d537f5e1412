"""``python -m misbridge.tools.conformance``: the same as ``misbridge conformance``."""

import sys

from misbridge.tools.conformance.kit import cli

sys.exit(cli())
