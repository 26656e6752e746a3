"""``gatewatch simulate`` and ``gatewatch evaluate``: labelled traffic and how well it is detected."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from gatewatch.flows.cli.common import ConfigOpt, StoreOpt, TextOrJson, existing_store, fail, load


class SimFormat(str, Enum):
    wso2 = "wso2"
    kong = "kong"
    combined = "combined"


class SimScenario(str, Enum):
    standard = "standard"
    wide = "wide"


def simulate(
    fmt: Annotated[SimFormat, typer.Option("--format", help="Log format to write.")] = SimFormat.wso2,
    minutes: Annotated[int, typer.Option("--minutes", min=60, help="Length of the run (at least 60).")] = 90,
    seed: Annotated[int, typer.Option("--seed", help="Seeds every random choice: same arguments, same bytes.")] = 1,
    scale: Annotated[float, typer.Option("--scale", min=0.01, help="Multiplier on the normal consumers' rates.")] = 1.0,
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="Folder for <format>.log and <format>.truth.json.")] = Path(
        "sim"
    ),
    scenario: Annotated[
        SimScenario,
        typer.Option(
            "--scenario",
            help="standard: the scenario the detectors were tuned on; wide: held out, every attack kind "
            "with parameters drawn from wide ranges (at least 120 minutes).",
        ),
    ] = SimScenario.standard,
) -> None:
    """Write labelled traffic: every attack kind, benign look-alikes, and the ground truth beside the log."""
    from gatewatch.flows.lab.simulate import simulate as run_simulation

    try:
        truth = run_simulation(fmt.value, out, minutes=minutes, seed=seed, scale=scale, scenario=scenario.value)
    except ValueError as exc:
        raise fail([str(exc)]) from None
    kinds = ", ".join(dict.fromkeys(a.kind for a in truth.attacks))
    typer.echo(f"simulate: {out / truth.log} lines={truth.lines} attacks={kinds} truth={out / (fmt.value + '.truth.json')}")


def evaluate(
    truth: Annotated[Path, typer.Option("--truth", metavar="FILE", help="Ground truth written by gatewatch simulate.")],
    store: StoreOpt = None,
    config: ConfigOpt = None,
    out: Annotated[
        TextOrJson, typer.Option("--output", "-o", help="text: tables for a person; json: the report as one object.")
    ] = TextOrJson.text,
    check: Annotated[bool, typer.Option("--check", help="Exit 1 when a target is missed.")] = False,
) -> None:
    """Score the store's findings against the ground truth: recall, latency, precision, false positives."""
    import msgspec

    from gatewatch.flows.lab.evaluate import evaluate as run_evaluation
    from gatewatch.flows.lab.evaluate import load_findings, load_truth, render

    cfg = load(config, store=store)
    try:
        ground = load_truth(truth)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise fail([f"--truth: {truth}: {exc}"]) from None
    root = existing_store(cfg)
    if not any((root / "traffic").glob("*.parquet")):
        raise fail([f"the store {root} holds no traffic: replay the simulated log into it first"])
    report = run_evaluation(ground, load_findings(root), restrict_score=cfg.policy.restrict_score)
    if out is TextOrJson.json:
        typer.echo(msgspec.json.format(msgspec.json.encode(report), indent=2).decode())
    else:
        sys.stdout.write(render(report))
    if check and report.targets_met():
        raise typer.Exit(1)
