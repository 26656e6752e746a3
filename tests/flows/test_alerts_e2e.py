"""Alerts end to end: the real CLI and dataflow, real receivers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

from gatewatch.sinks.control import ControlDB
from tests.conftest import SAMPLE, gatewatch, rows, scalar, start_gatewatch, stop, wait_for
from tests.sinks.alerts_receiver import ROUTING_KEY, Receiver, whsec

TRUTH = json.loads(SAMPLE.with_name("wso2_apim_metrics.truth.json").read_text())
LINES = SAMPLE.read_bytes().splitlines(keepends=True)
SECRETS = [whsec("current"), whsec("next")]  # two while rotating: both must verify


# Batches of about a minute of the sample's traffic, so incidents live through several batches.
BATCH = "[input]\nmax_batch_bytes = 65536\n"
LIVE = BATCH + "poll_ms = 50\n[pipeline]\nidle_close_s = 1\nsnapshot_interval_s = 1\n"


def _config(
    tmp_path: Path, receiver: Receiver, kinds=("generic", "slack", "pagerduty"), extra: str = BATCH
) -> Path:
    cfg = tmp_path / "gatewatch.toml"
    parts = [extra, '[alerts]\ndashboard_url = "http://127.0.0.1:8501"\n']
    if "generic" in kinds:
        parts.append(
            '[[alerts.destinations]]\ntype = "generic"\nname = "ops-hook"\n'
            f'url = "{receiver.url("generic")}"\n'
            'secret_env = ["GW_TEST_WHSEC", "GW_TEST_WHSEC_NEXT"]\n'
        )
    if "slack" in kinds:
        parts.append(
            '[[alerts.destinations]]\ntype = "slack"\nname = "ops-slack"\nurl_env = "GW_TEST_SLACK_URL"\n'
        )
    if "pagerduty" in kinds:
        parts.append(
            '[[alerts.destinations]]\ntype = "pagerduty"\nname = "ops-pager"\n'
            f'url = "{receiver.url("pagerduty")}"\n'
            'routing_key_env = "GW_TEST_PD_KEY"\n'
        )
    cfg.write_text("\n".join(parts))
    return cfg


def _env(receiver: Receiver) -> dict[str, str]:
    return {
        **os.environ,
        "GW_TEST_WHSEC": SECRETS[0],
        "GW_TEST_WHSEC_NEXT": SECRETS[1],
        "GW_TEST_SLACK_URL": receiver.url("slack"),
        "GW_TEST_PD_KEY": ROUTING_KEY,
    }


KEY = "subject_type, subject, kind"  # what an incident groups findings by


def _incidents(store: Path, states: list[dict]) -> tuple[list, list]:
    """(expected, got): per subject and kind, of every subject type, one resolved incident holding every finding.

    This holds because the control plane's watermark is the minimum over every shard of every
    subject family: no incident resolves before its own family's later findings are recorded.
    """
    got = rows(store, f"SELECT {KEY}, count(DISTINCT finding_id) n FROM findings GROUP BY ALL")
    expected = sorted(((r["subject_type"], r["subject"], r["kind"]), r["n"]) for r in got)
    resolved = sorted(
        ((s["subject_type"], s["subject"], s["kind"]), s["findings"]) for s in states if s["state"] == "resolved"
    )
    return expected, resolved


def _secrets_in(store: Path, env: dict[str, str]) -> list[str]:
    """Every file of the store that holds a secret's bytes (there must be none)."""
    secrets = [env[k].encode() for k in ("GW_TEST_WHSEC", "GW_TEST_WHSEC_NEXT", "GW_TEST_PD_KEY")]
    secrets.append(b"slacksecretpath")
    found = []
    for path in store.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.name}: {s[:8]!r}..." for s in secrets if s in data]
    return found


