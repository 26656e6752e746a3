"""Alerts through the real outbox Sender: retries, Retry-After, timeouts, dead letters.

The sender runs with its production settings; the test moves its clock
forward (``step(now)``) instead of sleeping through backoffs and the circuit
breaker's cooldown.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from werkzeug import Response

from gatewatch.sinks.alerts.generic import GenericWebhook
from gatewatch.sinks.alerts.slack import SlackWebhook
from gatewatch.sinks.control import ControlDB
from gatewatch.sinks.outbox import Sender
from gatewatch.sinks.store import StoreWriter, query
from tests.sinks.alerts_receiver import Receiver, whsec

ALERT = json.loads((Path(__file__).with_name("alert_cases") / "open.alert.json").read_text())
SECRETS = [whsec("delivery")]


def _sender(tmp_path: Path, channel) -> Sender:
    control = ControlDB(tmp_path).open()
    control.enqueue("alert-1", channel.kind, channel.name, ALERT["incident_id"], ALERT)
    return Sender(control, StoreWriter(tmp_path, writer="c0").open(), {channel.name: channel})


def _drive(sender: Sender, until, steps: int = 40) -> float:
    """Step the sender on a clock moving a minute per step until ``until()`` holds; return the clock."""
    now = time.time()
    for _ in range(steps):
        sender.step(now)
        if until():
            return now
        now += 60
    msg = "the outbox never settled"
    raise AssertionError(msg)


def _attempts(tmp_path: Path) -> list[tuple]:
    return [
        (r["delivery_id"], r["attempt"], r["outcome"], r["http_status"])
        for r in query(tmp_path, "SELECT * FROM deliveries ORDER BY attempt").to_pylist()
    ]


def test_a_receiver_failing_5_times_then_succeeding_gets_the_alert_once(tmp_path, httpserver):
    receiver = Receiver(httpserver, SECRETS, fail={"generic": 5})
    sender = _sender(tmp_path, GenericWebhook("hook", receiver.url("generic"), SECRETS))
    _drive(sender, lambda: sender.control.outbox()[0].state != "pending")
    (entry,) = sender.control.outbox()
    assert (entry.state, entry.attempts, entry.last_error) == ("sent", 6, "")
    assert receiver.requests["generic"] == 6
    assert [r["id"] for r in receiver.got["generic"]] == ["alert-1"]  # accepted once
    assert receiver.errors == []
    assert _attempts(tmp_path) == [("alert-1", i, "retry", 503) for i in range(1, 6)] + [
        ("alert-1", 6, "sent", 204)
    ]


def test_a_receiver_that_never_succeeds_ends_in_dead_letter_with_the_last_error(tmp_path, httpserver):
    receiver = Receiver(httpserver, SECRETS, fail={"generic": -1})
    sender = _sender(tmp_path, GenericWebhook("hook", receiver.url("generic"), SECRETS))
    _drive(sender, lambda: sender.control.outbox()[0].state != "pending")
    (entry,) = sender.control.outbox()
    assert (entry.state, entry.attempts) == ("dead_letter", sender.max_attempts)
    assert entry.last_error == "HTTP 503: busy, try again"
    attempts = _attempts(tmp_path)
    assert [a[2] for a in attempts] == ["retry"] * (sender.max_attempts - 1) + ["dead_letter"]
    assert receiver.got["generic"] == []
    sender.step(time.time() + 86_400)  # a dead letter stays put
    assert receiver.requests["generic"] == sender.max_attempts


def test_slack_rate_limit_retry_after_is_honoured(tmp_path, httpserver):
    answers = iter([Response("rate_limited", 429, headers={"Retry-After": "120"}), Response("ok", 200)])
    httpserver.expect_request("/slack").respond_with_handler(lambda req: next(answers))
    sender = _sender(tmp_path, SlackWebhook("ops-slack", httpserver.url_for("/slack")))
    now = time.time()
    sender.step(now)
    (entry,) = sender.control.outbox()
    assert entry.state == "pending" and entry.next_at == now + 120
    assert entry.last_error == "HTTP 429: rate_limited"
    sender.step(now + 119)
    assert len(httpserver.log) == 1  # not before the server said
    sender.step(now + 120)
    assert sender.control.outbox()[0].state == "sent" and len(httpserver.log) == 2


def test_a_hanging_receiver_times_out_and_is_retried(tmp_path, httpserver):
    release = threading.Event()

    def hang(req):
        release.wait(30)  # until the test is done: the loopback server is shared and serves one at a time
        return Response("", 204)

    httpserver.expect_request("/slow").respond_with_handler(hang)
    sender = _sender(tmp_path, GenericWebhook("hook", httpserver.url_for("/slow"), SECRETS, timeout_s=0.3))
    try:
        started = time.monotonic()
        sender.step()
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert elapsed < 10
    (entry,) = sender.control.outbox()
    assert entry.state == "pending" and entry.attempts == 1
    assert entry.last_error.startswith("ReadTimeout")
    assert _attempts(tmp_path) == [("alert-1", 1, "retry", 0)]


def test_a_receiver_echoing_its_secret_url_leaves_no_secret_in_the_store(tmp_path, httpserver):
    token = "XoXb9Secret4dWebhook7Token"  # a Slack webhook's secret is the last part of its path
    path = f"/services/T000/B000/{token}"
    httpserver.expect_request(path).respond_with_data(f"no_service: {path} (see {httpserver.url_for(path)})", 404)
    sender = _sender(tmp_path, SlackWebhook("ops-slack", httpserver.url_for(path)))
    _drive(sender, lambda: sender.control.outbox()[0].state != "pending")
    (entry,) = sender.control.outbox()
    assert entry.state == "dead_letter" and "no_service" in entry.last_error
    stored = [entry.last_error, *(r["error"] for r in query(tmp_path, "SELECT error FROM deliveries").to_pylist())]
    assert stored and all(token not in text and "[secret]" in text for text in stored)
