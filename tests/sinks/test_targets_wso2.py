"""The WSO2 channel against the stateful fake API-M (every request checked against the real specs)."""

from __future__ import annotations

import ipaddress
import time

import pytest

from gatewatch.flows.config import Config, Wso2TargetConfig
from gatewatch.flows.control.controller import Controller, build_policy
from gatewatch.flows.events import Decision
from gatewatch.sinks.control import ControlDB
from gatewatch.sinks.store import query
from gatewatch.sinks.targets import GatewayPlanner
from gatewatch.sinks.targets.base import Secret
from gatewatch.sinks.targets.wso2 import Wso2Channel, ip_rule
from tests.fakes.fixtures import APP, WSO2_PASSWORD, desired, drain, outcomes, sender

APP_ID = APP["application_id"]
DENY_APP = ("APPLICATION", "partner1:MobileApp")


@pytest.fixture
def channel(tmp_path, fake_wso2, monkeypatch):
    monkeypatch.setenv("GW_TEST_WSO2_PASSWORD", WSO2_PASSWORD)

    def make(**kw) -> Wso2Channel:
        opts = {
            "base_url": fake_wso2.url, "version": "4.4.0", "username": "admin",
            "password": Secret("targets.wso2.password_env", "GW_TEST_WSO2_PASSWORD"),
            "state": ControlDB(tmp_path).open(), "timeout_s": 1.0, **kw,
        }  # fmt: skip
        return Wso2Channel("wso2", **opts)

    return make


def deliver(tmp_path, ch, *states: dict, **sender_kw):
    s = sender(tmp_path, {"wso2": ch}, **sender_kw)
    for payload in states:
        s.control.enqueue(f"e{len(s.control.outbox())}", "wso2", "wso2", "d-test", payload)
        drain(s)
    return s


def test_block_creates_one_deny_policy_and_revert_removes_it(tmp_path, fake_wso2, channel):
    ch = channel()
    deliver(tmp_path, ch, desired(block=True))
    assert fake_wso2.denied() == [DENY_APP]
    deliver(tmp_path, ch, desired(block=True))  # a replayed delivery: looked up, not created again
    assert len(fake_wso2.calls("POST", "/api/am/admin/v4/throttling/deny-policies")) == 1
    deliver(tmp_path, ch, desired(block=False))
    assert fake_wso2.denied() == []
    assert outcomes(tmp_path) == {"sent": 3}


def test_revert_never_removes_an_operators_deny_policy(tmp_path, fake_wso2, channel):
    fake_wso2.add_deny_policy(*DENY_APP)
    ch = channel()
    deliver(tmp_path, ch, desired(block=True), desired(block=False))
    assert fake_wso2.denied() == [DENY_APP]
    assert fake_wso2.calls("POST", "/api/am/admin/v4/throttling/deny-policies") == []
    assert fake_wso2.calls("DELETE", "/api/am/admin/v4/throttling/deny-policy") == []


def test_ip_and_network_subjects_become_ip_and_iprange_policies(tmp_path, fake_wso2, channel):
    ch = channel()
    deliver(tmp_path, ch, desired("ip", "203.0.113.7", block=True), desired("ip", "198.51.100.0/24", block=True))
    assert fake_wso2.denied() == [
        ("IP", {"fixedIp": "203.0.113.7", "invert": False}),
        ("IPRANGE", {"startingIp": "198.51.100.0", "endingIp": "198.51.100.255", "invert": False}),
    ]
    deliver(tmp_path, ch, desired("ip", "203.0.113.7"), desired("ip", "198.51.100.0/24"))
    assert fake_wso2.denied() == []


def test_restrict_moves_subscriptions_to_the_strict_tier_and_back(tmp_path, fake_wso2, channel):
    ch = channel(restrict_business_plan="Quarantine10PerMin")
    deliver(tmp_path, ch, desired(limit_per_min=20))
    assert {s["throttlingPolicy"] for s in fake_wso2.subscriptions_of(APP_ID)} == {"Quarantine10PerMin"}
    assert {s["throttlingPolicy"] for s in fake_wso2.subscriptions_of("other-app")} == {"Gold"}
    deliver(tmp_path, ch, desired(limit_per_min=None))
    assert {s["throttlingPolicy"] for s in fake_wso2.subscriptions_of(APP_ID)} == {"Gold"}


def test_restore_skips_a_plan_an_operator_changed_meanwhile(tmp_path, fake_wso2, channel):
    ch = channel(restrict_business_plan="Quarantine10PerMin")
    deliver(tmp_path, ch, desired(limit_per_min=20))
    changed = fake_wso2.subscriptions_of(APP_ID)[0]["subscriptionId"]
    fake_wso2.subscriptions[changed]["throttlingPolicy"] = "Bronze"
    deliver(tmp_path, ch, desired(limit_per_min=None))
    plans = {s["subscriptionId"]: s["throttlingPolicy"] for s in fake_wso2.subscriptions_of(APP_ID)}
    assert plans.pop(changed) == "Bronze" and set(plans.values()) == {"Gold"}


