"""Benchmark replaying large logs: parse-only floor vs ``gatewatch replay``, per log format.

Usage::

    python tests/bench_replay.py --lines 1000000 --workdir bench-data [--formats wso2 combined] [--layouts w1 w2 p2]

For each format it generates a log of exactly ``--lines`` lines spanning about
an hour of event time (reused from the workdir when it already has that many
lines): ``wso2`` and ``combined`` from the simulator's consumers, ``wso2-mobile``
the same WSO2 traffic with every app's requests from ever-changing client IPs
(about one IP per request, as carrier NAT gives mobile apps; replayed and
floored as ``wso2``). Then it measures:

- the parse floor, in this process, median of ``--runs`` before the replays,
  and once more just before each end-to-end run (see below): read the file in
  1 MiB chunks of whole lines and extract the fields the pipeline's parser uses,
  without building events. ``wso2``: decode every line's JSON part with the
  parser's own msgspec Struct, the same fields (batched ``decode_lines``).
  ``combined``: decode every line as UTF-8 and match it with the combined
  parser's own compiled access-line regex, take its groups and convert status
  and bytes to ``int`` (the time stays text, as in the WSO2 floor);
- end to end: ``gatewatch replay FILE --format FORMAT --store DIR`` (the
  console script next to this interpreter) as subprocesses, in each of
  ``--layouts``: ``w1``/``w2`` one process with 1 or 2 worker threads on the
  file; ``p2`` a cluster of 2 processes (``-i/-a`` on 127.0.0.1), the file
  dealt round-robin into 2 node logs as if 2 gateway nodes wrote it, the
  processes started together, as in docs/scaling.md's example. Every
  layout runs with the same ``pipeline.shards`` (``--shards``), so all give
  the same traffic and findings (docs/scaling.md). Reported: median wall time of ``--runs``, median CPU
  (user + sys of every process) per line, which a busy neighbour disturbs
  less, and peak RSS (summed over a cluster). Each process is started by a
  small launcher that reports its own ``wait4`` figures: Linux carries the
  spawner's peak RSS into a child's ``ru_maxrss`` across ``exec``, and this
  process holds a floor run's memory. The ratio to
  the floor is the median over the runs of each run's lines/s to the floor run
  just before it: this machine's speed drifts by a quarter over minutes, so a
  floor measured minutes earlier skews the ratio either way. Every run's
  summaries must account for every line (events + rejected = lines); after
  the first run of each layout the store is checked too:
  ``SUM(traffic.requests) + COUNT(rejected)`` = lines. Skipped with a message
  if the script is missing. Two more columns explain a cluster's speed-up:
  the busiest process's share of the CPU (100 % for one process; a cluster
  of N cannot be faster than one process doing that share), and the fixed
  cost of a run, the median wall time of replaying the log's first
  ``START_LINES`` lines in the same layout (start-up, connecting, the last
  window and compaction), which the end-to-end figure includes;
- ``combined`` only: ``fail2ban-regex FILE <filter>`` with one access-log filter
  (``--fail2ban-filter``, default ``nginx-botsearch``), median wall time of
  ``--runs``, as the single-filter yardstick. Skipped with a message when
  ``fail2ban-regex`` is not on PATH.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from itertools import islice
from pathlib import Path

import msgspec

# run as a plain script: make the repository importable without installing it
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatewatch.flows.lab.simulate import generate_wso2, scale_for, simulate  # noqa: E402
from gatewatch.flows.parsers.nginx import _ACCESS, _ACCESS_PLAIN  # noqa: E402
from gatewatch.flows.parsers.wso2 import _LooseRecord  # noqa: E402
from tests.conftest import free_ports, median_s  # noqa: E402

CHUNK_BYTES = 1 << 20
MINUTES = 60
START = datetime(2026, 11, 2, 9, tzinfo=timezone.utc)
FORMATS = ("wso2", "wso2-mobile", "combined")
# a bench log's gatewatch format: wso2-mobile is WSO2 whose apps' requests come from ever-changing IPs
PARSER_FORMAT = {"wso2-mobile": "wso2"}
HEADROOM = 1.05  # generate 5 % more traffic than needed, cut at exactly the wanted number of lines
START_LINES = 1_000  # a replay this short measures a run's fixed cost
MIN_SCALE = 0.01  # the smallest `gatewatch simulate --scale`
# Runs argv[2:], writes its CPU seconds, peak RSS (KiB) and start and end (CLOCK_MONOTONIC, shared by
# all processes) to argv[1], and exits with its code. A launcher this small (about 10 MiB) keeps the
# spawner's peak out of the child's ru_maxrss.
LAUNCHER = """import os, sys, time
start = time.monotonic()
_, status, ru = os.wait4(os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ), 0)
end = time.monotonic()
with open(sys.argv[1], "w") as f:
    f.write(f"{ru.ru_utime + ru.ru_stime} {ru.ru_maxrss} {start} {end}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


# -- logs ---------------------------------------------------------------------------------------------


def count_lines(path: Path) -> int:
    """Return the number of newline-terminated lines in ``path``."""
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            n += chunk.count(b"\n")
    return n


def _cached(path: Path, lines: int) -> bool:
    """Tell whether ``path`` already holds exactly ``lines`` lines (and say so)."""
    if path.exists() and count_lines(path) == lines:
        print(f"Reusing {path}.")
        return True
    path.parent.mkdir(parents=True, exist_ok=True)
    return False


def _generated(path: Path, lines: int, t0: float) -> Path:
    """Check that ``path`` got exactly ``lines`` lines, report it and return it."""
    if (written := count_lines(path)) != lines:
        msg = f"generated {written} lines in {path}, wanted {lines}"
        raise RuntimeError(msg)
    size_mib = path.stat().st_size / 2**20
    print(f"Generated {path} ({lines:,} lines, {size_mib:,.0f} MiB) in {time.perf_counter() - t0:.1f} s.")
    return path


def ensure_wso2_log(workdir: Path, lines: int) -> Path:
    """Return a WSO2 ``apim_metrics.log`` of exactly ``lines`` lines, from ``generate_wso2``."""
    path = workdir / f"wso2_apim_metrics_{lines}.log"
    if _cached(path, lines):
        return path
    t0 = time.perf_counter()
    scale = scale_for(lines, MINUTES) * HEADROOM
    generate_wso2(path, start=START, minutes=MINUTES, seed=1, scale=scale, max_lines=lines)
    return _generated(path, lines, t0)


def ensure_wso2_mobile_log(workdir: Path, lines: int) -> Path:
    """Return a WSO2 log of exactly ``lines`` lines whose apps' requests come from ever-changing client IPs.

    ``generate_wso2(mobile_ips=True)``: about one client IP per request, as carrier NAT and
    roaming give mobile apps; every IP is a subject of its own for a window.
    """
    path = workdir / f"wso2_mobile_apim_metrics_{lines}.log"
    if _cached(path, lines):
        return path
    t0 = time.perf_counter()
    scale = scale_for(lines, MINUTES) * HEADROOM
    generate_wso2(path, start=START, minutes=MINUTES, seed=1, scale=scale, max_lines=lines, mobile_ips=True)
    return _generated(path, lines, t0)


def ensure_combined_log(workdir: Path, lines: int) -> Path:
    """Return an nginx combined access log of exactly ``lines`` lines, from :func:`gatewatch.flows.lab.simulate.simulate`.

    The labelled scenario (eleven consumers, about 3,200 client IPs, one attack
    of each kind, invalid-key noise) over ``MINUTES`` minutes. Its line count
    grows linearly with ``scale`` (the attacks and two small consumers are not
    scaled), so two small runs at scale 1 and 2 give the scale for ``lines``;
    the run is cut at exactly ``lines``, a few minutes before its end.
    """
    path = workdir / f"combined_access_{lines}.log"
    if _cached(path, lines):
        return path
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="simulate-", dir=workdir) as tmp:
        one, two = (
            simulate("combined", tmp, minutes=MINUTES, seed=1, scale=s, start=START).lines for s in (1, 2)
        )
        per_scale = two - one
        # fewer lines than the unscaled part (about 5,900 at scale 0.01): the smallest scale, cut
        scale = max((lines - (one - per_scale)) / per_scale * HEADROOM, MIN_SCALE)
        truth = simulate("combined", tmp, minutes=MINUTES, seed=1, scale=scale, start=START)
        if truth.lines < lines:
            msg = f"scale {scale:.2f} gave {truth.lines} lines, wanted {lines}"
            raise RuntimeError(msg)
        with open(Path(tmp) / truth.log, "rb") as src, open(path, "wb") as dst:
            dst.writelines(islice(src, lines))
    return _generated(path, lines, t0)


