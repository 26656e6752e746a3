"""Alert receivers on a real loopback HTTP server, as a user's endpoints would be.

The generic endpoint verifies every request with the ``standardwebhooks``
package, once per configured secret; Slack and PagerDuty requests are
checked against JSON Schemas written from their documentation. Whatever
fails is recorded in ``errors`` and answered 400, so a test sees it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections import Counter
from pathlib import Path

import jsonschema
from standardwebhooks import Webhook
from werkzeug import Request, Response

SCHEMAS = Path(__file__).with_name("schemas")
GENERIC_PATH = "/hooks/gatewatch"
SLACK_PATH = "/services/T0000/B0000/slacksecretpath"  # the path is the Slack secret
PAGERDUTY_PATH = "/v2/enqueue"
ROUTING_KEY = "R0UT1NGKEY0123456789abcdef012345"  # 32 characters, like an integration key


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def whsec(seed: str) -> str:
    """A deterministic 32-byte ``whsec_`` secret."""
    return "whsec_" + base64.b64encode(hashlib.sha256(seed.encode()).digest()).decode()


class Receiver:
    """Generic, Slack and PagerDuty endpoints on one pytest-httpserver.

    ``fail`` maps a kind to how many requests to answer 503 (``Retry-After: 0``)
    before succeeding; ``-1`` fails forever.
    """

    def __init__(self, httpserver, secrets: list[str], fail: dict[str, int] | None = None) -> None:
        self.server = httpserver
        self.secrets = secrets
        self.fail = dict(fail or {})
        self.got: dict[str, list[dict]] = {"generic": [], "slack": [], "pagerduty": []}
        self.requests: Counter = Counter()
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._schemas = {
            k: schema(n)
            for k, n in (
                ("generic", "standard_webhook_alert"),
                ("slack", "slack_incoming_webhook"),
                ("pagerduty", "pagerduty_event_v2"),
            )
        }
        for kind, path in (("generic", GENERIC_PATH), ("slack", SLACK_PATH), ("pagerduty", PAGERDUTY_PATH)):
            httpserver.expect_request(path, method="POST").respond_with_handler(self._handler(kind))

    def url(self, kind: str) -> str:
        return self.server.url_for(
            {"generic": GENERIC_PATH, "slack": SLACK_PATH, "pagerduty": PAGERDUTY_PATH}[kind]
        )

    def _handler(self, kind: str):
        def handle(req: Request) -> Response:
            with self._lock:
                self.requests[kind] += 1
                left = self.fail.get(kind, 0)
                if left:
                    self.fail[kind] = left - 1 if left > 0 else left
                    return Response("busy, try again", 503, headers={"Retry-After": "0"})
                try:
                    record = self._check(kind, req)
                except Exception as exc:  # every failure is a test failure: record it, answer 400
                    self.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                    return Response(str(exc), 400)
                self.got[kind].append(record)
            if kind == "slack":
                return Response("ok", 200)
            if kind == "pagerduty":
                body = {
                    "status": "success",
                    "message": "Event processed",
                    "dedup_key": record["body"].get("dedup_key"),
                }
                return Response(json.dumps(body), 202, content_type="application/json")
            return Response("", 204)

        return handle

    def _check(self, kind: str, req: Request) -> dict:
        raw = req.get_data(as_text=True)
        body = json.loads(raw)
        jsonschema.validate(body, self._schemas[kind])
        if kind == "generic":
            for secret in self.secrets:  # every configured secret must sign (rotation)
                Webhook(secret).verify(raw, dict(req.headers))
            return {"id": req.headers["webhook-id"], "headers": dict(req.headers), "raw": raw, "body": body}
        if kind == "pagerduty":
            assert body["routing_key"] == ROUTING_KEY
            return {"id": f"{body['dedup_key']}:{body['event_action']}", "body": body}
        return {"id": None, "body": body}

    def events(self, kind: str) -> list[str]:
        """The alert events received, in order (open / escalated / resolved / test)."""
        if kind == "generic":
            return [r["body"]["data"]["event"] for r in self.got[kind]]
        if kind == "pagerduty":
            return [r["body"]["event_action"] for r in self.got[kind]]
        return [_slack_event(r["body"]) for r in self.got[kind]]


    def by_incident(self, kind: str) -> dict[str, list[str]]:
        """The events received per incident id, in order."""
        out: dict[str, list[str]] = {}
        for record, event in zip(self.got[kind], self.events(kind), strict=True):
            out.setdefault(_incident_of(kind, record["body"]), []).append(event)
        return out


def _incident_of(kind: str, body: dict) -> str:
    if kind == "generic":
        return body["data"]["incident_id"]
    if kind == "pagerduty":
        return body["dedup_key"]
    context = body["blocks"][-1 if body["blocks"][-1]["type"] == "context" else -2]["elements"][0]["text"]
    return re.search(r"incident (\S+)", context).group(1)


def _slack_event(body: dict) -> str:
    head = body["blocks"][0]["text"]["text"]
    if "RESOLVED" in head:
        return "resolved"
    if "TEST" in head:
        return "test"
    return "escalated" if "escalated" in head else "open"
