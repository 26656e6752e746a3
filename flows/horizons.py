"""Longer horizons: each family also judges the last 10 minutes and the last hour, sliding by the window.

A slow attack stays under every per-window threshold: one login failing every 20 s,
150 IPs trying twice each over 40 minutes. So a shard keeps, for the subjects that
show something such an attack is made of, a *trail* of their recent windows: the
additive counts of each window, and the distinct values they were seen with (failing
client IPs, paths read, paths answered 4xx, sensitive files) with the last window each
was seen in. When a window closes, every subject of it that has a trail gets its
features over each horizon: counts summed over the windows inside it, distinct values
last seen inside it counted, ratios recomputed from the sums. The detectors that
declare thresholds for the horizon (``[detectors.<name>.over_10m]``, ``over_1h``) score
them as they score a window; ``flows/shard.py`` turns what fires into findings whose
window is the horizon.

What starts a trail is family-specific (:attr:`HorizonSpec.starts`): an auth failure, a
4xx, a login attempt, a sensitive file, or (IPs) a few requests in one window. One-off
clients, most IPs, never get one. A trail ends once its subject has been quiet for the
longest horizon. Distinct values are exact up to ``MAX_DISTINCT`` per subject and
feature (the most recently seen are kept), well above every horizon threshold.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from typing import NamedTuple

from detectors.base import subnet
from flows.features import sequential_ids

MAX_DISTINCT = 1024


class HorizonSpec(NamedTuple):
    """What one family keeps of each window, and how it becomes a horizon's features."""

    counts: tuple[str, ...]  # features summed over the horizon
    shares: tuple[str, ...]  # ratios of ``requests``: their numerators are summed
    sets: tuple[str, ...]  # distinct-value sets each window gives (see ``ShardProcessor._trail_sets``)
    starts: Callable[[dict[str, float]], bool]  # a window that starts a trail
    derive: Callable[[dict[str, float], dict[str, list[str]]], None]  # fill the set-based features
    distinct: tuple[str, ...]  # the features ``derive`` counts from the sets


def _ip_starts(x: dict[str, float]) -> bool:
    return bool(
        x["auth_failures"] or x["errors"] or x["login_requests"] or x["sensitive_paths"] or x["requests"] >= 3
    )


def _ip_derive(x: dict[str, float], sets: dict[str, list[str]]) -> None:
    n = x["requests"] or 1.0
    x["auth_failure_ratio"] = x["auth_failures"] / n
    x["error_ratio"] = x["errors"] / n
    x["throttled_ratio"] = x["throttled"] / n
    x["login_share"] = x["login_requests"] / n
    x["distinct_paths"] = float(len(sets["paths"]))
    x["sequential_ids"] = float(sequential_ids(sets["paths"]))
    x["error_paths"] = float(len(sets["error_paths"]))
    x["sensitive_paths"] = float(len(sets["sensitive"]))
    # judged per window at the scale they mean: bursts within seconds, timing, scanner agents, cache busting
    x["login_burst"] = x["regularity"] = x["scanner_requests"] = x["max_queries_per_path"] = 0.0


def _failing_starts(x: dict[str, float]) -> bool:
    return x["auth_failures"] > 0


def _failing_derive(x: dict[str, float], sets: dict[str, list[str]]) -> None:
    failing = sets["failing_ips"]
    x["auth_failure_ratio"] = x["auth_failures"] / (x["requests"] or 1.0)
    x["failing_ips"] = float(len(failing))
    x["failing_subnets"] = float(len({subnet(ip) for ip in failing}))