# -- parse floors -------------------------------------------------------------------------------------


def line_chunks(path: Path) -> Iterator[list[bytes]]:
    """Yield the file's lines in lists of about 1 MiB (``readlines(hint)`` reads whole lines)."""
    with open(path, "rb") as f:
        while lines := f.readlines(CHUNK_BYTES):
            yield lines


def wso2_floor(path: Path) -> int:
    """Decode every line's JSON part into the parser's own record; return the number of events decoded.

    The record is ``_LooseRecord``: the fields the WSO2 parser decodes, the timestamp as text
    (a few generated lines carry Java's shortened times, which the strict one rejects).
    """
    decoder = msgspec.json.Decoder(_LooseRecord)
    n = 0
    for lines in line_chunks(path):
        n += len(decoder.decode_lines(b"".join(line[line.index(b"{") :] for line in lines)))
    return n


def combined_floor(path: Path) -> int:
    """Match every line with the combined parser's access regex; return the number of lines matched.

    Per line: UTF-8 decode, the parser's match (``_ACCESS_PLAIN``, or ``_ACCESS`` for a
    line with a backslash), its eleven groups (vhost, IP, user, time, method, path, query,
    protocol version, status, bytes, user agent), ``int`` of status and bytes.
    """
    plain, escaped = _ACCESS_PLAIN.match, _ACCESS.match
    n = 0
    for lines in line_chunks(path):
        for text in map(bytes.decode, lines):
            m = (escaped if "\\" in text else plain)(text)
            if m is None:
                continue
            _vhost, _ip, _user, _when, _method, _path, _query, _version, status, size, _ua = m.groups()
            int(status)
            if size != "-":
                int(size)
            n += 1
    return n


