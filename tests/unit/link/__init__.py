"""Unit tests of misbridge.link (a package so its module names never clash with other layers')."""
