"""Per-subject online baselines: how far is this window from the subject's normal?

Each subject keeps an exponentially weighted mean and variance of a few
window features. The update rule is River's ``stats.EWMean`` / ``stats.EWVar``
(``mean += a * (x - mean)``; variance as ``EW(x^2) - EW(x)^2``; the first value
seeds the mean). It is written out over a flat ``array('d')`` because one
pair of River objects per feature and subject costs about 2.7 KiB against
about 250 B for a list of floats (notes/PERFORMANCE.md §4) and 8 B a value
here; a test checks the two agree.

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
from typing import NamedTuple

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
        # per subject: [windows seen, mean_0, mean_sq_0, mean_1, mean_sq_1, ...] in compared space
        self._subjects: dict[str, array] = {}
        self._peers = self._zeros()
        self._pooled = any(
            f.peers for f in features
        )  # keep the peers' statistics only if a feature uses them

    def _zeros(self) -> array:
        return array("d", bytes(8 * (1 + 2 * len(self.features))))

    def history(self, subject: str) -> int:
        """Windows learned for ``subject``."""
        own = self._subjects.get(subject)
        return int(own[0]) if own is not None else 0

    def subjects(self) -> int:
        """Number of subjects with a baseline."""
        return len(self._subjects)

    def deviation(self, subject: str, name: str, x: dict[str, float], shift: float = 0.0) -> Deviation:
        """Compare feature ``name`` of window ``x`` with the subject's baseline.

        ``shift`` (log space) is a peer-wide volume change, taken out of
        ``volume`` features: in a flash crowd every consumer rises together.
        """
        i = self._index[name]
        f = self.features[i]
        own = self._subjects.get(subject)
        if own is not None and own[0] >= self.min_history:
            stats, source = own, "own"
        elif f.peers and self._peers[0] >= self.min_history:
            stats, source = self._peers, "peers"
        else:
            stats, source = None, "prior"
        if stats is None:
            mean = _compare(f, f.prior, 0.0, f.prior) if not f.of else f.prior
            spread = f.floor
        else:
            mean, mean_sq = stats[1 + 2 * i], stats[2 + 2 * i]
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
        own = self._subjects.get(subject)
        if own is None:
            own = self._subjects[subject] = self._zeros()
        a = self.fading_factor
        get = x.get
        raw = [float(get(f.name, 0.0)) for f in self.features]
        for stats in (own, self._peers) if self._pooled else (own,):
            first = stats[0] == 0
            for i, f in enumerate(self.features):
                j = 1 + 2 * i
                v = raw[i]
                if f.of:
                    n = float(get(f.of, 0.0))
                    v = (v * n + PSEUDO_REQUESTS * (v if first else stats[j])) / (n + PSEUDO_REQUESTS)
                elif f.log:
                    v = math.log1p(v) if v > 0 else 0.0
                if first:
                    stats[j], stats[j + 1] = v, v * v
                else:
                    stats[j] += a * (v - stats[j])
                    stats[j + 1] += a * (v * v - stats[j + 1])
            stats[0] += 1

    def forget(self, subject: str) -> None:
        self._subjects.pop(subject, None)
