"""Alert channels: what each one sends, checked by real receivers and documented shapes.

``alert_cases/<case>.alert.json`` is an alert document (the outbox payload);
``<case>.slack.json``, ``<case>.pagerduty.json`` and ``<case>.generic.json``
are what the channels must render from it.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import jsonschema
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from gatewatch.sinks.alerts.generic import GenericWebhook, body_of
from gatewatch.sinks.alerts.pagerduty import PagerDutyEvents, event_of
from gatewatch.sinks.alerts.slack import SlackWebhook, blocks_of
from gatewatch.sinks.control import OutboxEntry
from gatewatch.sinks.signing import sign
from tests.sinks.alerts_receiver import ROUTING_KEY, SLACK_PATH, Receiver, schema, whsec

CASES_DIR = Path(__file__).with_name("alert_cases")
CASES = sorted(p.name.removesuffix(".alert.json") for p in CASES_DIR.glob("*.alert.json"))
SECRETS = [whsec("old"), whsec("new")]


def _alert(case: str) -> dict:
    return json.loads((CASES_DIR / f"{case}.alert.json").read_text())


def _expected(case: str, channel: str) -> dict:
    return json.loads((CASES_DIR / f"{case}.{channel}.json").read_text())


def _entry(alert: dict, entry_id: str = "e0123456789abcdef012", destination: str = "dest") -> OutboxEntry:
    return OutboxEntry(entry_id, "", destination, alert["incident_id"], alert, "pending", 0, 0.0, "")


@pytest.mark.parametrize("case", CASES)
def test_channels_render_the_documented_shapes(case):
    alert = _alert(case)
    slack = blocks_of(alert)
    jsonschema.validate(slack, schema("slack_incoming_webhook"))
    assert slack == _expected(case, "slack")
    pagerduty = event_of(alert, ROUTING_KEY)
    jsonschema.validate(pagerduty, schema("pagerduty_event_v2"))
    assert pagerduty == {**_expected(case, "pagerduty"), "routing_key": ROUTING_KEY}
    generic = json.loads(body_of(alert))
    jsonschema.validate(generic, schema("standard_webhook_alert"))
    assert generic == _expected(case, "generic")


def test_the_shape_checks_catch_broken_payloads():
    alert = _alert("open")
    slack = blocks_of(alert)
    slack["blocks"][0]["text"]["text"] = "x" * 151  # longer than a header may be
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(slack, schema("slack_incoming_webhook"))
    trigger = event_of(alert, ROUTING_KEY)
    del trigger["payload"]["source"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(trigger, schema("pagerduty_event_v2"))
    resolve = event_of(_alert("resolved"), ROUTING_KEY)
    del resolve["dedup_key"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(resolve, schema("pagerduty_event_v2"))


def test_slack_mrkdwn_cannot_ping_a_channel_from_a_consumer_name():
    message = blocks_of(_alert("hostile_name"))
    mrkdwn = [message["text"]] + [
        t["text"]
        for b in message["blocks"]
        for t in [b.get("text", {}), *b.get("fields", []), *b.get("elements", [])]
        if t.get("type") == "mrkdwn"
    ]
    assert all("<!channel>" not in t and "<https://" not in t for t in mrkdwn)
    assert "&lt;!channel&gt; &amp;" in message["text"]


def test_generic_webhook_is_verified_by_standardwebhooks_with_every_rotated_secret(httpserver):
    receiver = Receiver(httpserver, SECRETS)
    channel = GenericWebhook("hook", receiver.url("generic"), SECRETS, timeout_s=5)
    alert = _alert("open")
    attempt = channel.deliver(_entry(alert))
    assert (attempt.http_status, attempt.error, attempt.operation) == (204, "", "POST /hooks/gatewatch")
    assert receiver.errors == []
    (got,) = receiver.got["generic"]
    assert got["id"] == "e0123456789abcdef012"
    assert got["body"]["data"] == alert and got["body"]["type"] == "incident.opened"
    assert len(got["headers"]["Webhook-Signature"].split(" ")) == 2
    for secret in SECRETS:  # each secret alone verifies: either side of a rotation works
        assert Webhook(secret).verify(got["raw"], got["headers"]) == got["body"]
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(whsec("someone else")).verify(got["raw"], got["headers"])


def test_a_tampered_body_and_a_stale_timestamp_are_rejected(httpserver):
    receiver = Receiver(httpserver, SECRETS[:1])
    channel = GenericWebhook("hook", receiver.url("generic"), SECRETS[:1])
    channel.deliver(_entry(_alert("open")))
    (got,) = receiver.got["generic"]
    raw, headers = got["raw"], got["headers"]
    webhook = Webhook(SECRETS[0])
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        webhook.verify(raw.replace('"tier":"restricted"', '"tier":"normal"'), headers)
    # the same message signed ten minutes ago, as a replaying attacker would hold it
    old = int(time.time()) - 600
    stale = {
        **headers,
        "webhook-timestamp": str(old),
        "webhook-signature": sign(SECRETS[0], got["id"], old, raw.encode()),
    }
    with pytest.raises(WebhookVerificationError, match="too old"):
        webhook.verify(raw, stale)
    # and moving the timestamp without the secret breaks the signature
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        webhook.verify(raw, {**headers, "webhook-timestamp": str(int(time.time()) + 1)})


def test_our_signature_is_the_standardwebhooks_signature():
    secret = whsec("spec")
    body = body_of(_alert("open"))
    ts = 1793613660
    expected = Webhook(secret).sign("msg_1", datetime.fromtimestamp(ts, timezone.utc), body.decode())
    assert sign(secret, "msg_1", ts, body) == expected
    key = base64.b64decode(secret.removeprefix("whsec_"))
    assert len(key) == 32


def test_retries_carry_the_same_webhook_id_and_body_with_a_fresh_timestamp(httpserver):
    receiver = Receiver(httpserver, SECRETS)
    channel = GenericWebhook("hook", receiver.url("generic"), SECRETS)
    entry = _entry(_alert("open"))
    channel.deliver(entry)
    body, headers = channel.render(entry.payload, entry.id)
    first = receiver.got["generic"][0]
    assert headers["webhook-id"] == first["id"] and body.decode() == first["raw"]
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60


def test_slack_gets_text_and_blocks_and_its_url_is_never_shown(httpserver):
    receiver = Receiver(httpserver, SECRETS)
    channel = SlackWebhook("ops-slack", receiver.url("slack"))
    attempt = channel.deliver(_entry(_alert("open")))
    assert attempt.http_status == 200 and receiver.errors == []
    assert receiver.got["slack"][0]["body"] == _expected("open", "slack")
    assert SLACK_PATH not in attempt.operation and SLACK_PATH not in repr(channel)
    down = SlackWebhook("ops-slack", f"http://127.0.0.1:9{SLACK_PATH}", timeout_s=2)
    with pytest.raises(httpx.TransportError) as err:
        down.deliver(_entry(_alert("open")))
    assert SLACK_PATH not in str(err.value)


def test_pagerduty_triggers_then_resolves_the_same_dedup_key(httpserver):
    receiver = Receiver(httpserver, SECRETS)
    channel = PagerDutyEvents("ops-pager", receiver.url("pagerduty"), ROUTING_KEY)
    first = channel.deliver(_entry(_alert("open")))
    second = channel.deliver(_entry(_alert("resolved")))
    assert (first.http_status, first.operation) == (202, "POST /v2/enqueue trigger")
    assert (second.http_status, second.operation) == (202, "POST /v2/enqueue resolve")
    assert receiver.errors == []
    trigger, resolve = (r["body"] for r in receiver.got["pagerduty"])
    assert trigger["dedup_key"] == resolve["dedup_key"] == "32539c3de3f381823bf1"
    assert trigger["payload"]["custom_details"]["reasons"][0]["observed"] == pytest.approx(0.937, abs=1e-3)


def test_a_rejected_alert_reports_the_answer(httpserver):
    httpserver.expect_request("/reject").respond_with_data("invalid_payload", status=400)
    attempt = SlackWebhook("s", httpserver.url_for("/reject")).deliver(_entry(_alert("open")))
    assert (attempt.http_status, attempt.error) == (400, "HTTP 400: invalid_payload")


def test_test_alerts_are_clearly_marked():
    from gatewatch.flows.cli.alerts import sample_alert

    alert = sample_alert("ops", "", 1793613660.0)
    jsonschema.validate(json.loads(body_of(alert)), schema("standard_webhook_alert"))
    slack = blocks_of(alert)
    jsonschema.validate(slack, schema("slack_incoming_webhook"))
    assert slack["blocks"][0]["text"]["text"].startswith("🧪 TEST")
    assert slack["text"].startswith("🧪 [TEST]")
    trigger = event_of(alert, ROUTING_KEY)
    assert trigger["payload"]["summary"].startswith("[TEST]") and trigger["payload"]["severity"] == "info"
    assert datetime.fromisoformat(alert["window"]["end"]) - datetime.fromisoformat(
        alert["window"]["start"]
    ) == (timedelta(minutes=1))


def test_slack_shows_a_name_with_formatting_characters_as_it_is():
    alert = _alert("hostile_name")
    name = "*urgent* _ops_ ~fake~ `rm -rf`"
    alert["subject"]["name"] = name
    alert["summary"] = alert["summary"].replace(alert["summary"].split(" (consumer)")[0], name)
    message = blocks_of(alert)
    jsonschema.validate(message, schema("slack_incoming_webhook"))
    texts = [t for b in message["blocks"] for t in [b.get("text", {}), *b.get("fields", []), *b.get("elements", [])] if t]
    assert not [t for t in texts if t["type"] == "mrkdwn" and name in t["text"]]  # mrkdwn would format it
    assert any(t["type"] == "plain_text" and t["text"].startswith(name) for t in texts)
