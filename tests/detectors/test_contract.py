"""One contract, every registered detector (River's ``check_estimator`` idea).

Each detector's ordinary and attack windows come from ``examples.json``; a
registered detector without examples fails the first test.
"""

import json
import math
import pickle
import random
from pathlib import Path

import numpy as np
import pytest

from gatewatch.detectors import DETECTORS, BaselineDetector
from gatewatch.detectors.base import horizon_text
from gatewatch.flows.config import HORIZONS, Config
from gatewatch.flows.shard import build_detectors
from tests.conftest import columns

EXAMPLES = json.loads((Path(__file__).parent / "examples.json").read_text())


def _normal(name: str, rng: random.Random) -> dict[str, float]:
    out = {}
    for feature, (lo, hi) in EXAMPLES[name]["normal"].items():
        out[feature] = (
            float(rng.randint(lo, hi)) if isinstance(lo, int) and isinstance(hi, int) else rng.uniform(lo, hi)
        )
    return out


def _attack(name: str) -> dict[str, float]:
    return {k: float(v) for k, v in EXAMPLES[name]["attack"].items()}


@pytest.fixture(params=sorted(DETECTORS))
def detector(request):
    cls = DETECTORS[request.param]
    return cls(**cls._unit_test_params())


def _train(det, subject="a", windows=40, seed=1):
    rng = random.Random(seed)
    for _ in range(windows):
        x = _normal(det.name, rng)
        det.score_one(subject, x)
        det.learn_one(subject, x)


def test_every_detector_has_examples():
    assert set(DETECTORS) <= set(EXAMPLES)


def test_declares_name_kind_subject_types_and_warm_up(detector):
    assert detector.name in DETECTORS
    assert detector.kind
    assert detector.subject_types and set(detector.subject_types) <= {"consumer", "ip", "api"}
    assert isinstance(detector.warm_up, bool)


def test_a_subject_never_seen_scores_as_documented(detector):
    """Warm-up detectors score 0 without history; the others fire on absolute thresholds."""
    attack = _attack(detector.name)
    if detector.warm_up:
        assert detector.score_one("new", attack) == 0.0
        assert detector.explain_one("new", attack) == []
    else:
        assert detector.score_one("new", attack) >= 0.8
        assert detector.explain_one("new", attack)


def test_scores_are_in_unit_interval_and_spike_ranks_first(detector):
    _train(detector)
    rng = random.Random(2)
    normal_scores = [detector.score_one("a", _normal(detector.name, rng)) for _ in range(50)]
    spike = detector.score_one("a", _attack(detector.name))
    assert all(0.0 <= s <= 1.0 and math.isfinite(s) for s in [*normal_scores, spike])
    assert spike > max(normal_scores)
    assert spike >= 0.8
    assert max(normal_scores) < 0.5


def test_reasons_name_observed_and_baseline(detector):
    _train(detector)
    reasons = detector.explain_one("a", _attack(detector.name))
    assert reasons
    assert all(" vs baseline " in r.text for r in reasons)
    assert all(r.observed > r.baseline for r in reasons)


def test_score_does_not_learn(detector):
    _train(detector)
    before = pickle.dumps(detector)
    detector.score_one("a", _attack(detector.name))
    detector.explain_one("a", _attack(detector.name))
    assert pickle.dumps(detector) == before


def test_attack_windows_are_not_learned(detector):
    """A long attack does not become the subject's new normal."""
    _train(detector)
    attack = _attack(detector.name)
    first = detector.score_one("a", attack)
    for _ in range(10):
        detector.score_one("a", attack)
        detector.learn_one("a", attack)
    assert detector.score_one("a", attack) == first >= 0.8


def test_input_is_not_mutated_and_missing_features_are_tolerated(detector):
    _train(detector)
    x = _attack(detector.name)
    frozen = dict(x)
    detector.score_one("a", x)
    detector.learn_one("a", x)
    assert x == frozen
    assert 0.0 <= detector.score_one("a", {"requests": 3.0}) <= 1.0
    assert detector.score_one("a", {}) == 0.0


def test_pickle_round_trip_keeps_scores(detector):
    _train(detector)
    clone = pickle.loads(pickle.dumps(detector))
    assert clone.score_one("a", _attack(detector.name)) == detector.score_one("a", _attack(detector.name))
    assert repr(clone) == repr(detector)


def test_deterministic_for_the_same_input_and_seed(detector):
    cls = type(detector)
    a, b = cls(**cls._unit_test_params()), cls(**cls._unit_test_params())
    _train(a)
    _train(b)
    assert pickle.dumps(a) == pickle.dumps(b)


def test_new_subject_is_compared_with_its_peers_or_waits(detector):
    _train(detector)
    rng = random.Random(3)
    assert detector.score_one("newcomer", _normal(detector.name, rng)) < 0.5
    score = detector.score_one("newcomer", _attack(detector.name))
    if detector.warm_up:
        assert score == 0.0
    else:
        assert score >= 0.8


def test_forget_drops_a_subject(detector):
    _train(detector)
    detector.forget_many(["a", "never-seen"])
    assert detector.baselines.history("a") == 0
    assert detector.score_one("a", _normal(detector.name, random.Random(4))) < 0.5