def test_before_4_4_change_business_plan_is_never_called(tmp_path, fake_wso2, channel):
    with pytest.raises(ValueError, match="needs API-M 4.4"):
        Wso2TargetConfig(version="4.3.0", restrict_business_plan="Quarantine10PerMin")
    ch = channel(version="4.3.0", restrict_business_plan="Quarantine10PerMin")
    s = deliver(tmp_path, ch, desired(limit_per_min=20))
    assert fake_wso2.calls("POST", "/api/am/publisher/v4/subscriptions/change-business-plan") == []
    (entry,) = s.control.outbox()
    assert entry.state == "skipped" and "needs API-M 4.4 or later (targets.wso2.version)" in entry.last_error


def test_a_consumer_limit_without_a_tier_to_move_it_to_is_skipped_not_sent(tmp_path, fake_wso2, channel):
    s = deliver(tmp_path, channel(), desired(limit_per_min=20), desired(block=True, limit_per_min=20))
    skipped, blocked = s.control.outbox()
    assert skipped.state == "skipped" and skipped.attempts == 1
    assert skipped.last_error == (
        "no limit applied: WSO2 limits an application by moving its subscriptions to a tier, "
        "and targets.wso2.restrict_business_plan is not set"
    )
    # blocked as well as limited: the block is what the gateway enforces, so the delivery is sent
    assert blocked.state == "sent" and fake_wso2.denied() == [DENY_APP]
    assert outcomes(tmp_path) == {"skipped": 1, "sent": 1}


RULES = "/api/am/admin/v4/throttling/policies/custom"


def rule_of(fake, ip: str) -> tuple[str, int] | None:
    """The (name, limit) of the custom rule that throttles requests from ``ip``, if one does."""
    keys = fake.throttle_keys(ip)
    gateway_key = keys.pop("$clientIp")[0]
    matching = [(name, limit) for name, (key, limit) in keys.items() if key == gateway_key]
    assert len(matching) <= 1, matching
    return matching[0] if matching else None


def test_an_ip_limit_is_a_custom_rule_on_that_address_only(tmp_path, fake_wso2, channel):
    ch = channel(ip_custom_policy=True)
    deliver(tmp_path, ch, desired("ip", "203.0.113.7", limit_per_min=30))
    assert rule_of(fake_wso2, "203.0.113.7") == ("gatewatch_ip_3405803783", 30)
    assert rule_of(fake_wso2, "203.0.113.8") is None
    deliver(tmp_path, ch, desired("ip", "203.0.113.7", limit_per_min=30))  # replayed: found, not created again
    deliver(tmp_path, ch, desired("ip", "203.0.113.7", limit_per_min=12))  # a stricter tier: the rule is updated
    assert rule_of(fake_wso2, "203.0.113.7") == ("gatewatch_ip_3405803783", 12)
    assert len(fake_wso2.calls("POST", RULES)) == 1 and len(fake_wso2.calls("PUT", RULES)) == 1
    deliver(tmp_path, ch, desired("ip", "203.0.113.7"))
    assert fake_wso2.custom_rules == {} and rule_of(fake_wso2, "203.0.113.7") is None
    assert outcomes(tmp_path) == {"sent": 4}


def test_a_network_limit_counts_each_address_and_ipv6_works_too(tmp_path, fake_wso2, channel):
    ch = channel(ip_custom_policy=True)
    deliver(tmp_path, ch, desired("ip", "198.51.100.0/24", limit_per_min=20), desired("ip", "2001:db8::7", limit_per_min=5))
    assert rule_of(fake_wso2, "198.51.100.9") == ("gatewatch_ip_3325256704_24", 20)
    for edge in ("198.51.100.0", "198.51.100.255"):  # both ends are in the network
        assert rule_of(fake_wso2, edge) == ("gatewatch_ip_3325256704_24", 20)
    assert rule_of(fake_wso2, "198.51.99.255") is None and rule_of(fake_wso2, "198.51.101.0") is None
    # each address of the network has its own key, so its own count
    assert fake_wso2.throttle_keys("198.51.100.9")["gatewatch_ip_3325256704_24"][0] == str(3325256713)
    assert rule_of(fake_wso2, "2001:db8::7") == (f"gatewatch_ip_{int(ipaddress.ip_address('2001:db8::7'))}", 5)
    assert rule_of(fake_wso2, "2001:db8::8") is None and rule_of(fake_wso2, "32.1.13.184") is None
    deliver(tmp_path, ch, desired("ip", "198.51.100.0/24"), desired("ip", "2001:db8::7"))
    assert fake_wso2.custom_rules == {}


