"""Crash-point harness: kill the daemon at every named durable step and check nothing is lost or doubled."""
