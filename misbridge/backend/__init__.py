"""The e-Buy backend edge: signed envelopes over HTTP(S), NOT SENT versus UNKNOWN (docs/backend.md).

The only package of misbridge that imports httpx.
"""

from misbridge.backend.client import APPROVED_CODE, BackendClient, BackendReply
from misbridge.backend.retry import NOT_SENT, SUBMIT_RETRY, RetryPolicy

__all__ = ["APPROVED_CODE", "NOT_SENT", "SUBMIT_RETRY", "BackendClient", "BackendReply", "RetryPolicy"]
