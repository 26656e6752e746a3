"""End to end: the real ``gatewatch`` pipeline in enforce mode against the fake WSO2 and Kong.

The sample log's credential-stuffing run (PartnerPortal, from 10:00:18) is
appended to a followed file; the tests read back from the fakes what the
gateways would now enforce. Figures (latency, delivery counts) are printed
for the closing note: run with ``-s`` to see them.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from gatewatch.sinks.control import CONTROL_FILE
from gatewatch.sinks.targets.kong import plugin_id
from tests.conftest import SAMPLE, gatewatch, rows, start_gatewatch, stop, wait_for
from tests.fakes.fixtures import WSO2_PASSWORD
from tests.sinks.alerts_receiver import ROUTING_KEY, Receiver

pytestmark = pytest.mark.slow

ATTACKER = "3f8a1c2e-7b4d-4e9a-8c6f-2d1e0b9a7c54"  # PartnerPortal, owner partner1 (sample_logs/README.md)
ACCOUNTS_API = "0b7e3d52-6a1f-4f0e-9d7c-3c2a8e5b9f10"
APPS = {  # applicationId -> (name, owner) of the sample's consumers
    ATTACKER: ("PartnerPortal", "partner1"),
    "d2f6b1c4-8e3a-4b7d-9c21-6a5e0f4b8d33": ("MobileApp", "partner1"),
    "87c8da4c-aa3f-43d3-89ac-dc3dc3b19d3e": ("StorefrontWeb", "webteam"),
}
DENY = ("APPLICATION", "partner1:PartnerPortal")


def split_sample() -> tuple[bytes, bytes, bytes]:
    """The sample log before the attack, the attack's ten minutes, and the calm rest (by log time)."""
    before, attack, after = [], [], []
    for line in SAMPLE.read_bytes().splitlines(keepends=True):
        clock = line[:8]
        (before if clock < b"10:00:00" else attack if clock < b"10:10:00" else after).append(line)
    return b"".join(before), b"".join(attack), b"".join(after)


@pytest.fixture
def gateways(fake_wso2, fake_kong):
    fake_wso2.applications.clear()
    fake_wso2.subscriptions.clear()
    for app_id, (name, owner) in APPS.items():
        fake_wso2.add_application(app_id, name, owner, [ACCOUNTS_API, "af88b5f8-594a-4f57-a729-7eb86b6a63ab"])
        fake_kong.add_consumer(app_id, name)
    return fake_wso2, fake_kong


def config(tmp_path: Path, wso2, kong, *, policy: str = "", wso2_timeout_s: float = 1.0) -> Path:
    cfg = tmp_path / "gatewatch.toml"
    cfg.write_text(
        "[input]\npoll_ms = 50\n"
        "[pipeline]\nidle_close_s = 1\nsnapshot_interval_s = 1\n"
        "[store]\ncompact_every_s = 1\ncompact_min_files = 4\n"
        f'[policy]\nmode = "enforce"\nttl_s = 300\n{policy}\n'
        f'[targets.wso2]\nenabled = true\nbase_url = "{wso2.url}"\nversion = "4.4.0"\n'
        f'password_env = "GW_E2E_WSO2_PASSWORD"\nrestrict_business_plan = "Quarantine10PerMin"\ntimeout_s = {wso2_timeout_s}\n'
        f'[targets.kong]\nenabled = true\nadmin_url = "{kong.url}"\ntimeout_s = 1.0\n'
        "[delivery]\nbackoff_base_s = 0.05\nbackoff_max_s = 0.5\nbreaker_failures = 50\nbreaker_cooldown_s = 1.0\ninterval_s = 0.1\n"
    )
    return cfg


def env() -> dict[str, str]:
    return {**os.environ, "GW_E2E_WSO2_PASSWORD": WSO2_PASSWORD}


def plans(wso2, app_id: str = ATTACKER) -> set[str]:
    return {s["throttlingPolicy"] for s in wso2.subscriptions_of(app_id)}


def decision(store: Path, tier: str) -> dict:
    return wait_for(
        lambda: next(iter(rows(store, "SELECT * FROM decisions WHERE subject = ? AND tier = ? ORDER BY changed_at DESC LIMIT 1",
                               [ATTACKER, tier])), None),
        what=f"a {tier} decision",
    )  # fmt: skip


