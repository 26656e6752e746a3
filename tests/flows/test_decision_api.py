"""The decision and risk API: its live state as plain code, then the real server under ``gatewatch run``."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from gatewatch.flows.config import ApiConfig
from gatewatch.flows.control.decision_api import (
    ApiKeysError,
    LiveState,
    go_duration,
    numeric_id,
    parse_score_request,
    read_keys,
)
from gatewatch.flows.credentials import name_of
from gatewatch.flows.events import Decision, Finding
from tests.conftest import free_ports, wait_for

CASES = json.loads((Path(__file__).with_name("decision_api_cases.json")).read_text())
THRESHOLDS = {"elevated": 0.6, "restricted": 0.8, "blocked": 0.97}


def decision(
    decision_id: str,
    subject: str,
    *,
    subject_type: str = "ip",
    tier: str = "blocked",
    status: str = "approved",
    mode: str = "enforce",
    limit_per_min: int = 0,
    score: float = 0.9,
    reason: str = "brute_force score 0.90: auth failures 40 vs baseline 0",
    expires_at: float = 1_800_003_600.0,
) -> Decision:
    return Decision(
        decision_id=decision_id, finding_id="f-" + decision_id, subject_type=subject_type, subject=subject,
        subject_name="", action="block" if tier == "blocked" else "restrict", tier=tier, previous_tier="normal",
        limit_per_min=limit_per_min, mode=mode, status=status, reason=reason,
        inputs=json.dumps({"score": score, "subject_owner": "Jane Owner"}), actor="policy",
        effective_from=expires_at - 3600, expires_at=expires_at, created_at=0.0, changed_at=0.0,
    )  # fmt: skip


def finding(subject_type: str, subject: str, kind: str, score: float, window_end: float, reasons: list[str]) -> Finding:
    return Finding(
        finding_id=f"{subject}-{kind}-{window_end}", subject_type=subject_type, subject=subject, subject_name="",
        subject_owner="Jane Owner", kind=kind, detector=kind, score=score, window_start=window_end - 60,
        window_end=window_end, detected_at=0.0, reasons=reasons, evidence="{}",
    )  # fmt: skip


def case_state() -> LiveState:
    spec = CASES["state"]
    mark = spec["watermark"]
    decisions = [
        decision(
            d["id"], d["subject"], subject_type=d["subject_type"], tier=d["tier"], status=d["status"],
            mode="dry-run" if d["status"] == "recorded" else "enforce", limit_per_min=d["limit_per_min"],
            score=d["score"], reason=d["reason"],
        )  # fmt: skip
        for d in spec["decisions"]
    ]
    findings = [
        finding(f["subject_type"], f["subject"], f["kind"], f["score"], mark - f["age_s"], f["reasons"])
        for f in spec["findings"]
    ]
    state = LiveState()
    state.update(decisions, findings, mark, now=mark)
    return state


@pytest.mark.parametrize("case", CASES["cases"], ids=[c["name"] for c in CASES["cases"]])
def test_score_cases(case):
    answer = case_state().score(parse_score_request(json.dumps(case["request"]).encode()), THRESHOLDS)
    want = case["expect"]
    assert answer["tier"] == want["tier"]
    assert answer["limit_per_min"] == want["limit_per_min"]
    assert answer["score"] == pytest.approx(want["score"], abs=1e-4)
    if "decisions" in want:
        assert answer["decisions"] == want["decisions"]
    if "reason_contains" in want:
        assert any(want["reason_contains"] in r for r in answer["reasons"]), answer["reasons"]
    assert "Jane Owner" not in json.dumps(answer)


def test_the_stream_adds_then_deletes_as_decisions_come_and_go():
    state = LiveState(restricted_type="captcha")
    mark = 1_800_000_000.0
    block = decision("b1", "198.51.100.7", expires_at=mark + 3599.5)
    restrict = decision("r1", "203.0.113.0/24", tier="restricted", limit_per_min=30)
    watch = decision("w1", "192.0.2.1", tier="elevated", status="recorded")
    dry = decision("d1", "192.0.2.2", mode="dry-run", status="recorded")
    consumer = decision("c1", "app-1", subject_type="consumer")
    state.update([block, restrict, watch, dry, consumer], [], mark, now=mark)
    body, cursor = state.stream(None, {"ip", "range"})
    served = {d["value"]: d for d in body["new"]}
    assert set(served) == {"198.51.100.7", "203.0.113.0/24"}  # enforced IP restrictions and blocks only
    assert body["deleted"] is None
    ban = served["198.51.100.7"]
    assert (ban["type"], ban["scope"], ban["duration"], ban["origin"]) == ("ban", "Ip", "59m59s", "gatewatch")
    assert ban["scenario"] == "gatewatch/brute_force" and ban["id"] == numeric_id("b1")
    assert (served["203.0.113.0/24"]["type"], served["203.0.113.0/24"]["scope"]) == ("captcha", "Range")
    assert state.stream(None, {"ip"})[0]["new"] == [ban]  # a bouncer asking for IPs only

    assert state.stream(cursor, {"ip", "range"})[0] == {"new": None, "deleted": None}  # nothing changed
    reverted = decision("b2", "198.51.100.8")
    state.update([restrict, reverted], [], mark + 60, now=mark + 60)
    body, cursor2 = state.stream(cursor, {"ip", "range"})
    assert [d["value"] for d in body["new"]] == ["198.51.100.8"]
    assert [d["value"] for d in body["deleted"]] == ["198.51.100.7"]
    assert state.stream(cursor2, {"ip", "range"})[0] == {"new": None, "deleted": None}

    expired = decision("r1", "203.0.113.0/24", tier="restricted", expires_at=mark + 60)  # its TTL has run out
    state.update([expired, reverted], [], mark + 120, now=mark + 120)
    assert [d["value"] for d in state.stream(cursor2, {"ip", "range"})[0]["deleted"]] == ["203.0.113.0/24"]


def test_decisions_match_by_ip_range_scope_and_type():
    state = LiveState()
    mark = 1_800_000_000.0
    state.update(
        [decision("b1", "198.51.100.7"), decision("r1", "203.0.113.0/24", tier="restricted", limit_per_min=9)],
        [], mark, now=mark,
    )  # fmt: skip
    values = lambda params: sorted(d["value"] for d in state.matching(params))  # noqa: E731
    assert values({"ip": "198.51.100.7"}) == ["198.51.100.7"]
    assert values({"ip": "203.0.113.40"}) == ["203.0.113.0/24"]  # inside a range decision
    assert values({"ip": "192.0.2.1"}) == []
    assert values({"range": "198.51.100.0/24"}) == ["198.51.100.7"]
    assert values({"scope": "range"}) == ["203.0.113.0/24"]
    assert values({"type": "ban"}) == ["198.51.100.7"]
    assert values({"scope": "ip", "value": "198.51.100.7"}) == ["198.51.100.7"]


def test_findings_older_than_the_score_window_are_forgotten():
    state = LiveState(score_window_s=600)
    mark = 1_800_000_000.0
    state.update([], [finding("ip", "192.0.2.9", "probing", 0.7, mark - 60, ["probe paths 12"])], mark, now=mark)
    req = parse_score_request(b'{"current_request": {"ip": "192.0.2.9"}}')
    assert state.score(req, THRESHOLDS)["score"] == 0.7
    state.update([], [], mark + 600, now=mark + 600)
    assert state.score(req, THRESHOLDS)["score"] == 0.0
    assert state.findings == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"current_request": {', "truncated"),
        (b"[]", "Expected `object`"),
        (b"{}", "give current_request.ip or api_context.consumer"),
        (b'{"current_request": {"ip": "10.0.0.300"}}', "not an IP address"),
        (b'{"current_request": {"ip": 7}}', "Expected `str`"),
        (b"[" * 100_000, "Expected `object`"),
        (b'{"x":' * 100_000, "recursion depth"),
    ],
)
def test_bad_score_bodies_are_refused_with_a_message(body, message):
    with pytest.raises(ValueError, match=message):
        parse_score_request(body)


def test_keys_come_from_the_environment_or_a_file_and_are_checked(tmp_path):
    env = {"GW_KEYS": "bouncer:0123456789abcdef, idp:fedcba9876543210fedcba"}
    keys = read_keys(ApiConfig(keys_env="GW_KEYS"), env)
    assert keys == {"0123456789abcdef": "bouncer", "fedcba9876543210fedcba": "idp"}
    assert name_of(keys, "fedcba9876543210fedcba") == "idp"
    assert name_of(keys, "fedcba9876543210fedcbb") is None
    keyfile = tmp_path / "keys"
    keyfile.write_text("# callers\nnginx:aaaaaaaaaaaaaaaaaaaa\n")
    assert read_keys(ApiConfig(keys_env="", keys_file=str(keyfile)), {}) == {"aaaaaaaaaaaaaaaaaaaa": "nginx"}
    with pytest.raises(ApiKeysError, match="GW_KEYS is not set"):
        read_keys(ApiConfig(keys_env="GW_KEYS"), {})
    with pytest.raises(ApiKeysError, match="entry 1 is not NAME:KEY") as short:
        read_keys(ApiConfig(keys_env="GW_KEYS"), {"GW_KEYS": "bouncer:short-key"})
    assert "short-key" not in str(short.value)
    with pytest.raises(ApiKeysError, match="api.keys_file: .*cannot read it"):
        read_keys(ApiConfig(keys_env="", keys_file=str(tmp_path / "missing")), {})


def test_go_durations_parse_as_go_does():
    assert [go_duration(s) for s in (0, 59, 60, 3600, 86_461.9)] == ["0s", "59s", "1m0s", "1h0m0s", "24h1m1s"]



def test_without_a_watermark_time_is_the_newest_decision_s_not_the_wall_clock():
    state = LiveState()
    old = decision("b1", "198.51.100.7", expires_at=1_700_003_600.0)  # a replayed log's, years ago
    state.update([old], [], None, now=1_900_000_000.0)
    assert [d["value"] for d in state.stream(None, {"ip"})[0]["new"]] == ["198.51.100.7"]


def test_a_control_file_without_tables_yet_is_read_as_nothing_yet(tmp_path):
    import sqlite3

    from gatewatch.flows.config import Config
    from gatewatch.flows.control.decision_api import DecisionApi

    sqlite3.connect(tmp_path / "control.sqlite").close()  # created, its tables not yet
    api = DecisionApi(Config.model_validate({"store": {"path": str(tmp_path)}}), {"k" * 16: "caller"})
    api.refresh()
    assert api.state.snapshot.served == {} and api.reader.con is None


def test_the_modules_doctests():
    import doctest

    from gatewatch.flows import live, log
    from gatewatch.flows.control import decision_api

    assert doctest.testmod(decision_api).failed == 0
    assert doctest.testmod(live).failed == 0
    assert doctest.testmod(log).failed == 0


def test_respond_answers_from_the_snapshot_and_caches_scores_only_within_one(tmp_path):
    from gatewatch.flows.config import Config
    from gatewatch.flows.control.decision_api import DecisionApi

    key = "k" * 16
    api = DecisionApi(Config.model_validate({"store": {"path": str(tmp_path)}}), {key: "caller"})
    mark = 1_800_000_000.0
    api.state.update(
        [decision("b1", "198.51.100.7"), decision("r1", "203.0.113.0/24", tier="restricted", limit_per_min=9)],
        [], mark, now=mark,
    )  # fmt: skip

    def ask(*request):
        status, body = api.respond(*request)
        return status, json.loads(body)

    assert ask("GET", "/v1/decisions", "ip=198.51.100.7", "wrong-key-0123456789", None)[0] == 403
    assert api.counters.forbidden == 1
    status, body = ask("GET", "/v1/decisions/", "ip=198.51.100.7", key, None)
    assert status == 200 and body == api.state.matching({"ip": "198.51.100.7"})
    assert ask("GET", "/v1/decisions", "ip=203.0.113.40", key, None)[1][0]["value"] == "203.0.113.0/24"
    assert ask("GET", "/v1/decisions", "ip=2001:DB8::1", key, None) == (200, None)
    status, body = ask("GET", "/v1/decisions", "ip=192.0.2.01", key, None)
    assert status == 400 and "not an IP address" in body["message"]
    assert ask("GET", "/v1/allow", "ip=198.51.100.7", key, None) == (403, {"decision": "ban"})
    assert ask("POST", "/v1/score", "", key, None)[0] == 413
    assert ask("POST", "/v1/score", "", key, b"{")[0] == 400
    assert api.counters.bad_requests == 2 and api.counters.callers["caller"]["errors"] == 4

    score = b'{"current_request": {"ip": "198.51.100.7"}}'
    first = ask("POST", "/v1/score", "", key, score)
    assert first[1]["tier"] == "blocked" and ask("POST", "/v1/score", "", key, score) == first
    api.state.update([], [], mark + 60, now=mark + 60)  # the block reverted: a new snapshot, a new answer
    assert ask("POST", "/v1/score", "", key, score)[1]["tier"] == "normal"
    assert ask("GET", "/v1/decisions", "ip=198.51.100.7", key, None) == (200, None)


def _answer(sock: socket.socket, key: str) -> bytes:
    """Send one GET /v1/decisions on ``sock``; return the answer's first bytes."""
    sock.sendall(f"GET /v1/decisions HTTP/1.1\r\nHost: gw\r\nX-Api-Key: {key}\r\n\r\n".encode())
    return sock.recv(4096)


