"""Measure state per tracked subject, and that a flood of one-off IPs does not grow memory without bound.

``python tests/bench_memory.py --subjects 100000`` feeds each family's shard a
few windows of synthetic events for that many distinct consumers, each with
its own client IP, then reports the bytes of state per tracked subject two
ways: the traced heap the shard holds (tracemalloc) and the size of its
recovery snapshot (pickle).

Then a flood (``--flood-ips``, 5,000,000 by default; 0 skips it): that many
distinct client IPs, one request each, ``--flood-per-window`` to a window, in
batches of 5,000 events through the three shards a one-shard pipeline has
(consumer, ip, api), with the default caps (``pipeline.max_ips_per_window``,
``detectors.max_tracked_ips``). Every million IPs it prints the process's RSS
(now and peak), the IPs the ip shard tracks, the IP cells of its open window,
the requests counted as ``(untracked)`` and the shards' snapshot sizes. Beside
it, the same with the caps lifted, up to ``--uncapped-ips`` at half the rate
(the growth the caps prevent), then with caps ten times smaller over five
times as many windows (the plateau, once the tracked IPs' dicts and the
allocator have settled, which takes more windows than the default run has).
Each flood is a fresh interpreter, so RSS is its own; ``--traced`` adds the
traced heap (tracemalloc; several times slower). Run by ``make bench``.

Then a flood of ``--flood-names`` distinct basic-auth user names (credential
stuffing from 3 IPs) and one of as many distinct paths (a scanner: one IP, a new
endpoint and user agent each request), in one window with the default caps: the
traced heap each shard holds per extra name or path over the second half.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import subprocess
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# run as a script from tests/: the repository root must come before tests/ (which has flows/ too)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatewatch.flows.config import Config  # noqa: E402
from gatewatch.flows.events import Event  # noqa: E402
from gatewatch.flows.features import OVERFLOW  # noqa: E402
from gatewatch.flows.shard import SHARDS, UNTRACKED  # noqa: E402

WINDOW_S = 60


def _events(subjects: int, window: int) -> list[Event]:
    base = 1_790_000_000.0 + window * WINDOW_S
    return [
        Event(
            base + (i % WINDOW_S), "ShopAPI:1.0.0", f"app-{i:06d}", f"App {i}", "owner", "",
            f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", "GET", f"/items{i % 1000}/{{id}}",
            f"/items{i % 1000}/{{id}}", 200,
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


FLOOD_BATCH = 5_000  # events per batch, about what one 1 MiB read of access log lines gives
FLOOD_T0 = 1_789_999_980.0  # a whole minute: flood windows are the shards' windows
_PATHS = ("/items/{id}", "/items", "/search", "/cart", "/login")


def _flood_batch(first: int, n: int, per_window: int) -> list[Event]:
    """Events ``first`` to ``first + n - 1`` of the flood: IP i: one request, in window i // per_window."""
    out = []
    for i in range(first, first + n):
        w, k = divmod(i, per_window)
        path = _PATHS[i % 5]
        login = path == "/login"
        out.append(
            Event(
                FLOOD_T0 + w * WINDOW_S + 50.0 * k / per_window, "ShopAPI:1.0.0", "", "", "", "",
                f"{100 + (i >> 24)}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", "POST" if login else "GET",
                path, path, 401 if login else 200, login, False, 512, 20, "Mozilla/5.0",
            )  # fmt: skip
        )
    return out


