"""What every alert channel shares: one JSON POST per attempt, errors without secrets."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlsplit

from gatewatch.sinks.control import OutboxEntry
from gatewatch.sinks.outbox import Attempt, retry_after, tls_verify

if TYPE_CHECKING:
    import httpx

ERROR_BYTES = 300  # of a failed response's body kept as the error


class AlertChannel:
    """POST one rendered alert per delivery attempt (the outbox's Sender retries).

    Subclasses set ``kind`` and implement :meth:`render`. The payload in the
    outbox is the channel-independent alert document; rendering and signing
    happen here, at delivery time, so no secret is ever stored.

    Args:
        name: the configured destination name.
        url: where to POST (for Slack, the secret webhook URL).
        timeout_s: timeout of one attempt.
        verify_tls: check the receiver's TLS certificate.
        ca_file: PEM file of the CAs to check it with ("": the system's).
    """

    kind: ClassVar[str]

    def __init__(
        self, name: str, url: str, timeout_s: float = 10.0, *, verify_tls: bool = True, ca_file: str = ""
    ) -> None:
        self.name = name
        self.url = url
        self.timeout_s = timeout_s
        self.verify_tls = verify_tls
        self.ca_file = ca_file
        self._client: httpx.Client | None = None

    def __repr__(self) -> str:  # never shows the URL: for Slack it is the secret
        return f"{type(self).__name__}(name={self.name!r})"

    def secret_values(self) -> list[str]:
        return []

    def render(self, alert: dict, msg_id: str) -> tuple[bytes, dict[str, str]]:
        """Body and extra headers of the request for one alert."""
        raise NotImplementedError

    def operation(self, alert: dict) -> str:
        """What the deliveries table records for a call (no secret: the path only)."""
        return f"POST {urlsplit(self.url).path or '/'}"

    def send(self, alert: dict, msg_id: str) -> httpx.Response:
        """Render and POST one alert; raise ``httpx.TransportError`` on connection trouble."""
        import httpx  # here: a run that never sends an alert never loads it

        if self._client is None:
            verify = tls_verify(self.verify_tls, self.ca_file)
            self._client = httpx.Client(timeout=self.timeout_s, follow_redirects=False, verify=verify)
        body, headers = self.render(alert, msg_id)
        try:
            return self._client.post(
                self.url,
                content=body,
                headers={"content-type": "application/json", "user-agent": "gatewatch", **headers},
            )
        except httpx.TransportError as exc:
            # the message may quote the URL, which can be the secret
            raise type(exc)(str(exc).replace(self.url, f"<{self.name} url>")) from None

    def deliver(self, entry: OutboxEntry) -> Attempt:
        response = self.send(entry.payload, entry.id)
        error = "" if response.is_success else f"HTTP {response.status_code}: {response.text[:ERROR_BYTES]}"
        return Attempt(response.status_code, self.operation(entry.payload), error, retry_after(response))
