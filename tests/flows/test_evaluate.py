"""``gatewatch evaluate``: the scoring rules on a fixed case, and the targets on small simulations."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from gatewatch.flows.lab.evaluate import FindingRow, evaluate, render
from gatewatch.flows.lab.simulate import SIM_FORMATS, GroundTruth
from tests.conftest import gatewatch

CASE = json.loads((Path(__file__).parent / "evaluate_cases.json").read_text())


def _report():
    truth = msgspec.convert(CASE["truth"], GroundTruth)
    findings = [FindingRow(**f) for f in CASE["findings"]]
    return evaluate(truth, findings, restrict_score=CASE["restrict_score"])


def test_recall_latency_and_kind_agreement_per_attack_kind():
    assert [msgspec.to_builtins(k) for k in _report().kinds] == CASE["expect"]["kinds"]


def test_subject_level_precision_counts_participants_and_lists_every_false_positive():
    report = _report()
    expect = CASE["expect"]
    assert (report.flagged_subjects, report.true_subjects) == (
        expect["flagged_subjects"],
        expect["true_subjects"],
    )
    assert [[f.window_start, f.subject] for f in report.false_positives] == expect["false_positive_windows"]


def test_look_alikes_and_missed_targets():
    report = _report()
    got = [
        {k: v for k, v in msgspec.to_builtins(la).items() if k != "description"} for la in report.lookalikes
    ]
    assert got == CASE["expect"]["lookalikes"]
    assert report.targets_met() == CASE["expect"]["missed"]
    text = render(report)
    assert "subject-level precision: 0.714 (5 of 7 flagged subjects)" in text
    assert "  ip 9.9.9.9 probing 0.60 window 300: sensitive files requested 5 vs baseline 0" in text
    assert text.rstrip().endswith("look-alike new_consumer: score 0.85 >= restrict_score 0.8")


def test_a_bad_truth_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "truth.json"
    bad.write_text('{"format": "kong"}')
    proc = gatewatch("evaluate", "--truth", str(bad), "--store", str(tmp_path / "store"), check=False)
    assert proc.returncode == 2
    assert "--truth" in proc.stderr and "missing required field" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("fmt", SIM_FORMATS)
def test_a_small_simulation_meets_the_targets(tmp_path, fmt):
    """Recall 1.0 per attack kind, precision >= 0.95, median latency <= 2 windows, clean look-alikes."""
    out = tmp_path / "sim"
    sim = gatewatch("simulate", "--format", fmt, "--minutes", "60", "--seed", "3", "--out", str(out)).stdout
    assert f"{out / (fmt + '.log')} lines=" in sim
    store = tmp_path / "store"
    gatewatch("replay", str(out / f"{fmt}.log"), "--store", str(store))
    truth = str(out / f"{fmt}.truth.json")
    text = gatewatch("evaluate", "--truth", truth, "--store", str(store), "--check").stdout
    assert text.rstrip().endswith("targets: met"), text
    report = json.loads(gatewatch("evaluate", "--truth", truth, "--store", str(store), "--output", "json").stdout)
    assert all(k["recall"] == 1.0 and k["median_latency_windows"] <= 2 for k in report["kinds"])
    assert report["precision"] >= 0.95
    assert all(la["clean"] for la in report["lookalikes"])


# -- per horizon, and the held-out (wide) scenario ----------------------------------------------------


def _finding(subject: str, kind: str, start: float, length: float, score: float = 0.9, stype: str = "ip"):
    return FindingRow(stype, subject, subject, kind, score, start, start + length, [f"{kind} reason"])


def _wide_case(lookalike_score: float | None = None, noise: bool = False):
    ip = {"type": "ip"}
    truth = msgspec.convert(
        {
            "format": "combined", "seed": 101, "start": 0.0, "end": 14400.0, "window_s": 60, "lines": 1,
            "log": "combined.log", "scenario": "wide",
            "attacks": [
                {"kind": "brute_force", "description": "slow", "start": 1000.0, "end": 4600.0,
                 "subjects": [{**ip, "id": "1.1.1.1"}], "horizon_s": 600,
                 "params": {"behaviour": "slow_brute_force", "visible": True}},
                {"kind": "probing", "description": "sqli burst", "start": 2000.0, "end": 2001.0,
                 "subjects": [{**ip, "id": "2.2.2.2"}], "horizon_s": 60, "params": {"visible": True}},
                {"kind": "probing", "description": "xss burst", "start": 3000.0, "end": 3001.0,
                 "subjects": [{**ip, "id": "3.3.3.3"}], "horizon_s": 60, "params": {"visible": True}},
                {"kind": "scraping", "description": "faint", "start": 5000.0, "end": 9000.0,
                 "subjects": [{**ip, "id": "4.4.4.4"}], "participants": [{**ip, "id": "5.5.5.5"}],
                 "horizon_s": 3600, "params": {"visible": False, "n_ips": 2}},
            ],
            "lookalikes": [
                {"kind": "nat_office", "description": "office", "start": 0.0, "end": 14400.0,
                 "subjects": [{**ip, "id": "81.2.69.160"}]},
            ],
        },
        GroundTruth,
    )  # fmt: skip
    findings = [
        _finding("1.1.1.1", "brute_force", 1080.0, 600.0),  # the 10-minute horizon, 5 windows in
        _finding("2.2.2.2", "probing", 1980.0, 60.0),
        _finding("5.5.5.5", "scraping", 6000.0, 3600.0, 0.6),  # a participant: explained, not a catch
    ]
    if lookalike_score is not None:
        findings.append(_finding("81.2.69.160", "scraping", 7200.0, 60.0, lookalike_score))
    if noise:
        findings += [_finding(f"9.9.9.{n}", "probing", 600.0 * n, 60.0) for n in range(1, 4)]
    return truth, findings


def test_recall_and_latency_per_kind_and_horizon():
    truth, findings = _wide_case()
    report = evaluate(truth, findings, restrict_score=0.8)
    assert report.scenario == "wide" and report.held_out
    got = [msgspec.to_builtins(h) for h in report.horizons]
    assert got == [
        {"kind": "probing", "horizon_s": 60, "attacks": 2, "caught": 1, "recall": 0.5,
         "median_latency_windows": 40 / 60, "faint": 0},
        {"kind": "brute_force", "horizon_s": 600, "attacks": 1, "caught": 1, "recall": 1.0,
         "median_latency_windows": 680 / 60, "faint": 0},
        {"kind": "scraping", "horizon_s": 3600, "attacks": 1, "caught": 0, "recall": 0.0,
         "median_latency_windows": None, "faint": 1},
    ]  # fmt: skip
    slow, sqli, xss, faint = report.attacks
    assert (slow.caught_on_s, slow.horizon_s, slow.params["behaviour"]) == (600, 600, "slow_brute_force")
    assert (sqli.caught_on_s, xss.caught, faint.faint, faint.involved) == (60, False, True, ["ip scraping"])


def test_held_out_targets_are_precision_and_look_alikes_only():
    truth, findings = _wide_case()
    report = evaluate(truth, findings, restrict_score=0.8)
    assert any(k.recall < 1 for k in report.kinds) and report.targets_met() == []
    truth, findings = _wide_case(lookalike_score=0.85, noise=True)
    missed = evaluate(truth, findings, restrict_score=0.8).targets_met()
    assert missed == ["precision 0.429 < 0.95", "look-alike nat_office: score 0.85 >= restrict_score 0.8"]
    standard = msgspec.structs.replace(truth, scenario=msgspec.UNSET)
    assert "probing: recall 0.50 < 1.0" in evaluate(standard, findings, restrict_score=0.8).targets_met()


def test_a_held_out_report_lists_horizons_and_misses():
    truth, findings = _wide_case()
    text = render(evaluate(truth, findings, restrict_score=0.8))
    assert "scenario=wide (held out: recall is reported, not a target)" in text
    assert "brute_force  10 min   1        1       1.00    11.3            0" in text
    assert "  scraping (1 h, faint): faint" in text
    assert "    params n_ips=2; seen: ip scraping" in text
    assert text.rstrip().endswith("targets: met")


def test_the_standard_report_has_no_held_out_section():
    text = render(_report())
    assert "horizon" not in text and "missed attacks" not in text


@pytest.mark.slow
def test_a_small_wide_run_replays_and_evaluates_with_clean_look_alikes(tmp_path):
    """Two hours of the held-out scenario at a fifth of the normal traffic: no recall is asserted."""
    out = tmp_path / "sim"
    args = ("--format", "combined", "--minutes", "120", "--seed", "11", "--scale", "0.2")
    sim = gatewatch("simulate", *args, "--scenario", "wide", "--out", str(out)).stdout
    assert f"{out / 'combined.log'} lines=" in sim
    store = tmp_path / "store"
    replay = gatewatch("replay", str(out / "combined.log"), "--store", str(store)).stdout
    assert " rejected=0 " in replay
    truth = str(out / "combined.truth.json")
    report = json.loads(gatewatch("evaluate", "--truth", truth, "--store", str(store), "--output", "json").stdout)
    assert report["scenario"] == "wide"
    assert {h["horizon_s"] for h in report["horizons"]} >= {60, 600}
    assert {k["kind"] for k in report["kinds"]} == {
        "credential_stuffing", "brute_force", "probing", "scraping", "flooding", "key_compromise", "form_spam",
        "anomaly",
    }  # fmt: skip
    restricted = [la for la in report["lookalikes"] if not la["clean"]]
    assert not restricted, restricted
    assert len(report["lookalikes"]) == 9
    text = gatewatch("evaluate", "--truth", truth, "--store", str(store)).stdout
    assert "missed attacks:" in text and "held out" in text


def test_simulate_rejects_a_short_wide_run(tmp_path):
    proc = gatewatch(
        "simulate", "--scenario", "wide", "--minutes", "90", "--out", str(tmp_path / "sim"), check=False
    )
    assert proc.returncode == 2
    assert "the wide scenario needs at least 120 minutes, got 90" in proc.stderr
