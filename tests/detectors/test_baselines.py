import math
import pickle
import random

import numpy as np
import pytest
from river import stats

from gatewatch.detectors.baselines import Baselines, Feature, SubjectRows
from tests.conftest import columns

REQUESTS = Feature("requests", "requests", floor=0.4, volume=True)
RATIO = Feature(
    "auth_failure_ratio", "auth failures", "ratio", log=False, floor=0.05, peers=True, of="requests"
)


def test_ew_statistics_equal_rivers():
    """The flat-list EW mean/variance is River's EWMean/EWVar, only smaller."""
    b = Baselines((REQUESTS,), fading_factor=0.3, min_history=1)
    mean, var = stats.EWMean(0.3), stats.EWVar(0.3)
    for n in [5, 7, 3, 12, 6, 5, 9]:
        b.learn("c", {"requests": float(n)})
        mean.update(math.log1p(n))
        var.update(math.log1p(n))
    o = b.index.rows["c"] * b._width
    own = b._stats[o : o + b._width]
    assert math.isclose(own[1], mean.get(), rel_tol=1e-12)
    assert math.isclose(own[2] - own[1] ** 2, var.get(), rel_tol=1e-9, abs_tol=1e-12)


def test_ratios_of_small_windows_are_shrunk_towards_the_baseline():
    b = Baselines((REQUESTS, RATIO), min_history=3)
    for _ in range(20):
        b.learn("small", {"requests": 3.0, "auth_failure_ratio": 0.0})
    tiny = b.deviation("small", "auth_failure_ratio", {"requests": 2.0, "auth_failure_ratio": 0.5})
    big = b.deviation("small", "auth_failure_ratio", {"requests": 200.0, "auth_failure_ratio": 0.5})
    assert tiny.z < 3 < big.z


def test_a_subject_without_history_uses_peers_for_ratios_and_the_prior_for_counts():
    b = Baselines((REQUESTS, RATIO), min_history=5)
    for i in range(30):
        b.learn(f"peer{i % 3}", {"requests": 20.0, "auth_failure_ratio": 0.1})
    x = {"requests": 500.0, "auth_failure_ratio": 0.1}
    assert b.deviation("new", "auth_failure_ratio", x).source == "peers"
    assert math.isclose(b.deviation("new", "auth_failure_ratio", x).baseline, 0.1, rel_tol=1e-9)
    assert b.deviation("new", "requests", x).source == "prior"
    assert b.deviation("peer0", "requests", x).source == "own"


def test_a_peer_wide_shift_is_taken_out_of_volume_features():
    b = Baselines((REQUESTS,), min_history=3)
    for _ in range(10):
        b.learn("c", {"requests": 100.0})
    crowd = {"requests": 300.0}
    assert b.deviation("c", "requests", crowd).z > 2
    shifted = b.deviation("c", "requests", crowd, shift=math.log(3))
    assert abs(shifted.z) < 0.1
    assert 99 < shifted.adjusted < 101


def test_forget_drops_the_subject_but_not_its_peers():
    b = Baselines((REQUESTS, RATIO), min_history=2)
    for _ in range(4):
        b.learn("c", {"requests": 10.0, "auth_failure_ratio": 0.2})
    b.index.forget_many(("c",))
    assert b.history("c") == 0
    assert b.deviation("c", "auth_failure_ratio", {"requests": 10.0}).source == "peers"



def test_many_subjects_at_once_are_one_after_the_other():
    """``deviations`` and ``learn_many`` equal ``deviation`` and ``learn`` exactly, row reuse included."""
    rng = random.Random(7)
    one, many = (Baselines((REQUESTS, RATIO), fading_factor=0.2, min_history=3) for _ in range(2))
    for window in range(12):
        subjects = sorted(rng.sample([f"s{i}" for i in range(9)], 5))
        xs = [{"requests": float(rng.randint(0, 400)), "auth_failure_ratio": rng.random()} for _ in subjects]
        X = columns(xs)
        shift = rng.choice([0.0, 0.4])
        rows = many.rows(subjects)
        for name in ("requests", "auth_failure_ratio"):
            value, mean, z, own = many.deviations(rows, name, X, shift)
            expected = [one.deviation(s, name, x, shift) for s, x in zip(subjects, xs, strict=True)]
            assert z.tolist() == [d.z for d in expected]
            assert mean.tolist() == [d.mean for d in expected]
            assert own.tolist() == [d.source == "own" for d in expected]
        mask = np.array([rng.random() < 0.8 for _ in subjects])
        for s, x, learn in zip(subjects, xs, mask, strict=True):
            if learn:
                one.learn(s, x)
        many.learn_many(subjects, X, mask)
        if window % 4 == 3:
            for b in (one, many):
                b.index.forget_many((subjects[0],))
    assert pickle.dumps(one) == pickle.dumps(many)
    assert many.subjects() == one.subjects() and len(many._stats) <= 9 * many._width


