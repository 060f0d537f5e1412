"""The composition root and the commands: ``misbridge serve``, ``demo``, ``check-config``, ``journal``."""
