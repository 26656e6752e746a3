"""One shard's work, in plain Python: window, detect.

The dataflow routes every event to three shards, one per subject family
(consumer, client IP, API endpoint; crc32 of the subject picks the shard
within the family), and feeds each shard whole batches of the cells the
router counted from them (``WindowTable.collect``). A shard
keeps its family's open windows, the detectors' baselines, and turns every
closed window into store rows: ``traffic`` (consumer shards only, one row per
window × API × consumer, so ``SUM(traffic.requests)`` counts every event once),
``findings`` when a detector fires, and ``subject_windows`` (each consumer and
endpoint, and each flagged IP: the main features beside their baseline).
Each closed window also extends the subjects' trails and judges their longer
horizons (10 minutes, an hour: ``flows/horizons.py``).
It is pickled whole for Bytewax recovery snapshots.

Memory is bounded per shard, whatever the traffic: subjects idle for
``forget_idle_s`` (IPs: ``forget_idle_ip_s``) lose their state; past
``max_tracked_ips`` (consumers, endpoints: ``max_tracked_subjects``) the
subjects seen in one window only lose it first, then the least recently seen
(``last_seen`` is kept in recency order); past ``max_ips_per_window`` IPs
(``max_consumers_per_window`` consumers, ``max_endpoints_per_window`` endpoints)
new to a window are counted together (:meth:`~gatewatch.flows.features.WindowTable._adopt`;
consumers in ``traffic`` rows for the consumer ``~overflow``, not scored). When a cap
bites, the window gets a ``subject_windows`` row for the subject
``(untracked)`` that says by how much. Policy does not live
here: findings go to the control plane (flows/control/controller.py), which sees
every shard's findings and so can apply global limits such as the blast
radius.
"""

from __future__ import annotations

import json
import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from itertools import islice
from operator import itemgetter
from typing import ClassVar, NamedTuple

import numpy as np
from msgspec.structs import astuple

from gatewatch.detectors import DETECTORS
from gatewatch.detectors.baselines import Baselines, Columns, Feature, SubjectRows
from gatewatch.flows.config import HORIZONS, Config
from gatewatch.flows.events import Event, Finding, stable_id
from gatewatch.flows.features import (
    OVERFLOW,
    OVERFLOW_CONSUMER,
    ApiAcc,
    ApiWindows,
    ClosedWindow,
    ConsumerWindow,
    ConsumerWindows,
    IpAcc,
    IpWindows,
    OneEvent,
    Overflow,
    SeenMemory,
    WindowTable,
    api_features,
    cell_of,
    consumer_windows,
    endpoint_name,
    example_ips,
    ip_feature_columns,
    ip_union,
    known_ips,
    pop_all,
)
from gatewatch.flows.horizons import SPECS, Trails
from gatewatch.flows.watermark import InputClock

Output = tuple[str, list[tuple]]  # (table, rows in the table's column order)

FAMILIES = ("consumer", "ip", "api")
_SHARED = ("fading_factor", "min_history", "protect_score")
# what a family remembers of every subject, for the peer-wide shift and the baseline band
_FAMILY_FEATURES = (
    Feature("requests", "requests", floor=0.4, volume=True),
    Feature("distinct_ips", "distinct client IPs", volume=True),
    Feature("auth_failure_ratio", "auth failures", "ratio", log=False, floor=0.05, peers=True, of="requests"),
)
_MIN_PEERS = 5  # subjects with history needed for a peer-wide shift
_EVICT_EVERY = 10  # windows between scans for idle subjects
_HOLD_S = 1.0  # wall seconds every input gets to deliver its first batch before windows close
UNTRACKED = "(untracked)"  # the subject of the row a window gets when a memory cap bites


def _columns(xs: list[dict[str, float]]) -> Columns:
    """Feature dicts (each with the same keys) as one NumPy column per feature."""
    keys = list(xs[0])
    values = itemgetter(*keys)
    matrix = np.array([values(x) for x in xs], dtype=np.float64).reshape(len(xs), len(keys))
    return {k: matrix[:, i] for i, k in enumerate(keys)}


