"""The e-Buy 4.0 message structure: JSON with exact decimals, the envelope, the socket framing.

Pure code (no I/O). Used by the POS front doors (``misbridge.api``), the backend client
(``misbridge.backend``) and the backend simulator.
"""
