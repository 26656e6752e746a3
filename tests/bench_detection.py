"""Detection quality over several seeds and every simulated log format (``make bench``).

Usage::

    python tests/bench_detection.py --seeds 1 2 3 --minutes 90 --workdir bench-data/detection
    python tests/bench_detection.py --seeds --held-out-seeds 201 202 203   # the held-out part only

For each format and seed: ``gatewatch simulate``, ``gatewatch replay`` and
``gatewatch evaluate --output json`` through the real console script.

- **Standard scenario, tuning seeds** (``--seeds``, ``--minutes``): the one the
  detectors were tuned on. One row per format and attack kind (recall, median
  and worst detection latency in windows, kind agreement over the seeds), then
  subject-level precision, false positives and the highest look-alike score.
- **Wide scenario, held-out seeds** (``--held-out-seeds``, ``--held-out-minutes``,
  ``--held-out-scale``): attacks drawn from wide ranges, which the detectors were
  not tuned on. One row per format, attack kind and horizon (``horizon_s``, the
  shortest horizon the attack's rate is meant to show on): attacks, caught, recall,
  median latency, and how many were drawn below every documented threshold
  (``faint``); then precision and the highest score per look-alike; then every
  missed attack with its drawn parameters and what the detectors did flag during
  it, and the false positives with their reasons. The reports are also written to
  ``<workdir>/held_out.json``.

Exits 1 if a standard-scenario target (``flows/lab/evaluate.py``) is missed, or if on
a held-out run a look-alike is restricted or precision is below its target. The
held-out recall is reported, never enforced.
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

from gatewatch.flows.lab.evaluate import TARGET_LATENCY_WINDOWS, TARGET_PRECISION  # noqa: E402
from gatewatch.flows.lab.simulate import SIM_FORMATS  # noqa: E402

GATEWATCH = str(Path(sys.executable).with_name("gatewatch"))
HELD_OUT_SEEDS = [201, 202, 203]  # 101-103 showed two faults that were then fixed: no longer held out
HELD_OUT_MINUTES = 240
_MISS_PARAMS = (
    "behaviour", "n_ips", "per_ip_per_min", "total_per_min", "duration_min", "subject", "consumer", "endpoint",
    "variant", "style", "order", "timing", "user_agent", "failure_ratio", "tries_per_ip", "n_subnets",
    "normal_per_min", "endpoint_normal_per_min", "consumer_normal_per_min", "tier_limit_per_min",
    "per_ip_horizon_s", "paths", "requests",
)  # fmt: skip


def _run(*args: str) -> str:
    proc = subprocess.run([GATEWATCH, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        msg = f"gatewatch {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        raise RuntimeError(msg)
    return proc.stdout


def run_one(
    fmt: str, seed: int, minutes: int, workdir: Path, scenario: str = "standard", scale: float = 1.0
) -> dict:
    """Simulate, replay and evaluate one format and seed; return the JSON report."""
    out = workdir / (f"{fmt}-{seed}" if scenario == "standard" else f"{scenario}-{fmt}-{seed}")
    shutil.rmtree(out, ignore_errors=True)
    sim = ["simulate", "--format", fmt, "--minutes", str(minutes), "--seed", str(seed), "--out", str(out)]
    if scenario != "standard":
        sim += ["--scenario", scenario, "--scale", str(scale)]
    _run(*sim)
    _run("replay", str(out / f"{fmt}.log"), "--format", fmt, "--store", str(out / "store"))
    return json.loads(
        _run("evaluate", "--truth", str(out / f"{fmt}.truth.json"), "--store", str(out / "store"), "--output", "json")
    )


def table(reports: dict[str, list[dict]]) -> tuple[list[str], bool]:
    """Markdown tables of the standard scenario's reports (per format), and whether every target is met."""
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
    summary, clean = _precision_table(reports)
    return [*lines, "", *summary], ok and clean


