"""Tests of the POS front doors: security rules, metrics endpoint, socket framing against browsers."""
