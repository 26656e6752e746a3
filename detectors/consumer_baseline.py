"""Per-consumer online baselines: how far is this window from the consumer's normal?

Each consumer keeps an exponentially weighted mean and variance of a few
window features. The update rule is River's ``stats.EWMean`` / ``stats.EWVar``
(``mean += a * (x - mean)``; variance as ``EW(x^2) - EW(x)^2``; the first value
seeds the mean). It is written out over a flat list of floats because one
pair of River objects per feature and consumer costs about 2.7 KiB per
consumer against about 250 B here (notes/PERFORMANCE.md §4); a test checks
the two agree.

Counts are compared in log space (a jump from 5 to 150 requests matters, one
from 5,000 to 5,150 does not) and ratios are shrunk towards the baseline with
pseudo-counts, so one failure out of two requests is not "50 % failures".

Cold start: until a consumer has ``min_history`` windows it is compared with
its peers (the same statistics pooled over every consumer's windows).
"""

from __future__ import annotations

import math
from typing import ClassVar

from detectors.base import Reason

# feature -> (label, is_ratio, spread floor in the compared space)
FEATURES: dict[str, tuple[str, bool, float]] = {
    "requests": ("requests", False, 0.4),
    "distinct_ips": ("distinct client IPs", False, 0.5),
    "auth_failure_ratio": ("auth failures", True, 0.05),
    "error_ratio": ("4xx/5xx responses", True, 0.05),
    "throttled_ratio": ("throttled requests", True, 0.05),
}
_NAMES = tuple(FEATURES)
_N = len(_NAMES)


def _transform(name: str, value: float, n_requests: float, baseline: float, pseudo: float) -> float:
    if FEATURES[name][1]:
        # shrink towards the baseline: (hits + pseudo * p) / (n + pseudo)
        return (value * n_requests + pseudo * baseline) / (n_requests + pseudo)
    return math.log1p(value)


def _fmt(name: str, value: float) -> str:
    if FEATURES[name][1]:
        return f"{value * 100:.0f}%"
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}".rstrip("0").rstrip(".")


