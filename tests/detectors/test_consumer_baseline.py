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
