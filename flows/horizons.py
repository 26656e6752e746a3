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

What starts a trail is family-specific (:attr:`HorizonSpec.starts`): auth failures, or 4xx
or login attempts (two or more), that are at least ``MIN_SHARE`` of the window's requests,
a sensitive file, an attack payload, a malformed request, a hasty form post. Clients that
only read what exists, most IPs, never get one. A trailed subject's horizons are judged in
the windows that show the same; the others only extend its trail. A trail ends once its
subject has been quiet for the longest horizon. Distinct values are exact up to
``MAX_DISTINCT`` per subject and feature (``MAX_PATHS`` for the paths an IP read), the
most recently seen kept, above every horizon threshold.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Collection, Iterable
from typing import NamedTuple

import numpy as np

from gatewatch.detectors.base import subnet
from gatewatch.detectors.baselines import Columns
from gatewatch.flows.features import pop_all, sequential_ids

MAX_DISTINCT = 1024
# paths read are many for busy clients, and counting ids in sequence among them is the costly part
# of a horizon (0.1 ms per 100 paths): kept to what the thresholds need
MAX_PATHS = 256


class HorizonSpec(NamedTuple):
    """What one family keeps of each window, and how it becomes a horizon's features."""

    counts: tuple[str, ...]  # features summed over the horizon
    shares: tuple[str, ...]  # ratios of ``requests``: their numerators are summed
    sets: tuple[str, ...]  # distinct-value sets each window gives (see ``ShardProcessor._trail_sets``)
    # the windows, of a closed window's subjects (a column per feature), that start a trail
    starts: Callable[[Columns], np.ndarray]
    # fill the set-based features; the float: ids in sequence below it are not counted (a screen),
    # and below 0 are bounded by the paths
    derive: Callable[[dict[str, float], dict[str, Collection[str]], float], None]


# A share of a window's requests under which its failures, 4xx or logins start no trail. A
# horizon's share is an average of its windows': it can reach a detector's share (0.2 failed,
# 0.3 logins, 0.5 4xx by default) only through windows that reach this one.
MIN_SHARE = 0.2


def _ip_starts(X: Columns) -> np.ndarray:
    # not volume, nor the odd 4xx of a busy reader: trailing every active IP would cost more
    # than the rest of the IP family
    return (
        ((X["auth_failures"] != 0) & (X["auth_failure_ratio"] >= MIN_SHARE))
        | ((X["errors"] >= 2) & (X["error_ratio"] >= MIN_SHARE))
        | ((X["login_requests"] >= 2) & (X["login_share"] >= MIN_SHARE))  # a user logs in once
        | (X["sensitive_paths"] != 0)
        | (X["payload_requests"] != 0)
        | (X["bad_requests"] != 0)
        | (X["hasty_posts"] != 0)
    )


def _ip_derive(x: dict[str, float], sets: dict[str, Collection[str]], min_sequential: float) -> None:
    n = x["requests"] or 1.0
    x["auth_failure_ratio"] = x["auth_failures"] / n
    x["error_ratio"] = x["errors"] / n
    x["throttled_ratio"] = x["throttled"] / n
    x["login_share"] = x["login_requests"] / n
    x["distinct_paths"] = float(len(sets["paths"]))
    # at most one id in sequence per path: most trails read too few to be counted (0.1-0.3 ms each)
    paths = sets["paths"]
    if min_sequential < 0:
        x["sequential_ids"] = float(len(paths))
    else:
        x["sequential_ids"] = float(sequential_ids(paths)) if len(paths) >= min_sequential else 0.0
    x["error_paths"] = float(len(sets["error_paths"]))
    x["sensitive_paths"] = float(len(sets["sensitive"]))
    # judged per window at the scale they mean: bursts within seconds, timing, scanner agents, cache busting
    x["login_burst"] = x["regularity"] = x["scanner_requests"] = x["max_queries_per_path"] = 0.0


def _failing_starts(X: Columns) -> np.ndarray:
    return X["auth_failures"] > 0


def _failing_derive(x: dict[str, float], sets: dict[str, Collection[str]], min_sequential: float) -> None:
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
            "hasty_posts",
            "keyed",  # windows with a key: more than 0 is an IP that uses one
        ),
        shares=("read_ratio", "write_ratio", "detail_ratio", "server_error_ratio", "bytes_per_request"),
        sets=("paths", "error_paths", "sensitive"),
        starts=_ip_starts,
        derive=_ip_derive,
    ),
    "consumer": HorizonSpec(
        counts=("requests", "auth_failures", "throttled"),
        shares=(),
        sets=("failing_ips",),
        starts=_failing_starts,
        derive=_failing_derive,
    ),
}
SPECS["api"] = SPECS["consumer"]


