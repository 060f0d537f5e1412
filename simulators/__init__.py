"""Bench simulators: the pty PIN pad and the e-Buy backend, run with ``misbridge-sim``."""