def test_learning_with_the_score_given_is_learning_without_it(detector):
    """The pipeline hands learn_one the score it already has; the state must not depend on that."""
    cls = type(detector)
    given = cls(**cls._unit_test_params())
    rng = random.Random(3)
    windows = [_normal(detector.name, rng) for _ in range(30)] + [_attack(detector.name)] * 3
    for x in windows:
        detector.score_one("a", x)
        detector.learn_one("a", x)
        given.learn_one("a", x, given.score_one("a", x))
    assert pickle.dumps(given) == pickle.dumps(detector)



def _windows(det, rng: random.Random, subjects: list[str]) -> list[dict[str, float]]:
    """Ordinary windows, and windows whose features are, each on its own, ordinary, a share of the
    attack's, or next to one of the detector's thresholds (``min_*`` / ``max_*``)."""
    near = [
        float(v) * f
        for k, v in vars(det).items()
        if k.startswith(("min_", "max_")) and isinstance(v, int | float)
        for f in (0.5, 0.99, 1.0, 1.01, 2.0)
    ]
    out = []
    for _ in subjects:
        x = _normal(det.name, rng)
        if rng.random() < 0.7:
            for k, v in _attack(det.name).items():
                if rng.random() < 0.5:
                    x[k] = rng.choice(near) if near and rng.random() < 0.5 else v * rng.uniform(0.0, 1.3)
        out.append(x)
    return out


def test_a_window_at_once_is_one_subject_after_the_other(detector):
    """``score_many`` / ``learn_many`` over a window's subjects equal ``score_one`` / ``learn_one`` over each,
    all scored before any is learned; every window ``_quiet`` clears scores 0."""
    cls = type(detector)
    many = cls(**cls._unit_test_params())
    rng = random.Random(11)
    subjects = [f"s{i}" for i in range(8)]
    cleared = 0
    for _ in range(200):
        xs = _windows(detector, rng, subjects)
        X = columns(xs)
        expected = [detector.score_one(s, x) for s, x in zip(subjects, xs, strict=True)]
        scores = many.score_many(subjects, X)
        assert scores.tolist() == expected
        quiet = many._quiet(X, len(subjects))
        assert all(score == 0.0 for score, q in zip(expected, quiet, strict=True) if q)
        cleared += int(quiet.sum())
        mask = np.array([rng.random() < 0.9 for _ in subjects])
        for s, x, score, learn in zip(subjects, xs, expected, mask, strict=True):
            if learn:
                detector.learn_one(s, x, score)
        many.learn_many(subjects, X, scores, mask)
    assert pickle.dumps(many) == pickle.dumps(detector)
    if cls._quiet is not BaselineDetector._quiet:
        assert cleared > 0  # the screen was exercised


# -- the longer horizons: every detector that declares thresholds for one -----------------------

HORIZON_EXAMPLES = json.loads((Path(__file__).parent / "horizon_examples.json").read_text())
HORIZON_CASES = [
    (name, key)
    for name in sorted(DETECTORS)
    for key in HORIZONS
    if getattr(getattr(Config().detectors, name), key, None) is not None
]


def _horizon_detector(name: str, key: str, family: str | None = None):
    family = family or DETECTORS[name].subject_types[0]
    return next(d for d in build_detectors(Config(), family, key) if d.name == name)


def test_horizon_examples_cover_every_detector_with_horizons():
    assert HORIZON_CASES, "some detector judges the longer horizons"
    assert {name for name, _ in HORIZON_CASES} == set(HORIZON_EXAMPLES) - {"_doc"}


@pytest.mark.parametrize(("name", "key"), HORIZON_CASES)
def test_a_slow_attack_is_found_at_the_horizon_end_and_not_in_any_one_window(name, key):
    slow = {k: float(v) for k, v in HORIZON_EXAMPLES[name][key].items()}
    windows = HORIZONS[key] // 60
    per_window = {k: v if k.endswith(("ratio", "share")) else v / windows for k, v in slow.items()}
    horizon = _horizon_detector(name, key)
    minute = next(d for d in build_detectors(Config(), DETECTORS[name].subject_types[0]) if d.name == name)
    assert minute.score_one("new", per_window) < 0.5
    assert horizon.score_one("new", slow) >= 0.5
    reasons = horizon.explain_one("new", slow)
    assert reasons and all(f" in {horizon_text(HORIZONS[key])} vs baseline " in r.text for r in reasons)


@pytest.mark.parametrize(("name", "key"), HORIZON_CASES)
def test_a_horizon_scores_before_it_learns_and_keeps_attacks_out_of_its_baseline(name, key):
    slow = {k: float(v) for k, v in HORIZON_EXAMPLES[name][key].items()}
    det = _horizon_detector(name, key)
    quiet = {k: 0.0 for k in slow} | {"requests": slow["requests"] / 10}
    for _ in range(det.min_history):
        det.learn_one("a", quiet)
    before = pickle.dumps(det)
    score = det.score_one("a", slow)
    assert pickle.dumps(det) == before, "scoring changes nothing"
    assert score >= 0.5
    history = det.baselines.history("a")
    X = columns([slow])
    det.learn_many(["a"], X, det.score_many(["a"], X), np.ones(1, dtype=bool))
    assert det.baselines.history("a") == history, "an attack over the horizon is not learned"
    assert pickle.loads(pickle.dumps(det)).score_one("a", slow) == score
