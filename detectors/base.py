"""The detector contract, and the parts every detector shares.

Detectors follow River's conventions with one addition: a subject.
``score_one(subject, x)`` comes *before* ``learn_one(subject, x)``
(prequential order), where ``x`` holds a window's features (see
``flows/features.py``). The pipeline uses the mini-batch forms: for every
closed window, ``score_many`` over all its subjects (a NumPy column per
feature), then ``learn_many``, so each subject is compared with the
baselines as they stood before the window.
A detector protects its baselines itself: it does not learn from a window
that scores at least ``protect_score``, or rises ``z_onset`` spreads above
the subject's established normal, so an attack does not become the subject's
new normal. Scores are
calibrated to [0, 1]: 0 is normal, 0.5 is the documented threshold of each
signal (a finding by default), and the score nears 1 as the evidence grows.
Detectors are plain picklable objects: no I/O, no Bytewax, and any
randomness comes from the ``seed`` argument.

Each detector declares the subject types it runs on (``subject_types``);
the pipeline keeps one instance per shard and subject type. A detector with
``warm_up = True`` scores 0 until it has a baseline to compare with; the
others also fire on a subject they have never seen, from absolute, documented
thresholds (CrowdSec-like rules inside one window).
"""

from __future__ import annotations

import functools
import inspect
import ipaddress
import math
from collections.abc import Sequence
from typing import ClassVar, NamedTuple, Protocol

import msgspec
import numpy as np

from gatewatch.detectors.baselines import Baselines, Columns, Deviation, Feature, column, row


class Reason(msgspec.Struct, frozen=True):
    """One observed-versus-baseline fact behind a score."""

    feature: str
    observed: float
    baseline: float
    spread: float
    text: str  # human-readable, e.g. "auth failures 94% vs baseline 1%"


class Detector(Protocol):
    """What the pipeline needs from a detector."""

    name: ClassVar[str]
    kind: ClassVar[str]  # the finding kind it raises
    subject_types: ClassVar[tuple[str, ...]]  # of "consumer" | "ip" | "api"
    warm_up: ClassVar[bool]  # True: scores 0 until the subject (or its peers) has a baseline

    def score_one(self, subject: str, x: dict[str, float]) -> float:
        """Score one window of one subject in [0, 1] (0 = normal)."""
        ...

    def learn_one(self, subject: str, x: dict[str, float], score: float | None = None) -> None:
        """Update the subject's baseline with one window (unless it is anomalous).

        ``score`` is this detector's ``score_one(subject, x)`` when the caller has it
        already: scoring is the costly part, and prequential order scores first.
        """
        ...

    def explain_one(self, subject: str, x: dict[str, float]) -> list[Reason]:
        """Return the reasons behind the score, most important first."""
        ...

    def score_many(self, subjects: Sequence[str], X: Columns) -> np.ndarray:
        """``score_one`` of every subject of one closed window (``X``: a column per feature)."""
        ...

    def learn_many(self, subjects: Sequence[str], X: Columns, scores: np.ndarray, mask: np.ndarray) -> None:
        """``learn_one`` of every subject where ``mask`` holds, given ``score_many``'s scores.

        The subjects of a window are scored and learned together: each is compared with
        the baselines as they stood before the window, whatever their order.
        """
        ...

    def forget_many(self, subjects: Sequence[str]) -> None:
        """Drop the subjects' state (eviction of idle subjects: often thousands at once)."""
        ...

    @classmethod
    def _unit_test_params(cls) -> dict:
        """Constructor arguments for the shared contract test (River's convention)."""
        ...


def over(value: float, threshold: float, power: float = 2.0) -> float:
    """Map a quantity to a score: 0 below ``threshold``, 0.5 at it, towards 1 beyond.

    >>> over(4, 5), over(5, 5), round(over(10, 5), 3)
    (0.0, 0.5, 0.875)
    """
    if threshold <= 0 or value < threshold:
        return 0.0
    return 1.0 - 0.5 * (threshold / value) ** power


def ramp(value: float, lo: float, hi: float) -> float:
    """0 at or below ``lo``, 1 at or above ``hi``, linear between."""
    if value <= lo:
        return 0.0
    if value >= hi:
        return 1.0
    return (value - lo) / (hi - lo)