def test_a_snapshot_with_an_array_per_subject_resumes():
    """Recovery state written before one array held every subject still loads, and behaves the same."""
    rng = random.Random(5)
    windows = [
        (f"s{rng.randint(0, 4)}", {"requests": float(rng.randint(1, 90)), "auth_failure_ratio": rng.random()})
        for _ in range(60)
    ]
    b = Baselines((REQUESTS, RATIO), min_history=3)
    for subject, x in windows:
        b.learn(subject, x)
    old = dict(vars(b))  # the same statistics, laid out as the older version pickled them
    w = old.pop("_width")
    old["_subjects"] = {s: old["_stats"][r * w : (r + 1) * w] for s, r in old.pop("index").rows.items()}
    del old["_stats"]
    old["_pooled"] = True
    resumed = Baselines.__new__(Baselines)
    resumed.__setstate__(old)
    probe = {"requests": 400.0, "auth_failure_ratio": 0.6}
    for subject in ("s0", "s3", "never"):
        assert resumed.history(subject) == b.history(subject)
        for name in ("requests", "auth_failure_ratio"):
            assert resumed.deviation(subject, name, probe) == b.deviation(subject, name, probe)
    for base in (b, resumed):
        base.learn("s1", probe)
        base.index.forget_many(("s2",))
    assert _state(resumed) == _state(b)


def _state(b: Baselines) -> dict:
    """What a Baselines holds: its statistics per subject, and the peers'."""
    w = b._width
    return {
        "subjects": {s: b._stats[r * w : (r + 1) * w].tolist() for s, r in b.index.rows.items()},
        "peers": b._peers.tolist(),
    }


def test_baselines_sharing_rows_learn_and_forget_as_apart():
    """Baselines that share a SubjectRows hold what each would alone; forgetting frees the row in all."""
    rng = random.Random(11)
    apart = [Baselines((REQUESTS, RATIO), min_history=2), Baselines((RATIO,), min_history=2)]
    together = [Baselines((REQUESTS, RATIO), min_history=2), Baselines((RATIO,), min_history=2)]
    index = SubjectRows()
    for b in together:
        b.share(index)
    for window in range(10):
        subjects = tuple(sorted(rng.sample([f"s{i}" for i in range(8)], 5)))
        X = columns([{"requests": float(rng.randint(1, 99)), "auth_failure_ratio": rng.random()} for _ in subjects])
        for one, two in zip(apart, together, strict=True):
            mask = np.array([rng.random() < 0.7 for _ in subjects])
            assert (one.rows(subjects) >= 0).tolist() == [one.history(s) > 0 for s in subjects]
            one.learn_many(subjects, X, mask)
            two.learn_many(subjects, X, mask)
        if window % 3 == 2:
            for b in (*apart, *together):
                b.index.forget_many((subjects[0],))
    for one, two in zip(apart, together, strict=True):
        learned = {s: v for s, v in _state(two)["subjects"].items() if v[0]}
        assert learned == {s: v for s, v in _state(one)["subjects"].items() if v[0]}
        assert _state(one)["peers"] == _state(two)["peers"]
    assert len(index.rows) + len(index.free) == index.size == len(together[1]._stats) // together[1]._width
    with pytest.raises(ValueError, match="before learning"):
        apart[0].share(index)


def test_baselines_pickled_with_rows_of_their_own_are_united():
    """A recovery snapshot from before baselines shared rows: each kept its own; a shard unites them."""
    first, second = Baselines((REQUESTS,), min_history=2), Baselines((RATIO,), min_history=2)
    for subject, n in (("a", 5.0), ("b", 9.0), ("a", 7.0)):
        first.learn(subject, {"requests": n})
    second.learn("c", {"requests": 10.0, "auth_failure_ratio": 0.3})
    first.index.forget_many(("b",))
    before = [_state(first), _state(second)]
    old = []
    for b in (first, second):  # laid out as the earlier version pickled them
        state = dict(vars(b))
        index = state.pop("index")
        state["_rows"], state["_free"] = dict(index.rows), list(index.free)
        resumed = Baselines.__new__(Baselines)
        resumed.__setstate__(state)
        old.append(resumed)
    shared = SubjectRows.unite(old)
    assert set(shared.rows) == {"a", "c"} and all(b.index is shared for b in old)
    for b, expected in zip(old, before, strict=True):
        learned = {s: v for s, v in _state(b)["subjects"].items() if v[0]}
        assert learned == {s: v for s, v in expected["subjects"].items() if v[0]}
    assert old[0].history("a") == 2 and old[1].history("a") == 0 and old[1].history("c") == 1