class ConsumerBaseline:
    """Score a consumer's window against its own EW baseline (or its peers').

    Args:
        fading_factor: weight of the newest window in the EW statistics.
        min_history: windows a consumer needs before its own baseline is used.
        z_onset: deviations (in spreads) below which the score is 0.
        z_scale: how fast the score approaches 1 beyond ``z_onset``.
        pseudo_requests: pseudo-counts that shrink ratios of small windows.
        protect_score: a window scoring at least this against the consumer's own
            baseline is not learned, so an attack does not become its new normal
            (River's ``protect_anomaly_detector``). Windows scored against peers
            are always learned: the consumer's own normal is not known yet.
        seed: unused (the detector is deterministic); kept for the contract.

    >>> d = ConsumerBaseline()
    >>> normal = {"requests": 5, "distinct_ips": 1, "auth_failure_ratio": 0.0,
    ...           "error_ratio": 0.02, "throttled_ratio": 0.0}
    >>> for _ in range(20):
    ...     d.learn_one("app", normal)
    >>> d.score_one("app", normal)
    0.0
    >>> attack = dict(normal, requests=150, distinct_ips=120, auth_failure_ratio=0.94)
    >>> round(d.score_one("app", attack), 2)
    0.99
    >>> [r.text for r in d.explain_one("app", attack)][:2]
    ['auth failures 94% vs baseline 0%', 'distinct client IPs 120 vs baseline 1']
    """

    name: ClassVar[str] = "consumer_baseline"
    kind: ClassVar[str] = "baseline_deviation"
    subject_type: ClassVar[str] = "consumer"

    def __init__(
        self,
        fading_factor: float = 0.1,
        min_history: int = 10,
        z_onset: float = 3.0,
        z_scale: float = 3.0,
        pseudo_requests: float = 10.0,
        protect_score: float = 0.5,
        seed: int = 0,
    ) -> None:
        if not 0 < fading_factor <= 1:
            msg = f"fading_factor must be in (0, 1], got {fading_factor}"
            raise ValueError(msg)
        self.fading_factor = fading_factor
        self.min_history = min_history
        self.z_onset = z_onset
        self.z_scale = z_scale
        self.pseudo_requests = pseudo_requests
        self.protect_score = protect_score
        self.seed = seed
        # per subject: [windows seen, mean_0, mean_sq_0, mean_1, mean_sq_1, ...] in compared space
        self._subjects: dict[str, list[float]] = {}
        self._peers: list[float] = [0.0] * (1 + 2 * _N)

    @classmethod
    def _unit_test_params(cls) -> dict:
        return {"min_history": 3}

    def __repr__(self) -> str:
        return (
            f"ConsumerBaseline(fading_factor={self.fading_factor}, min_history={self.min_history}, "
            f"z_onset={self.z_onset}, z_scale={self.z_scale}, pseudo_requests={self.pseudo_requests}, "
            f"protect_score={self.protect_score})"
        )

    def _stats(self, subject: str) -> list[float] | None:
        own = self._subjects.get(subject)
        if own is not None and own[0] >= self.min_history:
            return own
        return self._peers if self._peers[0] >= self.min_history else None

    def _deviations(self, subject: str, x: dict[str, float]) -> list[tuple[float, str, float, float, float]]:
        """(z, feature, observed, baseline, spread) per feature, in original units."""
        stats = self._stats(subject)
        if stats is None:
            return []
        n_req = float(x.get("requests", 0.0))
        out = []
        for i, name in enumerate(_NAMES):
            mean, mean_sq = stats[1 + 2 * i], stats[2 + 2 * i]
            floor = FEATURES[name][2]
            spread = max(math.sqrt(max(mean_sq - mean * mean, 0.0)), floor)
            base = mean if FEATURES[name][1] else math.expm1(mean)
            value = _transform(name, float(x.get(name, 0.0)), n_req, base, self.pseudo_requests)
            z = (value - mean) / spread  # abuse shows as increases only
            out.append((z, name, float(x.get(name, 0.0)), base, spread))
        out.sort(reverse=True)
        return out

    def score_one(self, subject: str, x: dict[str, float]) -> float:
        devs = self._deviations(subject, x)
        if not devs:
            return 0.0
        z = devs[0][0]
        return 0.0 if z <= self.z_onset else 1.0 - math.exp(-(z - self.z_onset) / self.z_scale)

    def explain_one(self, subject: str, x: dict[str, float]) -> list[Reason]:
        reasons = []
        for z, name, observed, base, spread in self._deviations(subject, x):
            if z <= self.z_onset:
                break
            label = FEATURES[name][0]
            reasons.append(Reason(name, observed, base, spread, f"{label} {_fmt(name, observed)} vs baseline {_fmt(name, base)}"))
        return reasons

    def learn_one(self, subject: str, x: dict[str, float]) -> None:
        own = self._subjects.get(subject)
        if own is not None and own[0] >= self.min_history and self.score_one(subject, x) >= self.protect_score:
            return
        if own is None:
            own = self._subjects[subject] = [0.0] * (1 + 2 * _N)
        n_req = float(x.get("requests", 0.0))
        for stats in (own, self._peers):
            a = self.fading_factor
            first = stats[0] == 0
            for i, name in enumerate(_NAMES):
                j = 1 + 2 * i
                raw = float(x.get(name, 0.0))
                v = _transform(name, raw, n_req, raw if first else stats[j], self.pseudo_requests)
                if first:
                    stats[j], stats[j + 1] = v, v * v
                else:
                    stats[j] += a * (v - stats[j])
                    stats[j + 1] += a * (v * v - stats[j + 1])
            stats[0] += 1

    def forget(self, subject: str) -> None:
        self._subjects.pop(subject, None)

    def subjects(self) -> int:
        """Number of subjects with a baseline."""
        return len(self._subjects)