class _Counter:
    """A file that only counts what is written to it (the snapshot's size without holding it)."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data) -> int:
        self.size += len(data)
        return len(data)


def _snapshot_bytes(shard) -> int:
    out = _Counter()
    pickle.dump(shard, out, protocol=pickle.HIGHEST_PROTOCOL)
    return out.size


def _rss_mib() -> tuple[float, float]:
    """(resident now, peak resident) of this process, in MiB.

    From /proc/self/status: unlike ``ru_maxrss``, VmHWM does not carry over the parent's peak
    across fork and exec.
    """
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 2**10, int(fields["VmHWM"].split()[0]) / 2**10


def flood(ips: int, per_window: int, caps: tuple[int, int], every: int, *, traced: bool = False) -> None:
    """Feed ``ips`` one-off IPs to a consumer, an ip and an api shard; print memory every ``every`` IPs.

    ``caps``: ``max_ips_per_window`` and ``max_tracked_ips``. ``traced`` adds the traced heap
    (tracemalloc, about three times slower).
    """
    max_ips_per_window, max_tracked_ips = caps
    if traced:
        tracemalloc.start()
    cfg = Config()
    cfg = cfg.model_copy(
        update={
            "pipeline": cfg.pipeline.model_copy(update={"max_ips_per_window": max_ips_per_window}),
            "detectors": cfg.detectors.model_copy(update={"max_tracked_ips": max_tracked_ips}),
        }
    )
    shards = {family: SHARDS[family](cfg) for family in SHARDS}
    for shard in shards.values():
        shard.clock.hold_s = 0  # steady state: windows close as soon as the watermark passes them
    ip = shards["ip"]
    defaults = Config()
    label = (
        "caps lifted"
        if max_ips_per_window >= _LIFTED
        else f"max_ips_per_window={max_ips_per_window:,} max_tracked_ips={max_tracked_ips:,}"
        + (" (the defaults)" if (max_ips_per_window, max_tracked_ips) == (
            defaults.pipeline.max_ips_per_window, defaults.detectors.max_tracked_ips) else "")
    )  # fmt: skip
    print(f"\nflood: {ips:,} one-off IPs, {per_window:,} per {WINDOW_S} s window; {label}")
    print(
        f"{'IPs fed':>10}  {'seconds':>7}  {'RSS MiB':>8}  {'peak MiB':>8}  "
        + (f"{'traced MiB':>10}  {'peak traced':>11}  " if traced else "")
        + f"{'tracked IPs':>11}  {'IP cells':>9}  {'untracked':>10}  {'snapshot MiB':>12}  "
        f"{'snapshot B/tracked IP':>21}"
    )
    started = time.perf_counter()
    untracked = 0
    for first in range(0, ips, FLOOD_BATCH):
        batch = _flood_batch(first, min(FLOOD_BATCH, ips - first), per_window)
        for shard in shards.values():
            for table, rows in shard.ingest(batch, "flood", batch[-1].ts):
                if table == "subject_windows":
                    untracked += sum(r[5] for r in rows if r[3] == UNTRACKED)
        done = first + len(batch)
        if done % every == 0 or done == ips:
            seconds = time.perf_counter() - started
            rss, peak = _rss_mib()
            heap = tracemalloc.get_traced_memory() if traced else (0, 0)
            cells = sum(len(c) - (OVERFLOW in c) for c in ip.table.open.values())
            sizes = {f: _snapshot_bytes(s) for f, s in shards.items()}
            tracked = len(ip.last_seen)
            per_ip = f"{sizes['ip'] / tracked:,.0f}" if tracked else "-"
            print(
                f"{done:>10,}  {seconds:>7.1f}  {rss:>8,.0f}  {peak:>8,.0f}  "
                + (f"{heap[0] / 2**20:>10,.0f}  {heap[1] / 2**20:>11,.0f}  " if traced else "")
                + f"{tracked:>11,}  {cells:>9,}  {untracked:>10,}  {sum(sizes.values()) / 2**20:>12,.1f}  "
                f"{per_ip:>21}",
                flush=True,
            )


def _word(i: int) -> str:
    """Letters only: a path of them is never folded as an id."""
    out, i = "", i + 26**3
    while i:
        i, r = divmod(i, 26)
        out += chr(97 + r)
    return out


def _names_and_paths(kind: str, n: int) -> list[Event]:
    out = []
    for i in range(n):
        ts = FLOOD_T0 + 50.0 * i / n
        if kind == "user names":
            user = f"user-{_word(i)}"
            out.append(Event(ts, "ShopAPI:1.0.0", user, user, "", user, f"10.5.5.{i % 3}", "POST", "/login",
                             "/login", 401, True, False, 512, 20, "curl/8"))  # fmt: skip
        else:
            path = f"/{_word(i)}/{_word(7 * i)}"
            out.append(Event(ts, "ShopAPI:1.0.0", "", "", "", "", "10.5.5.9", "GET", path, path, 404,
                             False, False, 512, 20, f"scan/{_word(i)}"))  # fmt: skip
    return out


def per_family(n: int) -> None:
    """Print the heap each shard holds per extra user name and path, past the default caps."""
    print(f"\n{n:,} distinct user names, then paths, in one window (default caps): heap B per extra one")
    print(f"{'flood':>10}  " + "  ".join(f"{family:>9}" for family in SHARDS))
    for kind in ("user names", "paths"):
        events = _names_and_paths(kind, n)
        figures = []
        for cls in SHARDS.values():
            cls.table_type.collect(events, WINDOW_S)  # the process-wide caches of path flags: filled first
            shard = cls(Config())
            gc.collect()
            tracemalloc.start()
            for first in range(0, n, FLOOD_BATCH):
                if first == n // 2:
                    gc.collect()  # empties the free lists too: tuples waiting there are still traced
                    half = tracemalloc.get_traced_memory()[0]
                shard.take(cls.table_type.collect(events[first : first + FLOOD_BATCH], WINDOW_S), "f", FLOOD_T0 + 40)
            gc.collect()
            figures.append((tracemalloc.get_traced_memory()[0] - half) / (n - n // 2))
            tracemalloc.stop()
        print(f"{kind:>10}  " + "  ".join(f"{f:>9,.0f}" for f in figures), flush=True)


_LIFTED = 100_000_000  # the largest caps the config allows


def _run(args: list[str]) -> str:
    """One flood in a fresh interpreter (its RSS is its own); its printout."""
    child = [sys.executable, __file__, *args]
    return subprocess.run(child, check=True, stdout=subprocess.PIPE, text=True).stdout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=100_000, help="0 skips the per-subject measurement")
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--flood-ips", type=int, default=5_000_000, help="0 skips the floods")
    parser.add_argument("--flood-per-window", type=int, default=500_000)
    parser.add_argument("--uncapped-ips", type=int, default=1_000_000, help="0 skips the flood without caps")
    parser.add_argument("--every", type=int, default=1_000_000, help="IPs between two memory lines")
    parser.add_argument("--traced", action="store_true", help="add the traced heap (tracemalloc, slower)")
    parser.add_argument("--flood-names", type=int, default=200_000, help="0 skips the user names and paths")
    # one flood, in the child process
    parser.add_argument("--flood-run", action="store_true", help=argparse.SUPPRESS)
    defaults = Config()
    parser.add_argument("--max-ips-per-window", type=int, default=defaults.pipeline.max_ips_per_window,
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--max-tracked-ips", type=int, default=defaults.detectors.max_tracked_ips,
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args(argv)
    if args.flood_run:
        caps = args.max_ips_per_window, args.max_tracked_ips
        flood(args.flood_ips, args.flood_per_window, caps, args.every, traced=args.traced)
        return
    if args.subjects:
        print(f"{'family':>9}  {'subjects':>9}  {'heap B/subject':>15}  {'snapshot B/subject':>19}")
        for family in SHARDS:
            heap, snap, n = measure(family, args.subjects, args.windows)
            print(f"{family:>9}  {n:>9,}  {heap:>15,.0f}  {snap:>19,.0f}", flush=True)
    if args.flood_names:
        per_family(args.flood_names)
    if not args.flood_ips:
        return

    def run(ips: int, per_window: int, every: int, *caps: int) -> list[str]:
        out = ["--flood-run", "--flood-ips", str(ips), "--flood-per-window", str(per_window)]
        out += ["--every", str(every), *(["--traced"] if args.traced else [])]
        if caps:
            out += ["--max-ips-per-window", str(caps[0]), "--max-tracked-ips", str(caps[1])]
        return out

    # two lanes at once (two cores): the default caps; then the caps lifted (the growth they stop) and caps
    # 10x smaller over 50 windows (the plateau after the tracked IPs' dicts and the allocator have settled)
    small = (defaults.pipeline.max_ips_per_window // 10, defaults.detectors.max_tracked_ips // 10)
    lanes = [[run(args.flood_ips, args.flood_per_window, args.every)]]
    second = [run(args.flood_ips, args.flood_per_window // 5, args.every, *small)]
    if args.uncapped_ips:
        every = min(args.every, 250_000)
        second.insert(0, run(args.uncapped_ips, args.flood_per_window // 2, every, _LIFTED, _LIFTED))
    lanes.append(second)
    with ThreadPoolExecutor(len(lanes)) as pool:
        outputs = list(pool.map(lambda lane: [_run(a) for a in lane], lanes))
    for out in outputs[0] + outputs[1]:
        print(out, end="", flush=True)


if __name__ == "__main__":
    main()