def outbox_states(store: Path) -> dict[str, int]:
    con = sqlite3.connect(store / CONTROL_FILE)
    try:
        return dict(con.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall())
    finally:
        con.close()


def pending_ids(store: Path) -> set[str]:
    con = sqlite3.connect(store / CONTROL_FILE)
    try:
        return {r[0] for r in con.execute("SELECT id FROM outbox WHERE state = 'pending'")}
    finally:
        con.close()


def sent_ids(store: Path) -> set[str]:
    return {r["delivery_id"] for r in rows(store, "SELECT delivery_id FROM deliveries WHERE outcome = 'sent'")}


def delivery_counts(store: Path) -> dict[str, int]:
    return {r["outcome"]: r["n"] for r in rows(store, "SELECT outcome, COUNT(*) AS n FROM deliveries GROUP BY outcome")}


def caught_up(store: Path, until: str) -> bool:
    got = rows(store, "SELECT MAX(window_end) AS t FROM traffic")
    return bool(got and got[0]["t"] is not None and got[0]["t"].strftime("%H:%M") >= until)


def test_attack_to_gateway_change_review_and_ttl(tmp_path, gateways):
    wso2, kong = gateways
    before, attack, after = split_sample()
    log, store = tmp_path / "apim_metrics.log", tmp_path / "store"
    log.write_bytes(before)
    cfg = config(tmp_path, wso2, kong)
    proc = start_gatewatch("run", str(log), "--store", str(store), "--config", str(cfg), env=env())
    try:
        wait_for(lambda: caught_up(store, "09:58"), what="the pipeline to catch up with the baseline")
        t0 = time.monotonic()
        with log.open("ab") as f:
            f.write(attack)
        wait_for(lambda: plans(wso2) == {"Quarantine10PerMin"}, interval=0.05, what="the WSO2 plan change")
        wso2_s = time.monotonic() - t0
        wait_for(lambda: "rate-limiting" in kong.consumer_plugins(ATTACKER), interval=0.05, what="the Kong rate limit")
        kong_s = time.monotonic() - t0
        print(f"\nenforce latency (attack appended -> gateway change): wso2 {wso2_s:.2f}s, kong {kong_s:.2f}s")

        restricted = decision(store, "restricted")
        assert kong.consumer_plugins(ATTACKER)["rate-limiting"]["minute"] == restricted["limit_per_min"]
        blocked = decision(store, "blocked")
        assert blocked["status"] == "pending_review"
        time.sleep(1.0)  # a block waits for a person: nothing is denied meanwhile
        assert wso2.denied() == [] and "request-termination" not in kong.consumer_plugins(ATTACKER)

        out = gatewatch("decisions", "approve", blocked["decision_id"], "--store", str(store), "--actor", "alice").stdout
        assert f"{blocked['decision_id']}: approved by alice" in out
        wait_for(lambda: wso2.denied() == [DENY], what="the WSO2 deny policy")
        wait_for(lambda: "request-termination" in kong.consumer_plugins(ATTACKER), what="the Kong block")
        approved = rows(store, "SELECT actor FROM decisions WHERE decision_id = ? AND status = 'approved'", [blocked["decision_id"]])
        assert [r["actor"] for r in approved] == ["alice"]

        with log.open("ab") as f:
            f.write(after)  # twenty calm minutes of event time: every TTL passes
        wait_for(lambda: wso2.denied() == [] and plans(wso2) == {"Gold"}, what="the WSO2 revert")
        wait_for(lambda: kong.consumer_plugins(ATTACKER) == {}, what="the Kong revert")
    finally:
        stop(proc)
    for app_id in APPS:  # nobody else was touched, not even the attacker's sibling app of the same owner
        if app_id != ATTACKER:
            assert plans(wso2, app_id) == {"Gold"} and kong.consumer_plugins(app_id) == {}
    assert len(wso2.calls("POST", "/api/am/admin/v4/throttling/deny-policies")) == 1
    statuses = {r["status"] for r in rows(store, "SELECT status FROM decisions WHERE subject = ?", [ATTACKER])}
    assert {"approved", "applied", "expired"} <= statuses
    assert "dead_letter" not in delivery_counts(store)