FLOORS: dict[str, Callable[[Path], int]] = {
    "wso2": wso2_floor,
    "wso2-mobile": wso2_floor,
    "combined": combined_floor,
}
LOGS: dict[str, Callable[[Path, int], Path]] = {
    "wso2": ensure_wso2_log,
    "wso2-mobile": ensure_wso2_mobile_log,
    "combined": ensure_combined_log,
}


def measure_parse_floor(fmt: str, path: Path, lines: int, runs: int) -> float:
    """Return the median parse-floor throughput of ``fmt`` in lines/s; every line must parse."""
    floor = FLOORS[fmt]

    def run() -> None:
        if (parsed := floor(path)) != lines:
            msg = f"{fmt} floor parsed {parsed} of {lines} lines"
            raise RuntimeError(msg)

    return lines / median_s(run, runs)


# -- end to end ---------------------------------------------------------------------------------------


def _summary(output: Path) -> dict[str, str]:
    """Return the ``key=value`` fields of the ``replay:`` summary line in ``output``."""
    for line in reversed(output.read_text(errors="replace").splitlines()):
        if line.startswith("replay: "):
            return dict(re.findall(r"(\w+)=(\S+)", line))
    msg = f"no replay summary in {output}"
    raise RuntimeError(msg)


def store_total(exe: Path, store: Path) -> int:
    """Return ``SUM(traffic.requests) + COUNT(rejected)`` of a store, through ``gatewatch sql``."""
    query = "SELECT (SELECT COALESCE(SUM(requests), 0) FROM traffic) + (SELECT COUNT(*) FROM rejected) AS n"
    out = subprocess.run(
        [str(exe), "sql", "--store", str(store), "--format", "csv", query],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.split()[-1])


