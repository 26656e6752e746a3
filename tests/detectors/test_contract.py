"""One contract, every registered detector (River's ``check_estimator`` idea)."""

import math
import pickle
import random

import pytest

from detectors import DETECTORS

FEATURES = ("requests", "distinct_ips", "auth_failure_ratio", "error_ratio", "throttled_ratio")


def _normal(rng: random.Random) -> dict[str, float]:
    n = rng.randint(20, 40)
    return {
        "requests": float(n),
        "distinct_ips": float(rng.randint(1, 3)),
        "auth_failure_ratio": rng.choice([0, 1]) / n,
        "error_ratio": rng.randint(0, 2) / n,
        "throttled_ratio": 0.0,
    }


def _attack() -> dict[str, float]:
    return {"requests": 900.0, "distinct_ips": 300.0, "auth_failure_ratio": 0.95, "error_ratio": 0.95, "throttled_ratio": 0.0}


@pytest.fixture(params=sorted(DETECTORS))
def detector(request):
    cls = DETECTORS[request.param]
    return cls(**cls._unit_test_params())


def _train(det, windows=40, seed=1):
    rng = random.Random(seed)
    for _ in range(windows):
        x = _normal(rng)
        det.score_one("a", x)
        det.learn_one("a", x)


def test_declares_name_kind_and_subject_type(detector):
    assert detector.name in DETECTORS
    assert detector.kind and detector.subject_type in {"consumer", "ip", "api"}


def test_scores_zero_before_any_history(detector):
    assert detector.score_one("new", _attack()) == 0.0
    assert detector.explain_one("new", _attack()) == []


def test_scores_are_in_unit_interval_and_spike_ranks_first(detector):
    _train(detector)
    rng = random.Random(2)
    normal_scores = [detector.score_one("a", _normal(rng)) for _ in range(50)]
    spike = detector.score_one("a", _attack())
    assert all(0.0 <= s <= 1.0 and math.isfinite(s) for s in [*normal_scores, spike])
    assert spike > max(normal_scores)
    assert spike >= 0.8
    assert max(normal_scores) < 0.5


def test_reasons_name_observed_and_baseline(detector):
    _train(detector)
    reasons = detector.explain_one("a", _attack())
    assert reasons
    assert all(" vs baseline " in r.text for r in reasons)
    assert all(r.observed > r.baseline for r in reasons)


def test_score_does_not_learn(detector):
    _train(detector)
    before = pickle.dumps(detector)
    detector.score_one("a", _attack())
    detector.explain_one("a", _attack())
    assert pickle.dumps(detector) == before


def test_input_is_not_mutated_and_missing_features_are_tolerated(detector):
    _train(detector)
    x = _attack()
    frozen = dict(x)
    detector.score_one("a", x)
    detector.learn_one("a", x)
    assert x == frozen
    assert 0.0 <= detector.score_one("a", {"requests": 3.0}) <= 1.0


def test_pickle_round_trip_keeps_scores(detector):
    _train(detector)
    clone = pickle.loads(pickle.dumps(detector))
    assert clone.score_one("a", _attack()) == detector.score_one("a", _attack())
    assert repr(clone) == repr(detector)


def test_deterministic_for_the_same_input(detector):
    cls = type(detector)
    a, b = cls(**cls._unit_test_params()), cls(**cls._unit_test_params())
    _train(a)
    _train(b)
    assert pickle.dumps(a) == pickle.dumps(b)


def test_new_subject_is_compared_with_its_peers(detector):
    _train(detector)
    rng = random.Random(3)
    assert detector.score_one("newcomer", _normal(rng)) < 0.5
    assert detector.score_one("newcomer", _attack()) >= 0.8


def test_forget_drops_a_subject(detector):
    _train(detector)
    detector.forget("a")
    detector.forget("never-seen")
    assert detector.score_one("a", _normal(random.Random(4))) < 0.5