def test_replayed_attack_sends_one_open_and_one_resolve_per_incident_to_every_destination(
    tmp_path, httpserver
):
    receiver = Receiver(httpserver, SECRETS)
    env = _env(receiver)
    store = tmp_path / "store"
    cfg = _config(tmp_path, receiver)
    gatewatch("replay", str(SAMPLE), "--store", str(store), "--config", str(cfg), env=env)

    assert receiver.errors == []
    states = rows(store, f"SELECT incident_id, {KEY}, state, findings FROM incidents ORDER BY changed_at")
    incidents = {s["incident_id"] for s in states}
    assert incidents, "the sample attack raised no incident"
    for incident in incidents:  # every incident opened once and resolved once
        changes = [s["state"] for s in states if s["incident_id"] == incident]
        assert changes[0] == "open" and changes[-1] == "resolved" and set(changes[1:-1]) <= {"escalated"}
    alerts = receiver.by_incident("generic")
    assert set(alerts) == incidents
    for events in alerts.values():  # one open, one resolve, escalations (at most one per 10 minutes) between
        assert events[0] == "open" and events[-1] == "resolved" and set(events[1:-1]) <= {"escalated"}
    assert receiver.by_incident("slack") == alerts
    pd_action = {"open": "trigger", "escalated": "trigger", "resolved": "resolve"}
    assert receiver.by_incident("pagerduty") == {i: [pd_action[e] for e in ev] for i, ev in alerts.items()}
    attack = TRUTH["attack"]
    assert attack["application_id"] in {s["subject"] for s in states}
    # an incident is every finding of its subject and kind: the attack is one per kind
    expected, resolved = _incidents(store, states)
    assert expected and resolved == expected  # one incident per subject and kind

    # what an on-call engineer reads
    opened = next(
        r["body"]["data"]
        for r in receiver.got["generic"]
        if r["body"]["data"]["kind"] == "credential_stuffing"
        and r["body"]["data"]["subject"]["type"] == "consumer"
    )
    assert opened["subject"] == {"type": "consumer", "id": attack["application_id"], "name": "PartnerPortal"}
    first = rows(
        store,
        "SELECT reasons FROM findings WHERE subject = ? AND kind = 'credential_stuffing' "
        "ORDER BY window_start LIMIT 1",
        [attack["application_id"]],
    )[0]
    assert [r["text"] for r in opened["reasons"]] == first["reasons"][:3]
    assert all(r["observed"] > r["baseline"] for r in opened["reasons"])
    assert opened["dashboard_url"] == f"http://127.0.0.1:8501/?incident={opened['incident_id']}"
    tiers = {
        r["tier"]
        for r in rows(store, "SELECT tier FROM decisions WHERE subject = ?", [attack["application_id"]])
    }
    if opened["decision"] is not None:
        assert opened["tier"] == opened["decision"]["tier"] and opened["tier"] in tiers
        assert opened["decision"]["mode"] == "dry-run" and "(dry-run, not enforced)" in opened["summary"]

    deliveries = rows(
        store, "SELECT destination, outcome, count(*) n FROM deliveries GROUP BY ALL ORDER BY 1"
    )
    sent = sum(len(events) for events in alerts.values())
    assert deliveries == [
        {"destination": d, "outcome": "sent", "n": sent} for d in ("ops-hook", "ops-pager", "ops-slack")
    ]
    assert _secrets_in(store, env) == []
    # client IPs are masked (the default): a flagged IP appears only as its /24
    bodies = [json.dumps(r["body"]) for kind in ("generic", "slack", "pagerduty") for r in receiver.got[kind]]
    for ip in {r["subject"] for r in rows(store, "SELECT subject FROM findings WHERE subject_type = 'ip'")}:
        assert not any(ip in b for b in bodies)
        assert any(ip.rsplit(".", 1)[0] + ".0/24" in b for b in bodies)

    # a second replay into the same store is refused: nothing is counted or sent twice
    before = len(receiver.got["generic"])
    again = gatewatch("replay", str(SAMPLE), "--store", str(store), "--config", str(cfg), env=env, check=False)
    assert again.returncode == 2 and "already replayed" in again.stderr
    assert len(receiver.got["generic"]) == before
    assert {r["incident_id"] for r in rows(store, "SELECT incident_id FROM incidents")} == incidents


def test_missing_secret_stops_the_run_before_it_starts_and_names_only_the_variable(tmp_path, httpserver):
    receiver = Receiver(httpserver, SECRETS)
    env = {**_env(receiver), "GW_TEST_WHSEC_NEXT": ""}
    cfg = _config(tmp_path, receiver)
    proc = gatewatch(
        "replay", str(SAMPLE), "--store", str(tmp_path / "s"), "--config", str(cfg), env=env, check=False
    )
    assert proc.returncode == 2
    assert "GW_TEST_WHSEC_NEXT is not set" in proc.stderr
    assert SECRETS[0] not in proc.stderr + proc.stdout
    assert not (tmp_path / "s").exists()


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def _attack_line(minute_offset: int) -> int:
    """Index of the first sample line logged at or after the attack start plus some minutes."""
    start = TRUTH["attack"]["start"] + 60 * minute_offset
    from datetime import datetime, timezone

    for i, line in enumerate(LINES):
        rec = json.loads(line[line.index(b"{") :])
        if datetime.fromisoformat(rec["requestTimestamp"]).astimezone(timezone.utc).timestamp() >= start:
            return i
    msg = "attack start not in the sample"
    raise AssertionError(msg)


