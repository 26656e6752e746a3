"""How far event time has got, across several inputs.

With more than one input (several files under a glob, several Kafka
partitions, several workers), the newest event time of the fastest input is
not safe to close windows on: a slower input may still deliver events for
them. The watermark is therefore the *minimum* over the inputs that are still
moving, and inputs that have gone quiet (a finished file, an idle partition)
stop holding it back after ``idle_s`` of wall time. Until every input had a
chance to deliver its first batch (``hold_s`` after the first one arrived),
nothing closes.

>>> clock = InputClock(idle_s=5, hold_s=1)
>>> clock.advance("a.log", 600.0, wall=100.0)
>>> clock.advance("b.log", 120.0, wall=100.5)
>>> clock.watermark(wall=100.6)   # still within the start-up hold
-inf
>>> clock.watermark(wall=101.5)   # b.log is behind: it sets the pace
120.0
>>> clock.watermark(wall=106.0)   # b.log went quiet 5.5 s ago, a.log 6 s ago: both idle
600.0
"""

from __future__ import annotations

import math
import time


class InputClock:
    """Per-input event-time progress and the watermark it allows."""

    def __init__(self, idle_s: float, hold_s: float) -> None:
        self.idle_s = idle_s
        self.hold_s = hold_s
        self._inputs: dict[str, list[float]] = {}  # input -> [newest event time, wall time it last advanced]
        self._first_wall: float | None = None

    def __getstate__(self) -> dict:
        # event-time progress survives a restart, the old process's wall times do not
        return {"idle_s": self.idle_s, "hold_s": self.hold_s, "newest": {s: e[0] for s, e in self._inputs.items()}}

    def __setstate__(self, state: dict) -> None:
        # the restart counts as every input's last advance: downtime is not quiet input, and a
        # log that stays quiet after it lets the restored windows close idle_s later
        self.idle_s, self.hold_s = state["idle_s"], state["hold_s"]
        now = time.time()
        self._inputs = {source: [ts, now] for source, ts in state.get("newest", {}).items()}
        self._first_wall = now if self._inputs else None

    def advance(self, source: str, newest_ts: float, wall: float) -> None:
        """Record that ``source`` has delivered events up to ``newest_ts``."""
        if self._first_wall is None:
            self._first_wall = wall
        entry = self._inputs.get(source)
        if entry is None:
            self._inputs[source] = [newest_ts, wall]
        elif newest_ts > entry[0]:
            entry[0], entry[1] = newest_ts, wall

    def newest(self) -> float:
        """The newest event time of any input."""
        return max((e[0] for e in self._inputs.values()), default=-math.inf)

    def last_advance(self) -> float | None:
        """Wall time at which any input last moved event time forward."""
        return max((e[1] for e in self._inputs.values()), default=None)

    def watermark(self, wall: float) -> float:
        """Event time up to which every moving input has delivered."""
        if self._first_wall is None or wall - self._first_wall < self.hold_s:
            return -math.inf
        moving = [ts for ts, seen in self._inputs.values() if wall - seen < self.idle_s]
        return min(moving) if moving else self.newest()
