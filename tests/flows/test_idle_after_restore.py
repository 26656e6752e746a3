"""Windows restored from a recovery snapshot close once the log stays quiet, as before the restart.

The snapshot keeps each input's event-time progress; the restart counts as its last
advance, so ``pipeline.idle_close_s`` after it, with no new line, the restored open
windows close on their own.
"""

from __future__ import annotations

import pickle
import time

from gatewatch.flows.config import Config
from gatewatch.flows.events import Event
from gatewatch.flows.features import endpoint_of
from gatewatch.flows.shard import ConsumerShard

T0 = 1_700_000_040.0


def _events(n: int) -> list[Event]:
    return [
        Event(T0 + i * 0.5, "shop", "c1", "C1", "owner", "", "10.0.0.1", "GET", "/items/1",
              endpoint_of("/items/1"), 200, False, False, 100, 20, "curl/8")
        for i in range(n)
    ]  # fmt: skip


def _traffic_requests(outputs) -> int:
    return sum(row[6] for table, rows in outputs for row in rows if table == "traffic")


def test_restored_open_windows_close_after_the_idle_time_without_new_input():
    shard = ConsumerShard(Config())
    events = _events(200)  # 100 s: one closed window... and one left open
    out = shard.ingest(events, "apim_metrics.log", events[-1].ts)
    assert shard.has_open_windows()
    written = _traffic_requests(out)

    restored = pickle.loads(pickle.dumps(shard))  # what a crash and restart give back
    idle = restored.idle_close_s
    early = restored.tick(time.time() + idle / 2)  # not quiet long enough: the newest window stays open
    assert restored.has_open_windows()
    # quiet, event time follows the wall clock: the last window closes once it is past its end and lateness
    late = restored.tick(time.time() + idle + restored.table.window_s + restored.lateness_s)
    assert not restored.has_open_windows()
    assert written + _traffic_requests(early) + _traffic_requests(late) == len(events)


def test_a_snapshot_of_the_previous_version_still_loads():
    shard = ConsumerShard(Config())
    old = {"idle_s": 5.0, "hold_s": 1.0, "_inputs": {}, "_first_wall": None}  # its clock's state
    clock = shard.clock.__class__.__new__(shard.clock.__class__)
    clock.__setstate__(old)
    assert clock.last_advance() is None and clock.newest() == float("-inf")
