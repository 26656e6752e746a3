"""Benchmark replaying a large WSO2 ``apim_metrics.log``: parse-only floor vs ``gatewatch replay``.

Usage::

    python tests/bench_replay.py --lines 1000000 --workdir bench-data

Generates the log with :func:`flows.simulate.generate_wso2` (reused from the
workdir when it already has that many lines), then measures:

- the parse floor, in this process: read the file in 1 MiB chunks of lines and
  decode every line's JSON part with a msgspec Struct of the dozen fields the pipeline
  uses (batched ``decode_lines``), median of ``--runs``;
- end to end: ``gatewatch replay FILE --store DIR`` (the console script next to
  this interpreter) as a subprocess, median wall time of ``--runs`` and its peak
  RSS, from ``os.wait4``. Skipped with a message if the script is missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import msgspec

# run as a plain script: make the repository importable without installing it
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.simulate import generate_wso2, scale_for  # noqa: E402

CHUNK_BYTES = 1 << 20
MINUTES = 60
START = datetime(2026, 11, 2, 9, tzinfo=timezone.utc)


class _Properties(msgspec.Struct, rename="camel"):
    response_size: int = 0


class _Slim(msgspec.Struct, rename="camel"):
    """The fields the pipeline reads; msgspec skips the others without building them."""

    request_timestamp: str
    api_name: str
    api_version: str
    application_id: str
    application_name: str
    application_owner: str
    proxy_response_code: int
    user_ip: str = ""  # absent in apim:faulty events
    api_method: str = ""
    api_resource_template: str = ""
    response_latency: int = -1
    error_type: str = ""  # only in apim:faulty events
    properties: _Properties = msgspec.field(default_factory=_Properties)


def count_lines(path: Path) -> int:
    """Return the number of newline-terminated lines in ``path``."""
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            n += chunk.count(b"\n")
    return n


def ensure_log(workdir: Path, lines: int) -> Path:
    """Return a WSO2 log of exactly ``lines`` lines in ``workdir``, generating it if needed."""
    path = workdir / f"wso2_apim_metrics_{lines}.log"
    if path.exists() and count_lines(path) == lines:
        print(f"Reusing {path}.")
        return path
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # 5 % more traffic than needed, cut at exactly `lines`
    scale = scale_for(lines, MINUTES) * 1.05
    truth = generate_wso2(path, start=START, minutes=MINUTES, seed=1, scale=scale, max_lines=lines)
    if truth.lines != lines:
        msg = f"generated {truth.lines} lines, wanted {lines}"
        raise RuntimeError(msg)
    size_mib = path.stat().st_size / 2**20
    print(f"Generated {path} ({lines:,} lines, {size_mib:,.0f} MiB) in {time.perf_counter() - t0:.1f} s.")
    return path


def parse_floor(path: Path) -> int:
    """Decode every line's JSON part; return the number of events decoded."""
    decoder = msgspec.json.Decoder(_Slim)
    n = 0
    with open(path, "rb") as f:
        # readlines(hint) reads whole lines up to about 1 MiB: chunked reads without splitting by hand
        while lines := f.readlines(CHUNK_BYTES):
            n += len(decoder.decode_lines(b"".join(line[line.index(b"{") :] for line in lines)))
    return n


def measure_parse_floor(path: Path, lines: int, runs: int) -> float:
    """Return the median parse-floor throughput in lines/s."""
    secs = []
    for _ in range(runs):
        t0 = time.perf_counter()
        decoded = parse_floor(path)
        secs.append(time.perf_counter() - t0)
        if decoded != lines:
            msg = f"decoded {decoded} events from {lines} lines"
            raise RuntimeError(msg)
    return lines / statistics.median(secs)


def measure_replay(exe: Path, path: Path, workdir: Path, lines: int, runs: int, workers: int) -> tuple[float, float]:
    """Run ``gatewatch replay`` ``runs`` times with ``workers`` workers; return median lines/s and peak RSS in MiB."""
    secs, peak_kib = [], 0
    config = workdir / f"workers-{workers}.toml"
    config.write_text(f"[pipeline]\nworkers = {workers}\nshards = {workers}\n")
    for run in range(runs):
        store_dir = Path(tempfile.mkdtemp(prefix="store-", dir=workdir))
        output = workdir / f"replay-{run}.out"
        cmd = [str(exe), "replay", str(path), "--store", str(store_dir / "store"), "--config", str(config)]
        t0 = time.perf_counter()
        with open(output, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
            # wait4 gives this child's own rusage, so each run's peak RSS is separate
            _, status, usage = os.wait4(proc.pid, 0)
        secs.append(time.perf_counter() - t0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        shutil.rmtree(store_dir)
        if proc.returncode != 0:
            tail = output.read_text(errors="replace")[-2000:]
            msg = f"{' '.join(cmd)} exited with {proc.returncode}; output ends with:\n{tail}"
            raise RuntimeError(msg)
        peak_kib = max(peak_kib, usage.ru_maxrss)  # KiB on Linux
    return lines / statistics.median(secs), peak_kib / 1024


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run both measurements and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("bench-data"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Bytewax workers to compare.")
    args = parser.parse_args(argv)

    path = ensure_log(args.workdir, args.lines)
    floor = measure_parse_floor(path, args.lines, args.runs)
    print(f"Parse floor: {floor:,.0f} lines/s (median of {args.runs}).")

    exe = Path(sys.executable).with_name("gatewatch")
    if not exe.exists():
        print(f"Skipping end-to-end: {exe} not found (install the project into this venv first).")
        return
    header = ("lines", "workers", "parse floor lines/s", "end-to-end lines/s", "e2e/floor", "peak RSS MiB")
    table = []
    for workers in args.workers:
        rate, peak = measure_replay(exe, path, args.workdir, args.lines, args.runs, workers)
        table.append((f"{args.lines:,}", str(workers), f"{floor:,.0f}", f"{rate:,.0f}", f"{rate / floor:.3f}", f"{peak:,.0f}"))
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
    print()
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for row in table:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


if __name__ == "__main__":
    main()