def split_log(path: Path, parts: int) -> list[Path]:
    """Deal ``path``'s lines round-robin into ``parts`` files, as if ``parts`` gateway nodes logged them."""
    if parts == 1:
        return [path]
    outs = [path.with_name(f"{path.stem}.node{i}of{parts}{path.suffix}") for i in range(parts)]
    if all(o.exists() and o.stat().st_mtime >= path.stat().st_mtime for o in outs):
        return outs
    files = [open(o, "wb") for o in outs]  # noqa: SIM115 - closed below
    try:
        for chunk in line_chunks(path):
            for i, f in enumerate(files):
                f.writelines(chunk[i::parts])
    finally:
        for f in files:
            f.close()
    return outs


@dataclass(frozen=True)
class Replay:
    """The medians of one layout's runs."""

    lines_per_s: float
    peak_rss_mib: float  # the highest of the runs, summed over a cluster's processes
    cpu_us_per_line: float  # user + sys of every process
    busiest_share: float  # the busiest process's part of that CPU (1.0 for one process)
    rejected: int  # lines rejected in the last run
    floor_lines_per_s: float | None = None  # the parse floors run just before each run
    floor_ratio: float | None = None  # of each run's lines/s to the floor just before it


def measure_replay(
    exe: Path,
    fmt: str,
    inputs: list[Path],
    *,
    workdir: Path,
    lines: int,
    runs: int,
    layout: str,
    shards: int,
    floor: Callable[[], float] | None = None,
) -> Replay:
    """Run ``gatewatch replay`` over ``inputs`` ``runs`` times in ``layout``: ``wN`` threads or ``pN`` processes.

    Every layout uses the same ``shards``, so all give the same traffic and findings. With ``floor``
    (a parse floor's lines/s), each run is paired with a floor run just before it, and
    the ratio is the median of the pairs': the speed of a shared machine drifts over
    minutes, more than over the seconds between a pair.

    Raises:
        RuntimeError: a run failed, or its summaries or store do not account for every line.
    """
    kind, count = layout[0], int(layout[1:])
    workers, processes = (count, 1) if kind == "w" else (1, count)
    config = workdir / f"bench-{layout}.toml"
    config.write_text(f"[pipeline]\nworkers = {workers}\nshards = {shards}\n")
    secs, cpus, shares, floors, peak_kib = [], [], [], [], 0
    for run in range(runs):
        if floor is not None:
            floors.append(floor())
        store = Path(tempfile.mkdtemp(prefix="store-", dir=workdir)) / "store"
        fmt_arg = PARSER_FORMAT.get(fmt, fmt)
        cmd = [str(exe), "replay", *map(str, inputs), "--format", fmt_arg, "--store", str(store), "--config", str(config)]
        if processes > 1:
            addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(processes))
            cmds = [[*cmd, "-i", str(i), "-a", addresses] for i in range(processes)]
        else:
            cmds = [cmd]
        outputs = [workdir / f"replay-{fmt}-{layout}-{run}-p{i}.out" for i in range(processes)]
        usages = [output.with_suffix(".usage") for output in outputs]
        procs = []
        for c, output, usage in zip(cmds, outputs, usages, strict=True):
            with open(output, "wb") as out:
                launch = [sys.executable, "-I", "-S", "-c", LAUNCHER, str(usage), *c]
                procs.append(subprocess.Popen(launch, stdout=out, stderr=subprocess.STDOUT))
        proc_cpus, rss, starts, ends = [], 0, [], []
        try:
            for c, proc, output, usage in zip(cmds, procs, outputs, usages, strict=True):
                if (code := proc.wait()) != 0:
                    tail = output.read_text(errors="replace")[-2000:]
                    msg = f"{' '.join(c)} exited with {code}; output ends with:\n{tail}"
                    raise RuntimeError(msg)
                cpu, maxrss_kib, start, end = usage.read_text().split()
                proc_cpus.append(float(cpu))
                rss += int(maxrss_kib)
                starts.append(float(start))
                ends.append(float(end))
            secs.append(max(ends) - min(starts))
            cpus.append(sum(proc_cpus))
            shares.append(max(proc_cpus) / sum(proc_cpus))
            peak_kib = max(peak_kib, rss)
            summaries = [_summary(o) for o in outputs]
            read, events, rejected = (sum(int(s[k]) for s in summaries) for k in ("lines", "events", "rejected"))
            if read != lines or events + rejected != lines:
                msg = f"{fmt} replay of {lines} lines: lines={read} events={events} rejected={rejected}"
                raise RuntimeError(msg)
            if run == 0 and (total := store_total(exe, store)) != lines:
                msg = f"{fmt} store of {lines} lines: SUM(traffic.requests) + COUNT(rejected) = {total}"
                raise RuntimeError(msg)
        finally:
            for proc in procs:
                proc.kill() if proc.poll() is None else None
            shutil.rmtree(store.parent)
    return Replay(
        lines / statistics.median(secs),
        peak_kib / 1024,
        statistics.median(cpus) / lines * 1e6,
        statistics.median(shares),
        rejected,
        statistics.median(floors) if floors else None,
        statistics.median(lines / sec / f for sec, f in zip(secs, floors, strict=True)) if floors else None,
    )