def build_detectors(cfg: Config, family: str, horizon: str = "") -> list:
    """Instantiate every enabled detector that runs on ``family`` from its config section.

    With ``horizon`` (a key of ``HORIZONS``), those that declare thresholds for it, from
    the section's ``[detectors.<name>.<horizon>]``.
    """
    d = cfg.detectors
    out = []
    for name, cls in DETECTORS.items():
        section = getattr(d, name)
        if not section.enabled or family not in cls.subject_types:
            continue
        shared = {k: getattr(d, k) for k in _SHARED}
        if not horizon:
            out.append(cls(**shared, **section.model_dump(exclude={"enabled", *HORIZONS})))
            continue
        thresholds = getattr(section, horizon, None)
        if thresholds is not None and thresholds.enabled:
            params = thresholds.model_dump(exclude={"enabled"})
            out.append(cls(**shared, **params, horizon_s=HORIZONS[horizon]))
    return out


def _baselines_of(detectors: Iterable) -> list[Baselines]:
    """The baselines of the detectors that keep them."""
    return [det.baselines for det in detectors if isinstance(getattr(det, "baselines", None), Baselines)]


class _Horizon(NamedTuple):
    key: str  # of HORIZONS: the finding ids and config sections name it
    length_s: int
    detectors: list


def build_horizons(cfg: Config, family: str) -> list[_Horizon]:
    """The horizons ``family`` judges: those that are a whole number (2 or more) of windows."""
    window_s = cfg.pipeline.window_s
    out = []
    for key, length_s in HORIZONS.items():
        if length_s % window_s == 0 and length_s > window_s:
            detectors = build_detectors(cfg, family, key)
            if detectors:
                out.append(_Horizon(key, length_s, detectors))
    return out


class _Subject:
    """One subject's window: what detection needs and what a finding shows.

    ``x`` is the features as a dict: given, or read from the window's feature columns
    (:meth:`bind`) when first asked for, as only the flagged subjects' are.
    ``context`` builds the finding's context: only flagged subjects need one.
    """

    __slots__ = ("_at", "_x", "context", "extra", "name", "owner")

    def __init__(
        self, name: str, owner: str, x: dict[str, float] | None, context: Callable[[], dict], extra: object = None
    ) -> None:
        self.name, self.owner, self._x, self.context, self.extra = name, owner, x, context, extra
        self._at: tuple[Columns, int] | None = None

    def bind(self, X: Columns, k: int) -> None:
        """Read the features from row ``k`` of ``X`` from now on (every column, in its order)."""
        self._x, self._at = None, (X, k)

    @property
    def x(self) -> dict[str, float]:
        if self._x is None:
            X, k = self._at
            self._x = {name: float(values[k]) for name, values in X.items()}
        return self._x


class _Subjects(Mapping[str, _Subject]):
    """A closed window's subjects by name, each made when first asked for.

    ``units`` holds what each subject is made of (``make(name, unit)``): an IP window has
    thousands of one-off IPs, and only the flagged or trailed few need a :class:`_Subject`.
    Once :meth:`bind` gave the window's feature columns, every subject reads its features
    from them.
    """

    def __init__(self, units: dict[str, object], make: Callable[[str, object], _Subject]) -> None:
        self.units, self.make = units, make
        self._made: dict[str, _Subject] = {}
        self._columns: tuple[Columns, Sequence[str]] | None = None

    def __getitem__(self, name: str) -> _Subject:
        s = self._made.get(name)
        if s is None:
            s = self._made[name] = self.make(name, self.units[name])
            if self._columns is not None:
                X, names = self._columns
                s.bind(X, bisect_left(names, name))
        return s

    def __iter__(self) -> Iterator[str]:
        return iter(self.units)

    def __len__(self) -> int:
        return len(self.units)

    def bind(self, X: Columns, names: Sequence[str]) -> None:
        """Read the features from ``X``, whose rows are ``names`` (sorted)."""
        self._columns = (X, names)
        for name, s in self._made.items():
            s.bind(X, bisect_left(names, name))


def _given(name: str, s: _Subject) -> _Subject:
    return s