def test_ip_limits_are_off_unless_configured_and_an_operators_rule_is_kept(tmp_path, fake_wso2, channel):
    deliver(tmp_path, channel(), desired("ip", "203.0.113.7", limit_per_min=30))
    assert fake_wso2.calls("GET", RULES) == [] and fake_wso2.custom_rules == {}
    assert outcomes(tmp_path) == {"skipped": 1}
    ch = channel(ip_custom_policy=True)
    # an operator made this rule by hand, under the name we would give it
    fake_wso2.custom_rules["op"] = {**ip_rule("203.0.113.9", 100), "policyId": "op", "isDeployed": True}
    deliver(tmp_path, ch, desired("ip", "203.0.113.9", limit_per_min=30), desired("ip", "203.0.113.9"))
    assert fake_wso2.calls("PUT", RULES) == [] and fake_wso2.calls("DELETE", RULES) == []
    assert rule_of(fake_wso2, "203.0.113.9") == ("gatewatch_ip_3405803785", 100)


def _ip_restriction(subject: str, limit_per_min: int) -> Decision:
    now = time.time()
    return Decision(
        decision_id=f"d-{subject}", finding_id="f-1", subject_type="ip", subject=subject, subject_name=subject,
        action="restrict", tier="restricted", previous_tier="normal", limit_per_min=limit_per_min,
        mode="enforce", status="approved", reason="test", inputs="{}", actor="policy",
        effective_from=now, expires_at=now + 3600, created_at=now, changed_at=now,
    )  # fmt: skip


@pytest.mark.parametrize("ip_custom_policy", [False, True])
def test_a_decision_is_applied_only_once_the_gateway_enforces_it(tmp_path, fake_wso2, channel, ip_custom_policy):
    """An IP limit API-M cannot make (no custom rules) is skipped with the key to set, and its decision stays approved."""
    ch = channel(ip_custom_policy=ip_custom_policy)
    s = sender(tmp_path, {"wso2": ch})
    controller = Controller(s.control, s.writer, build_policy(Config()), planner=GatewayPlanner({"wso2": "wso2"}))
    controller.commit([_ip_restriction("203.0.113.7", 30)])
    drain(s)
    (entry,) = s.control.outbox()
    applied = controller.delivered()
    if ip_custom_policy:
        assert entry.state == "sent" and rule_of(fake_wso2, "203.0.113.7") == ("gatewatch_ip_3405803783", 30)
        assert [(d.decision_id, d.status) for d in applied] == [("d-203.0.113.7", "applied")]
    else:
        assert entry.state == "skipped" and fake_wso2.custom_rules == {}
        assert entry.last_error == (
            "no limit applied: WSO2 limits an IP only with a custom rule, and targets.wso2.ip_custom_policy is off"
        )
        assert applied == []
    rows = query(tmp_path, "SELECT outcome, error FROM deliveries").to_pylist()
    assert rows == [{"outcome": entry.state, "error": entry.last_error}]


def test_check_reports_custom_rules_outside_the_super_tenant(fake_wso2, channel):
    assert channel(ip_custom_policy=True).check() == []
    fake_wso2.tenant = "example.com"
    (problem,) = channel(ip_custom_policy=True).check()
    assert problem.startswith("targets.wso2.ip_custom_policy: GET /api/am/admin/v4/throttling/policies/custom: HTTP 403")
    assert "super tenant" in problem


def test_block_with_subscriptions_unblocks_only_what_it_blocked(tmp_path, fake_wso2, channel):
    subs = fake_wso2.subscriptions_of(APP_ID)
    fake_wso2.subscriptions[subs[0]["subscriptionId"]]["subscriptionStatus"] = "PROD_ONLY_BLOCKED"  # by an operator
    ch = channel(block_with="subscriptions")
    deliver(tmp_path, ch, desired(block=True))
    assert sorted(s["subscriptionStatus"] for s in fake_wso2.subscriptions_of(APP_ID)) == ["BLOCKED", "PROD_ONLY_BLOCKED"]
    assert fake_wso2.denied() == []
    deliver(tmp_path, ch, desired(block=False))
    status = {s["subscriptionId"]: s["subscriptionStatus"] for s in fake_wso2.subscriptions_of(APP_ID)}
    assert status[subs[0]["subscriptionId"]] == "PROD_ONLY_BLOCKED"
    assert status[subs[1]["subscriptionId"]] == "UNBLOCKED"


