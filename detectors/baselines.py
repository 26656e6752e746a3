"""Per-subject online baselines: how far is this window from the subject's normal?

Each subject keeps an exponentially weighted mean and variance of a few
window features. The update rule is River's ``stats.EWMean`` / ``stats.EWVar``
(``mean += a * (x - mean)``; variance as ``EW(x^2) - EW(x)^2``; the first value
seeds the mean). It is written out over one flat ``array('d')``, a row per
subject, because one pair of River objects per feature and subject costs about
2.7 KiB against about 250 B for a list of floats and 8 B a value here, and
because a closed window's subjects can then be compared and learned as NumPy columns (``deviations``, ``learn_many``); tests check
that it agrees with River and that the column methods equal the scalar ones.

Counts are compared in log space (a jump from 5 to 150 requests matters, one
from 5,000 to 5,150 does not) and ratios are shrunk towards the baseline with
pseudo-counts, so one failure out of two requests is not "50 % failures".

Cold start: until a subject has ``min_history`` windows it is compared with
its peers (the same statistics pooled over every subject's windows) for the
features where that is meaningful (``Feature.peers``: ratios and per-request
quantities; a new consumer's volume says nothing about abuse), and with the
feature's documented ``prior`` otherwise.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

PSEUDO_REQUESTS = 10.0


class Feature(NamedTuple):
    """A window feature a detector keeps a baseline of."""

    name: str
    label: str  # for reason texts: "failing client IPs"
    unit: str = "count"  # "count" | "ratio" | "bytes" | "ms" | "score"
    log: bool = True  # compared in log1p space
    floor: float = 0.5  # smallest spread, in the compared space
    prior: float = 0.0  # the baseline before any history
    peers: bool = False  # a subject without history may be compared with its peers
    of: str = ""  # ratios: the count they are a share of (pseudo-count shrinkage)
    volume: bool = False  # scales with traffic: a peer-wide volume shift is taken out


class Deviation(NamedTuple):
    """One feature of one window against its baseline."""

    feature: Feature
    observed: float  # raw units
    adjusted: float  # raw units, after taking out the peer-wide shift
    baseline: float  # raw units
    mean: float  # compared space
    spread: float  # compared space
    z: float
    source: str  # "own" | "peers" | "prior"

    def upper(self, k: float) -> float:
        """The raw value ``k`` spreads above the baseline."""
        v = self.mean + k * self.spread
        return math.expm1(v) if self.feature.log else v


def _compare(f: Feature, value: float, n: float, base: float) -> float:
    if f.of:
        # shrink towards the baseline: (hits + pseudo * p) / (n + pseudo)
        return (value * n + PSEUDO_REQUESTS * base) / (n + PSEUDO_REQUESTS)
    return math.log1p(max(value, 0.0)) if f.log else value


class Baselines:
    """EW mean and variance of ``features`` per subject, and pooled over all subjects.

    Every subject's statistics are one row of a flat ``array('d')``: scalar reads stay
    Python floats, and the ``*_many`` methods see all rows at once as a NumPy view
    (a closed window's subjects are scored and learned together).

    >>> b = Baselines((Feature("requests", "requests"),), fading_factor=0.5, min_history=2)
    >>> for n in (10, 10, 10):
    ...     b.learn("c", {"requests": n})
    >>> d = b.deviation("c", "requests", {"requests": 150})
    >>> d.source, round(d.baseline), round(d.z, 1)
    ('own', 10, 5.2)
    """

    def __init__(
        self, features: tuple[Feature, ...], fading_factor: float = 0.1, min_history: int = 10
    ) -> None:
        self.features = features
        self.fading_factor = fading_factor
        self.min_history = min_history
        self._index = {f.name: i for i, f in enumerate(features)}
        self._width = 1 + 2 * len(features)
        # row r: [windows seen, mean_0, mean_sq_0, mean_1, mean_sq_1, ...] in compared space
        self._stats = array("d")
        self._rows: dict[str, int] = {}  # subject -> row
        self._free: list[int] = []  # rows of forgotten subjects, reused
        self._peers = array("d", bytes(8 * self._width))
        # the peers' statistics, kept only for the features that use them
        self._pooled = tuple(i for i, f in enumerate(features) if f.peers)

    def __setstate__(self, state: dict) -> None:
        # a recovery snapshot from before one array held every subject: an array per subject
        subjects = state.pop("_subjects", None)
        if subjects is not None:
            state["_width"] = 1 + 2 * len(state["features"])
            state["_rows"] = {subject: r for r, subject in enumerate(subjects)}
            state["_stats"] = array("d", b"".join(stats.tobytes() for stats in subjects.values()))
            state["_free"] = []
            state["_pooled"] = tuple(i for i, f in enumerate(state["features"]) if f.peers)
        self.__dict__.update(state)

    def history(self, subject: str) -> int:
        """Windows learned for ``subject``."""
        r = self._rows.get(subject)
        return int(self._stats[r * self._width]) if r is not None else 0

    def subjects(self) -> int:
        """Number of subjects with a baseline."""
        return len(self._rows)

    def deviation(self, subject: str, name: str, x: dict[str, float], shift: float = 0.0) -> Deviation:
        """Compare feature ``name`` of window ``x`` with the subject's baseline.

        ``shift`` (log space) is a peer-wide volume change, taken out of
        ``volume`` features: in a flash crowd every consumer rises together.
        """
        i = self._index[name]
        f = self.features[i]
        r = self._rows.get(subject)
        if r is not None and self._stats[r * self._width] >= self.min_history:
            stats, o, source = self._stats, r * self._width, "own"
        elif f.peers and self._peers[0] >= self.min_history:
            stats, o, source = self._peers, 0, "peers"
        else:
            stats, o, source = None, 0, "prior"
        if stats is None:
            mean = _compare(f, f.prior, 0.0, f.prior) if not f.of else f.prior
            spread = f.floor
        else:
            mean, mean_sq = stats[o + 1 + 2 * i], stats[o + 2 + 2 * i]
            spread = max(math.sqrt(max(mean_sq - mean * mean, 0.0)), f.floor)
        observed = float(x.get(name, 0.0))
        value = _compare(f, observed, float(x.get(f.of, 0.0)) if f.of else 0.0, mean)
        adjusted = observed
        if f.volume and f.log and shift > 0:
            value = max(value - shift, 0.0)
            adjusted = math.expm1(value)
        baseline = math.expm1(mean) if f.log else mean
        return Deviation(f, observed, adjusted, baseline, mean, spread, (value - mean) / spread, source)

    def learn(self, subject: str, x: dict[str, float]) -> None:
        """Add window ``x`` to the subject's baseline (and to the peers', if a feature uses them)."""
        get = x.get
        raw = [float(get(f.name, 0.0)) for f in self.features]
        ns = [float(get(f.of, 0.0)) if f.of else 0.0 for f in self.features]
        self._update(self._stats, self._row(subject) * self._width, raw, ns, range(len(self.features)))
        if self._pooled:
            self._update(self._peers, 0, raw, ns, self._pooled)

    def _update(self, stats: array, o: int, raw: list[float], ns: list[float], which: Iterable[int]) -> None:
        a = self.fading_factor
        first = stats[o] == 0
        for i in which:
            f = self.features[i]
            j = o + 1 + 2 * i
            v = raw[i]
            if f.of:
                v = (v * ns[i] + PSEUDO_REQUESTS * (v if first else stats[j])) / (ns[i] + PSEUDO_REQUESTS)
            elif f.log:
                v = math.log1p(v) if v > 0 else 0.0
            if first:
                stats[j], stats[j + 1] = v, v * v
            else:
                stats[j] += a * (v - stats[j])
                stats[j + 1] += a * (v * v - stats[j + 1])
        stats[o] += 1

    def _row(self, subject: str) -> int:
        r = self._rows.get(subject)
        if r is None:
            if self._free:
                r = self._free.pop()
            else:
                r = len(self._stats) // self._width
                self._stats.frombytes(bytes(8 * self._width))
            self._rows[subject] = r
        return r

    def _rows_for(self, subjects: list[str]) -> np.ndarray:
        """Each subject's row, as :meth:`_row` gives them one by one, the new ones zeroed at once.

        A window of one-off subjects (mobile client IPs) has thousands of new ones: the
        array grows once, not once a subject.
        """
        get = self._rows.get
        rows = [get(s, -1) for s in subjects]
        new = [k for k, r in enumerate(rows) if r < 0]
        if new:
            free = self._free
            reused = [free.pop() for _ in range(min(len(free), len(new)))]
            first = len(self._stats) // self._width
            grown = len(new) - len(reused)
            self._stats.frombytes(bytes(8 * self._width * grown))
            for k, r in zip(new, [*reused, *range(first, first + grown)], strict=True):
                rows[k] = self._rows[subjects[k]] = r
        return np.array(rows, np.int64)

    def forget(self, subject: str) -> None:
        r = self._rows.pop(subject, None)
        if r is not None:
            o = r * self._width
            self._stats[o : o + self._width] = array("d", bytes(8 * self._width))
            self._free.append(r)

    # -- many subjects at once (a closed window's) ------------------------------------

    def _view(self) -> np.ndarray:
        """Every row as a NumPy view: hold it only within a call, the array cannot grow meanwhile."""
        return np.frombuffer(self._stats, dtype=np.float64).reshape(-1, self._width)

    def rows(self, subjects: Sequence[str]) -> np.ndarray:
        """Each subject's row, -1 for those without a baseline."""
        get = self._rows.get
        return np.fromiter((get(s, -1) for s in subjects), np.int64, len(subjects))

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        """A copy of ``rows`` (-1: a row of zeros)."""
        view = self._view()
        if not len(view):
            return np.zeros((len(rows), self._width))
        return np.where((rows >= 0)[:, None], view[rows], 0.0)

    def histories(self, rows: np.ndarray) -> np.ndarray:
        """:meth:`history` of each of ``rows``."""
        view = self._view()
        if not len(view):
            return np.zeros(len(rows))
        return np.where(rows >= 0, view[rows, 0], 0.0)

    def deviations(
        self, rows: np.ndarray, name: str, X: Columns, shift: np.ndarray | float = 0.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`deviation` of each of ``rows``: the compared value, mean, z, and own-baseline flag."""
        return self._deviations(self._gather(rows), rows, self._index[name], X, shift)

    def rises(self, rows: np.ndarray, X: Columns, shift: np.ndarray | float, z: float) -> np.ndarray:
        """Where any feature is ``z`` or more spreads above its baseline (the z of :meth:`deviations`)."""
        stats = self._gather(rows)  # once for every feature
        out = np.zeros(len(rows), dtype=bool)
        for i in range(len(self.features)):
            out |= self._deviations(stats, rows, i, X, shift)[2] >= z
        return out

    def _deviations(
        self, stats: np.ndarray, rows: np.ndarray, i: int, X: Columns, shift: np.ndarray | float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        f = self.features[i]
        n = len(rows)
        own = (rows >= 0) & (stats[:, 0] >= self.min_history)
        if f.peers and self._peers[0] >= self.min_history:
            p_mean, p_sq = self._peers[1 + 2 * i], self._peers[2 + 2 * i]
            fallback_mean = p_mean
            fallback_spread = max(math.sqrt(max(p_sq - p_mean * p_mean, 0.0)), f.floor)
        else:
            fallback_mean = _compare(f, f.prior, 0.0, f.prior) if not f.of else f.prior
            fallback_spread = f.floor
        mean = np.where(own, stats[:, 1 + 2 * i], fallback_mean)
        spread = np.where(
            own,
            np.maximum(np.sqrt(np.maximum(stats[:, 2 + 2 * i] - mean * mean, 0.0)), f.floor),
            fallback_spread,
        )
        observed = column(X, f.name, n)
        if f.of:
            count = column(X, f.of, n)
            value = (observed * count + PSEUDO_REQUESTS * mean) / (count + PSEUDO_REQUESTS)
        elif f.log:
            value = log1p(np.maximum(observed, 0.0))
        else:
            value = observed
        if f.volume and f.log:
            value = np.where(shift > 0, np.maximum(value - shift, 0.0), value)
        return value, mean, (value - mean) / spread, own

    def learn_many(self, subjects: Sequence[str], X: Columns, mask: np.ndarray) -> None:
        """:meth:`learn` of every subject where ``mask`` holds, in order.

        Every feature at once, as a column of a matrix: each value goes through the same
        arithmetic as in :meth:`learn`, in far fewer NumPy calls.
        """
        picked = np.flatnonzero(mask)
        if not len(picked):
            return
        rows = self._rows_for([subjects[k] for k in picked.tolist()])
        view = self._view()
        stats = view[rows]
        first = (stats[:, 0] == 0)[:, None]
        features, n = self.features, len(mask)
        raw = np.column_stack([column(X, f.name, n) for f in features])[picked]
        mean, mean_sq = stats[:, 1::2], stats[:, 2::2]  # a column per feature
        value = raw.copy()
        shares = [i for i, f in enumerate(features) if f.of]
        if shares:
            counts = np.column_stack([column(X, features[i].of, n) for i in shares])[picked]
            hits = raw[:, shares]
            value[:, shares] = (hits * counts + PSEUDO_REQUESTS * np.where(first, hits, mean[:, shares])) / (
                counts + PSEUDO_REQUESTS
            )
        logs = [i for i, f in enumerate(features) if f.log and not f.of]
        if logs:
            value[:, logs] = log1p(np.maximum(raw[:, logs], 0.0))
        a = self.fading_factor
        stats[:, 1::2] = np.where(first, value, mean + a * (value - mean))
        stats[:, 2::2] = np.where(first, value * value, mean_sq + a * (value * value - mean_sq))
        stats[:, 0] += 1
        view[rows] = stats
        del view
        if self._pooled:  # the peers' EW statistics depend on the order: one subject after the other
            of = dict(zip(shares, counts.T.tolist(), strict=True)) if shares else {}
            columns = [(i, raw[:, i].tolist(), of.get(i)) for i in self._pooled]
            values, cnt = [0.0] * len(features), [0.0] * len(features)
            for k in range(len(picked)):
                for i, raws, ns in columns:
                    values[i] = raws[k]
                    cnt[i] = ns[k] if ns is not None else 0.0
                self._update(self._peers, 0, values, cnt, self._pooled)


Columns = dict[str, np.ndarray]  # a window's features, one array per feature, one entry per subject


def column(X: Columns, name: str, n: int) -> np.ndarray:
    """Feature ``name`` of every subject; zeros where it is missing (as ``x.get(name, 0.0)``)."""
    values = X.get(name)
    return values if values is not None else np.zeros(n)


_LOG1P_COUNTS = np.array([math.log1p(i) for i in range(4096)])  # math.log1p of the small counts
_LOG1P_MIN_LOOKUP = 16  # values from which a table lookup beats one math.log1p each


def log1p(values: np.ndarray) -> np.ndarray:
    """``math.log1p`` of each value: NumPy's is 1 ulp off at times, and both paths must agree exactly.

    Most values are small counts: those are looked up in a table of ``math.log1p``'s (-0.0 is
    not: its log1p keeps the sign).
    """
    flat = values.ravel()
    if len(flat) >= _LOG1P_MIN_LOOKUP and flat.min() >= 0 and flat.max() < len(_LOG1P_COUNTS):
        counts = flat.astype(np.int64)
        if (counts == flat).all() and not np.signbit(flat).any():
            return _LOG1P_COUNTS[counts].reshape(values.shape)
    return np.fromiter(map(math.log1p, flat.tolist()), np.float64, len(flat)).reshape(values.shape)


def row(X: Columns, k: int) -> dict[str, float]:
    """Subject ``k``'s features as the dict ``*_one`` methods take."""
    return {name: float(values[k]) for name, values in X.items()}
