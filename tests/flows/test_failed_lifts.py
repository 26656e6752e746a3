"""A dead-lettered expiry or revert alerts: a gateway on 127.0.0.1 refuses the lift, a receiver hears of it.

The real controller, planner, webhook target, outbox sender and generic alert
channel; the gateway and the alert receiver are real HTTP servers.
"""

from __future__ import annotations

import base64
import json

import pytest
from msgspec.structs import replace
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from gatewatch.flows.config import AlertsConfig, Config
from gatewatch.flows.control.controller import CONTROL_WRITER, Controller, build_policy
from gatewatch.flows.control.incidents import FailedLifts
from gatewatch.flows.events import Decision
from gatewatch.sinks.alerts.generic import GenericWebhook
from gatewatch.sinks.alerts.pagerduty import event_of
from gatewatch.sinks.control import ControlDB
from gatewatch.sinks.outbox import Sender
from gatewatch.sinks.store import StoreWriter, query
from gatewatch.sinks.targets import GatewayPlanner
from gatewatch.sinks.targets.base import Secret
from gatewatch.sinks.targets.webhook import WebhookChannel
from tests.sinks.alerts_receiver import Receiver, whsec

T0 = 1793613600.0  # 2026-11-02T10:00:00Z
GATEWAY_SECRET = "whsec_" + base64.b64encode(b"g" * 32).decode()
ALERT_SECRETS = [whsec("failed-lifts")]
BLOCK = Decision(
    decision_id="d-block-partnerportal", finding_id="f-1", subject_type="consumer", subject="app-1",
    subject_name="PartnerPortal", action="block", tier="blocked", previous_tier="restricted", limit_per_min=0,
    mode="enforce", status="approved", reason="test", inputs="{}", actor="policy", effective_from=T0,
    expires_at=T0 + 1800, created_at=T0, changed_at=T0,
)  # fmt: skip


@pytest.fixture
def gateway():
    """A traffic manager that applies blocks and refuses to lift them, quoting its token back."""
    server = HTTPServer(host="127.0.0.1", port=0)

    def handle(request: Request) -> Response:
        if json.loads(request.get_data())["data"]["block"] or server.lifts_allowed:
            return Response("", 204)
        return Response(f"forbidden: token {GATEWAY_SECRET} may not lift blocks", 403)

    server.lifts_allowed = False  # until a test says its operator fixed the cause

    server.expect_request("/gateway", method="POST").respond_with_handler(handle)
    server.start()
    yield server
    server.clear()
    server.stop()


def _plane(tmp_path, gateway, receiver, monkeypatch) -> tuple[Controller, Sender]:
    monkeypatch.setenv("GW_TEST_GATEWAY_SECRET", GATEWAY_SECRET)
    control = ControlDB(tmp_path).open()
    writer = StoreWriter(tmp_path, writer=CONTROL_WRITER).open()
    alerts = AlertsConfig(
        dashboard_url="https://gatewatch.example.com",
        destinations=[{
            "type": "generic", "name": "ops-hook", "url": receiver.url("generic"), "secret_env": ["S"],
            "kinds": ["credential_stuffing"], "min_score": 0.9,  # incident filters: a failed lift goes anyway
        }],
    )  # fmt: skip
    channels = {
        "gw": WebhookChannel("gw", url=gateway.url_for("/gateway"), secret=Secret("k", "GW_TEST_GATEWAY_SECRET")),
        "ops-hook": GenericWebhook("ops-hook", receiver.url("generic"), ALERT_SECRETS),
    }
    controller = Controller(control, writer, build_policy(Config()), planner=GatewayPlanner({"gw": "webhook"}))
    lifts = FailedLifts(control, alerts)
    sender = Sender(control, writer, channels, breaker_failures=100, on_dead_letter=lifts, on_sent=lifts.delivered)
    return controller, sender


def _deliveries(tmp_path) -> list[tuple[str, str]]:
    rows = query(tmp_path, "SELECT destination, outcome FROM deliveries ORDER BY attempted_at").to_pylist()
    return [(r["destination"], r["outcome"]) for r in rows]


