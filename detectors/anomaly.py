"""Anomaly: what has no name, from one River model per subject type.

Each window's features are first normalised against the subject's own
baseline: how many spreads above its normal is each feature (requests and
distinct IPs after the peer-wide shift, failure and error shares, bytes per
request, p95 latency; tier-limit hits are flooding's)? Those rises, mapped to [0, 1] (0 = at or
below the baseline, 1 = ``2 * z_onset`` spreads or more), feed one River
``HalfSpaceTrees`` shared by every subject of the type: one model, not one
per subject (far less memory and time), which learns which combinations of
rises are common. A moderate rise needs both views, so the score is the
weaker of the two:

- the largest rise: ``z_onset`` spreads scores 0.5;
- the half-space trees' anomaly score: ``hst_onset`` scores 0.5.

An extreme rise speaks for itself: ``2 * z_onset`` spreads score 0.5 with no
help from the trees (a 600-fold jump in bytes per request is rare however
common the pattern).

A window with a rise of ``z_onset`` spreads or more is learned neither into
the baseline nor into the trees, whatever its score
(:meth:`~gatewatch.detectors.base.BaselineDetector._protected`).

Warm-up: 0 until the subject has ``min_history`` windows of its own, and
while the trees fill their first reference window (``window_size`` windows).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from gatewatch.detectors.base import BaselineDetector, Signal, over
from gatewatch.detectors.baselines import Columns, Deviation, Feature, row

_RIVER_LOCK = threading.Lock()


def half_space_trees() -> type:
    """River's ``HalfSpaceTrees`` class, imported without the rest of ``river.anomaly`` and ``river.tree``.

    Their package ``__init__`` files import every model they hold, and with them scipy:
    about 0.9 s of every process's start, against 0.2 s for the half-space trees alone.
    The packages are stood in for while ``river.anomaly.hst`` loads, then removed, so a
    later ``import river.anomaly`` runs in full and finds the same class. Worker
    threads call this at once: the lock keeps the others off the stand-ins.
    """
    with _RIVER_LOCK:
        if "river.anomaly" in sys.modules:
            return sys.modules["river.anomaly"].HalfSpaceTrees
        import river  # noqa: PLC0415 - imported on first use, like the class

        stand_ins = []
        for name in ("river.anomaly", "river.tree"):
            if name not in sys.modules:
                sys.modules[name] = importlib.util.module_from_spec(importlib.util.find_spec(name))
                stand_ins.append(name)
        try:
            from river.anomaly.hst import HalfSpaceTrees  # noqa: PLC0415

            return HalfSpaceTrees
        finally:
            for name in stand_ins:
                del sys.modules[name]
                vars(river).pop(name.rpartition(".")[2], None)


class Anomaly(BaselineDetector):
    """Half-space trees over baseline-normalised window features.

    Args:
        n_trees: trees in the forest.
        height: depth of each tree.
        window_size: windows per reference window of the trees.
        hst_onset: trees' anomaly score that scores 0.5.

    Other arguments: see :class:`~gatewatch.detectors.base.BaselineDetector`.
    """

    name: ClassVar[str] = "anomaly"
    kind: ClassVar[str] = "anomaly"
    subject_types: ClassVar[tuple[str, ...]] = ("consumer", "api")
    warm_up: ClassVar[bool] = True
    FEATURES: ClassVar[tuple[Feature, ...]] = (
        Feature("requests", "requests", floor=0.4, volume=True),
        Feature("distinct_ips", "distinct client IPs", volume=True),
        Feature("auth_failure_ratio", "auth failures", "ratio", log=False, floor=0.05, of="requests"),
        Feature("error_ratio", "4xx responses", "ratio", log=False, floor=0.05, of="requests"),
        Feature("server_error_ratio", "5xx responses", "ratio", log=False, floor=0.05, of="requests"),
        Feature("bytes_per_request", "bytes per request", "bytes", floor=0.5),
        Feature("latency_p95_ms", "p95 latency", "ms", floor=0.4),
    )

    def __init__(
        self,
        n_trees: int = 50,
        height: int = 6,
        window_size: int = 100,
        hst_onset: float = 0.5,
        fading_factor: float = 0.1,
        min_history: int = 10,
        protect_score: float = 0.5,
        z_onset: float = 4.0,
        seed: int = 0,
        horizon_s: int = 0,
    ) -> None:
        super().__init__(fading_factor, min_history, protect_score, z_onset, seed, horizon_s)
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.hst_onset = hst_onset
        self.trees = None  # built on first use: processes that score no window skip loading River

    def _forest(self):
        if self.trees is None:
            self.trees = half_space_trees()(
                n_trees=self.n_trees, height=self.height, window_size=self.window_size, seed=self.seed
            )
        return self.trees

    @classmethod
    def _unit_test_params(cls) -> dict:
        return {"min_history": 3, "window_size": 10, "n_trees": 10}

    def _assess(self, subject: str, x: dict[str, float]) -> tuple[list[Deviation], dict[str, float]] | None:
        if self.baselines.history(subject) < self.min_history:
            return None
        shift = x.get("peer_shift", 0.0)
        devs = [self.baselines.deviation(subject, f.name, x, shift) for f in self.FEATURES]
        top = 2 * self.z_onset
        return devs, {d.feature.name: min(max(d.z, 0.0), top) / top for d in devs}

    def _signals(self, subject: str, x: dict[str, float]) -> list[Signal]:
        assessed = self._assess(subject, x)
        if assessed is None:
            return []
        devs, u = assessed
        top = max(d.z for d in devs)
        score = max(
            min(over(top, self.z_onset), over(self._forest().score_one(u), self.hst_onset)),
            over(top, 2 * self.z_onset),
        )
        return [Signal(score if d.z >= self.z_onset else 0.0, d) for d in sorted(devs, key=lambda d: -d.z)]

    def learn_one(self, subject: str, x: dict[str, float], score: float | None = None) -> None:
        assessed = self._assess(subject, x)
        if assessed is not None:
            if self._protected(subject, x, score):
                return
            self._forest().learn_one(assessed[1])
        self.baselines.learn(subject, x)

    def learn_many(self, subjects: Sequence[str], X: Columns, scores: np.ndarray, mask: np.ndarray) -> None:
        # the trees learn one window after the other
        for k in np.flatnonzero(mask):
            self.learn_one(subjects[k], row(X, k), float(scores[k]))
