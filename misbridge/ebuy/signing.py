"""The envelope signature: MD5 over the ASCII-sorted fields and a shared key.

The book only says "Signature Algorithm MD5" (4.0, §5) and, in the older book, "All parameter
must be by ASCII sequential order, except sign and body..." (§7.1); the rest of that page is
lost. misbridge's documented, configurable reading (docs/backend.md, "Signing"), the same family
as WeChat Pay v2:

1. take the envelope's top-level fields whose value is a non-empty string, except ``sign``;
   ``body`` is left out only when ``include_body`` is false (the default is to include it:
   without the body the signature would protect nothing that matters);
2. sort them by key in ASCII order and join them as ``k1=v1&k2=v2&...``;
3. append ``&key=<KEY>`` (just ``key=<KEY>`` when no field qualifies);
4. MD5 of the UTF-8 bytes, uppercase hex; optionally keep only the first ``truncate`` characters
   (the older book's example sign ``7E65B60DCFA42B04`` has 16).

Fields nobody knows yet take part like any other field, so a peer that adds a field and signs
it still verifies. Values that are not strings (no e-Buy envelope field is) are left out.
Pure code, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

#: The envelope key that carries the signature; never part of the signed string.
SIGN_FIELD = "sign"
#: The envelope key left out when ``include_body`` is false.
BODY_FIELD = "body"
#: Length of a full MD5 hex digest.
MD5_HEX_LEN = 32


def signing_string(fields: Mapping[str, object], key: str, *, include_body: bool) -> str:
    """The exact text that is hashed: sorted ``k=v`` pairs joined by ``&``, then ``&key=<KEY>``.

    Args:
        fields: the envelope's top-level fields (``sign`` and empty or non-string values are skipped).
        key: the shared signing key.
        include_body: keep ``body`` in the string (misbridge's default).
    """
    pairs = [
        f"{name}={value}" for name, value in sorted(fields.items()) if _signed(name, value, include_body=include_body)
    ]
    pairs.append(f"key={key}")
    return "&".join(pairs)


def sign(fields: Mapping[str, object], key: str, *, include_body: bool = True, truncate: int = 0) -> str:
    """The signature of ``fields``: uppercase MD5 hex of :func:`signing_string`.

    Args:
        truncate: keep only the first N hex characters; 0 keeps all 32.

    Raises:
        ValueError: ``truncate`` is negative or above 32.
    """
    if not 0 <= truncate <= MD5_HEX_LEN:
        raise ValueError(f"truncate must be 0..{MD5_HEX_LEN}, got {truncate}")
    text = signing_string(fields, key, include_body=include_body)
    digest = hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest().upper()
    return digest[:truncate] if truncate else digest


def verify(fields: Mapping[str, object], key: str, *, include_body: bool = True, truncate: int = 0) -> bool:
    """True when ``fields["sign"]`` is the signature of the other fields (constant-time compare).

    A missing or non-string ``sign`` is False. Unknown extra fields are part of the signed
    string, exactly as the signer saw them.

    Raises:
        ValueError: ``truncate`` is negative or above 32.
    """
    received = fields.get(SIGN_FIELD)
    if not isinstance(received, str):
        return False
    try:
        expected = sign(fields, key, include_body=include_body, truncate=truncate)
        presented = received.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form, so nothing can have signed it
        return False
    return hmac.compare_digest(presented, expected.encode("ascii"))


def _signed(name: str, value: object, *, include_body: bool) -> bool:
    if name == SIGN_FIELD or (name == BODY_FIELD and not include_body):
        return False
    return isinstance(value, str) and value != ""