def fmt(value: float, unit: str) -> str:
    """Format a feature value for a reason text.

    >>> fmt(0.94, "ratio"), fmt(1234, "count"), fmt(2.5, "count"), fmt(2_100_000, "bytes"), fmt(2900, "ms")
    ('94%', '1,234', '2.5', '2.1 MB', '2,900 ms')
    """
    if unit == "ratio":
        return f"{value * 100:.0f}%"
    if unit == "bytes":
        for size, suffix in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
            if value >= size:
                return f"{value / size:.1f} {suffix}"
        return f"{value:.0f} B"
    if unit == "ms":
        return f"{value:,.0f} ms"
    if unit == "score":
        return f"{value:.2f}"
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}".rstrip("0").rstrip(".")


def horizon_text(seconds: int) -> str:
    """A horizon's length as a reason names it.

    >>> horizon_text(600), horizon_text(3600), horizon_text(5400)
    ('10 min', '1 h', '90 min')
    """
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min"


class Signal(NamedTuple):
    """One piece of evidence: its score, and what its reason text is built from (only when asked)."""

    score: float
    deviation: Deviation | None  # None only with score 0 (a fast path skipped the comparison)
    label: str = ""  # overrides the feature's label


class BaselineDetector:
    """Shared machinery: per-subject baselines, protection, reasons, ``repr``.

    Subclasses set ``FEATURES`` (what they keep baselines of) and implement
    :meth:`_signals`; the score is the strongest signal.

    Args:
        fading_factor: weight of the newest window in the EW baselines.
        min_history: windows a subject needs before its own baseline is used.
        protect_score: a window scoring at least this against the subject's
            own baseline is not learned.
        z_onset: spreads above its baseline at which a subject's own normal
            lifts a threshold (or, for baseline-only signals, scores 0.5).
        seed: seeds any randomness (most detectors are deterministic).
        horizon_s: 0 to judge one window; else the length of the sliding horizon
            (several windows, see ``flows/horizons.py``) whose features it is given,
            named in its reasons ("auth failures 31 in 10 min vs baseline 0").
    """

    name: ClassVar[str]
    kind: ClassVar[str]
    subject_types: ClassVar[tuple[str, ...]]
    warm_up: ClassVar[bool] = False
    FEATURES: ClassVar[tuple[Feature, ...]]

    def __init__(
        self,
        fading_factor: float = 0.1,
        min_history: int = 10,
        protect_score: float = 0.5,
        z_onset: float = 3.0,
        seed: int = 0,
        horizon_s: int = 0,
    ) -> None:
        if not 0 < fading_factor <= 1:
            msg = f"fading_factor must be in (0, 1], got {fading_factor}"
            raise ValueError(msg)
        self.fading_factor = fading_factor
        self.min_history = min_history
        self.protect_score = protect_score
        self.z_onset = z_onset
        self.seed = seed
        self.horizon_s = horizon_s
        self.baselines = Baselines(self.FEATURES, fading_factor, min_history)

    @classmethod
    def _unit_test_params(cls) -> dict:
        # a short history, so the contract test reaches the subject's own baseline quickly
        return {"min_history": 3}

    def __repr__(self) -> str:
        params = ", ".join(
            f"{p}={getattr(self, p)!r}"
            for p in inspect.signature(type(self).__init__).parameters
            if p != "self"
        )
        return f"{type(self).__name__}({params})"

    def _signals(self, subject: str, x: dict[str, float]) -> list[Signal]:
        raise NotImplementedError

    def score_one(self, subject: str, x: dict[str, float]) -> float:
        return max((s.score for s in self._signals(subject, x)), default=0.0)

    def explain_one(self, subject: str, x: dict[str, float]) -> list[Reason]:
        signals = sorted((s for s in self._signals(subject, x) if s.score > 0), key=lambda s: -s.score)
        return [self._reason(s.deviation, s.label) for s in signals]

    def learn_one(self, subject: str, x: dict[str, float], score: float | None = None) -> None:
        if self.baselines.history(subject) >= self.min_history and self._protected(subject, x, score):
            return
        self.baselines.learn(subject, x)

    # -- a closed window's subjects at once (River's ``*_many``, over NumPy columns) ----------

    def _quiet(self, X: Columns, n: int) -> np.ndarray:
        """Where the score is 0 whatever the baselines: features below every onset.

        Each detector that can tell overrides it; the shared contract test checks that
        every window it clears scores 0 with :meth:`score_one`.
        """
        return np.zeros(n, dtype=bool)

    def score_many(self, subjects: Sequence[str], X: Columns) -> np.ndarray:
        """:meth:`score_one` of every subject; the windows :meth:`_quiet` clears are not compared."""
        n = len(subjects)
        scores = np.zeros(n)
        for k in np.flatnonzero(~self._quiet(X, n)):
            scores[k] = self.score_one(subjects[k], row(X, k))
        return scores

    def learn_many(self, subjects: Sequence[str], X: Columns, scores: np.ndarray, mask: np.ndarray) -> None:
        """:meth:`learn_one` of every subject where ``mask`` holds, each with its score.

        Only the subjects to learn that have a baseline of their own and a low score are
        compared with it: the others' deviations decide nothing, and most windows have few.
        """
        picked = np.flatnonzero(mask)
        if not len(picked):
            return
        rows = self.baselines.rows(subjects)[picked]
        established = self.baselines.histories(rows) >= self.min_history
        low = scores[picked] < self.protect_score
        protected = established & ~low
        check = np.flatnonzero(established & low)
        if len(check):
            at = picked[check]
            needed = {"peer_shift", *(f.name for f in self.FEATURES), *(f.of for f in self.FEATURES if f.of)}
            sub = {name: X[name][at] for name in needed if name in X}
            shift = column(sub, "peer_shift", len(at))
            protected[check] = self.baselines.rises(rows[check], sub, shift, self.z_onset)
        learn = np.array(mask, dtype=bool)
        learn[picked[protected]] = False
        self.baselines.learn_many(subjects, X, learn)

    def _protected(self, subject: str, x: dict[str, float], score: float | None = None) -> bool:
        """Tell whether a window must stay out of the subject's baseline.

        Not only windows that score: an episode often starts mid-window, and a
        first window that rises ``z_onset`` spreads without reaching a
        threshold would otherwise lift the baseline the next windows are judged by.
        """
        shift = x.get("peer_shift", 0.0)
        if any(self.baselines.deviation(subject, f.name, x, shift).z >= self.z_onset for f in self.FEATURES):
            return True
        return (self.score_one(subject, x) if score is None else score) >= self.protect_score

    def forget_many(self, subjects: Sequence[str]) -> None:
        self.baselines.index.forget_many(subjects)

    # -- helpers for subclasses -------------------------------------------------

    def _reason(self, d: Deviation, label: str = "") -> Reason:
        f = d.feature
        over_horizon = f" in {horizon_text(self.horizon_s)}" if self.horizon_s else ""
        text = f"{label or f.label} {fmt(d.observed, f.unit)}{over_horizon} vs baseline {fmt(d.baseline, f.unit)}"
        return Reason(f.name, d.observed, d.baseline, d.spread, text)

    def _count(
        self, subject: str, x: dict[str, float], name: str, onset: float, shift: float = 0.0
    ) -> Signal:
        """An absolute count threshold, lifted to the subject's own upper normal when it has one."""
        if x.get(name, 0.0) < onset:  # thresholds only rise from the onset: no comparison needed
            return Signal(0.0, None)
        d = self.baselines.deviation(subject, name, x, shift)
        threshold = max(onset, d.upper(self.z_onset)) if d.source == "own" else onset
        return Signal(over(d.adjusted, threshold), d)

    def _rise(
        self, subject: str, x: dict[str, float], name: str, shift: float = 0.0, *, peers: bool = True
    ) -> Signal:
        """A baseline-only signal: 0.5 at ``z_onset`` spreads above the baseline."""
        d = self.baselines.deviation(subject, name, x, shift)
        if d.source == "prior" or (d.source == "peers" and not peers):
            return Signal(0.0, d)
        return Signal(over(d.z, self.z_onset), d)


