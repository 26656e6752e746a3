"""Generic traffic manager: the desired state of a subject as signed JSON (Standard Webhooks).

Body ``{"type": "gatewatch.enforcement", "timestamp": ..., "data": {...}}``
where ``data`` is the whole desired state (block or not, absolute limit or
none), so applying it twice is harmless. ``webhook-id`` is the outbox id:
the same across retries and replays, for the receiver to drop duplicates.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import ClassVar
from urllib.parse import urlsplit

import httpx

from gatewatch.sinks import signing
from gatewatch.sinks.control import OutboxEntry
from gatewatch.sinks.outbox import Attempt, retry_after, tls_verify
from gatewatch.sinks.targets.base import Desired, Secret, SecretMissing

EVENT_TYPE = "gatewatch.enforcement"


class WebhookChannel:
    """POSTs desired states to one URL."""

    kind: ClassVar[str] = "webhook"

    def __init__(
        self, name: str, *, url: str, secret: Secret, timeout_s: float = 10.0, verify_tls: bool = True, ca_file: str = ""
    ) -> None:
        self.name = name
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        self.verify_tls = verify_tls
        self.ca_file = ca_file
        self._client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout_s, verify=tls_verify(self.verify_tls, self.ca_file))
        return self._client

    def secret_values(self) -> list[str]:
        return [self.secret.value_if_set()]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def cannot_limit(self, subject_type: str) -> str:
        """Nothing: every desired state is sent on, and the receiver enforces it."""
        return ""

    def deliver(self, entry: OutboxEntry) -> Attempt:
        op = f"POST {urlsplit(self.url).path or '/'}"
        try:
            secret = self.secret.get()
        except SecretMissing as exc:
            return Attempt(422, op, str(exc))
        now = time.time()
        data = Desired.from_payload(entry.payload).__dict__
        body = json.dumps(
            {"type": EVENT_TYPE, "timestamp": datetime.fromtimestamp(now, timezone.utc).isoformat(), "data": data},
            sort_keys=True,
        ).encode()
        headers = {"content-type": "application/json", **signing.headers(secret, entry.id, int(now), body)}
        r = self.client.post(self.url, content=body, headers=headers)
        error = "" if r.is_success else f"HTTP {r.status_code}: {r.text[:300]}"
        return Attempt(r.status_code, op, error, retry_after(r))

    def check(self) -> list[str]:
        problem = self.secret.problem()
        return [problem] if problem else []