@pytest.mark.parametrize("status, action", [("expired", "expiry"), ("reverted", "revert")])
def test_a_dead_lettered_lift_alerts_with_subject_target_decision_and_scrubbed_error(
    tmp_path, gateway, httpserver, monkeypatch, capfd, status, action
):
    receiver = Receiver(httpserver, ALERT_SECRETS)
    controller, sender = _plane(tmp_path, gateway, receiver, monkeypatch)
    controller.commit([BLOCK])
    sender.step()
    controller.commit([replace(BLOCK, status=status, changed_at=T0 + 1800)])
    sender.step()  # the gateway refuses the lift: a 403 is dead-lettered at once, and the alert queued
    (dead,) = sender.control.outbox("dead_letter")
    assert dead.destination == "gw" and dead.ref_id == BLOCK.decision_id and dead.payload["block"] is False
    sender.step()
    assert receiver.errors == []
    (got,) = receiver.got["generic"]
    assert got["body"]["type"] == "enforcement.failed"
    alert = got["body"]["data"]
    assert (alert["event"], alert["kind"], alert["severity"]) == ("enforcement_failed", "enforcement_failed", "critical")
    assert alert["subject"] == {"type": "consumer", "id": "app-1", "name": "PartnerPortal"}
    assert alert["decision"]["status"] == status and alert["tier"] == "blocked"
    failed = alert["enforcement"]
    assert failed == {
        "action": action, "target": "gw", "target_type": "webhook", "decision_id": BLOCK.decision_id,
        "delivery_id": dead.id, "attempts": 1,
        "error": "HTTP 403: forbidden: token [secret] may not lift blocks",
    }  # fmt: skip
    assert alert["summary"].startswith(f"The {action} of decision {BLOCK.decision_id} did not reach gw: HTTP 403")
    assert "may still block PartnerPortal (consumer)" in alert["summary"]
    assert f"gatewatch deliveries retry {dead.id}" in alert["summary"]
    assert GATEWAY_SECRET not in got["raw"] and GATEWAY_SECRET.removeprefix("whsec_") not in got["raw"]
    assert _deliveries(tmp_path) == [("gw", "sent"), ("gw", "dead_letter"), ("ops-hook", "sent")]
    err = capfd.readouterr().err
    assert f"The {action} of decision {BLOCK.decision_id} did not reach gw" in err
    assert GATEWAY_SECRET not in err
    # once: more steps send nothing new
    sender.step()
    assert len(receiver.got["generic"]) == 1


def test_a_lift_that_a_retry_delivers_resolves_its_alert(tmp_path, gateway, httpserver, monkeypatch, capfd):
    receiver = Receiver(httpserver, ALERT_SECRETS)
    controller, sender = _plane(tmp_path, gateway, receiver, monkeypatch)
    controller.commit([BLOCK])
    sender.step()
    controller.commit([replace(BLOCK, status="expired", changed_at=T0 + 1800)])
    sender.step()
    sender.step()
    (dead,) = sender.control.outbox("dead_letter")
    (failed,) = receiver.got["generic"]
    gateway.lifts_allowed = True  # the operator fixed the gateway's token, and retries the lift
    assert sender.control.retry_dead_letters([dead.id], "alice") == ([dead.id], [])
    sender.step()  # the lift reaches the gateway: the resolve is queued with it
    sender.step()
    assert receiver.errors == []
    _, resolved = receiver.got["generic"]
    assert resolved["body"]["type"] == "incident.resolved"
    alert = resolved["body"]["data"]
    opened = failed["body"]["data"]
    assert (alert["event"], alert["incident_id"], alert["kind"]) == ("resolved", opened["incident_id"], "enforcement_failed")
    assert alert["summary"] == (
        f"Resolved: the expiry of decision {BLOCK.decision_id} reached gw on a retry; "
        "the gateway no longer restricts PartnerPortal (consumer) for it."
    )
    assert alert["enforcement"] == {**opened["enforcement"], "attempts": 1, "error": ""}
    assert event_of(alert, "rk") == {"routing_key": "rk", "event_action": "resolve", "dedup_key": opened["incident_id"]}
    assert _deliveries(tmp_path)[-3:] == [("ops-hook", "sent"), ("gw", "sent"), ("ops-hook", "sent")]
    assert "reached gw on a retry" in capfd.readouterr().err
    sender.step()  # once
    assert len(receiver.got["generic"]) == 2


def test_a_dead_lettered_restriction_alerts_nothing(tmp_path, gateway, httpserver, monkeypatch):
    receiver = Receiver(httpserver, ALERT_SECRETS)
    controller, sender = _plane(tmp_path, gateway, receiver, monkeypatch)
    monkeypatch.setenv("GW_TEST_GATEWAY_SECRET", "")  # the block itself cannot be sent: dead letter, no alert
    controller.commit([BLOCK])
    sender.step()
    sender.step()
    assert [e.destination for e in sender.control.outbox("dead_letter")] == ["gw"]
    assert sender.control.outbox("pending") == [] and receiver.got["generic"] == []
