import math

from river import stats

from detectors.consumer_baseline import ConsumerBaseline


def test_ew_statistics_equal_rivers():
    """The flat-list EW mean/variance is River's EWMean/EWVar, only smaller."""
    det = ConsumerBaseline(fading_factor=0.3, min_history=1)
    mean, var = stats.EWMean(0.3), stats.EWVar(0.3)
    for n in [5, 7, 3, 12, 6, 5, 9]:
        det.learn_one("c", {"requests": float(n)})
        mean.update(math.log1p(n))
        var.update(math.log1p(n))
    own = det._subjects["c"]
    assert math.isclose(own[1], mean.get(), rel_tol=1e-12)
    assert math.isclose(own[2] - own[1] ** 2, var.get(), rel_tol=1e-9, abs_tol=1e-12)


def test_one_failure_in_a_tiny_window_is_not_an_alarm():
    det = ConsumerBaseline(min_history=3)
    normal = {"requests": 3.0, "distinct_ips": 1.0, "auth_failure_ratio": 0.0, "error_ratio": 0.0, "throttled_ratio": 0.0}
    for _ in range(20):
        det.learn_one("small", normal)
    assert det.score_one("small", dict(normal, requests=2.0, auth_failure_ratio=0.5)) < 0.5


def test_reason_text_reads_as_observed_vs_baseline():
    det = ConsumerBaseline(min_history=3)
    for _ in range(20):
        det.learn_one("c", {"requests": 5.0, "distinct_ips": 2.0, "auth_failure_ratio": 0.01, "error_ratio": 0.02})
    texts = [r.text for r in det.explain_one("c", {"requests": 160.0, "distinct_ips": 140.0, "auth_failure_ratio": 0.94})]
    assert "distinct client IPs 140 vs baseline 2" in texts
    assert "requests 160 vs baseline 5" in texts
    assert any(t.startswith("auth failures 9") and t.endswith("vs baseline 1%") for t in texts)


def test_attack_windows_are_not_learned_once_the_consumer_has_a_baseline():
    det = ConsumerBaseline(min_history=5)
    normal = {"requests": 5.0, "distinct_ips": 2.0, "auth_failure_ratio": 0.0, "error_ratio": 0.02}
    attack = {"requests": 170.0, "distinct_ips": 100.0, "auth_failure_ratio": 0.95, "error_ratio": 0.95}
    for _ in range(20):
        det.learn_one("c", normal)
    first = det.score_one("c", attack)
    for _ in range(10):  # a long attack
        det.score_one("c", attack)
        det.learn_one("c", attack)
    assert det.score_one("c", attack) == first >= 0.9


def test_a_consumer_unlike_its_peers_learns_its_own_normal():
    """Cold start: a window scored against peers is still learned, so an odd-but-steady consumer settles."""
    det = ConsumerBaseline(min_history=5)
    for i in range(30):
        det.learn_one(f"peer{i % 3}", {"requests": 20.0, "distinct_ips": 2.0, "auth_failure_ratio": 0.01})
    odd = {"requests": 20.0, "distinct_ips": 0.0, "auth_failure_ratio": 1.0}
    assert det.score_one("odd", odd) >= 0.5
    for _ in range(10):
        det.score_one("odd", odd)
        det.learn_one("odd", odd)
    assert det.score_one("odd", odd) < 0.5
