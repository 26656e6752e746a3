"""The generic webhook target and the Standard Webhooks signer, against a real receiver on 127.0.0.1."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import pytest
from standardwebhooks.webhooks import Webhook
from werkzeug import Response

from gatewatch.sinks import signing
from gatewatch.sinks.control import ControlDB
from gatewatch.sinks.targets.base import Secret
from gatewatch.sinks.targets.webhook import EVENT_TYPE, WebhookChannel
from tests.fakes.fixtures import desired, drain, outcomes, sender

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@pytest.mark.parametrize("body", [b"{}", b'{"type":"x","data":{"a":1}}', "ünïcode".encode()])
def test_signatures_match_the_reference_library(body):
    ours = signing.sign(SECRET, "msg_1", 1_700_000_000, body)
    theirs = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(1_700_000_000, timezone.utc), body.decode())
    assert ours == theirs
    assert signing.verify(SECRET, "msg_1", 1_700_000_000, body, f"v1,bogus {ours}")
    assert not signing.verify(SECRET, "msg_1", 1_700_000_000, body + b" ", ours)


def test_desired_state_is_posted_signed_with_a_stable_id_across_retries(tmp_path, httpserver, monkeypatch):
    monkeypatch.setenv("GW_TEST_HOOK_SECRET", SECRET)
    answers = iter([Response("busy", 503), Response("", 204)])
    httpserver.expect_request("/gateway", method="POST").respond_with_handler(lambda req: next(answers))
    ch = WebhookChannel("hook", url=httpserver.url_for("/gateway"), secret=Secret("targets.webhook.secret_env", "GW_TEST_HOOK_SECRET"))
    s = sender(tmp_path, {"hook": ch})
    s.control.enqueue("entry-1", "webhook", "hook", "d-test", desired(block=True, limit_per_min=20))
    drain(s)
    assert outcomes(tmp_path) == {"retry": 1, "sent": 1}
    requests = [req for req, _ in httpserver.log]
    assert {r.headers["webhook-id"] for r in requests} == {"entry-1"}
    for r in requests:  # a receiver using the reference library accepts every attempt
        payload = Webhook(SECRET).verify(r.get_data(), dict(r.headers))
        assert payload["type"] == EVENT_TYPE
        assert payload["data"]["block"] is True and payload["data"]["limit_per_min"] == 20
    assert SECRET not in json.dumps([r.get_data(as_text=True) for r in requests])


def test_a_missing_secret_dead_letters_with_its_key_and_sends_nothing(tmp_path, httpserver):
    ch = WebhookChannel("hook", url=httpserver.url_for("/gateway"), secret=Secret("targets.webhook.secret_env", "GW_TEST_UNSET"))
    s = sender(tmp_path, {"hook": ch})
    s.control.enqueue("entry-1", "webhook", "hook", "d-test", desired(block=True))
    drain(s)
    (entry,) = ControlDB(tmp_path).open().outbox()
    assert entry.state == "dead_letter" and "GW_TEST_UNSET is not set" in entry.last_error
    assert httpserver.log == []
