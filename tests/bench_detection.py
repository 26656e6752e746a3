"""Detection quality over several seeds and every simulated log format (``make bench``).

Usage::

    python tests/bench_detection.py --seeds 1 2 3 --minutes 90 --workdir bench-data/detection

For each format and seed: ``gatewatch simulate``, ``gatewatch replay`` and
``gatewatch evaluate --json`` through the real console script. Prints one row
per format and attack kind (recall, median and worst detection latency in
windows, kind agreement over the seeds), then subject-level precision, false
positives and the highest score on a benign look-alike per format, and exits
1 if a target (``flows/evaluate.py``) is missed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.evaluate import TARGET_LATENCY_WINDOWS, TARGET_PRECISION  # noqa: E402
from flows.simulate import SIM_FORMATS  # noqa: E402

GATEWATCH = str(Path(sys.executable).with_name("gatewatch"))


def _run(*args: str) -> str:
    proc = subprocess.run([GATEWATCH, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        msg = f"gatewatch {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        raise RuntimeError(msg)
    return proc.stdout


def run_one(fmt: str, seed: int, minutes: int, workdir: Path) -> dict:
    """Simulate, replay and evaluate one format and seed; return the JSON report."""
    out = workdir / f"{fmt}-{seed}"
    shutil.rmtree(out, ignore_errors=True)
    _run("simulate", "--format", fmt, "--minutes", str(minutes), "--seed", str(seed), "--out", str(out))
    _run("replay", str(out / f"{fmt}.log"), "--format", fmt, "--store", str(out / "store"))
    return json.loads(
        _run("evaluate", "--truth", str(out / f"{fmt}.truth.json"), "--store", str(out / "store"), "--json")
    )


def table(reports: dict[str, list[dict]]) -> tuple[list[str], bool]:
    """Markdown tables of the reports (per format), and whether every target is met."""
    ok = True
    lines = [
        "| format | attack kind | recall | median latency (windows) | worst latency | kind agrees |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for fmt, runs in reports.items():
        kinds = [k["kind"] for k in runs[0]["kinds"]]
        for kind in kinds:
            attacks = [a for r in runs for a in r["attacks"] if a["kind"] == kind]
            caught = [a for a in attacks if a["caught"]]
            latencies = [a["latency_windows"] for a in caught]
            median = statistics.median(latencies) if latencies else None
            ok &= len(caught) == len(attacks) and median is not None and median <= TARGET_LATENCY_WINDOWS
            agrees = sum(a["kind_agrees"] for a in caught) / max(len(caught), 1)
            lines.append(
                f"| {fmt} | {kind} | {len(caught)}/{len(attacks)} | "
                f"{'-' if median is None else f'{median:.1f}'} | "
                f"{'-' if not latencies else f'{max(latencies):.1f}'} | {agrees:.0%} |"
            )
    lines += [
        "",
        "| format | seeds | flagged subjects | precision | false-positive findings "
        "| highest look-alike score |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for fmt, runs in reports.items():
        flagged = sum(r["flagged_subjects"] for r in runs)
        true = sum(r["true_subjects"] for r in runs)
        precision = true / flagged if flagged else 1.0
        top = max(la["max_score"] for r in runs for la in r["lookalikes"])
        ok &= precision >= TARGET_PRECISION and all(la["clean"] for r in runs for la in r["lookalikes"])
        fps = sum(len(r["false_positives"]) for r in runs)
        lines.append(f"| {fmt} | {len(runs)} | {flagged} | {precision:.3f} | {fps} | {top:.2f} |")
    return lines, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--minutes", type=int, default=90)
    parser.add_argument("--formats", nargs="+", default=list(SIM_FORMATS), choices=SIM_FORMATS)
    parser.add_argument("--workdir", type=Path, default=Path("bench-data/detection"))
    args = parser.parse_args(argv)
    reports: dict[str, list[dict]] = {}
    for fmt in args.formats:
        for seed in args.seeds:
            report = run_one(fmt, seed, args.minutes, args.workdir)
            reports.setdefault(fmt, []).append(report)
            for fp in report["false_positives"]:
                who = fp["subject_name"] or fp["subject"]
                reasons = "; ".join(fp["reasons"])
                print(f"false positive ({fmt} {seed}): {fp['subject_type']} {who} {fp['kind']}: {reasons}")
    lines, ok = table(reports)
    print(f"\nDetection over seeds {', '.join(map(str, args.seeds))}, {args.minutes}-minute runs:\n")
    print("\n".join(lines))
    print("\ntargets: " + ("met" if ok else "MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