def test_allowlisted_subject_is_never_touched(tmp_path, gateways):
    wso2, kong = gateways
    cfg = config(tmp_path, wso2, kong, policy=f'review_tiers = []\nallowlist_consumers = ["{ATTACKER}"]')
    store = tmp_path / "store"
    out = gatewatch("replay", str(SAMPLE), "--store", str(store), "--config", str(cfg), env=env()).stdout
    assert "findings=0 " not in out  # the attack was seen ...
    assert rows(store, "SELECT * FROM decisions WHERE subject = ?", [ATTACKER]) == []  # ... and left alone
    assert [c for c in wso2.log + kong.log if c.method != "GET"] == []


def test_a_replay_that_ends_while_deliveries_back_off_says_so_and_the_next_run_sends_them(tmp_path, gateways):
    wso2, kong = gateways
    cfg = config(tmp_path, wso2, kong, policy="review_tiers = []")
    store = tmp_path / "store"
    kong.inject("status", times=10_000, status=503, path_prefix="/consumers")  # down for the whole replay
    first = gatewatch("replay", str(SAMPLE), "--store", str(store), "--config", str(cfg), env=env())
    pending = outbox_states(store).get("pending", 0)
    assert pending >= 1
    left = pending_ids(store)
    assert f"gatewatch: {pending} deliveries still pending in the outbox (kong: {pending}), the next due in" in first.stderr
    assert "HTTP 503" in first.stderr and "the next run or replay with this store sends them" in first.stderr
    with kong.lock:
        kong.faults.clear()
    nothing_new = tmp_path / "empty.log"
    nothing_new.write_bytes(b"")
    second = gatewatch("replay", str(nothing_new), "--store", str(store), "--config", str(cfg), env=env())
    assert outbox_states(store).get("pending", 0) == 0 and "still pending" not in second.stderr
    assert "dead_letter" not in outbox_states(store)
    assert sent_ids(store) >= left  # what the first run could not send


def test_faults_and_kill_9_still_give_exactly_one_effect(tmp_path, gateways):
    wso2, kong = gateways
    before, attack, after = split_sample()
    log, store = tmp_path / "apim_metrics.log", tmp_path / "store"
    log.write_bytes(before + attack)
    # blocks go out without review; the deny policy's creation hangs after the server made it
    cfg = config(tmp_path, wso2, kong, policy="review_tiers = []", wso2_timeout_s=30.0)
    wso2.inject("status", times=4, status=500, path_prefix="/api/am/publisher/v4/subscriptions", method="GET")
    wso2.inject("drop", path_prefix="/api/am/publisher/v4/subscriptions/change-business-plan")
    wso2.inject("status", times=2, status=503, path_prefix="/oauth2/token")
    wso2.inject("delay", delay_s=15.0, path_prefix="/api/am/admin/v4/throttling/deny-policies", method="POST")
    kong.inject("status", times=3, status=502, path_prefix=f"/consumers/{ATTACKER}/plugins", method="PUT")
    kong.inject("drop", path_prefix=f"/consumers/{ATTACKER}/plugins", method="PUT")
    proc = start_gatewatch("run", str(log), "--store", str(store), "--config", str(cfg), env=env())
    wait_for(lambda: wso2.denied() == [DENY], what="the server to make the deny policy")
    proc.send_signal(signal.SIGKILL)  # recorded, sent, made at the gateway, not yet acknowledged
    proc.communicate(timeout=60)
    assert outbox_states(store).get("pending", 0) >= 1

    wso2.expire_tokens()
    proc = start_gatewatch("run", str(log), "--store", str(store), "--config", str(cfg), env=env())
    try:
        wait_for(lambda: outbox_states(store).get("pending", 0) == 0 and kong.consumer_plugins(ATTACKER).keys()
                 == {"rate-limiting", "request-termination"}, timeout=120, what="every delivery")  # fmt: skip
    finally:
        stop(proc)
    assert wso2.denied() == [DENY]
    assert len(wso2.calls("POST", "/api/am/admin/v4/throttling/deny-policies")) == 1
    assert plans(wso2) == {"Quarantine10PerMin"}
    ours = {plugin_id("kong", ATTACKER, "rate-limiting"), plugin_id("kong", ATTACKER, "request-termination")}
    assert set(kong.plugins) == ours
    counts = delivery_counts(store)
    duplicates = len(wso2.calls("POST", "/api/am/admin/v4/throttling/deny-policies")) - 1 + len(kong.plugins) - len(ours)
    print(
        f"\nfault run: sent={counts.get('sent', 0)} retried={counts.get('retry', 0)} "
        f"dead_lettered={counts.get('dead_letter', 0)} duplicates={duplicates} outbox={outbox_states(store)}"
    )
    assert counts.get("retry", 0) >= 3 and "dead_letter" not in counts and duplicates == 0
    latest = rows(store, "SELECT tier, arg_max(status, changed_at) AS status FROM decisions WHERE subject = ? GROUP BY tier", [ATTACKER])
    assert {r["tier"]: r["status"] for r in latest} == {"restricted": "applied", "blocked": "applied"}


