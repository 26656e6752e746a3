"""Standard Webhooks signatures (https://www.standardwebhooks.com, spec v1.0.0).

The signed content is ``"{msg_id}.{timestamp}.{body}"``, signed with
HMAC-SHA256 under the secret. A secret written as ``whsec_<base64>`` is the
base64-encoded key (the form the spec's libraries use); any other secret is
used as raw UTF-8 bytes. The result goes into the ``webhook-signature``
header as ``v1,<base64 signature>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SECRET_PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """The HMAC key a secret stands for."""
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret[len(SECRET_PREFIX) :])
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``webhook-signature`` header value for one message."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one message."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(secret: str, msg_id: str, timestamp: int, body: bytes, signature_header: str) -> bool:
    """Whether any ``v1`` signature in the header matches (constant-time compare)."""
    expected = sign(secret, msg_id, timestamp, body).split(",", 1)[1]
    for item in signature_header.split():
        version, _, value = item.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False