def _until_closed(sock: socket.socket) -> bytes:
    out = b""
    while piece := sock.recv(4096):
        out += piece
    return out


def test_connections_past_the_cap_are_answered_503_and_closed_and_counted(tmp_path):
    from gatewatch.flows.config import Config
    from gatewatch.flows.control.decision_api import read_stats, start

    (port,) = free_ports(1)
    cfg = Config.model_validate({"store": {"path": str(tmp_path)}, "api": {"port": port, "max_connections": 2}})
    key = "k" * 16
    process = start(cfg, {key: "idp"})
    held = []
    try:
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        assert all(_answer(s, key).startswith(b"HTTP/1.1 200 ") for s in held)  # both accepted and served
        third = socket.create_connection(("127.0.0.1", port), timeout=10)
        refused = _until_closed(third)
        assert refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"too many connections (api.max_connections = 2)" in refused
        assert _answer(held[0], key).startswith(b"HTTP/1.1 200 ")  # the ones held are still served
        held.pop().close()  # room for one more

        def served_again() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                return _answer(s, key).startswith(b"HTTP/1.1 200 ")

        wait_for(served_again, timeout=10, what="a new connection served once one closed")
    finally:
        for s in held:
            s.close()
        process.terminate()
        process.join(timeout=10)
    assert read_stats(tmp_path)["refused_connections"] >= 1  # written as the API process stops