class ShardProcessor:
    """Windows and detectors of one shard of one subject family."""

    family: ClassVar[str]
    table_type: ClassVar[type[WindowTable]]
    all_rows: ClassVar[bool] = True  # a subject_windows row for every subject, not only flagged ones
    # a subject new among established peers is judged against them (a new key, a new endpoint);
    # not IPs: a new client IP at volume (a NAT, a backend) says little by itself
    judges_newcomers: ClassVar[bool] = True
    max_cells_key: ClassVar[str]  # the [pipeline] cap on the family's cells per window

    def __init__(self, cfg: Config) -> None:
        p, d = cfg.pipeline, cfg.detectors
        self.lateness_s = p.allowed_lateness_s
        self.idle_close_s = p.idle_close_s
        self.min_score = d.min_score
        self.protect_score = d.protect_score
        self.forget_idle_s = d.forget_idle_ip_s if self.family == "ip" else d.forget_idle_s
        self.max_tracked = d.max_tracked_ips if self.family == "ip" else d.max_tracked_subjects
        self.table = self.table_type(p.window_s, p.allowed_lateness_s)
        self.detectors = build_detectors(cfg, self.family)
        self.horizons = build_horizons(cfg, self.family)
        self.trails = (
            Trails(
                SPECS[self.family],
                max(h.length_s for h in self.horizons),
                min(getattr(d, "min_sequential_ids", math.inf) for h in self.horizons for d in h.detectors),
            )
            if self.horizons
            else None
        )
        self.baselines = Baselines(_FAMILY_FEATURES, d.fading_factor, d.min_history)
        # one row per subject in the family's baselines and every detector's: looked up once a window
        self.subject_rows = SubjectRows()
        for b in (self.baselines, *_baselines_of(self.detectors)):
            b.share(self.subject_rows)
        # the horizons' detectors learn only the subjects judged over a horizon: rows of their own
        self.horizon_rows = SubjectRows()
        for b in _baselines_of(self._horizon_detectors()):
            b.share(self.horizon_rows)
        # every subject the shard keeps state for: end of its latest window, least recent first
        self.last_seen: dict[str, float] = {}
        self.apply_caps(cfg)
        self.first_seen: dict[str, float] = {}  # start of each subject's first window (judges_newcomers)
        self.typical = 0.0  # the median requests baseline of the last window's subjects with history
        self._probation: dict[str, None] = {}  # those seen in one window only, oldest first
        self.evicted_over_cap = 0  # subjects dropped by max_tracked (not idle), since the start
        self.windows_closed = 0
        # per-input event-time progress (its wall times are not pickled: downtime is not quiet input)
        self.clock = InputClock(idle_s=p.idle_close_s, hold_s=_HOLD_S)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        # a recovery snapshot from before the baselines shared their rows
        if "subject_rows" not in state:
            self.subject_rows = SubjectRows.unite([self.baselines, *_baselines_of(self.detectors)])
        if "horizon_rows" not in state:
            self.horizon_rows = SubjectRows.unite(_baselines_of(self._horizon_detectors()))

    def _horizon_detectors(self) -> list:
        return [det for h in self.horizons for det in h.detectors]

    def apply_caps(self, cfg: Config) -> None:
        """Cap the family's cells per window (again on restore: a snapshot may predate the cap)."""
        self.table.max_cells = getattr(cfg.pipeline, self.max_cells_key)
        self.table.tracked = self.last_seen  # subjects with baselines always get a cell (one object: pickled once)

    def ingest(self, events: list[Event], source: str, source_ts: float) -> list[Output]:
        """Add a batch of events; ``source_ts`` is the newest event time input ``source`` has reached."""
        return self.take(self.table.collect(events, self.table.window_s), source, source_ts)

    def take(self, batch: object, source: str, source_ts: float) -> list[Output]:
        """:meth:`ingest` for a batch the router has already run through ``table_type.collect``."""
        now = time.time()
        self.table.take(batch)
        self.clock.advance(source, source_ts, now)
        return self._emit(self.table.close_until(self.clock.watermark(now) - self.lateness_s))

    def tick(self, wall_now: float) -> list[Output]:
        """Close windows when input has been quiet: event time follows the wall clock."""
        last = self.clock.last_advance()
        if last is None:
            return []
        quiet = wall_now - last
        if quiet < self.idle_close_s:
            return self._emit(self.table.close_until(self.clock.watermark(wall_now) - self.lateness_s))
        return self._emit(self.table.close_until(self.clock.newest() + quiet - self.lateness_s))

    def has_open_windows(self) -> bool:
        return bool(self.table.open)

    def flush(self) -> list[Output]:
        """Close every window (end of input or clean stop)."""
        return self._emit(self.table.close_all())

    # -- family hooks -------------------------------------------------------------

    def _subjects(self, w: ClosedWindow) -> _Subjects:
        raise NotImplementedError

    def _features(self, names: Sequence[str], subjects: _Subjects) -> Columns:
        """The features of the window's subjects (``names``, in order), one column each."""
        return _columns([subjects[name].x for name in names])  # every subject has the same features

    def _traffic(self, w: ClosedWindow) -> list[tuple]:
        return []

    def _learned(self, names: Sequence[str], subjects: _Subjects, learned: np.ndarray, w: ClosedWindow) -> None:
        """Called with the subjects (``names[learned]``) whose window was learned as their normal."""

    def _forget_many(self, subjects: list[str]) -> None:
        """Drop family state kept outside the detectors."""

    def _trail_sets(self, s: _Subject) -> dict[str, Iterable[str]]:
        """The distinct values of a subject's window its horizons count (``HorizonSpec.sets``)."""
        raise NotImplementedError

    # -----------------------------------------------------------------------------

    def _emit(self, windows: Iterable[ClosedWindow]) -> list[Output]:
        out: dict[str, list[tuple]] = {"traffic": [], "findings": [], "subject_windows": []}
        for w in windows:
            over = w.cells.pop(OVERFLOW, None)  # a late window's is dropped: its rows are not scored
            out["traffic"].extend(self._traffic(w))
            if w.late:  # late rows were after the fact: counted, not scored
                continue
            self._detect(w, self._subjects(w), out)
            if self.trails is not None:
                self.trails.expire(w.end)
            evicted = self._cap_tracked()
            if over is not None or evicted:
                out["subject_windows"].append(self._capacity_row(w, over, evicted))
            self.windows_closed += 1
            if self.windows_closed % _EVICT_EVERY == 0:
                self._evict(w.end)
        return [(table, rows) for table, rows in out.items() if rows]

    def _peers(self, subjects: Sequence[str], X: Columns) -> tuple[float, float]:
        """The subjects with history: their median rise of requests (log space), and their median baseline.

        Both are 0 below ``_MIN_PEERS`` such subjects.
        """
        value, mean, _, own = self.baselines.deviations(self.baselines.rows(subjects), "requests", X)
        if np.count_nonzero(own) < _MIN_PEERS:
            return 0.0, 0.0
        return max(float(np.median((value - mean)[own])), 0.0), float(np.expm1(np.median(mean[own])))

    def _detect(self, w: ClosedWindow, subjects: _Subjects, out: dict[str, list[tuple]]) -> None:
        """Score every subject of the window, then learn those that scored low (River's ``*_many``).

        Each subject is compared with the baselines as they stood before the window, so
        the order of the subjects changes nothing.
        """
        names = tuple(sorted(subjects))  # a tuple: the family's SubjectRows looks it up once for all
        n = len(names)
        if not n:
            return
        X = self._features(names, subjects)
        shift, typical = self._peers(names, X)
        self.typical = typical
        last_seen, probation = self.last_seen, self._probation
        if self.judges_newcomers:
            window_s = self.table.window_s
            ages = [(w.end - self.first_seen.setdefault(name, w.start)) / window_s for name in names]
            X["age_windows"] = np.array(ages)
            X["peer_requests"] = np.full(n, typical)
        X["peer_shift"] = np.full(n, shift)
        subjects.bind(X, names)
        for name in names:
            if last_seen.pop(name, None) is None:  # re-inserted: last_seen stays in recency order
                probation[name] = None
            else:
                probation.pop(name, None)
            last_seen[name] = w.end
        scores = np.zeros((n, len(self.detectors)))
        for j, det in enumerate(self.detectors):
            scores[:, j] = det.score_many(names, X)
        top = scores.max(axis=1, initial=0.0)
        now = time.time()
        for k in range(n) if self.all_rows else np.flatnonzero(top >= self.min_score):
            name, s = names[k], subjects[names[k]]
            for j, det in enumerate(self.detectors):
                if scores[k, j] >= self.min_score:
                    out["findings"].append(
                        self._finding(det, name, s, float(scores[k, j]), w.start, w.end, now)
                    )
            if self.all_rows or top[k] >= self.min_score:
                out["subject_windows"].append(self._subject_row(name, s, float(top[k]), w))
        learn = top < self.protect_score
        if self.trails is not None:
            fired = {
                (names[k], det.name)
                for j, det in enumerate(self.detectors)
                for k in np.flatnonzero(scores[:, j] >= self.min_score)
            }
            rowed = top >= self.min_score
            self._judge_horizons(w, names, subjects, X, learn, rowed, shift, fired, out, now)
        for j, det in enumerate(self.detectors):
            det.learn_many(names, X, scores[:, j], learn)
        self.baselines.learn_many(names, X, learn)
        self._learned(names, subjects, learn, w)

    def _judge_horizons(
        self,
        w: ClosedWindow,
        names: Sequence[str],
        subjects: _Subjects,
        X: Columns,
        learn: np.ndarray,
        rowed: np.ndarray,
        shift: float,
        fired: set[tuple[str, str]],
        out: dict[str, list[tuple]],
        now: float,
    ) -> None:
        """Score the trailed subjects of the window over every horizon, shortest first.

        A detector that fired on a subject at a shorter scale in this window gives no
        finding at a longer one: the same behaviour, told once. A horizon gives a finding
        only in the window that takes it over the threshold: it stays over it for as long as
        the behaviour lasts and a while after (the windows drain out of it), and telling
        that again every window would be noise. A horizon is learned only
        when the subject was trailed for all of it (a partial sum is not its normal), and
        only when the window itself was learned. A horizon whose upper bounds
        (:meth:`~gatewatch.flows.horizons.Trails.bound`) every detector clears is neither scored nor
        learned: most are. A subject flagged only over a horizon gets the window's
        ``subject_windows`` row all the same (IPs have rows only when flagged).
        """
        trails = self.trails
        starting = trails.starting(X)
        # most subjects neither have a trail nor start one: nothing to record
        recorded = [k for k, name in enumerate(names) if starting[k] or name in trails]
        if not recorded:
            return
        trailed = []  # the subjects whose horizons this window is to judge
        for k, values in zip(recorded, trails.window_values(X, recorded), strict=True):
            name = names[k]
            if trails.record(w.start, name, values, self._trail_sets(subjects[name]), starting[k]):
                trailed.append(k)
        if not trailed:
            return
        bounds = _columns([trails.bound(names[k]) for k in trailed])
        for h in self.horizons:
            since = w.end - h.length_s
            quiet = np.ones(len(trailed), dtype=bool)
            for det in h.detectors:
                quiet &= det._quiet(bounds, len(trailed))
            judged = [k for k, q in zip(trailed, quiet, strict=True) if not q]
            if not judged:
                continue
            active = [names[k] for k in judged]
            xs = [trails.features(name, since, shift) for name in active]
            X = _columns(xs)
            scores = np.zeros((len(active), len(h.detectors)))
            for j, det in enumerate(h.detectors):
                scores[:, j] = det.score_many(active, X)
            for j, det in enumerate(h.detectors):
                for k in np.flatnonzero(scores[:, j] >= self.min_score):
                    name = active[k]
                    if (name, det.name) in fired:
                        continue
                    before = trails.features(name, since, shift, until=w.start)
                    if det.score_one(name, before) >= self.min_score:
                        continue
                    fired.add((name, det.name))
                    s = subjects[name]
                    horizon = _Subject(s.name, s.owner, xs[k], s.context)
                    out["findings"].append(
                        self._finding(det, name, horizon, float(scores[k, j]), since, w.end, now, h.key)
                    )
                    if not (self.all_rows or rowed[judged[k]]):
                        rowed[judged[k]] = True
                        out["subject_windows"].append(self._subject_row(name, s, float(scores[k, j]), w))
            mask = np.array(
                [learn[judged[k]] and trails.full(name, since) for k, name in enumerate(active)], dtype=bool
            ) & (scores.max(axis=1, initial=0.0) < self.protect_score)
            for j, det in enumerate(h.detectors):
                det.learn_many(active, X, scores[:, j], mask)

    def _finding(
        self,
        det,
        subject: str,
        s: _Subject,
        score: float,
        start: float,
        end: float,
        now: float,
        horizon: str = "",
    ) -> tuple:
        reasons = det.explain_one(subject, s.x)
        finding = Finding(
            finding_id=stable_id(det.name, self.family, subject, start, *([horizon] if horizon else [])),
            subject_type=self.family,
            subject=subject,
            subject_name=s.name,
            subject_owner=s.owner,
            kind=det.kind,
            detector=det.name,
            score=round(score, 4),
            window_start=start,
            window_end=end,
            detected_at=now,
            reasons=[r.text for r in reasons],
            evidence=json.dumps(
                {
                    "features": s.x,
                    "reasons": {
                        r.feature: {"observed": r.observed, "baseline": r.baseline, "spread": r.spread}
                        for r in reasons
                    },
                    "context": s.context(),
                    # what a restriction's limit is drawn from (flows/control/policy.py)
                    "normal_requests": self._normal_requests(subject),
                }
            ),
        )
        return astuple(finding)

    def _normal_requests(self, subject: str) -> float:
        """The subject's usual requests per window: its own baseline, else its peers' median (0: unknown)."""
        d = self.baselines.deviation(subject, "requests", {"requests": 0.0})
        return d.baseline if d.source != "prior" else self.typical

    def _subject_row(self, subject: str, s: _Subject, top: float, w: ClosedWindow) -> tuple:
        x = s.x
        req = self.baselines.deviation(subject, "requests", x)
        ips = self.baselines.deviation(subject, "distinct_ips", x)
        auth = self.baselines.deviation(subject, "auth_failure_ratio", x)
        known = req.source != "prior"
        return (
            w.start, w.end, self.family, subject, s.name,
            int(x["requests"]),
            req.baseline if known else None,
            math.expm1(max(req.mean - 2 * req.spread, 0.0)) if known else None,
            math.expm1(req.mean + 2 * req.spread) if known else None,
            None if "distinct_ips" not in x else int(x["distinct_ips"]),
            ips.baseline if ips.source != "prior" else None,
            x["auth_failure_ratio"],
            auth.baseline if auth.source != "prior" else None,
            x["peer_shift"],
            round(top, 4),
            json.dumps(x),
        )  # fmt: skip

    def _capacity_row(self, w: ClosedWindow, over: Overflow | None, evicted: int) -> tuple:
        """The ``(untracked)`` row of a window in which a memory cap bit."""
        requests = over.requests if over is not None else 0
        untracked = len(over.ips) if over is not None else 0
        features = {
            "untracked_requests": requests,  # exact: events of subjects without a cell of their own
            # estimated (HyperLogLog, 3.3 % standard error): IPs, API × consumer pairs, endpoints
            "untracked_ips" if self.family == "ip" else "untracked_subjects": untracked,
            "untracked_auth_failures": over.auth_failures if over is not None else 0,
            "folded_cells": over.folded if over is not None else 0,  # single-request cells that made room
            "evicted_subjects": evicted,  # baselines dropped at the end of this window by max_tracked
            "tracked_subjects": len(self.last_seen),
            "max_tracked": self.max_tracked,
            self.max_cells_key: self.table.max_cells,
        }
        name = {"ip": "IPs", "consumer": "consumers", "api": "endpoints"}[self.family] + " over capacity"
        return (
            w.start, w.end, self.family, UNTRACKED, name + (" (counted together)" if over is not None else ""),
            requests, None, None, None, untracked if over is not None and self.family == "ip" else None, None,
            (over.auth_failures / requests) if requests else 0.0, None, 0.0, 0.0, json.dumps(features),
        )  # fmt: skip

    def _drop(self, subjects: list[str]) -> None:
        """Forget the subjects' state, everywhere the shard keeps it."""
        # a window of one-off IPs is later dropped whole: every step takes all of them at once
        pop_all(self.last_seen, subjects)
        pop_all(self.first_seen, subjects)
        pop_all(self._probation, subjects)
        self.subject_rows.forget_many(subjects)  # every shared baselines at once: the rest finds them gone
        self.horizon_rows.forget_many(subjects)
        for det in self.detectors:
            det.forget_many(subjects)
        if self.trails is not None:
            self.trails.forget_many(subjects)
        self._forget_many(subjects)

    def _cap_tracked(self) -> int:
        """Drop subjects past ``max_tracked``: seen in one window only first, then least recently seen."""
        excess = len(self.last_seen) - self.max_tracked
        if excess <= 0:
            return 0
        self._drop(list(islice(self._probation, excess)))
        rest = len(self.last_seen) - self.max_tracked  # the probation ran out
        if rest > 0:
            self._drop(list(islice(self.last_seen, rest)))
        self.evicted_over_cap += excess
        return excess

    def _evict(self, now: float) -> None:
        idle = []
        for subject, seen in self.last_seen.items():  # least recent first
            if now - seen <= self.forget_idle_s:
                break
            idle.append(subject)
        self._drop(idle)


