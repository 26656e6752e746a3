"""Slack incoming webhooks: a notification line plus blocks that read well on a phone.

The webhook URL is the only credential, so it comes from the environment and
never appears in the outbox, the store or an error message. Slack answers
``200 ok``; 400/403/404/410 mean the payload or the channel is wrong (dead
letter at once), 429 comes with ``Retry-After``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import ClassVar
from urllib.parse import urlsplit

from gatewatch.sinks.alerts.base import AlertChannel

MARKS = {"critical": "🔴", "error": "🟠", "warning": "🟡", "info": "🔵"}
HEADER_CHARS = 150  # Slack's limit for a header block
TEXT_CHARS = 3000  # and for a section's text


def escape(text: str) -> str:
    """Escape mrkdwn control characters, so a name like ``<!channel>`` cannot ping anyone."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _when(value: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).strftime(fmt) + " UTC"


def _tier(alert: dict) -> str:
    d = alert.get("decision")
    if not d:
        return alert["tier"]
    limit = f", limit {d['limit_per_min']}/min" if d["limit_per_min"] >= 0 and d["tier"] != "elevated" else ""
    return f"{alert['tier']} ({d['mode']}{limit})"


def blocks_of(alert: dict) -> dict:
    """The Slack message for one alert document."""
    event = alert["event"]
    subject = alert["subject"]
    name = subject["name"] or subject["id"]
    mark = {"resolved": "✅", "test": "🧪"}.get(event) or MARKS.get(alert["severity"], "")
    failed = alert.get("enforcement")
    if failed and event != "resolved":
        head = f"{mark} ENFORCEMENT FAILED · {name}"
    elif event == "resolved":
        head = f"{mark} RESOLVED · {name}"
    elif event == "test":
        head = f"{mark} TEST · gatewatch alert (no action needed)"
    else:
        head = f"{mark} {alert['severity'].upper()} · {name}" + (
            " · escalated" if event == "escalated" else ""
        )
    window = alert["window"]
    fields = [
        ("Kind", alert["kind"].replace("_", " ")),
        ("Score", f"{alert['score']:.2f} (max {alert['max_score']:.2f})"),
        ("Tier", _tier(alert)),
        ("Window", f"{_when(window['start'], '%H:%M')[:-4]}–{_when(window['end'], '%H:%M')}"),
        ("First seen", _when(alert["first_seen"])),
        ("Last seen", _when(alert["last_seen"])),
    ]
    if failed:
        fields = [
            ("Delivered" if event == "resolved" else "Failed", f"{failed['action']} of a {alert['tier']} decision"),
            ("Target", f"{failed['target']} ({failed['target_type']})"),
            ("Decision", failed["decision_id"]),
            ("Delivery", f"{failed['delivery_id']} ({failed['attempts']} attempt{'s' if failed['attempts'] != 1 else ''})"),
        ]
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": head[:HEADER_CHARS], "emoji": True}},
        # names from the logs (the summary and the subject) go in plain text: mrkdwn has no escape
        # for * _ ~ and backticks, so "*urgent*" in a consumer name would be bold
        {"type": "section", "text": {"type": "plain_text", "text": alert["summary"][:TEXT_CHARS], "emoji": False}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{escape(v)}"} for k, v in fields]},
    ]
    if alert["reasons"]:
        why = "\n".join(f"• {escape(r['text'])}" for r in alert["reasons"])
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Why*\n{why}"[:TEXT_CHARS]}})
    findings = alert["findings"]
    about = f"{findings} finding{'s' if findings != 1 else ''}"
    if failed:
        about = "lifted at the gateway" if event == "resolved" else "the gateway may still enforce it"
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "plain_text",
                    "text": f"{subject['type']} {subject['id']} · incident {alert['incident_id']} · {about}",
                    "emoji": False,
                }
            ],
        }
    )
    if alert["dashboard_url"]:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in dashboard"},
                        "url": alert["dashboard_url"],
                        "action_id": "open_dashboard",
                    }
                ],
            }
        )
    # the text is the notification line on a phone, and mrkdwn too
    return {"text": escape(f"{mark} {alert['summary']}".strip()), "blocks": blocks}


class SlackWebhook(AlertChannel):
    """POST the alert to a Slack incoming webhook."""

    kind: ClassVar[str] = "slack"

    def operation(self, alert: dict) -> str:
        return "POST slack incoming webhook"  # the path holds the secret

    def secret_values(self) -> list[str]:
        path = urlsplit(self.url).path
        return [self.url, path, path.rstrip("/").rpartition("/")[2]]

    def render(self, alert: dict, msg_id: str) -> tuple[bytes, dict[str, str]]:
        return json.dumps(blocks_of(alert), ensure_ascii=False).encode(), {}
