"""Credential stuffing: many distinct IPs failing authentication against one target.

The target is a consumer (an application's key used by the attack tool) or a
login endpoint (an API resource, e.g. ``AccountsAPI:1.0.0 POST /login``).
Each attacking IP tries only once or twice, so no single IP stands out; the
breadth does: failing client IPs and /24 subnets in one window, together with
a high share of failed authentications.

Both must hold, so the score is the weaker of the two:

- **breadth**: ``failing_ips`` at or above ``min_failing_ips`` (or
  ``failing_subnets`` at or above ``min_failing_subnets``) scores 0.5; a
  target that normally sees many failing IPs has that threshold lifted to its
  own baseline plus ``z_onset`` spreads.
- **failure share**: ``auth_failure_ratio`` (shrunk towards the baseline for
  small windows) at ``min_failure_ratio`` scores 0.5, or ``z_onset`` spreads
  above the target's own failure ratio.

A login-heavy application with an ordinary failure rate has breadth but not
the share; one user mistyping a password has neither.
"""

from __future__ import annotations

from typing import ClassVar

from gatewatch.detectors.base import BaselineDetector, Signal, over
from gatewatch.detectors.baselines import Feature


class CredentialStuffing(BaselineDetector):
    """Distributed authentication failures against one consumer or login endpoint.

    Args:
        min_failing_ips: distinct failing client IPs in a window that score 0.5.
        min_failing_subnets: distinct failing /24 subnets in a window that score 0.5.
        min_failure_ratio: share of failed authentications that scores 0.5.

    Other arguments: see :class:`~gatewatch.detectors.base.BaselineDetector`.

    >>> d = CredentialStuffing()
    >>> attack = {"requests": 180, "auth_failure_ratio": 0.94, "failing_ips": 140, "failing_subnets": 45}
    >>> round(d.score_one("PartnerPortal", attack), 2)
    0.95
    >>> for r in d.explain_one("PartnerPortal", attack):
    ...     print(r.text)
    failing client IPs 140 vs baseline 0
    failing /24 subnets 45 vs baseline 0
    auth failures 94% vs baseline 2%
    >>> login_heavy = {"requests": 300, "auth_failure_ratio": 0.06, "failing_ips": 18, "failing_subnets": 15}
    >>> d.score_one("MobileApp", login_heavy)
    0.0
    """

    name: ClassVar[str] = "credential_stuffing"
    kind: ClassVar[str] = "credential_stuffing"
    subject_types: ClassVar[tuple[str, ...]] = ("consumer", "api")
    FEATURES: ClassVar[tuple[Feature, ...]] = (
        Feature("failing_ips", "failing client IPs", volume=True),
        Feature("failing_subnets", "failing /24 subnets", volume=True),
        Feature(
            "auth_failure_ratio",
            "auth failures",
            "ratio",
            log=False,
            floor=0.05,
            prior=0.02,
            peers=True,
            of="requests",
        ),
    )

    def __init__(
        self,
        min_failing_ips: int = 20,
        min_failing_subnets: int = 10,
        min_failure_ratio: float = 0.3,
        fading_factor: float = 0.1,
        min_history: int = 10,
        protect_score: float = 0.5,
        z_onset: float = 3.0,
        seed: int = 0,
        horizon_s: int = 0,
    ) -> None:
        super().__init__(fading_factor, min_history, protect_score, z_onset, seed, horizon_s)
        self.min_failing_ips = min_failing_ips
        self.min_failing_subnets = min_failing_subnets
        self.min_failure_ratio = min_failure_ratio

    def _signals(self, subject: str, x: dict[str, float]) -> list[Signal]:
        shift = x.get("peer_shift", 0.0)
        ips = self._count(subject, x, "failing_ips", self.min_failing_ips, shift)
        subnets = self._count(subject, x, "failing_subnets", self.min_failing_subnets, shift)
        if ips.score == subnets.score == 0.0:
            return []
        d = self.baselines.deviation(subject, "auth_failure_ratio", x)
        share = over(d.observed, self.min_failure_ratio)
        if d.source == "own":
            share = max(share, over(d.z, self.z_onset))
        both = min(max(ips.score, subnets.score), share)
        return [
            Signal(both if ips.score > 0 else 0.0, ips.deviation),
            Signal(both if subnets.score > 0 else 0.0, subnets.deviation),
            Signal(both, d),
        ]