def head_log(path: Path, lines: int) -> Path:
    """The first ``lines`` lines of ``path``, as a file beside it."""
    out = path.with_name(f"{path.stem}.head{lines}{path.suffix}")
    if not (out.exists() and out.stat().st_mtime >= path.stat().st_mtime):
        with open(path, "rb") as f:
            out.write_bytes(b"".join(islice(f, lines)))
    return out


def measure_fail2ban(path: Path, lines: int, runs: int, filter_name: str) -> float | None:
    """Return the median throughput of ``fail2ban-regex FILE FILTER`` in lines/s, or None without it."""
    exe = shutil.which("fail2ban-regex")
    if exe is None:
        print("Skipping fail2ban-regex: not on PATH (apt-get install fail2ban).")
        return None
    cmd = [exe, str(path), filter_name]

    def run() -> None:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        m = re.search(r"^Lines: (\d+) lines", out, re.MULTILINE)
        if m is None or int(m.group(1)) != lines:
            msg = f"{' '.join(cmd)} did not read {lines} lines:\n{out[-2000:]}"
            raise RuntimeError(msg)

    return lines / median_s(run, runs)


# -- main ---------------------------------------------------------------------------------------------


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print()
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run every measurement for each format and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("bench-data"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--layouts", nargs="+", default=["w1", "w2", "p2"],
        help="wN: one process with N worker threads; pN: N processes (-i/-a), each given one of N node logs.",
    )  # fmt: skip
    parser.add_argument("--shards", type=int, default=4, help="pipeline.shards for every layout (same results).")
    parser.add_argument(
        "--formats", nargs="+", choices=FORMATS, default=list(FORMATS), help="Log formats to run."
    )
    parser.add_argument(
        "--fail2ban-filter", default="nginx-botsearch", help="fail2ban filter for the combined comparison."
    )
    args = parser.parse_args(argv)

    exe = Path(sys.executable).with_name("gatewatch")
    if not exe.exists():
        print(f"Skipping end-to-end: {exe} not found (install the project into this venv first).")
    header = (
        "format",
        "lines",
        "layout",
        "paired parse floor lines/s",
        "end-to-end lines/s",
        "e2e/paired floor",
        "CPU us/line",
        "busiest process CPU %",
        "start s",
        "peak RSS MiB",
    )
    table: list[tuple[str, ...]] = []
    notes: list[str] = []
    for fmt in args.formats:
        path = LOGS[fmt](args.workdir, args.lines)
        floor = measure_parse_floor(fmt, path, args.lines, args.runs)
        print(f"{fmt} parse floor: {floor:,.0f} lines/s (median of {args.runs}, before the replays).")
        fail2ban = None
        if fmt == "combined":
            fail2ban = measure_fail2ban(path, args.lines, args.runs, args.fail2ban_filter)
            if fail2ban is not None:
                print(
                    f"fail2ban-regex {args.fail2ban_filter}: {fail2ban:,.0f} lines/s (median of {args.runs})."
                )
        if not exe.exists():
            continue
        head = head_log(path, START_LINES)
        measured: dict[str, tuple[Replay, float]] = {}
        for layout in args.layouts:
            nodes = int(layout[1:]) if layout.startswith("p") else 1
            common = {"workdir": args.workdir, "runs": args.runs, "layout": layout, "shards": args.shards}
            paired = partial(measure_parse_floor, fmt, path, args.lines, 1)
            r = measure_replay(exe, fmt, split_log(path, nodes), lines=args.lines, floor=paired, **common)
            short = measure_replay(exe, fmt, split_log(head, nodes), lines=START_LINES, **common)
            start_s = START_LINES / short.lines_per_s
            measured[layout] = (r, start_s)
            if r.rejected:
                print(f"{fmt}, {layout}: {r.rejected:,} lines rejected (see the rejected table)")
            table.append(
                (
                    fmt, f"{args.lines:,}", layout, f"{r.floor_lines_per_s:,.0f}", f"{r.lines_per_s:,.0f}",
                    f"{r.floor_ratio:.3f}", f"{r.cpu_us_per_line:.2f}",
                    f"{r.busiest_share * 100:.0f}", f"{start_s:.2f}", f"{r.peak_rss_mib:,.0f}",
                )
            )  # fmt: skip
            if fail2ban is not None:
                notes.append(f"{fmt}, {layout}: end to end / fail2ban-regex = {r.lines_per_s / fail2ban:.2f}")
        notes.extend(_cluster_notes(fmt, args.lines, measured))
        notes.extend(_target_notes(fmt, measured, fail2ban))
    if table:
        _print_table(header, table)
    for line in notes:
        print(line)


