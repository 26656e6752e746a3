"""Event-time window accumulators (plain Python, no Bytewax).

A :class:`WindowTable` keeps the open tumbling windows of one shard as
``{window_start: {(api, consumer): TrafficAcc}}`` and closes a window once
the watermark (newest event time minus the allowed lateness) passes its end.
An event for a window already closed is not dropped: it is counted in a
separate *late* row for that window, which the store sums like any other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from flows.events import Event


class TrafficAcc:
    """Counters of one (window, API, consumer) cell."""

    __slots__ = (
        "auth_failures",
        "bytes_out",
        "consumer_name",
        "consumer_owner",
        "ips",
        "latencies",
        "requests",
        "s2xx",
        "s3xx",
        "s4xx",
        "s5xx",
        "throttled",
    )

    def __init__(self, consumer_name: str, consumer_owner: str) -> None:
        self.consumer_name = consumer_name
        self.consumer_owner = consumer_owner
        self.requests = self.s2xx = self.s3xx = self.s4xx = self.s5xx = 0
        self.auth_failures = self.throttled = self.bytes_out = 0
        self.latencies: dict[int, int] = {}  # latency ms -> count: exact quantiles, small in practice
        self.ips: set[str] = set()

    def __getstate__(self):
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state):
        for name, value in zip(self.__slots__, state, strict=True):
            setattr(self, name, value)

    def add(self, e: Event) -> None:
        self.requests += 1
        cls = e.status // 100
        if cls == 2:
            self.s2xx += 1
        elif cls == 4:
            self.s4xx += 1
        elif cls == 5:
            self.s5xx += 1
        elif cls == 3:
            self.s3xx += 1
        if e.auth_failure:
            self.auth_failures += 1
        if e.throttled:
            self.throttled += 1
        self.bytes_out += e.bytes_out
        if e.latency_ms >= 0:
            lat = self.latencies
            lat[e.latency_ms] = lat.get(e.latency_ms, 0) + 1
        if e.client_ip:
            self.ips.add(e.client_ip)

    def latency_quantile(self, q: float) -> float | None:
        """Return the ``q`` quantile (nearest rank) of the latencies seen, if any."""
        total = sum(self.latencies.values())
        if not total:
            return None
        rank = max(1, math.ceil(q * total))
        seen = 0
        for value in sorted(self.latencies):
            seen += self.latencies[value]
            if seen >= rank:
                return float(value)
        return None  # pragma: no cover - rank <= total always stops the loop


@dataclass(slots=True)
class ClosedWindow:
    """A window that will receive no more on-time events."""

    start: float
    end: float
    cells: dict[tuple[str, str], TrafficAcc]
    late: bool = False


class WindowTable:
    """Tumbling event-time windows for one shard.

    >>> from flows.events import Event
    >>> t = WindowTable(window_s=60, lateness_s=10)
    >>> def ev(ts): return Event(ts, "api", "c1", "App", "me", "", "1.2.3.4", "GET", "/", 200,
    ...                          False, False, 10, 5, "")
    >>> t.add([ev(0.0), ev(59.0), ev(65.0)])
    >>> t.close_until(t.watermark())   # watermark 55: nothing closed yet
    []
    >>> t.add([ev(71.0)])
    >>> [(w.start, w.cells[("api", "c1")].requests) for w in t.close_until(t.watermark())]
    [(0.0, 2)]
    """

    def __init__(self, window_s: int, lateness_s: int) -> None:
        self.window_s = window_s
        self.lateness_s = lateness_s
        self.open: dict[float, dict[tuple[str, str], TrafficAcc]] = {}
        self.late: dict[float, dict[tuple[str, str], TrafficAcc]] = {}
        self.max_ts = -math.inf
        self.closed_until = -math.inf  # every window starting before this is closed

    def add(self, events: Iterable[Event]) -> None:
        window_s = self.window_s
        opened = self.open
        closed_until = self.closed_until
        max_ts = self.max_ts
        for e in events:
            ts = e.ts
            start = ts - ts % window_s
            table = opened if start >= closed_until else self.late
            cells = table.get(start)
            if cells is None:
                cells = table[start] = {}
            key = (e.api, e.consumer)
            acc = cells.get(key)
            if acc is None:
                acc = cells[key] = TrafficAcc(e.consumer_name, e.consumer_owner)
            acc.add(e)
            if ts > max_ts:
                max_ts = ts
        self.max_ts = max_ts

    def observe(self, ts: float) -> None:
        """Advance event time without an event (another shard saw ``ts``)."""
        if ts > self.max_ts:
            self.max_ts = ts

    def watermark(self) -> float:
        """Event time before which no more on-time events are expected."""
        return self.max_ts - self.lateness_s

    def close_until(self, watermark: float) -> list[ClosedWindow]:
        """Close every window that ends at or before ``watermark``, oldest first.

        Late cells collected since the last call come first, flagged ``late``.
        """
        out = [ClosedWindow(s, s + self.window_s, cells, late=True) for s, cells in sorted(self.late.items())]
        self.late.clear()
        for start in sorted(self.open):
            end = start + self.window_s
            if end > watermark:
                break
            out.append(ClosedWindow(start, end, self.open.pop(start)))
            self.closed_until = max(self.closed_until, end)
        return out

    def close_all(self) -> list[ClosedWindow]:
        """Close every window (end of input)."""
        return self.close_until(math.inf)