class ConsumerShard(ShardProcessor):
    """Consumers: the ``traffic`` rows, and never-seen subnets / UA families."""

    family = "consumer"
    table_type = ConsumerWindows
    max_cells_key = "max_consumers_per_window"

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.seen = SeenMemory()

    def _traffic(self, w: ClosedWindow) -> list[tuple]:
        return [
            (
                w.start, w.end, api, consumer, acc.consumer_name, acc.consumer_owner,
                acc.requests, acc.s2xx, acc.s3xx, acc.s4xx, acc.s5xx,
                acc.auth_failures, acc.throttled, acc.bytes_out,
                acc.latency_quantile(0.5), acc.latency_quantile(0.95), len(acc.ips),
                acc.requests if w.late else 0,
            )
            for (api, consumer), acc in w.cells.items()
        ]  # fmt: skip

    def _subjects(self, w: ClosedWindow) -> _Subjects:
        out = {}
        for consumer, cw in consumer_windows(w.cells).items():
            if consumer == OVERFLOW_CONSUMER:  # many consumers, counted together: not one to score
                continue
            x, subnets, families = cw.features()
            x["new_subnets"], x["new_ua_families"] = map(float, self.seen.unseen(consumer, subnets, families))
            context = partial(_consumer_context, cw)
            out[consumer] = _Subject(cw.name, cw.owner, x, context, (subnets, families, cw))
        return _Subjects(out, _given)

    def _learned(self, names: Sequence[str], subjects: _Subjects, learned: np.ndarray, w: ClosedWindow) -> None:
        for k in np.flatnonzero(learned):
            subnets, families, _ = subjects[names[k]].extra
            self.seen.remember(names[k], subnets, families, w.start)

    def _forget_many(self, subjects: list[str]) -> None:
        self.seen.forget_many(subjects)

    def _trail_sets(self, s: _Subject) -> dict[str, Iterable[str]]:
        return {"failing_ips": known_ips(ip_union(c.fail_ips for c in s.extra[2].cells))}