class Trail:
    """One subject's recent windows: their counts, and its distinct values with the window last seen."""

    __slots__ = ("distinct", "first", "windows")

    def __init__(self, first: float, sets: Iterable[str]) -> None:
        self.first = first  # start of the first window trailed
        self.windows: deque[tuple[float, list[float]]] = deque()
        self.distinct: dict[str, dict[str, float]] = {name: {} for name in sets}

    def __getstate__(self):
        return self.first, self.windows, self.distinct

    def __setstate__(self, state) -> None:
        if len(state) == 4:  # an earlier version kept the windows' running totals: they are summed when needed now
            state = state[0], state[1], state[3]
        self.first, self.windows, self.distinct = state


class Trails:
    """The trails of one shard's subjects, least recently updated first."""

    def __init__(self, spec: HorizonSpec, keep_s: float, min_sequential: float = 0.0) -> None:
        self.spec = spec
        self.keep_s = keep_s  # the longest horizon
        self.min_sequential = min_sequential  # the lowest threshold of ids in sequence over a horizon
        self.trails: dict[str, Trail] = {}

    def __len__(self) -> int:
        return len(self.trails)

    def __contains__(self, subject: str) -> bool:
        return subject in self.trails

    def starting(self, X: Columns) -> list[bool]:
        """Which of a closed window's subjects (a column per feature) show what starts a trail."""
        return self.spec.starts(X).tolist()

    def window_values(self, X: Columns, at: list[int]) -> list[list[float]]:
        """What a trail keeps of each of rows ``at`` of a closed window's columns: its counts, then
        its shares times its requests (summed over a horizon, divided by the horizon's requests)."""
        spec = self.spec
        requests = X["requests"][at]
        return np.column_stack(
            [X[name][at] for name in spec.counts] + [X[name][at] * requests for name in spec.shares]
        ).tolist()

    def record(
        self,
        start: float,
        subject: str,
        values: list[float],
        sets: dict[str, Iterable[str]],
        signal: bool,
    ) -> bool:
        """Add one closed window of ``subject`` to its trail: its :meth:`window_values` and its distinct values.

        ``signal``: the window shows what starts a trail (:meth:`starting`); without it, only
        a subject that has one is recorded. Tell whether its horizons are to be judged: it
        has a trail and ``signal``. A window that shows nothing adds nothing a threshold
        counts, so its horizons can only have fallen since the last window judged.
        """
        trail = self.trails.pop(subject, None)
        if trail is None:
            if not signal:
                return False
            trail = Trail(start, self.spec.sets)
        self.trails[subject] = trail  # re-inserted: least recently updated first
        windows = trail.windows
        windows.append((start, values))
        while windows[0][0] <= start - self.keep_s:
            windows.popleft()
        for name, window_values in sets.items():
            seen = trail.distinct[name]  # in the order last seen: windows are recorded in time order
            for v in seen.keys() & window_values:
                del seen[v]
            # sorted within the window: past the cap, the values kept must not depend on a set's order
            seen.update(dict.fromkeys(sorted(window_values), start))
            while len(seen) > (MAX_PATHS if name == "paths" else MAX_DISTINCT):
                del seen[next(iter(seen))]
        return signal

    def bound(self, subject: str) -> dict[str, float]:
        """Upper bounds of the subject's features over any of its horizons, at little cost.

        Counts and distinct values over the whole trail, ids in sequence bounded by the paths,
        shares at their loudest (``write_ratio`` 0: scraping clears IPs that write; the
        others 1). What a detector's ``_quiet`` clears here, it clears on every horizon.
        """
        trail = self.trails[subject]
        spec = self.spec
        totals = [sum(column) for column in zip(*(values for _, values in trail.windows), strict=True)]
        x = dict(zip(spec.counts, totals, strict=False))
        for name in spec.shares:
            x[name] = 0.0 if name == "write_ratio" else 1.0
        spec.derive(x, trail.distinct, -1.0)
        return x

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
        inside = {name: _seen_within(seen, since, until) for name, seen in trail.distinct.items()}
        spec.derive(x, inside, self.min_sequential)
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

    def forget_many(self, subjects: Iterable[str]) -> None:
        pop_all(self.trails, subjects)


def _seen_within(seen: dict[str, float], since: float, until: float) -> list[str]:
    """The values last seen at or after ``since``, before ``until``, of a dict in the order last seen."""
    out = []
    for v, t in reversed(seen.items()):  # newest first: the older ones need not be looked at
        if t < since:
            break
        if t < until:
            out.append(v)
    return out
