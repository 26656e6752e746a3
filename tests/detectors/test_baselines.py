import math

from river import stats

from detectors.baselines import Baselines, Feature

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
    own = b._subjects["c"]
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
    b.forget("c")
    assert b.history("c") == 0
    assert b.deviation("c", "auth_failure_ratio", {"requests": 10.0}).source == "peers"
