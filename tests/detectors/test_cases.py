"""Each detector on named situations, as data (``cases.json``): a window in, a score range and reasons out."""

import json
from pathlib import Path

import pytest

from gatewatch.detectors import DETECTORS

CASES = json.loads((Path(__file__).parent / "cases.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(case):
    det = DETECTORS[case["detector"]](**case.get("params", {}))
    history = case.get("history")
    if history:
        for _ in range(history["repeat"]):
            det.learn_one("s", {k: float(v) for k, v in history["window"].items()})
    window = {k: float(v) for k, v in case["window"].items()}
    lo, hi = case["score"]
    score = det.score_one("s", window)
    assert lo <= score <= hi, f"score {score:.3f} outside [{lo}, {hi}]"
    texts = [r.text for r in det.explain_one("s", window)]
    assert texts == case.get("reasons", [])


def test_every_detector_has_a_case():
    assert {c["detector"] for c in CASES} == set(DETECTORS)