SPECS: dict[str, HorizonSpec] = {
    "ip": HorizonSpec(
        counts=(
            "requests",
            "auth_failures",
            "errors",
            "throttled",
            "login_requests",
            "payload_requests",
            "bad_requests",
        ),
        shares=("read_ratio", "write_ratio", "detail_ratio", "server_error_ratio", "bytes_per_request"),
        sets=("paths", "error_paths", "sensitive"),
        starts=_ip_starts,
        derive=_ip_derive,
        distinct=("distinct_paths", "sequential_ids", "error_paths", "sensitive_paths"),
    ),
    "consumer": HorizonSpec(
        counts=("requests", "auth_failures", "throttled"),
        shares=(),
        sets=("failing_ips",),
        starts=_failing_starts,
        derive=_failing_derive,
        distinct=("failing_ips", "failing_subnets"),
    ),
}
SPECS["api"] = SPECS["consumer"]


class Trail:
    """One subject's recent windows: their counts, and its distinct values with the window last seen."""

    __slots__ = ("distinct", "first", "windows")

    def __init__(self, first: float, sets: Iterable[str]) -> None:
        self.first = first  # start of the first window trailed
        self.windows: deque[tuple[float, tuple[float, ...]]] = deque()
        self.distinct: dict[str, dict[str, float]] = {name: {} for name in sets}

    def __getstate__(self):
        return self.first, self.windows, self.distinct

    def __setstate__(self, state) -> None:
        self.first, self.windows, self.distinct = state


class Trails:
    """The trails of one shard's subjects, least recently updated first."""

    def __init__(self, spec: HorizonSpec, keep_s: float) -> None:
        self.spec = spec
        self.keep_s = keep_s  # the longest horizon
        self.trails: dict[str, Trail] = {}

    def __len__(self) -> int:
        return len(self.trails)

    def record(
        self, start: float, subject: str, x: dict[str, float], sets: Callable[[], dict[str, Iterable[str]]]
    ) -> bool:
        """Add one closed window of ``subject`` (``sets`` gives its distinct values); tell whether it has a trail."""
        trail = self.trails.pop(subject, None)
        if trail is None:
            if not self.spec.starts(x):
                return False
            trail = Trail(start, self.spec.sets)
        self.trails[subject] = trail  # re-inserted: least recently updated first
        n = x["requests"]
        trail.windows.append(
            (start, tuple(x[c] for c in self.spec.counts) + tuple(x[s] * n for s in self.spec.shares))
        )
        while trail.windows[0][0] <= start - self.keep_s:
            trail.windows.popleft()
        for name, values in sets().items():
            seen = trail.distinct[name]
            for v in values:
                seen.pop(v, None)
                seen[v] = start
            while len(seen) > MAX_DISTINCT:
                del seen[next(iter(seen))]
        return True

    def features(
        self, subject: str, since: float, peer_shift: float, until: float = math.inf
    ) -> dict[str, float]:
        """The subject's features over its windows that start at or after ``since``, before ``until``.

        A value seen before ``until`` and again after it is not counted before it (only
        its last window is kept).
        """
        trail = self.trails[subject]
        spec = self.spec
        totals = [0.0] * (len(spec.counts) + len(spec.shares))
        for start, values in reversed(trail.windows):
            if start < since:
                break
            if start >= until:
                continue
            for i, v in enumerate(values):
                totals[i] += v
        x = dict(zip(spec.counts, totals[: len(spec.counts)], strict=True))
        n = x["requests"] or 1.0
        for name, total in zip(spec.shares, totals[len(spec.counts) :], strict=True):
            x[name] = total / n
        spec.derive(
            x,
            {
                name: [v for v, t in seen.items() if since <= t < until]
                for name, seen in trail.distinct.items()
            },
        )
        x["peer_shift"] = peer_shift
        return x

    def full(self, subject: str, since: float) -> bool:
        """Tell whether the subject was trailed for the whole horizon starting at ``since``."""
        return self.trails[subject].first <= since

    def expire(self, now: float) -> None:
        """Drop the trails of subjects quiet for the longest horizon."""
        trails = self.trails
        while trails:
            subject, trail = next(iter(trails.items()))
            if trail.windows[-1][0] > now - self.keep_s:
                break
            del trails[subject]

    def forget(self, subject: str) -> None:
        self.trails.pop(subject, None)
