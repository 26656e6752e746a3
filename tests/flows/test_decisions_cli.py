"""``gatewatch decisions list|approve|revert`` through the real console script, on a replayed store."""

from __future__ import annotations

import base64
import json

import msgspec
import pytest

from gatewatch.flows.control.decisions import DecisionError, approve, list_decisions
from gatewatch.sinks.control import ControlDB
from tests.conftest import SAMPLE, gatewatch, rows
from tests.flows.test_decision_api import decision

ATTACKER = "3f8a1c2e-7b4d-4e9a-8c6f-2d1e0b9a7c54"
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


@pytest.fixture
def store(tmp_path, httpserver):
    """The sample replayed in enforce mode with a webhook target: the block waits for review."""
    httpserver.expect_request("/gateway").respond_with_data("", status=204)
    cfg = tmp_path / "gatewatch.toml"
    cfg.write_text(
        '[policy]\nmode = "enforce"\n'
        f'[targets.webhook]\nenabled = true\nurl = "{httpserver.url_for("/gateway")}"\nsecret_env = "GW_TEST_SECRET"\n'
    )
    path = tmp_path / "store"
    gatewatch("replay", str(SAMPLE), "--store", str(path), "--config", str(cfg), env={"GW_TEST_SECRET": SECRET, "PATH": ""})
    return path


def pending(store) -> dict:
    (d,) = json.loads(gatewatch("decisions", "list", "--status", "pending_review", "--store", str(store), "--format", "json").stdout)
    return d


def test_list_shows_every_decision_and_filters_by_status(store):
    listed = json.loads(gatewatch("decisions", "list", "--store", str(store), "--format", "json").stdout)
    assert {(d["subject"], d["tier"], d["status"]) for d in listed if d["subject"] == ATTACKER} == {
        (ATTACKER, "restricted", "approved"),
        (ATTACKER, "blocked", "pending_review"),
    }
    assert pending(store)["tier"] == "blocked"
    table = gatewatch("decisions", "list", "--store", str(store)).stdout
    assert "pending_review" in table and "PartnerPortal" in table


def test_approve_queues_the_block_and_records_who_approved(store):
    d = pending(store)
    out = gatewatch("decisions", "approve", d["decision_id"], "--store", str(store), env={"USER": "bob", "PATH": ""}).stdout
    assert out.startswith(f"{d['decision_id']}: approved by bob")
    history = rows(store, "SELECT status, actor FROM decisions WHERE decision_id = ? ORDER BY changed_at", [d["decision_id"]])
    assert history[-1] == {"status": "approved", "actor": "bob"}
    assert {(h["status"], h["actor"]) for h in history[:-1]} == {("pending_review", "policy")}  # created, then held
    queued = [e for e in ControlDB(store).open().outbox("pending") if e.ref_id == d["decision_id"]]
    assert [(e.destination, e.payload["block"]) for e in queued] == [("webhook", True)]
    again = gatewatch("decisions", "approve", d["decision_id"], "--store", str(store), "--actor", "bob", check=False)
    assert again.returncode == 1 and "is approved" in again.stderr


def test_revert_rejects_a_pending_decision_and_reverts_an_applied_one(store):
    d = pending(store)
    out = gatewatch("decisions", "revert", d["decision_id"], "--store", str(store), "--actor", "carol").stdout
    assert "rejected by carol" in out
    restricted = next(x for x in list_decisions(store) if x.subject == ATTACKER and x.tier == "restricted")
    assert restricted.status in ("approved", "applied")
    out = gatewatch("decisions", "revert", restricted.decision_id, "--store", str(store), "--actor", "carol").stdout
    assert "reverted by carol" in out
    queued = [e for e in ControlDB(store).open().outbox("pending") if e.ref_id == restricted.decision_id]
    assert [(e.payload["block"], e.payload["limit_per_min"]) for e in queued] == [(False, None)]  # nothing of ours left


def test_unknown_ids_and_missing_actors_are_clear_errors(store):
    bad = gatewatch("decisions", "approve", "no-such-id", "--store", str(store), "--actor", "bob", check=False)
    assert bad.returncode == 1 and "no decision 'no-such-id'" in bad.stderr
    with pytest.raises(DecisionError, match="actor"):
        approve(store, pending(store)["decision_id"], " ")


def test_list_prints_markup_in_names_and_reasons_as_text(tmp_path):
    # a consumer's name and a finding's reasons come from the logs: Rich must not read them as markup
    name, reason = "[/bold]", "[link=http://x]click[/link] [red]auth failures[/red]"
    control = ControlDB(tmp_path).open()
    control.put_decision(msgspec.structs.replace(decision("d1", "203.0.113.7"), subject_name=name, reason=reason))
    control.close()
    proc = gatewatch("decisions", "list", "--store", str(tmp_path), check=False)
    assert proc.returncode == 0, proc.stderr
    assert name in proc.stdout and "[link=http://x]click[/link]" in proc.stdout and "[red]auth" in proc.stdout