def subnet(ip: str) -> str:
    """The /24 of an IPv4 address, the /64 of an IPv6 one (an IPv4-mapped one is IPv4).

    >>> subnet("203.0.113.57"), subnet("2001:db8:1:2:3::1"), subnet("2001:db8::7")
    ('203.0.113', '2001:db8:1:2::/64', '2001:db8::/64')
    >>> subnet("::ffff:198.51.100.7"), subnet("not-an-ip:x")
    ('198.51.100', 'not-an-ip:x')
    """
    if ":" in ip:
        return _subnet6(ip)
    return ip.rpartition(".")[0]


@functools.lru_cache(maxsize=65_536)
def _subnet6(ip: str) -> str:
    # parsed, not sliced: "2001:db8::7" and "2001:db8:0:0::9" share a /64
    try:
        addr = ipaddress.IPv6Address(ip)
    except ValueError:
        return ip
    if addr.ipv4_mapped is not None:
        return subnet(str(addr.ipv4_mapped))
    return str(ipaddress.IPv6Network((int(addr) >> 64 << 64, 64)))


def log1p_shift(value: float, shift: float) -> float:
    """``value`` scaled down by ``exp(shift)`` in log1p space (a peer-wide volume shift)."""
    return math.expm1(max(math.log1p(max(value, 0.0)) - shift, 0.0))