def _consumer_context(cw: ConsumerWindow) -> dict:
    failing = example_ips(ip_union(c.fail_ips for c in cw.cells))
    ips = failing or example_ips(ip_union(c.ips for c in cw.cells))
    return {
        "apis": dict(sorted(cw.apis.items(), key=lambda kv: -kv[1])[:3]),
        "failing_ips" if failing else "client_ips": ips[:5],
        "user_agents": sorted(set().union(*(c.uas for c in cw.cells)))[:3],
    }


class IpShard(ShardProcessor):
    """Client IPs: brute force, probing, scraping, floods; rows only for flagged IPs."""

    family = "ip"
    table_type = IpWindows
    max_cells_key = "max_ips_per_window"
    all_rows = False
    judges_newcomers = False

    def _subjects(self, w: ClosedWindow) -> _Subjects:
        return _Subjects(w.cells, _ip_subject)

    def _features(self, names: Sequence[str], subjects: _Subjects) -> Columns:
        cells = subjects.units
        return ip_feature_columns([cells[name] for name in names])

    def _trail_sets(self, s: _Subject) -> dict[str, Iterable[str]]:
        acc = s.extra
        return {"paths": acc.paths, "error_paths": acc.error_paths, "sensitive": acc.sensitive}


def _ip_subject(ip: str, acc: IpAcc | OneEvent) -> _Subject:
    if type(acc) is not IpAcc:  # a one-event cell: only a flagged or trailed IP needs its sets
        acc = cell_of(acc)
    return _Subject(ip, "", None, partial(_ip_context, acc), acc)


def _ip_context(acc: IpAcc) -> dict:
    paths = sorted(acc.sensitive) or sorted(acc.error_paths) or sorted(acc.login_paths) or sorted(acc.paths)
    return {"consumer": acc.consumer, "user_agents": sorted(acc.uas)[:3], "paths": paths[:5]}


class ApiShard(ShardProcessor):
    """API endpoints: distributed credential stuffing, floods, anomalies."""

    family = "api"
    table_type = ApiWindows
    max_cells_key = "max_endpoints_per_window"

    def _subjects(self, w: ClosedWindow) -> _Subjects:
        out = {}
        for key, acc in w.cells.items():
            name = endpoint_name(key)
            out[name] = _Subject(name, "", api_features(acc), partial(_api_context, acc), acc)
        return _Subjects(out, _given)

    def _trail_sets(self, s: _Subject) -> dict[str, Iterable[str]]:
        return {"failing_ips": known_ips(s.extra.fail_ips)}


def _api_context(acc: ApiAcc) -> dict:
    return {"failing_ips": example_ips(acc.fail_ips)}


SHARDS: dict[str, type[ShardProcessor]] = {cls.family: cls for cls in (ConsumerShard, IpShard, ApiShard)}
