"""The POS front doors: the e-Buy message-structure socket and the HTTP/JSON API (loopback only)."""
