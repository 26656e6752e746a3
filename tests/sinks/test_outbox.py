"""The sender against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import time
from typing import ClassVar

import httpx
from werkzeug import Response

from gatewatch.sinks.control import ControlDB, OutboxEntry
from gatewatch.sinks.outbox import Attempt, Sender, retry_after
from gatewatch.sinks.store import StoreWriter, query


class _PostChannel:
    """The smallest real channel: POST the payload as JSON."""

    kind: ClassVar[str] = "test-post"

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url
        self.client = httpx.Client(timeout=2.0)

    def deliver(self, entry: OutboxEntry) -> Attempt:
        r = self.client.post(self.url, json=entry.payload, headers={"Idempotency-Key": entry.id})
        return Attempt(r.status_code, "POST /hook", "" if r.is_success else r.text[:200], retry_after(r))

    def secret_values(self) -> list[str]:
        return []


def _sender(tmp_path, url, **kw) -> Sender:
    control = ControlDB(tmp_path).open()
    return Sender(control, StoreWriter(tmp_path, writer="c0").open(), {"hook": _PostChannel("hook", url)}, **kw)


def _attempts(tmp_path) -> list[dict]:
    return query(tmp_path, "SELECT delivery_id, attempt, outcome, http_status FROM deliveries ORDER BY attempted_at").to_pylist()


def test_retries_5xx_then_delivers_once(tmp_path, httpserver):
    responses = iter([Response("busy", 503), Response("busy", 503, headers={"Retry-After": "0"}), Response("ok", 200)])
    httpserver.expect_request("/hook", method="POST").respond_with_handler(lambda req: next(responses))
    sender = _sender(tmp_path, httpserver.url_for("/hook"), backoff_base_s=0.0)
    assert sender.control.enqueue("e1", "test-post", "hook", "d1", {"x": 1})
    assert not sender.control.enqueue("e1", "test-post", "hook", "d1", {"x": 1})  # a replayed duplicate
    for _ in range(5):
        sender.step()
    assert [a["outcome"] for a in _attempts(tmp_path)] == ["retry", "retry", "sent"]
    assert [e.state for e in sender.control.outbox()] == ["sent"]
    assert len(httpserver.log) == 3
    assert {req.headers["Idempotency-Key"] for req, _ in httpserver.log} == {"e1"}


def test_client_errors_dead_letter_at_once_with_the_error_kept(tmp_path, httpserver):
    httpserver.expect_request("/hook").respond_with_data("bad payload", status=400)
    sender = _sender(tmp_path, httpserver.url_for("/hook"))
    sender.control.enqueue("e1", "test-post", "hook", "d1", {})
    sender.step()
    sender.step()
    (entry,) = sender.control.outbox()
    assert (entry.state, entry.attempts, entry.last_error) == ("dead_letter", 1, "bad payload")
    assert _attempts(tmp_path) == [{"delivery_id": "e1", "attempt": 1, "outcome": "dead_letter", "http_status": 400}]


def test_unreachable_destination_is_retried_then_dead_lettered(tmp_path):
    sender = _sender(tmp_path, "http://127.0.0.1:9/hook", max_attempts=3, backoff_base_s=0.0, breaker_failures=100)
    sender.control.enqueue("e1", "test-post", "hook", "d1", {})
    for _ in range(5):
        sender.step()
    (entry,) = sender.control.outbox()
    assert entry.state == "dead_letter" and entry.attempts == 3
    assert "ConnectError" in entry.last_error
    assert [a["outcome"] for a in _attempts(tmp_path)] == ["retry", "retry", "dead_letter"]


def test_circuit_breaker_holds_entries_back_after_repeated_failures(tmp_path, httpserver):
    httpserver.expect_request("/hook").respond_with_data("down", status=500)
    sender = _sender(tmp_path, httpserver.url_for("/hook"), backoff_base_s=0.0, breaker_failures=2, breaker_cooldown_s=60)
    for i in range(4):
        sender.control.enqueue(f"e{i}", "test-post", "hook", "d", {})
    sender.step()
    assert len(httpserver.log) == 2  # the breaker opened after the second failure
    assert all(e.state == "pending" for e in sender.control.outbox())
    held = [e for e in sender.control.outbox() if e.attempts == 0]
    assert len(held) == 2 and all(e.next_at > time.time() + 30 for e in held)
    sender.step()  # the failed ones are due again, but the breaker is still open
    assert len(httpserver.log) == 2


def test_unknown_destination_dead_letters_with_a_clear_error(tmp_path):
    sender = _sender(tmp_path, "http://127.0.0.1:9/")
    sender.control.enqueue("e1", "wso2", "prod-apim", "d1", {})
    sender.step()
    (entry,) = sender.control.outbox()
    assert entry.state == "dead_letter"
    assert "prod-apim" in entry.last_error


def test_an_unreachable_destination_costs_a_step_one_attempt_and_others_still_go(tmp_path, httpserver):
    httpserver.expect_request("/hook").respond_with_data("ok")
    control = ControlDB(tmp_path).open()
    channels = {"down": _PostChannel("down", "http://127.0.0.1:9/hook"), "up": _PostChannel("up", httpserver.url_for("/hook"))}
    sender = Sender(control, StoreWriter(tmp_path, writer="c0").open(), channels, breaker_failures=100)
    for i in range(3):
        control.enqueue(f"down{i}", "test-post", "down", "d", {})
        control.enqueue(f"up{i}", "test-post", "up", "d", {})
    assert sender.step() == 4  # one for "down", whose other entries wait untouched; all of "up"
    states = {e.id: (e.state, e.attempts) for e in control.outbox()}
    assert [states[f"up{i}"] for i in range(3)] == [("sent", 1)] * 3
    assert sorted(states[f"down{i}"] for i in range(3)) == [("pending", 0), ("pending", 0), ("pending", 1)]


def test_no_attempt_starts_once_stop_is_set(tmp_path, httpserver):
    import threading

    httpserver.expect_request("/hook").respond_with_data("ok")
    sender = _sender(tmp_path, httpserver.url_for("/hook"))
    sender.control.enqueue("e1", "test-post", "hook", "d1", {})
    stop = threading.Event()
    stop.set()
    assert sender.step(stop=stop) == 0 and len(httpserver.log) == 0
    assert sender.step() == 1 and [e.state for e in sender.control.outbox()] == ["sent"]


class _CrashingChannel(_PostChannel):
    """Delivers ``survives`` entries, then the process dies in the middle of the next call."""

    def __init__(self, name: str, url: str, survives: int) -> None:
        super().__init__(name, url)
        self.survives = survives

    def deliver(self, entry: OutboxEntry) -> Attempt:
        if self.survives == 0:
            raise SystemExit(137)
        self.survives -= 1
        return super().deliver(entry)


def test_a_crash_mid_step_resends_nothing_that_was_delivered(tmp_path, httpserver):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    control = ControlDB(tmp_path).open()
    for i in range(10):
        control.enqueue(f"e{i}", "test-post", "hook", f"d{i}", {"x": i})
    crashing = Sender(control, StoreWriter(tmp_path, writer="c0").open(), {"hook": _CrashingChannel("hook", httpserver.url_for("/hook"), 3)})
    try:
        crashing.step()
    except SystemExit:
        pass
    control.close()
    # the restart: a new sender over the same control database and store
    restarted = _sender(tmp_path, httpserver.url_for("/hook"))
    restarted.step()
    keys = [req.headers["Idempotency-Key"] for req, _ in httpserver.log]
    assert sorted(keys) == [f"e{i}" for i in range(10)]  # each delivered once
    assert [e.state for e in restarted.control.outbox()] == ["sent"] * 10
    assert sorted(a["delivery_id"] for a in _attempts(tmp_path)) == sorted(keys)
