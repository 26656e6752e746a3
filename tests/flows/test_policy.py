"""Policy through the real controller: tiers, hysteresis, TTL, escalation, allowlist, blast radius, review.

Cases live in ``policy_cases.json``: findings (subject type, subject, score,
window index) and watermarks (window index) are fed in order to a real
Controller over a real control database and store; the expected result is
every decision's current state (subject, tier, status, expiry as a window
index, previous tier).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from msgspec.structs import replace

from gatewatch.flows.control.controller import Controller, merge_state
from gatewatch.flows.control.policy import Policy
from gatewatch.flows.events import Finding, stable_id
from gatewatch.sinks.control import ControlDB
from gatewatch.sinks.store import StoreWriter, query

CASES = json.loads((Path(__file__).parent / "policy_cases.json").read_text())
T0 = 1_700_000_040.0  # a window boundary (multiple of 60)
W = 60
DEFAULTS = {"window_s": W, "ttl_s": 600, "repeat_window_s": 86_400, "escalate_after": 2, "active_window_s": 3600}


def finding(subject_type: str, subject: str, score: float, window: int) -> Finding:
    end = T0 + window * W
    return Finding(
        finding_id=stable_id(subject_type, subject, window),
        subject_type=subject_type, subject=subject, subject_name=f"{subject}-name", subject_owner="owner1",
        kind="baseline_deviation", detector="consumer_baseline", score=score, window_start=end - W, window_end=end,
        detected_at=time.time(), reasons=["auth failures 94% vs baseline 0%"],
        evidence=json.dumps({"features": {"requests": 30.0}}),
    )  # fmt: skip


def record_traffic(control: ControlDB, consumers: int) -> None:
    """What the store sink records of ``traffic`` rows: consumers active every fifth window."""
    control.record_consumers((T0 + w * W, f"a{i}") for i in range(consumers) for w in range(0, 101, 5))


def current(control: ControlDB) -> list[list]:
    return [
        [d.subject, d.tier, d.status, round((d.expires_at - T0) / W), d.previous_tier]
        for d in control.decisions()
    ]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_policy_case(case, tmp_path):
    control = ControlDB(tmp_path).open()
    if case.get("active_consumers"):
        record_traffic(control, case["active_consumers"])
    controller = Controller(control, StoreWriter(tmp_path, writer="c0").open(), Policy(**{**DEFAULTS, **case["policy"]}))
    for step in case["steps"]:
        if "finding" in step:
            control.record_findings([finding(*step["finding"])])
        elif "watermark" in step:
            control.advance_watermark(T0 + step["watermark"] * W)
        else:
            assert current(control) == step["check"]
            continue
        controller.step()
    assert current(control) == case["expect"]
    decisions = control.decisions()
    for index, text in case.get("reasons", {}).items():
        assert text in decisions[int(index)].reason
    for d in decisions:  # every decision names its finding and records its inputs
        inputs = json.loads(d.inputs)
        assert inputs["finding_id"] == d.finding_id and "score" in inputs and d.actor == "policy"


def test_history_keeps_every_state_and_replayed_findings_change_nothing(tmp_path):
    control = ControlDB(tmp_path).open()
    controller = Controller(control, StoreWriter(tmp_path, writer="c0").open(), Policy(**DEFAULTS, mode="enforce"))
    f = finding("consumer", "c1", 0.85, 1)
    control.record_findings([f])
    controller.step()
    control.record_findings([f])  # Bytewax replaying output after a restart
    controller.step()
    control.advance_watermark(T0 + 20 * W)
    controller.step()
    states = query(tmp_path, "SELECT status FROM decisions ORDER BY changed_at").column("status").to_pylist()
    assert states == ["approved", "expired"]


def test_a_person_s_approval_survives_a_concurrent_ttl_extension():
    policy = Policy(**DEFAULTS, mode="enforce")
    first = policy.decide(finding("consumer", "c1", 0.98, 1), None)[0]
    assert first.status == "pending_review"
    approved = replace(first, status="approved", actor="alice")
    extended = policy.decide(finding("consumer", "c1", 0.98, 3), first)[0]  # computed from the pending state
    merged = merge_state(approved, extended)
    assert (merged.status, merged.actor, merged.expires_at) == ("approved", "alice", extended.expires_at)
    assert merge_state(replace(approved, status="expired"), approved) is None  # a final state never changes again


def test_a_batch_of_findings_is_one_transaction_and_one_history_segment(tmp_path):
    control = ControlDB(tmp_path).open()
    policy = Policy(**DEFAULTS, mode="enforce")
    control.record_findings([finding("consumer", f"c{i}", 0.85, 1) for i in range(5)])

    class FailingOnThird(Policy):
        calls = 0

        def decide(self, *args, **kwargs):
            FailingOnThird.calls += 1
            if FailingOnThird.calls == 3:
                msg = "crash in the middle of a batch"
                raise RuntimeError(msg)
            return super().decide(*args, **kwargs)

    writer = StoreWriter(tmp_path, writer="c0").open()
    with pytest.raises(RuntimeError, match="middle of a batch"):
        Controller(control, writer, FailingOnThird(**DEFAULTS, mode="enforce")).step()
    # the first two findings' decisions were rolled back with the rest, and none of their rows written
    assert control.decisions() == [] and control.get_meta("cursor", "0") == "0"
    assert list((tmp_path / "decisions").glob("*.parquet")) == []

    assert Controller(control, writer, policy).step() == 5
    assert sorted(d.subject for d in control.decisions()) == [f"c{i}" for i in range(5)]
    assert len(list((tmp_path / "decisions").glob("*.parquet"))) == 1
    assert query(tmp_path, "SELECT count(*) AS n FROM decisions").column("n").to_pylist() == [5]


@pytest.mark.parametrize(
    ("evidence", "limit"),
    [
        # a flooding finding: its reason carries the subject's own baseline
        ({"features": {"requests": 127.0}, "reasons": {"requests": {"observed": 127.0, "baseline": 3.4, "spread": 1.0}}}, 10),
        # any other kind: the normal the shard knew of the subject (its own baseline, else its peers')
        ({"features": {"requests": 127.0}, "normal_requests": 40.0}, 80),
        # nothing known of its normal: the floor, never the window under attack
        ({"features": {"requests": 127.0}}, 10),
    ],
)
def test_a_restriction_limit_comes_from_the_subjects_normal_never_from_the_attack(evidence, limit):
    attack = replace(finding("consumer", "PartnerPortal", 0.9, 1), evidence=json.dumps(evidence))
    [decision] = Policy(**DEFAULTS, mode="enforce").decide(attack, None)
    assert decision.tier == "restricted" and decision.limit_per_min == limit
    assert decision.limit_per_min < evidence["features"]["requests"]  # the limit throttles the attack
