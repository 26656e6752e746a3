"""Brute force: one client IP repeatedly failing, or hammering a login path.

Two signals, the stronger wins:

- **auth failures** from the IP in one window (any path, including nginx /
  Apache basic-auth failures from the error log): ``min_auth_failures`` scores
  0.5, as CrowdSec's ``http-generic-bf`` alerts on the 6th failure; only while
  failures are at least ``min_failure_ratio`` of the IP's requests (a busy
  NAT or backend IP sees a few failures among thousands of requests).
- **login burst**: the most login attempts (a write to a login-like path such
  as ``/login``, ``/wp-login.php``, ``/oauth/token``) within
  ``gatewatch.flows.features.BURST_S`` seconds: ``min_login_burst`` scores 0.5; only
  while login attempts are at least ``min_login_share`` of the IP's requests
  (a brute-forcer hammers the login; a backend that logs its users in does
  much else too). A failed WordPress login answers 200, so the rate is the
  signal there.
- **login attempts** (off in one window, on over the longer horizons, where a
  slow brute-forcer shows): ``min_login_attempts`` writes to a login path score
  0.5, with the same share condition.

Thresholds fire on an IP never seen before; an IP with history (a NAT or a
backend calling the login API for its users) has them lifted to its own
baseline plus ``z_onset`` spreads.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from gatewatch.detectors.base import BaselineDetector, Signal, over
from gatewatch.detectors.baselines import Columns, Feature, column


class BruteForce(BaselineDetector):
    """Repeated authentication failures or login hammering from one IP.

    Args:
        min_auth_failures: failed authentications in a window that score 0.5.
        min_failure_ratio: share of the IP's requests that must fail for the failure signal.
        min_login_burst: login attempts within the burst span that score 0.5.
        min_login_share: share of the IP's requests that must be login attempts for the login signals.
        min_login_attempts: login attempts that score 0.5 (0: off).

    Other arguments: see :class:`~gatewatch.detectors.base.BaselineDetector`.

    >>> d = BruteForce()
    >>> wordpress = {"requests": 9, "login_requests": 9, "login_burst": 9, "login_share": 1.0}
    >>> round(d.score_one("81.150.104.130", wordpress), 2)
    0.78
    >>> [r.text for r in d.explain_one("81.150.104.130", wordpress)]
    ['login attempts within 10 s 9 vs baseline 0']
    """

    name: ClassVar[str] = "brute_force"
    kind: ClassVar[str] = "brute_force"
    subject_types: ClassVar[tuple[str, ...]] = ("ip",)
    FEATURES: ClassVar[tuple[Feature, ...]] = (
        Feature("auth_failures", "auth failures"),
        Feature("login_burst", "login attempts within 10 s"),
        Feature("login_requests", "login attempts"),
    )

    def __init__(
        self,
        min_auth_failures: int = 6,
        min_failure_ratio: float = 0.2,
        min_login_burst: int = 6,
        min_login_share: float = 0.3,
        min_login_attempts: int = 0,
        fading_factor: float = 0.1,
        min_history: int = 10,
        protect_score: float = 0.5,
        z_onset: float = 3.0,
        seed: int = 0,
        horizon_s: int = 0,
    ) -> None:
        super().__init__(fading_factor, min_history, protect_score, z_onset, seed, horizon_s)
        self.min_auth_failures = min_auth_failures
        self.min_failure_ratio = min_failure_ratio
        self.min_login_burst = min_login_burst
        self.min_login_share = min_login_share
        self.min_login_attempts = min_login_attempts
        self._attempts_onset = min_login_attempts or math.inf

    def _quiet(self, X: Columns, n: int) -> np.ndarray:
        return (
            (column(X, "auth_failures", n) < self.min_auth_failures)
            & (column(X, "login_burst", n) < self.min_login_burst)
            & (column(X, "login_requests", n) < self._attempts_onset)
        )

    def _signals(self, subject: str, x: dict[str, float]) -> list[Signal]:
        failures = self._count(subject, x, "auth_failures", self.min_auth_failures)
        burst = self._count(subject, x, "login_burst", self.min_login_burst)
        attempts = self._count(subject, x, "login_requests", self._attempts_onset)
        login_share = over(x.get("login_share", 0.0), self.min_login_share)
        return [
            Signal(
                min(failures.score, over(x.get("auth_failure_ratio", 0.0), self.min_failure_ratio)),
                failures.deviation,
            ),
            Signal(min(burst.score, login_share), burst.deviation),
            Signal(min(attempts.score, login_share), attempts.deviation),
        ]