def test_kill_9_mid_incident_and_restart_gives_no_second_incident(tmp_path, httpserver):
    receiver = Receiver(httpserver, SECRETS)
    env = _env(receiver)
    store = tmp_path / "store"
    cfg = _config(tmp_path, receiver, kinds=("generic",), extra=LIVE)
    log = tmp_path / "apim_metrics.log"
    mid = _attack_line(4)  # four minutes into the attack
    log.write_bytes(b"".join(LINES[:mid]))
    args = ("run", str(log), "--store", str(store), "--config", str(cfg))

    proc = start_gatewatch(*args, env=env)
    wait_for(lambda: "open" in receiver.events("generic"), timeout=120, what="an open alert")
    wait_for(
        lambda: rows(store, "SELECT count(*) n FROM findings")[0]["n"] >= 2, timeout=60, what="two findings"
    )
    assert "resolved" not in receiver.events("generic")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)

    _append(log, b"".join(LINES[mid:]))  # the rest of the attack and the calm after it, written while down
    proc = start_gatewatch(*args, env=env)

    def all_resolved() -> bool:
        states = rows(store, f"SELECT incident_id, {KEY}, state, findings FROM incidents")
        expected, resolved = _incidents(store, states)
        ids = {s["incident_id"] for s in states}
        done = {i for i, events in receiver.by_incident("generic").items() if events[-1] == "resolved"}
        return bool(expected) and resolved == expected and ids == done

    wait_for(all_resolved, timeout=180, what="every incident resolved")
    stop(proc)

    assert receiver.errors == []
    # an alert sent just before the kill but not yet marked sent is sent again after the restart:
    # under the same webhook-id and with the same body, so the receiver sees it is a duplicate
    first: dict[str, dict] = {}
    for r in receiver.got["generic"]:
        assert first.setdefault(r["id"], r)["raw"] == r["raw"]
    by_incident: dict[str, list[str]] = {}
    for r in first.values():
        by_incident.setdefault(r["body"]["data"]["incident_id"], []).append(r["body"]["data"]["event"])
    for events in by_incident.values():  # no second open: one open, then escalations, one resolve
        assert events[0] == "open" and events[-1] == "resolved" and set(events[1:-1]) <= {"escalated"}
    states = rows(store, f"SELECT incident_id, {KEY}, state, findings FROM incidents")
    assert {s["incident_id"] for s in states} == set(by_incident)  # none opened twice
    expected, resolved = _incidents(store, states)
    assert expected and resolved == expected  # no second incident


def test_a_receiver_that_never_answers_does_not_stall_ingestion(tmp_path):
    """Deliveries wait in the on-disk outbox while the pipeline keeps counting."""
    hung: list[socket.socket] = []
    accepted_at: list[float] = []  # one connection an attempt: a hung one is never used again
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    done = threading.Event()

    def accept_and_never_answer() -> None:
        while not done.is_set():
            try:
                hung.append(server.accept()[0])
                accepted_at.append(time.monotonic())
            except TimeoutError:
                continue
            except OSError:  # closed at the end of the test
                return

    threading.Thread(target=accept_and_never_answer, daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    cfg = tmp_path / "gatewatch.toml"
    cfg.write_text(
        LIVE + '[[alerts.destinations]]\ntype = "generic"\nname = "hung-hook"\n'
        f'url = "{url}"\ntimeout_s = 5\nsecret_env = ["GW_TEST_WHSEC"]\n'
    )
    log, store = tmp_path / "apim_metrics.log", tmp_path / "store"
    log.write_bytes(b"".join(LINES))
    proc = start_gatewatch(
        "run", str(log), "--store", str(store), "--config", str(cfg), env={**os.environ, "GW_TEST_WHSEC": SECRETS[0]}
    )
    try:
        # every line counted while deliveries hang (5 s each)
        wait_for(
            lambda: scalar(store, "SELECT coalesce(sum(requests), 0) FROM traffic") == len(LINES),
            timeout=20, what="every line in the store",
        )  # fmt: skip
        assert hung, "the sender never reached the receiver"
        control = ControlDB(store).open()
        try:
            waiting = control.outbox("pending")
        finally:
            control.close()
        assert waiting and {e.destination for e in waiting} == {"hung-hook"}
    finally:
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        stopped_s = time.monotonic() - stopping
        done.set()
        for conn in hung:
            conn.close()
        server.close()
    assert proc.returncode == 0
    # the call in flight and one last try of the hung receiver, not one per waiting alert (5 s each)
    assert len(waiting) >= 3, waiting
    assert len([t for t in accepted_at if t >= stopping]) <= 2, (accepted_at, stopping)
    assert stopped_s < 5 * len(waiting), stopped_s
