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
from functools import partial
from itertools import repeat
from operator import is_not
from typing import NamedTuple

import numpy as np

PSEUDO_REQUESTS = 10.0
_NOT_NONE = partial(is_not, None)


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


class SubjectRows:
    """Which row of the statistics arrays holds each subject: one index for several :class:`Baselines`.

    A shard's family baselines and its detectors' keep a subject in the same row of their
    arrays, so a closed window's subjects are looked up once for all of them (:meth:`lookup`
    remembers its answer for the last tuple of subjects it was given, until a subject is
    forgotten) and a forgotten subject's row is freed once, in every member at once. Every
    member's array has every row handed out: zeros (no history) until it learns the subject.
    """

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}  # subject -> row
        self.free: list[int] = []  # rows of forgotten subjects, reused
        self.size = 0  # rows handed out, free ones included
        self.members: list[Baselines] = []
        self._memo: tuple[tuple[str, ...], np.ndarray] | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_memo": None}

    def join(self, member: Baselines) -> None:
        """Keep ``member``'s statistics in these rows (its array grows to hold them all)."""
        member._stats.frombytes(bytes(8 * member._width * (self.size - len(member._stats) // member._width)))
        self.members.append(member)

    def lookup(self, subjects: Sequence[str]) -> np.ndarray:
        """Each subject's row, -1 for those without one."""
        memo = self._memo
        if memo is not None and memo[0] is subjects:  # a tuple: it cannot have changed since
            return memo[1].copy()
        rows = np.fromiter(map(self.rows.get, subjects, repeat(-1)), np.int64, len(subjects))
        if type(subjects) is tuple:
            self._memo = (subjects, rows)
        return rows.copy()

    def row(self, subject: str) -> int:
        """The subject's row, handing it one if it has none."""
        r = self.rows.get(subject)
        if r is None:
            r = self.rows[subject] = self._take(1)[0]
            self._memo = None
        return r

    def allocate(self, subjects: Sequence[str], picked: np.ndarray) -> np.ndarray:
        """The rows of ``subjects[picked]``, handing one to those without (as :meth:`row` one by one).

        A window of one-off subjects (mobile client IPs) has thousands of new ones: the
        arrays grow once, not once a subject.
        """
        out = self.lookup(subjects)[picked]
        new = np.flatnonzero(out < 0)
        if len(new):
            taken = self._take(len(new))
            self.rows.update(zip(map(subjects.__getitem__, picked[new].tolist()), taken, strict=True))
            out[new] = taken
            memo = self._memo
            if memo is not None and memo[0] is subjects:
                memo[1][picked[new]] = taken
        return out

    def _take(self, n: int) -> list[int]:
        free = self.free
        reused = [free.pop() for _ in range(min(len(free), n))]
        grown = n - len(reused)
        if grown:
            for m in self.members:
                m._stats.frombytes(bytes(8 * m._width * grown))
            self.size += grown
        return [*reused, *range(self.size - grown, self.size)]

    def forget_many(self, subjects: Iterable[str]) -> None:
        """Drop the subjects from every member (in order: their rows are reused last first)."""
        rows = list(filter(_NOT_NONE, map(self.rows.pop, subjects, repeat(None))))
        if rows:
            for m in self.members:
                m._view()[rows] = 0.0
            self.free += rows
            self._memo = None

    @classmethod
    def unite(cls, members: Sequence[Baselines]) -> SubjectRows:
        """One index for baselines that each kept their own (a recovery snapshot of an earlier version)."""
        shared = cls()
        for m in members:
            for subject in m.index.rows:
                shared.rows.setdefault(subject, len(shared.rows))
        shared.size = len(shared.rows)
        for m in members:
            own = m.index.rows
            stats = np.zeros((shared.size, m._width))
            if own:
                at = np.fromiter(own.values(), np.int64, len(own))
                to = np.fromiter(map(shared.rows.__getitem__, own), np.int64, len(own))
                stats[to] = m._view()[at]
            m._stats = array("d", stats.tobytes())
            m.index = shared
            shared.members.append(m)
        return shared


class Baselines:
    """EW mean and variance of ``features`` per subject, and pooled over all subjects.

    Every subject's statistics are one row of a flat ``array('d')``: scalar reads stay
    Python floats, and the ``*_many`` methods see all rows at once as a NumPy view
    (a closed window's subjects are scored and learned together). Which row is a
    subject's is kept by a :class:`SubjectRows`: its own, or one it shares (:meth:`share`).

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
        self.index = SubjectRows()
        self.index.join(self)
        self._peers = array("d", bytes(8 * self._width))
        # the peers' statistics, kept only for the features that use them
        self._pooled = tuple(i for i, f in enumerate(features) if f.peers)

    def share(self, index: SubjectRows) -> None:
        """Keep the subjects in the rows of ``index``, with its other members (before learning any)."""
        if self.index.rows:
            msg = "share an index before learning any subject"
            raise ValueError(msg)
        self._stats = array("d")
        self.index = index
        index.join(self)

    def __setstate__(self, state: dict) -> None:
        # a recovery snapshot from before one array held every subject: an array per subject
        subjects = state.pop("_subjects", None)
        if subjects is not None:
            state["_width"] = 1 + 2 * len(state["features"])
            state["_rows"] = {subject: r for r, subject in enumerate(subjects)}
            state["_stats"] = array("d", b"".join(stats.tobytes() for stats in subjects.values()))
            state["_free"] = []
            state["_pooled"] = tuple(i for i, f in enumerate(state["features"]) if f.peers)
        # and from before the rows were kept by a SubjectRows (a shard then unites them)
        rows = state.pop("_rows", None)
        if rows is not None:
            index = state["index"] = SubjectRows()
            index.rows, index.free = rows, state.pop("_free")
            index.size = len(state["_stats"]) // state["_width"]
            index.members.append(self)
        self.__dict__.update(state)

    def history(self, subject: str) -> int:
        """Windows learned for ``subject``."""
        r = self.index.rows.get(subject)
        return int(self._stats[r * self._width]) if r is not None else 0

    def subjects(self) -> int:
        """Number of subjects with a baseline."""
        return int(np.count_nonzero(self._view()[:, 0]))

    def deviation(self, subject: str, name: str, x: dict[str, float], shift: float = 0.0) -> Deviation:
        """Compare feature ``name`` of window ``x`` with the subject's baseline.

        ``shift`` (log space) is a peer-wide volume change, taken out of
        ``volume`` features: in a flash crowd every consumer rises together.
        """
        i = self._index[name]
        f = self.features[i]
        r = self.index.rows.get(subject)
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
        self._update(self._stats, self.index.row(subject) * self._width, raw, ns, range(len(self.features)))
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

    # -- many subjects at once (a closed window's) ------------------------------------

    def _view(self) -> np.ndarray:
        """Every row as a NumPy view: hold it only within a call, the array cannot grow meanwhile."""
        return np.frombuffer(self._stats, dtype=np.float64).reshape(-1, self._width)

    def rows(self, subjects: Sequence[str]) -> np.ndarray:
        """Each subject's row, -1 for those without one (:meth:`SubjectRows.lookup`)."""
        return self.index.lookup(subjects)

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
        rows = self.index.allocate(subjects, picked)
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
            peers, seen = self._peers, self._peers[0]
            for i in self._pooled:  # each feature on its own: _update's arithmetic, in locals
                f, j = features[i], 1 + 2 * i
                mean, mean_sq, first = peers[j], peers[j + 1], seen == 0
                ns = of.get(i)
                for k, x in enumerate(raw[:, i].tolist()):
                    v = x
                    if f.of:
                        v = (x * ns[k] + PSEUDO_REQUESTS * (x if first else mean)) / (ns[k] + PSEUDO_REQUESTS)
                    elif f.log:
                        v = math.log1p(x) if x > 0 else 0.0
                    if first:
                        mean, mean_sq, first = v, v * v, False
                    else:
                        mean += a * (v - mean)
                        mean_sq += a * (v * v - mean_sq)
                peers[j], peers[j + 1] = mean, mean_sq
            peers[0] = seen + len(picked)


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
