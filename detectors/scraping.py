"""Scraping and crawling: one client IP reading resource after resource.

Three signals, the stronger wins, each only while the IP writes little
(``write_ratio`` at most ``max_write_ratio``):

- **crawl** (formats with concrete paths): distinct non-static paths read in
  one window; ``min_distinct_paths`` scores 0.5, as CrowdSec's
  ``http-crawl-non_statics`` alerts on the 41st distinct page.
- **enumeration** (concrete paths): ids read in sequence
  (``/items/1001``, ``/items/1002`` …); ``min_sequential_ids`` scores 0.5.
- **machine reader** (every format, templates included): at least
  ``min_requests`` requests, mostly reads of detail resources
  (``/items/{sku}``), with regular timing. ``regularity`` is
  ``1 - CV`` of the gaps between requests: about 0 for people and Poisson-like
  clients, near 1 for a script on a timer, e.g. a 1 request/s scraper.
  ``min_regularity`` scores 0.5.

An IP with history has the crawl and enumeration thresholds lifted to its
own baseline plus ``z_onset`` spreads. Over the longer horizons the crawl
signal is for IPs without a key (``keyed``): a backend that reads a few of its
users' records a minute reads hundreds in an hour.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from gatewatch.detectors.base import BaselineDetector, Signal, over
from gatewatch.detectors.baselines import Columns, Feature, column


class Scraping(BaselineDetector):
    """Crawling, id enumeration and timer-driven reading from one IP.

    Args:
        min_distinct_paths: distinct non-static paths read in a window that score 0.5.
        min_sequential_ids: ids read in sequence in a window that score 0.5.
        min_requests: requests in a window before timing regularity counts.
        min_regularity: timing regularity (0-1) that scores 0.5.
        min_detail_ratio: share of requests on detail resources for the regularity signal.
        max_write_ratio: above this share of writes nothing here fires.

    Other arguments: see :class:`~gatewatch.detectors.base.BaselineDetector`.

    >>> d = Scraping()
    >>> bot = {"requests": 60, "read_ratio": 1.0, "write_ratio": 0.0, "detail_ratio": 1.0, "regularity": 0.88}
    >>> round(d.score_one("198.51.100.77", bot), 2)
    0.89
    >>> [r.text for r in d.explain_one("198.51.100.77", bot)]
    ['request timing regularity 0.88 vs baseline 0.00']
    """

    name: ClassVar[str] = "scraping"
    kind: ClassVar[str] = "scraping"
    subject_types: ClassVar[tuple[str, ...]] = ("ip",)
    FEATURES: ClassVar[tuple[Feature, ...]] = (
        Feature("distinct_paths", "distinct non-static paths read"),
        Feature("sequential_ids", "ids read in sequence"),
        Feature("regularity", "request timing regularity", "score", log=False, floor=0.1),
    )

    def __init__(
        self,
        min_distinct_paths: int = 40,
        min_sequential_ids: int = 20,
        min_requests: int = 30,
        min_regularity: float = 0.6,
        min_detail_ratio: float = 0.5,
        max_write_ratio: float = 0.1,
        fading_factor: float = 0.1,
        min_history: int = 10,
        protect_score: float = 0.5,
        z_onset: float = 3.0,
        seed: int = 0,
        horizon_s: int = 0,
    ) -> None:
        super().__init__(fading_factor, min_history, protect_score, z_onset, seed, horizon_s)
        self.min_distinct_paths = min_distinct_paths
        self.min_sequential_ids = min_sequential_ids
        self.min_requests = min_requests
        self.min_regularity = min_regularity
        self.min_detail_ratio = min_detail_ratio
        self.max_write_ratio = max_write_ratio

    def _quiet(self, X: Columns, n: int) -> np.ndarray:
        timed = (column(X, "requests", n) >= self.min_requests) & (
            column(X, "detail_ratio", n) >= self.min_detail_ratio
        )
        return (column(X, "write_ratio", n) > self.max_write_ratio) | (
            (column(X, "distinct_paths", n) < self.min_distinct_paths)
            & (column(X, "sequential_ids", n) < self.min_sequential_ids)
            & ~timed
        )

    def _signals(self, subject: str, x: dict[str, float]) -> list[Signal]:
        if x.get("write_ratio", 0.0) > self.max_write_ratio:
            return []
        out = [self._count(subject, x, "sequential_ids", self.min_sequential_ids)]
        # over a horizon, breadth alone is what a backend reading its users' records shows too:
        # an IP with a key is judged on enumeration there, and on breadth per window
        if not (self.horizon_s and x.get("keyed", 0.0)):
            out.append(self._count(subject, x, "distinct_paths", self.min_distinct_paths))
        if (
            x.get("requests", 0.0) >= self.min_requests
            and x.get("detail_ratio", 0.0) >= self.min_detail_ratio
        ):
            d = self.baselines.deviation(subject, "regularity", x)
            threshold = (
                max(self.min_regularity, d.upper(self.z_onset)) if d.source == "own" else self.min_regularity
            )
            out.append(Signal(over(d.observed, threshold, power=4), d))
        return out
