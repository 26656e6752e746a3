"""PagerDuty Events API v2: one alert per incident, triggered then resolved.

The ``dedup_key`` is the incident id, so an escalation updates the same
PagerDuty alert, the resolve closes it, and a trigger re-sent after a crash
folds into it. The routing key is a secret: it is added at delivery time and
never stored. PagerDuty answers ``202``; 400 means an invalid event (dead
letter at once), 429 and 5xx are retried.
"""

from __future__ import annotations

import json
from typing import ClassVar

from gatewatch.sinks.alerts.base import AlertChannel

SUMMARY_CHARS = 1024  # PagerDuty's limit


def event_of(alert: dict, routing_key: str) -> dict:
    """The Events API v2 event for one alert document."""
    if alert["event"] == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": alert["incident_id"]}
    subject = alert["subject"]
    name = subject["name"] or subject["id"]
    details = {
        "subject": subject,
        "kind": alert["kind"],
        "score": alert["score"],
        "max_score": alert["max_score"],
        "tier": alert["tier"],
        "decision": alert["decision"],
        "reasons": alert["reasons"],
        "window": alert["window"],
        "first_seen": alert["first_seen"],
        "last_seen": alert["last_seen"],
        "findings": alert["findings"],
        "incident_id": alert["incident_id"],
        "event": alert["event"],
    }
    if "enforcement" in alert:  # a failed expiry or revert: which delivery, to where, and why
        details["enforcement"] = alert["enforcement"]
    event = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert["incident_id"],
        "client": "gatewatch",
        "payload": {
            "summary": alert["summary"][:SUMMARY_CHARS],
            "source": f"gatewatch/{subject['type']}/{name}",
            "severity": alert["severity"],
            "timestamp": alert["occurred_at"],
            "component": name,
            "group": subject["type"],
            "class": alert["kind"],
            "custom_details": details,
        },
    }
    if alert["dashboard_url"]:
        event["client_url"] = alert["dashboard_url"]
        event["links"] = [{"href": alert["dashboard_url"], "text": "Open in the gatewatch dashboard"}]
    return event


class PagerDutyEvents(AlertChannel):
    """Send alerts as PagerDuty Events API v2 events.

    Args:
        name: the configured destination name.
        url: the Events API endpoint.
        routing_key: the integration's routing key.
        timeout_s: timeout of one attempt.
    """

    kind: ClassVar[str] = "pagerduty"

    def __init__(self, name: str, url: str, routing_key: str, timeout_s: float = 10.0, **tls) -> None:
        super().__init__(name, url, timeout_s, **tls)
        self.routing_key = routing_key

    def secret_values(self) -> list[str]:
        return [self.routing_key]

    def operation(self, alert: dict) -> str:
        action = "resolve" if alert["event"] == "resolved" else "trigger"
        return f"{super().operation(alert)} {action}"

    def render(self, alert: dict, msg_id: str) -> tuple[bytes, dict[str, str]]:
        return json.dumps(event_of(alert, self.routing_key), ensure_ascii=False).encode(), {}
