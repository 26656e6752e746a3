"""Generic webhooks signed per the Standard Webhooks spec (v1.0.0).

Body ``{"type", "timestamp", "data"}`` where ``data`` is the alert document.
Headers: ``webhook-id`` (the outbox id: the same on every retry and after a
crash, so receivers deduplicate on it), ``webhook-timestamp`` (Unix seconds
of this attempt) and ``webhook-signature``: one ``v1,<base64 HMAC-SHA256>``
per configured ``whsec_`` secret, space-separated, so a receiver can rotate
its secret without missing a message.
"""

from __future__ import annotations

import json
import time
from typing import ClassVar

from gatewatch.sinks.alerts.base import AlertChannel
from gatewatch.sinks.signing import sign

EVENT_TYPES = {
    "open": "incident.opened",
    "escalated": "incident.escalated",
    "resolved": "incident.resolved",
    "test": "gatewatch.test",
    "enforcement_failed": "enforcement.failed",
}


def body_of(alert: dict) -> bytes:
    """The JSON body for one alert (compact, the same bytes on every retry)."""
    envelope = {"type": EVENT_TYPES[alert["event"]], "timestamp": alert["occurred_at"], "data": alert}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


class GenericWebhook(AlertChannel):
    """POST the alert as Standard Webhooks signed JSON.

    Args:
        name: the configured destination name.
        url: where to POST.
        secrets: ``whsec_`` secrets; each adds a signature.
        timeout_s: timeout of one attempt.
    """

    kind: ClassVar[str] = "generic"

    def __init__(self, name: str, url: str, secrets: list[str], timeout_s: float = 10.0, **tls) -> None:
        super().__init__(name, url, timeout_s, **tls)
        self.secrets = secrets

    def secret_values(self) -> list[str]:
        return self.secrets + [s.partition("_")[2] for s in self.secrets]  # whsec_<key>, and the key

    def render(self, alert: dict, msg_id: str) -> tuple[bytes, dict[str, str]]:
        body = body_of(alert)
        ts = int(time.time())
        signature = " ".join(sign(s, msg_id, ts, body) for s in self.secrets)
        return body, {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}
