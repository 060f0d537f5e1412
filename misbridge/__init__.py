"""misbridge: cashier-side middleware for the e-Buy payment and redemption protocol."""

__version__ = "0.1.0"
