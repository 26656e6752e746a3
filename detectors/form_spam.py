"""Form spam: a client IP posting web forms faster than a person can fill them in.

A person loads a page, reads it and types; a spam bot loads the page (for its
hidden fields and tokens) and posts the form back within a second. The signal
is ``hasty_posts``: writes to a web page within ``gatewatch.flows.features.FORM_FILL_S``
(2 s) of the same IP loading that page (``flows/features.py``). A page is a
path that is not static, not a login (``brute_force`` judges those: a password
manager fills a login form at once) and not an API (no ``/api``, version
segment or ``.json``), so it shows in formats that log concrete paths.
``min_hasty_posts`` scores 0.5; one hasty post alone never does.

Not for a client IP whose requests carry a consumer (``keyed``): an
application with a key that reads a resource and writes it back is doing its
job. An IP with history has the threshold lifted to its own baseline plus
``z_onset`` spreads.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from gatewatch.detectors.base import BaselineDetector, Signal
from gatewatch.detectors.baselines import Columns, Feature, column


class FormSpam(BaselineDetector):
    """Forms posted within seconds of their page loading, by one IP without a key.

    Args:
        min_hasty_posts: forms posted within 2 s of their page loading that score 0.5.

    Other arguments: see :class:`~gatewatch.detectors.base.BaselineDetector`.

    >>> d = FormSpam()
    >>> bot = {"requests": 6, "hasty_posts": 3}
    >>> round(d.score_one("203.0.113.9", bot), 2)
    0.78
    >>> [r.text for r in d.explain_one("203.0.113.9", bot)]
    ['forms posted within 2 s of loading 3 vs baseline 0']
    >>> d.score_one("203.0.113.9", {**bot, "keyed": 1.0})
    0.0
    """

    name: ClassVar[str] = "form_spam"
    kind: ClassVar[str] = "form_spam"
    subject_types: ClassVar[tuple[str, ...]] = ("ip",)
    FEATURES: ClassVar[tuple[Feature, ...]] = (Feature("hasty_posts", "forms posted within 2 s of loading"),)

    def __init__(
        self,
        min_hasty_posts: int = 2,
        fading_factor: float = 0.1,
        min_history: int = 10,
        protect_score: float = 0.5,
        z_onset: float = 3.0,
        seed: int = 0,
        horizon_s: int = 0,
    ) -> None:
        super().__init__(fading_factor, min_history, protect_score, z_onset, seed, horizon_s)
        self.min_hasty_posts = min_hasty_posts

    def _quiet(self, X: Columns, n: int) -> np.ndarray:
        return (column(X, "hasty_posts", n) < self.min_hasty_posts) | (column(X, "keyed", n) > 0)

    def _signals(self, subject: str, x: dict[str, float]) -> list[Signal]:
        if x.get("keyed", 0.0):
            return []
        return [self._count(subject, x, "hasty_posts", self.min_hasty_posts)]