def test_a_lift_the_gateway_refuses_pages_and_its_retry_resolves_the_page(tmp_path, gateways, httpserver):
    _, kong = gateways
    receiver = Receiver(httpserver, [])
    before, attack, after = split_sample()
    log, store = tmp_path / "apim_metrics.log", tmp_path / "store"
    log.write_bytes(before + attack)
    cfg = tmp_path / "gatewatch.toml"
    cfg.write_text(
        "[input]\npoll_ms = 50\n[pipeline]\nidle_close_s = 1\nsnapshot_interval_s = 1\n"
        '[policy]\nmode = "enforce"\nttl_s = 300\n'
        f'[targets.kong]\nenabled = true\nadmin_url = "{kong.url}"\ntimeout_s = 1.0\n'
        "[delivery]\nbackoff_base_s = 0.05\nbackoff_max_s = 0.5\nbreaker_failures = 50\ninterval_s = 0.1\n"
        '[[alerts.destinations]]\ntype = "pagerduty"\nname = "ops-pager"\n'
        f'url = "{receiver.url("pagerduty")}"\nrouting_key_env = "GW_E2E_PD_KEY"\n'
    )
    pages = lambda action: [p["body"] for p in receiver.got["pagerduty"] if p["body"]["event_action"] == action]  # noqa: E731

    def outbox(state: str, destination: str = "%") -> list[str]:
        con = sqlite3.connect(store / CONTROL_FILE)
        try:
            query = "SELECT id FROM outbox WHERE state = ? AND destination LIKE ?"
            return [r[0] for r in con.execute(query, (state, destination))]
        finally:
            con.close()

    def dead_letters() -> list[str]:
        return outbox("dead_letter")

    proc = start_gatewatch(
        "run", str(log), "--store", str(store), "--config", str(cfg), env={**env(), "GW_E2E_PD_KEY": ROUTING_KEY}
    )
    try:
        wait_for(lambda: "rate-limiting" in kong.consumer_plugins(ATTACKER), what="the Kong rate limit")
        # and recorded as delivered: a slow answer (timeout_s = 1) is retried, and the refusals below must
        # meet the lift only, not a retry of the limit that already took effect
        wait_for(
            lambda: outbox("sent", "kong") and not outbox("pending", "kong"), what="the limit's delivery recorded"
        )
        kong.inject("status", times=1_000, status=403, method="DELETE", path_prefix="/consumers")  # lifts refused
        with log.open("ab") as f:
            f.write(after)  # every TTL passes: the expiry's lift is refused, and dead-lettered at once
        (dead,) = wait_for(dead_letters, what="the refused lift dead-lettered")
        failed = wait_for(
            lambda: [p for p in pages("trigger") if p["payload"]["custom_details"]["kind"] == "enforcement_failed"],
            what="the enforcement_failed page",
        )
        (page,) = failed
        assert page["payload"]["severity"] == "critical" and dead in page["payload"]["summary"]
        assert "rate-limiting" in kong.consumer_plugins(ATTACKER)  # the gateway still limits the consumer
        with kong.lock:
            kong.faults.clear()  # the operator fixes the cause, and retries the lift
        gatewatch("deliveries", "retry", dead, "--store", str(store), "--actor", "alice")
        wait_for(lambda: kong.consumer_plugins(ATTACKER) == {}, what="the retried lift at Kong")
        wait_for(lambda: page["dedup_key"] in [p["dedup_key"] for p in pages("resolve")], what="the page resolved")
    finally:
        stop(proc)
    assert receiver.errors == []
    assert dead_letters() == []
