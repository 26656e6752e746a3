"""Flooding: volume far above the subject's own normal and its peers', or tier limits hit.

The strongest signal wins:

- **volume**: requests against the subject's own baseline, after taking out
  the window's peer-wide shift (``peer_shift``: the median rise of every
  subject in the shard, so a flash crowd lifting everyone is not a flood).
  The threshold is the largest of ``min_factor`` times the baseline, the
  baseline plus ``z_onset`` spreads, and ``min_requests``; reaching it scores
  0.5. Not for a client IP whose requests carry a consumer (``keyed``): a
  partner's traffic moves between its IPs, and its volume is judged on the
  consumer.
- **newcomer volume** (consumers and endpoints): in its first
  ``new_windows`` windows, before it has a baseline of its own, a subject is
  judged against its peers: ``new_factor`` times the median baseline of the
  subjects with history (``peer_requests``), and at least ``min_requests``,
  scores 0.5; the score grows slowly past it (4 times the threshold scores
  0.875), so a big newcomer is watched before it is restricted. A new key
  scraping from two dozen IPs shows here. The pipeline gives
  ``peer_requests`` and ``age_windows`` only to families where a newcomer's
  size means something (not client IPs).
- **tier limits**: throttled requests (429, WSO2 ``THROTTLED`` faults) at or
  above ``min_throttled`` *and* a throttled share at or above
  ``min_throttled_ratio`` (the client keeps hammering against its limit);
  this one also fires on a subject never seen.
- **cache busting** (client IPs, formats that log the query string): distinct
  query strings on one path in a window (``GET /?<random>``, so every request
  misses the cache); ``min_queries_per_path`` scores 0.5, also on an IP never
  seen.
- **switching user agents** (client IPs): ``min_distinct_uas`` user agents in
  a window, while they are at least ``min_ua_share`` of its requests (a bot
  that sends a new one with every request; a NAT of many people sends many
  requests per agent).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from gatewatch.detectors.base import BaselineDetector, Signal, over
from gatewatch.detectors.baselines import Columns, Feature, column

_NEWCOMER = "requests of a newcomer (baseline: its peers' median)"


class Flooding(BaselineDetector):
    """Request floods against the subject's own baseline, and frequent tier-limit hits.

    Args:
        min_factor: requests must reach this multiple of the baseline to score 0.5.
        min_requests: and at least this many in the window.
        min_throttled: throttled requests in a window that score 0.5 (with the ratio).
        min_throttled_ratio: share of throttled requests that scores 0.5 (with the count).
        min_queries_per_path: distinct query strings on one path in a window that score 0.5.
        min_distinct_uas: distinct user agents from one IP in a window that score 0.5.
        min_ua_share: distinct user agents per request needed for that signal.
        new_factor: a newcomer's requests must reach this multiple of its peers' median baseline.
        new_windows: windows after its first in which a subject counts as a newcomer.

    Other arguments: see :class:`~gatewatch.detectors.base.BaselineDetector`.

    >>> d = Flooding(min_history=3)
    >>> for _ in range(5):
    ...     d.learn_one("app", {"requests": 5, "throttled": 0, "throttled_ratio": 0.0})
    >>> flood = {"requests": 150, "throttled": 90, "throttled_ratio": 0.6}
    >>> round(d.score_one("app", flood), 2)
    0.92
    >>> [r.text for r in d.explain_one("app", flood)]
    ['requests 150 vs baseline 5', 'throttled requests 90 vs baseline 0']
    """

    name: ClassVar[str] = "flooding"
    kind: ClassVar[str] = "flooding"
    subject_types: ClassVar[tuple[str, ...]] = ("consumer", "ip", "api")
    FEATURES: ClassVar[tuple[Feature, ...]] = (
        Feature("requests", "requests", floor=0.4, volume=True),
        Feature("throttled", "throttled requests"),
        Feature("max_queries_per_path", "distinct query strings on one path"),
        Feature("distinct_uas", "distinct user agents"),
    )

    def __init__(
        self,
        min_factor: float = 4.0,
        min_requests: int = 60,
        min_throttled: int = 10,
        min_throttled_ratio: float = 0.5,
        min_queries_per_path: int = 30,
        min_distinct_uas: int = 10,
        min_ua_share: float = 0.5,
        new_factor: float = 4.0,
        new_windows: int = 10,
        fading_factor: float = 0.1,
        min_history: int = 10,
        protect_score: float = 0.5,
        z_onset: float = 3.0,
        seed: int = 0,
        horizon_s: int = 0,
    ) -> None:
        super().__init__(fading_factor, min_history, protect_score, z_onset, seed, horizon_s)
        self.min_factor = min_factor
        self.min_requests = min_requests
        self.min_throttled = min_throttled
        self.min_throttled_ratio = min_throttled_ratio
        self.min_queries_per_path = min_queries_per_path
        self.min_distinct_uas = min_distinct_uas
        self.min_ua_share = min_ua_share
        self.new_factor = new_factor
        self.new_windows = new_windows

    @classmethod
    def _unit_test_params(cls) -> dict:
        return {"min_history": 3, "min_requests": 30}

    def _quiet(self, X: Columns, n: int) -> np.ndarray:
        requests, throttled = column(X, "requests", n), column(X, "throttled", n)
        busting = column(X, "max_queries_per_path", n)
        return (
            (requests < self.min_requests)
            & (throttled < self.min_throttled)
            & (busting < self.min_queries_per_path)
            & (column(X, "distinct_uas", n) < self.min_distinct_uas)
        )

    def _signals(self, subject: str, x: dict[str, float]) -> list[Signal]:
        out = []
        if x.get("requests", 0.0) >= self.min_requests:
            d = self.baselines.deviation(subject, "requests", x, x.get("peer_shift", 0.0))
            if d.source == "own" and not x.get("keyed", 0.0):
                threshold = max(self.min_factor * d.baseline, d.upper(self.z_onset), self.min_requests)
                out.append(Signal(over(d.adjusted, threshold), d))
            elif (
                x.get("age_windows", math.inf) <= self.new_windows
                and (peers := x.get("peer_requests", 0.0)) > 0
            ):
                threshold = max(self.new_factor * peers, self.min_requests)
                out.append(
                    Signal(over(d.adjusted, threshold, power=1), d._replace(baseline=peers), _NEWCOMER)
                )
        throttled = self._count(subject, x, "throttled", self.min_throttled)
        if throttled.score > 0:
            limits = min(throttled.score, over(x.get("throttled_ratio", 0.0), self.min_throttled_ratio))
            out.append(Signal(limits, throttled.deviation))
        out.append(self._count(subject, x, "max_queries_per_path", self.min_queries_per_path))
        uas = self._count(subject, x, "distinct_uas", self.min_distinct_uas)
        out.append(Signal(min(uas.score, over(x.get("ua_share", 0.0), self.min_ua_share)), uas.deviation))
        return out