def _precision_table(reports: dict[str, list[dict]]) -> tuple[list[str], bool]:
    """Precision, false positives and the highest look-alike score per format; and whether all are met."""
    ok = True
    lines = [
        "| format | seeds | flagged subjects | precision | false-positive findings "
        "| highest look-alike score | precision and look-alikes |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for fmt, runs in reports.items():
        flagged = sum(r["flagged_subjects"] for r in runs)
        true = sum(r["true_subjects"] for r in runs)
        precision = true / flagged if flagged else 1.0
        top = max(la["max_score"] for r in runs for la in r["lookalikes"])
        met = precision >= TARGET_PRECISION and all(la["clean"] for r in runs for la in r["lookalikes"])
        ok &= met
        fps = sum(len(r["false_positives"]) for r in runs)
        shown = f"{precision:.4f}" if f"{precision:.3f}" == f"{TARGET_PRECISION:.3f}" else f"{precision:.3f}"
        lines.append(
            f"| {fmt} | {len(runs)} | {flagged} | {shown} | {fps} | {top:.2f} | {'met' if met else 'MISSED'} |"
        )
    return lines, ok


def _horizon(seconds: int) -> str:
    return f"{seconds // 3600} h" if seconds % 3600 == 0 else f"{seconds // 60} min"


def held_out_table(reports: dict[str, list[dict]]) -> tuple[list[str], bool]:
    """The wide scenario's tables, misses and false positives; and whether precision and look-alikes are met.

    Recall and latency are reported only: the wide scenario is held out.
    """
    lines = [
        "| format | attack kind | horizon | attacks | caught | recall | median latency (windows) | faint |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for fmt, runs in reports.items():
        attacks = [a for r in runs for a in r["attacks"]]
        cells = sorted({(a["kind"], a["horizon_s"]) for a in attacks}, key=lambda kh: (kh[0], kh[1]))
        for kind, horizon in cells:
            cell = [a for a in attacks if a["kind"] == kind and a["horizon_s"] == horizon]
            caught = [a for a in cell if a["caught"]]
            latencies = [a["latency_windows"] for a in caught]
            median = f"{statistics.median(latencies):.1f}" if latencies else "-"
            faint = sum(a["faint"] for a in cell)
            lines.append(
                f"| {fmt} | {kind} | {_horizon(horizon)} | {len(cell)} | {len(caught)} | "
                f"{len(caught) / len(cell):.2f} | {median} | {faint} |"
            )
        caught = sum(a["caught"] for a in attacks)
        visible = [a for a in attacks if not a["faint"]]
        lines.append(
            f"| {fmt} | **all** | | {len(attacks)} | {caught} | {caught / max(len(attacks), 1):.2f} | | "
            f"{len(attacks) - len(visible)} |"
        )
    summary, ok = _precision_table(reports)
    lines += ["", *summary, "", "| format | look-alike | runs | max score | restricted runs |", "| --- | --- | --- | --- | --- |"]
    for fmt, runs in reports.items():
        kinds = dict.fromkeys(la["kind"] for r in runs for la in r["lookalikes"])
        for kind in kinds:
            these = [la for r in runs for la in r["lookalikes"] if la["kind"] == kind]
            top = max(la["max_score"] for la in these)
            lines.append(
                f"| {fmt} | {kind} | {len(these)} | {top:.2f} | {sum(not la['clean'] for la in these)} |"
            )
    lines += ["", "Missed attacks (parameters as drawn; 'seen' = findings on its subjects and participants while it ran):"]
    for fmt, runs in reports.items():
        for r in runs:
            for a in r["attacks"]:
                if a["caught"]:
                    continue
                params = " ".join(f"{k}={a['params'][k]}" for k in _MISS_PARAMS if a["params"].get(k) is not None)
                faint = ", faint" if a["faint"] else ""
                lines.append(f"- {fmt} seed {r['seed']}: {a['kind']} ({_horizon(a['horizon_s'])}{faint}): {a['description']}")
                lines.append(f"  - params: {params}")
                lines.append(f"  - seen: {', '.join(a['involved']) or 'nothing'}")
    lines += ["", "False positives (findings outside every attack, grouped per subject and kind):"]
    for fmt, runs in reports.items():
        for r in runs:
            groups: dict[tuple[str, str, str], list[dict]] = {}
            for f in r["false_positives"]:
                groups.setdefault((f["subject_type"], f["subject_name"] or f["subject"], f["kind"]), []).append(f)
            for (stype, who, kind), fs in groups.items():
                top = max(fs, key=lambda f: f["score"])
                spans = {round(f["window_end"] - f["window_start"]) for f in fs}
                lines.append(
                    f"- {fmt} seed {r['seed']}: {stype} {who} {kind} x{len(fs)} (max {top['score']:.2f}, "
                    f"windows {'/'.join(_horizon(s) for s in sorted(spans))}): {'; '.join(top['reasons'])}"
                )
    return lines, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3], help="tuning seeds (standard scenario)")
    parser.add_argument("--minutes", type=int, default=90)
    parser.add_argument(
        "--held-out-seeds",
        type=int,
        nargs="*",
        default=HELD_OUT_SEEDS,
        help=f"seeds of the wide scenario (default {' '.join(map(str, HELD_OUT_SEEDS))}; none to skip it)",
    )
    parser.add_argument("--held-out-minutes", type=int, default=HELD_OUT_MINUTES)
    parser.add_argument("--held-out-scale", type=float, default=1.0)
    parser.add_argument("--formats", nargs="+", default=list(SIM_FORMATS), choices=SIM_FORMATS)
    parser.add_argument("--workdir", type=Path, default=Path("bench-data/detection"))
    args = parser.parse_args(argv)
    ok = True
    if args.seeds:
        reports: dict[str, list[dict]] = {}
        for fmt in args.formats:
            for seed in args.seeds:
                report = run_one(fmt, seed, args.minutes, args.workdir)
                reports.setdefault(fmt, []).append(report)
                for fp in report["false_positives"]:
                    who = fp["subject_name"] or fp["subject"]
                    reasons = "; ".join(fp["reasons"])
                    print(f"false positive ({fmt} {seed}): {fp['subject_type']} {who} {fp['kind']}: {reasons}")
        lines, met = table(reports)
        ok &= met
        print(f"\nDetection over seeds {', '.join(map(str, args.seeds))}, {args.minutes}-minute runs:\n")
        print("\n".join(lines))
        print("\ntargets: " + ("met" if met else "MISSED"))
    if args.held_out_seeds:
        held: dict[str, list[dict]] = {}
        for fmt in args.formats:
            for seed in args.held_out_seeds:
                report = run_one(
                    fmt, seed, args.held_out_minutes, args.workdir, "wide", args.held_out_scale
                )
                held.setdefault(fmt, []).append(report)
        args.workdir.mkdir(parents=True, exist_ok=True)
        (args.workdir / "held_out.json").write_text(json.dumps(held, indent=1) + "\n", encoding="utf-8")
        lines, met = held_out_table(held)
        ok &= met
        print(
            f"\nHeld out: wide scenario, seeds {', '.join(map(str, args.held_out_seeds))}, "
            f"{args.held_out_minutes}-minute runs at scale {args.held_out_scale} (recall reported, not a target):\n"
        )
        print("\n".join(lines))
        print("\nheld-out targets (precision, look-alikes): " + ("met" if met else "MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
