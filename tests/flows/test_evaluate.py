"""``gatewatch evaluate``: the scoring rules on a fixed case, and the targets on small simulations."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from flows.evaluate import FindingRow, evaluate, render
from flows.simulate import SIM_FORMATS, GroundTruth
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
    report = json.loads(gatewatch("evaluate", "--truth", truth, "--store", str(store), "--json").stdout)
    assert all(k["recall"] == 1.0 and k["median_latency_windows"] <= 2 for k in report["kinds"])
    assert report["precision"] >= 0.95
    assert all(la["clean"] for la in report["lookalikes"])