def test_an_expired_token_is_renewed_and_the_call_repeated(tmp_path, fake_wso2, channel):
    ch = channel()
    deliver(tmp_path, ch, desired(block=True))
    fake_wso2.expire_tokens()
    deliver(tmp_path, ch, desired(block=False))
    assert fake_wso2.denied() == []
    assert len(fake_wso2.calls("POST", "/client-registration")) == 1  # the client is registered once
    statuses = [c.status for c in fake_wso2.calls("DELETE", "/api/am/admin/v4/throttling/deny-policy/")]
    assert statuses == [401, 200]  # refused with the expired token, then accepted with a new one
    assert len(fake_wso2.calls("POST", "/oauth2/token", status=200)) == 2
    assert outcomes(tmp_path) == {"sent": 2}


@pytest.mark.parametrize(
    ("fault", "kw"),
    [
        ("status", {"status": 500, "times": 3}),
        ("status", {"status": 429, "times": 2, "retry_after": "0"}),
        ("delay", {"delay_s": 1.5}),  # the server acts, the client times out
        ("drop", {}),  # the server acts, the connection drops before the answer
    ],
)
def test_faults_on_create_still_give_exactly_one_policy(tmp_path, fake_wso2, channel, fault, kw):
    ch = channel()
    fake_wso2.inject(fault, path_prefix="/api/am/admin/v4/throttling/deny-policies", **{"times": 1, **kw})
    deliver(tmp_path, ch, desired(block=True))
    assert fake_wso2.denied() == [DENY_APP]
    counts = outcomes(tmp_path)
    assert counts["sent"] == 1 and counts.get("retry", 0) >= 1 and "dead_letter" not in counts
    deliver(tmp_path, ch, desired(block=False))
    assert fake_wso2.denied() == []


def test_wrong_credentials_dead_letter_with_the_error_and_no_secret(tmp_path, fake_wso2, channel, monkeypatch):
    monkeypatch.setenv("GW_TEST_WSO2_PASSWORD", "wrong-password")
    s = deliver(tmp_path, channel(), desired(block=True))
    (entry,) = s.control.outbox()
    assert entry.state == "dead_letter" and "401" in entry.last_error
    assert "wrong-password" not in entry.last_error
    assert fake_wso2.denied() == []


def test_a_missing_secret_is_reported_by_its_config_key(tmp_path, fake_wso2, channel, monkeypatch):
    monkeypatch.delenv("GW_TEST_WSO2_PASSWORD")
    s = deliver(tmp_path, channel(), desired(block=True))
    (entry,) = s.control.outbox()
    assert entry.state == "dead_letter"
    assert "targets.wso2.password_env: environment variable GW_TEST_WSO2_PASSWORD is not set" in entry.last_error


def test_check_reports_a_missing_tier_and_accepts_a_good_setup(fake_wso2, channel):
    assert channel(restrict_business_plan="Quarantine10PerMin").check() == []
    (problem,) = channel(restrict_business_plan="NoSuchTier").check()
    assert "restrict_business_plan" in problem and "NoSuchTier" in problem


def test_validate_names_a_missing_secret_then_checks_credentials_and_tiers(tmp_path, fake_wso2):
    from tests.conftest import gatewatch

    cfg = tmp_path / "gatewatch.toml"

    def validate(tier: str, **env: str):
        cfg.write_text(
            f'[targets.wso2]\nenabled = true\nbase_url = "{fake_wso2.url}"\npassword_env = "GW_V_PASSWORD"\n'
            f'restrict_business_plan = "{tier}"\n'
        )
        return gatewatch("validate", "--config", str(cfg), check=False, env={"PATH": "", **env})

    missing = validate("Quarantine10PerMin")
    assert missing.returncode == 2
    assert "targets.wso2.password_env: environment variable GW_V_PASSWORD is not set" in missing.stderr
    wrong = validate("Quarantine10PerMin", GW_V_PASSWORD="wrong-password")
    assert wrong.returncode == 2 and "HTTP 401" in wrong.stderr and "wrong-password" not in wrong.stderr
    no_tier = validate("NoSuchTier", GW_V_PASSWORD=WSO2_PASSWORD)
    assert no_tier.returncode == 2 and "no subscription tier named 'NoSuchTier'" in no_tier.stderr
    good = validate("Quarantine10PerMin", GW_V_PASSWORD=WSO2_PASSWORD)
    assert good.returncode == 0
    # valid, but IPs can only be blocked: said before any restriction is skipped
    assert good.stderr.splitlines() == [
        "note: targets.wso2: IP restrictions are skipped, not sent: WSO2 limits an IP only with a custom rule, "
        "and targets.wso2.ip_custom_policy is off (blocks still apply)",
        "note: dashboard: read-only, nobody can approve or revert decisions in it: no operators are configured "
        "(dashboard.operators_env: environment variable GATEWATCH_OPERATORS is not set, and there is no "
        "dashboard.operators_file)",
    ]
