"""The mispos-v1 conformance kit: every rule of docs/device-protocol.md a pad must keep, checked.

``misbridge conformance --device-url /dev/mispos [--customer]`` (``make test-hardware``) runs
:data:`~misbridge.tools.conformance.kit.ALL_CHECKS` against a pad and writes a readable and a JSON
report (:mod:`~misbridge.tools.conformance.report`); docs/operations.md, "Certifying a PIN pad".
"""
