"""Measure state per tracked subject: 100k consumers (and their IPs) through the real shard code.

``python tests/bench_memory.py --subjects 100000`` feeds each family's shard a
few windows of synthetic events for that many distinct consumers, each with
its own client IP, then reports the bytes of state per tracked subject two
ways: the traced heap the shard holds (tracemalloc) and the size of its
recovery snapshot (pickle). Run by ``make bench``.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import sys
import tracemalloc
from pathlib import Path

# run as a script from tests/: the repository root must come before tests/ (which has flows/ too)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.config import Config  # noqa: E402
from flows.events import Event  # noqa: E402
from flows.shard import SHARDS  # noqa: E402

WINDOW_S = 60


def _events(subjects: int, window: int) -> list[Event]:
    base = 1_790_000_000.0 + window * WINDOW_S
    return [
        Event(
            base + (i % WINDOW_S), "ShopAPI:1.0.0", f"app-{i:06d}", f"App {i}", "owner", "",
            f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", "GET", f"/items{i % 1000}/{{id}}", 200,
            False, False, 512, 20, "okhttp",
        )  # fmt: skip
        for i in range(subjects)
    ]


def measure(family: str, subjects: int, windows: int) -> tuple[float, float, int]:
    """Return (heap bytes per tracked subject, snapshot bytes per tracked subject, subjects tracked)."""
    cfg = Config()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    shard = SHARDS[family](cfg)
    for w in range(windows):
        shard.ingest(_events(subjects, w), "bench", 1_790_000_000.0 + (w + 1) * WINDOW_S + 30)
    shard.flush()
    gc.collect()
    heap = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    snapshot = len(pickle.dumps(shard, protocol=pickle.HIGHEST_PROTOCOL))
    tracked = len(shard.last_seen)  # the subjects the shard keeps state for
    return heap / tracked, snapshot / tracked, tracked


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--windows", type=int, default=4)
    args = parser.parse_args(argv)
    print(f"{'family':>9}  {'subjects':>9}  {'heap B/subject':>15}  {'snapshot B/subject':>19}")
    for family in SHARDS:
        heap, snap, n = measure(family, args.subjects, args.windows)
        print(f"{family:>9}  {n:>9,}  {heap:>15,.0f}  {snap:>19,.0f}")


if __name__ == "__main__":
    main()
