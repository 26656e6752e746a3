"""Incidents: grouping, escalation, suppression, resolution and replay safety.

The scenarios are data files in ``incident_cases/``: findings, decisions and
watermarks (in minutes of event time) go in; the outbox entries (destination,
event, minute, incident) and the store's incident state rows come out.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from gatewatch.flows.config import AlertsConfig, Config
from gatewatch.flows.control.controller import CONTROL_WRITER, Controller, build_policy
from gatewatch.flows.control.incidents import IncidentTracker, redact_ip, severity_of
from gatewatch.flows.events import Decision, Finding, stable_id
from gatewatch.sinks.control import ControlDB
from gatewatch.sinks.store import StoreWriter, query

CASES = sorted(Path(__file__).with_name("incident_cases").glob("*.json"))
T0 = 1793613600.0  # 2026-11-02T10:00:00Z
EVIDENCE = {
    "features": {"requests": 150.0},
    "reasons": {
        "auth_failure_ratio": {"observed": 0.94, "baseline": 0.01, "spread": 0.05},
        "distinct_ips": {"observed": 101.0, "baseline": 2.0, "spread": 0.5},
    },
}


def _finding(
    minute: int,
    score: float,
    subject: str = "app-1",
    subject_type: str = "consumer",
    kind: str = "credential_stuffing",
) -> Finding:
    start = T0 + 60 * minute
    return Finding(
        finding_id=stable_id("test", subject_type, subject, kind, start),
        subject_type=subject_type,
        subject=subject,
        subject_name="PartnerPortal" if subject_type == "consumer" else subject,
        subject_owner="partner1",
        kind=kind,
        detector="test",
        score=score,
        window_start=start,
        window_end=start + 60,
        detected_at=start + 61,
        reasons=["auth failures 94% vs baseline 1%", "distinct client IPs 101 vs baseline 2"],
        evidence=json.dumps(EVIDENCE),
    )


def _decision(minute: int, tier: str, subject: str = "app-1") -> Decision:
    at = T0 + 60 * minute
    return Decision(
        decision_id=stable_id("test-decision", subject, at),
        finding_id="",
        subject_type="consumer",
        subject=subject,
        subject_name="PartnerPortal",
        action="restrict",
        tier=tier,
        previous_tier="normal",
        limit_per_min=10,
        mode="dry-run",
        status="recorded",
        reason="test",
        inputs="{}",
        actor="policy",
        effective_from=at,
        expires_at=at + 3600,
        created_at=at,
        changed_at=at,
    )


def _minute(iso: str) -> int:
    return round((datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() - T0) / 60)


def _run(tmp_path: Path, case: dict) -> tuple[ControlDB, IncidentTracker, list[Finding]]:
    control = ControlDB(tmp_path).open()
    tracker = IncidentTracker(
        StoreWriter(tmp_path, writer=CONTROL_WRITER).open(), AlertsConfig(**case["alerts"])
    )
    findings = []
    for step in case["steps"]:
        if "finding" in step:
            findings.append(_finding(**step["finding"]))
            tracker.on_finding(findings[-1], control)
        elif "decision" in step:
            control.put_decision(_decision(**step["decision"]))
        else:
            tracker.on_watermark(T0 + 60 * step["watermark"], control)
    return control, tracker, findings


def _outcome(tmp_path: Path, control: ControlDB) -> tuple[list, list]:
    entries = control.outbox()
    order = list(dict.fromkeys(e.ref_id for e in entries))
    outbox = [
        [e.destination, e.payload["event"], _minute(e.payload["occurred_at"]), order.index(e.ref_id)]
        for e in entries
    ]
    states = query(
        tmp_path, "SELECT incident_id, state, findings FROM incidents ORDER BY changed_at"
    ).to_pylist()
    order = list(dict.fromkeys(s["incident_id"] for s in states))
    incidents = [[order.index(s["incident_id"]), s["state"], s["findings"]] for s in states]
    return outbox, incidents


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_incident_scenario(tmp_path, path):
    case = json.loads(path.read_text())
    control, _, _ = _run(tmp_path, case)
    outbox, incidents = _outcome(tmp_path, control)
    expected = case["expected"]
    assert outbox == expected["outbox"]
    assert incidents == expected["incidents"]
    entries = control.outbox()
    if "severities" in expected:
        assert [e.payload["severity"] for e in entries] == expected["severities"]
    if "subject_ids" in expected:
        assert sorted({e.payload["subject"]["id"] for e in entries}) == expected["subject_ids"]
        assert not any("203.0.113.7" in json.dumps(e.payload) for e in entries)
    # outbox ids are unique per incident, event and destination, and the channel is the destination's type
    assert len({e.id for e in entries}) == len(entries)
    types = {d["name"]: d["type"] for d in case["alerts"]["destinations"]}
    assert all(e.channel == types[e.destination] for e in entries)


def test_findings_seen_again_after_a_crash_change_nothing(tmp_path):
    case = json.loads((path := CASES[0]).read_text())
    assert path.stem == "a_long_gap_starts_a_new_incident"
    control, tracker, findings = _run(tmp_path, case)
    before = _outcome(tmp_path, control)
    bodies = control.incident_bodies()
    for f in findings:  # a replay of the inbox after a crash between an observer and the cursor
        tracker.on_finding(f, control)
    tracker.on_watermark(T0 + 60 * 30, control)
    assert _outcome(tmp_path, control) == before
    assert control.incident_bodies() == bodies


def test_controller_replaying_its_inbox_makes_no_second_incident(tmp_path):
    """The real controller and policy: reset the cursor as a crash before it moved would."""
    control = ControlDB(tmp_path).open()
    writer = StoreWriter(tmp_path, writer=CONTROL_WRITER).open()
    alerts = AlertsConfig(
        destinations=[{"type": "generic", "name": "hook", "url": "http://127.0.0.1:9/", "secret_env": ["S"]}]
    )
    controller = Controller(
        control, writer, build_policy(Config()), observers=[IncidentTracker(writer, alerts)]
    )
    control.record_findings([_finding(m, 0.99) for m in range(5)])
    control.advance_watermark(T0 + 60 * 5)
    controller.step()
    control.advance_watermark(T0 + 60 * 11)
    controller.step()
    before = _outcome(tmp_path, control)
    assert [row[:2] for row in before[0]] == [["hook", "open"], ["hook", "resolved"]]
    control.set_meta("cursor", "0")
    controller.step()
    assert _outcome(tmp_path, control) == before
    opened = control.outbox()[0].payload
    active = control.decisions()
    assert active and opened["tier"] == active[0].tier == opened["decision"]["tier"]


def test_alert_document_has_what_on_call_needs(tmp_path):
    case = json.loads(
        (Path(__file__).with_name("incident_cases") / "attack_opens_once_and_resolves_once.json").read_text()
    )
    case["alerts"]["dashboard_url"] = "https://gatewatch.example.com/"
    control, _, _ = _run(tmp_path, case)
    opened, resolved = (e.payload for e in control.outbox())
    assert opened["summary"] == (
        "PartnerPortal (consumer) shows credential stuffing: auth failures 94% vs baseline 1%; "
        "score 0.99, tier normal."
    )
    assert opened["subject"] == {"type": "consumer", "id": "app-1", "name": "PartnerPortal"}
    assert opened["reasons"][0] == {
        "feature": "auth_failure_ratio",
        "text": "auth failures 94% vs baseline 1%",
        "observed": 0.94,
        "baseline": 0.01,
    }
    assert opened["window"] == {"start": "2026-11-02T10:00:00Z", "end": "2026-11-02T10:01:00Z"}
    assert opened["dashboard_url"] == f"https://gatewatch.example.com/?incident={opened['incident_id']}"
    assert resolved["summary"] == (
        "Resolved: credential stuffing on PartnerPortal (consumer) ended at 10:05 UTC after 5 findings "
        "since 10:00 UTC (max score 0.99)."
    )
    assert (resolved["first_seen"], resolved["last_seen"], resolved["findings"]) == (
        "2026-11-02T10:00:00Z",
        "2026-11-02T10:05:00Z",
        5,
    )
    assert "partner1" not in json.dumps(opened)  # the owner (a user name) stays out of alerts


@pytest.mark.parametrize(
    ("mode", "text", "expected"),
    [
        ("show", "from 203.0.113.7", "from 203.0.113.7"),
        ("mask", "from 203.0.113.7 and 2001:db8:1:2::7", "from 203.0.113.0/24 and 2001:db8:1::/48"),
        ("hash", "203.0.113.7", "ip-" + __import__("hashlib").sha256(b"203.0.113.7").hexdigest()[:12]),
        (
            "mask",
            "at 10:00:00Z, 1.2.3 requests, version 4.3.0.1x",
            "at 10:00:00Z, 1.2.3 requests, version 4.3.0.1x",
        ),
    ],
)
def test_client_ips_are_shown_masked_or_hashed_as_configured(mode, text, expected):
    assert redact_ip(text, mode) == expected


def test_severity_follows_score_band_and_tier():
    assert [severity_of(s, "normal") for s in (0.5, 0.8, 0.95)] == ["warning", "error", "critical"]
    assert severity_of(0.5, "restricted") == "error"
    assert severity_of(0.5, "blocked") == "critical"
    assert severity_of(0.99, "elevated") == "critical"


def test_alerts_do_not_depend_on_how_often_the_watermark_moves(tmp_path):
    """``replay`` sees the watermark jump, ``run`` sees it creep: the alerts must be the same."""
    case = json.loads(
        (
            Path(__file__).with_name("incident_cases") / "escalations_are_suppressed_per_destination.json"
        ).read_text()
    )
    findings_only = [s for s in case["steps"] if "watermark" not in s]
    creeping = []
    for step in findings_only:
        creeping.append(step)
        if "finding" in step:
            creeping.append({"watermark": step["finding"]["minute"] + 1})
    results = []
    for name, steps in (
        ("jump", [*findings_only, {"watermark": 60}]),
        ("creep", [*creeping, {"watermark": 60}]),
    ):
        store = tmp_path / name
        control, _, _ = _run(store, {**case, "steps": steps})
        results.append(([(e.id, e.payload) for e in control.outbox()], _outcome(store, control)[1]))
    assert results[0] == results[1]
    assert len(results[0][0]) == len(case["expected"]["outbox"])


def test_incidents_a_watermark_resolves_are_one_transaction_and_one_history_segment(tmp_path):
    control = ControlDB(tmp_path).open()
    writer = StoreWriter(tmp_path, writer=CONTROL_WRITER).open()
    alerts = AlertsConfig(
        destinations=[{"type": "generic", "name": "hook", "url": "http://127.0.0.1:9/", "secret_env": ["S"]}]
    )

    class FailingOnSecond(IncidentTracker):
        resolves = 0

        def _resolve(self, *args):
            FailingOnSecond.resolves += 1
            if FailingOnSecond.resolves == 2:
                msg = "crash while resolving"
                raise RuntimeError(msg)
            super()._resolve(*args)

    tracker = FailingOnSecond(writer, alerts)
    for subject in ("a", "b", "c"):
        tracker.on_finding(_finding(0, 0.9, subject=subject), control)
    segments = set((tmp_path / "incidents").glob("*.parquet"))
    end = T0 + 60 * 30
    with pytest.raises(RuntimeError, match="while resolving"):
        tracker.on_watermark(end, control)
    # the first incident's resolve was rolled back with the rest, and none of their rows written
    assert len(control.incident_bodies(live=True)) == 3
    assert set((tmp_path / "incidents").glob("*.parquet")) == segments
    assert [e.payload["event"] for e in control.outbox()] == ["open"] * 3

    tracker.on_watermark(end, control)
    assert control.incident_bodies(live=True) == []
    assert len(set((tmp_path / "incidents").glob("*.parquet")) - segments) == 1
    resolved = query(tmp_path, "SELECT subject FROM incidents WHERE state = 'resolved' ORDER BY subject")
    assert resolved.column("subject").to_pylist() == ["a", "b", "c"]
    assert control.acknowledged_store() == writer.last_seq
    assert sorted(e.payload["event"] for e in control.outbox()) == ["open"] * 3 + ["resolved"] * 3