# what a replay should reach (docs/benchmarks.md): format -> (measure, its value, at least)
TARGETS: dict[str, list[tuple[str, Callable[[dict[str, Replay], float | None], float | None], float]]] = {
    "wso2-mobile": [
        ("w1 lines/s / parse floor", lambda m, _: m["w1"].floor_ratio if "w1" in m else None, 0.5),
        ("p2 / w1 lines/s", lambda m, _: m["p2"].lines_per_s / m["w1"].lines_per_s if {"w1", "p2"} <= m.keys() else None, 1.8),
    ],
    "combined": [
        ("w1 lines/s / fail2ban-regex", lambda m, f2b: m["w1"].lines_per_s / f2b if "w1" in m and f2b else None, 5.0),
    ],
}  # fmt: skip


def _target_notes(fmt: str, measured: dict[str, tuple[Replay, float]], fail2ban: float | None) -> list[str]:
    """Each target of ``fmt`` with what was measured, and whether it is met."""
    runs = {layout: r for layout, (r, _) in measured.items()}
    out = []
    for name, value_of, at_least in TARGETS.get(fmt, []):
        value = value_of(runs, fail2ban)
        if value is not None:
            verdict = "met" if value >= at_least else "not met"
            out.append(f"target: {fmt}, {name} at least {at_least:g}x: {value:.2f}x, {verdict}")
    return out


def _cluster_notes(fmt: str, lines: int, measured: dict[str, tuple[Replay, float]]) -> list[str]:
    """How each cluster layout compares with one worker, and what bounds it."""
    if "w1" not in measured:
        return []
    one, one_start = measured["w1"]
    out = []
    for layout, (r, start_s) in measured.items():
        if not layout.startswith("p"):
            continue
        bound = one.cpu_us_per_line / (r.busiest_share * r.cpu_us_per_line)
        steady = (lines / one.lines_per_s - one_start) / (lines / r.lines_per_s - start_s)
        out.append(
            f"{fmt}, {layout} / w1: {r.lines_per_s / one.lines_per_s:.2f}x; CPU per line "
            f"{r.cpu_us_per_line / one.cpu_us_per_line:.2f}x w1's, the busiest process {r.busiest_share:.0%} "
            f"of it: at most {bound:.2f}x on {layout[1:]} cores; {steady:.2f}x without the fixed start cost"
        )
    return out


if __name__ == "__main__":
    main()
