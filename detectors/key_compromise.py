"""Key compromise: a consumer suddenly used from many unseen subnets or user-agent families.

The pipeline remembers, per consumer, the /24 subnets and user-agent
families it was used from (``flows/features.py``; attack windows are not
added to that memory). ``new_subnets`` counts this window's subnets the
consumer was never seen from (a consumer seen from more than 1,024 in a window
is judged on the 1,024 of lowest hash, the same part of its subnets every window),
after taking out the peer-wide volume shift;
``min_new_subnets`` of them, or the consumer's own usual count plus
``z_onset`` spreads if that is more, scores 0.5. A user-agent family the
consumer never used halves that threshold.

Warm-up: every subnet of a new consumer is unseen, so a consumer is not
judged before it has ``min_history`` windows (score 0).
"""

from __future__ import annotations

from typing import ClassVar

from gatewatch.detectors.base import BaselineDetector, Signal, over
from gatewatch.detectors.baselines import Feature


class KeyCompromise(BaselineDetector):
    """A consumer's credentials used from new places.

    Args:
        min_new_subnets: never-seen /24 subnets in a window that score 0.5.

    Other arguments: see :class:`~gatewatch.detectors.base.BaselineDetector`.

    >>> d = KeyCompromise(min_history=3)
    >>> for _ in range(5):
    ...     d.learn_one("PartnerMobile", {"new_subnets": 0, "new_ua_families": 0})
    >>> stolen = {"new_subnets": 15, "new_ua_families": 2}
    >>> round(d.score_one("PartnerMobile", stolen), 2)
    0.99
    >>> [r.text for r in d.explain_one("PartnerMobile", stolen)]
    ['never-seen /24 subnets 15 vs baseline 0', 'never-seen user-agent families 2 vs baseline 0']
    """

    name: ClassVar[str] = "key_compromise"
    kind: ClassVar[str] = "key_compromise"
    subject_types: ClassVar[tuple[str, ...]] = ("consumer",)
    warm_up: ClassVar[bool] = True
    FEATURES: ClassVar[tuple[Feature, ...]] = (
        Feature("new_subnets", "never-seen /24 subnets", volume=True),
        Feature("new_ua_families", "never-seen user-agent families"),
    )

    def __init__(
        self,
        min_new_subnets: int = 5,
        fading_factor: float = 0.1,
        min_history: int = 10,
        protect_score: float = 0.5,
        z_onset: float = 3.0,
        seed: int = 0,
        horizon_s: int = 0,
    ) -> None:
        super().__init__(fading_factor, min_history, protect_score, z_onset, seed, horizon_s)
        self.min_new_subnets = min_new_subnets

    def _signals(self, subject: str, x: dict[str, float]) -> list[Signal]:
        if (
            not subject  # anonymous traffic (no key, no user): nothing to steal
            or self.baselines.history(subject) < self.min_history
            or x.get("new_subnets", 0.0) < self.min_new_subnets / 2
        ):
            return []
        d = self.baselines.deviation(subject, "new_subnets", x, x.get("peer_shift", 0.0))
        ua = self.baselines.deviation(subject, "new_ua_families", x)
        threshold = max(self.min_new_subnets, d.upper(self.z_onset))
        if ua.observed >= 1 and ua.observed > ua.baseline:
            threshold /= 2
        score = over(d.adjusted, threshold)
        return [Signal(score, d), Signal(score if ua.observed > ua.baseline else 0.0, ua)]
