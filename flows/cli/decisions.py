"""``gatewatch decisions``: list, approve and revert decisions from the command line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from gatewatch.flows import log
from gatewatch.flows.cli.common import (
    ActorOpt,
    ConfigOpt,
    SqlFormat,
    StoreOpt,
    actor_name,
    existing_store,
    load,
    render_rows,
)
from gatewatch.flows.control.decisions import DecisionError, approve, list_decisions, revert
from gatewatch.flows.events import Decision

decisions_app = typer.Typer(
    help="List, approve and revert policy decisions (the dashboard uses the same path).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
COLUMNS = ("decision_id", "subject_type", "subject", "subject_name", "tier", "limit_per_min", "mode", "status", "actor", "expires_at", "reason")


def _show(decisions: list[Decision], out: SqlFormat) -> None:
    rows = [{c: getattr(d, c) for c in COLUMNS} for d in decisions]
    for row in rows:
        row["expires_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["expires_at"]))
    typer.echo(render_rows(rows, COLUMNS, out), nl=False)


@decisions_app.command("list")
def list_command(
    status: Annotated[str | None, typer.Option("--status", help="Only decisions in this status, e.g. pending_review.")] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    out: Annotated[
        SqlFormat, typer.Option("--output", "-o", "--format", help="Output format (--format is its older name).")
    ] = SqlFormat.table,
) -> None:
    """List decisions with their current status."""
    _show(list_decisions(existing_store(load(config, store=store)), status), out)


@decisions_app.command("approve")
def approve_command(
    decision_id: Annotated[str, typer.Argument(metavar="ID")],
    store: StoreOpt = None,
    config: ConfigOpt = None,
    actor: ActorOpt = None,
) -> None:
    """Approve a decision that waits for review: its gateway changes are queued."""
    _run(approve, decision_id, store, config, actor)


@decisions_app.command("revert")
def revert_command(
    decision_id: Annotated[str, typer.Argument(metavar="ID")],
    store: StoreOpt = None,
    config: ConfigOpt = None,
    actor: ActorOpt = None,
) -> None:
    """Revert a decision (reject it if it waits for review): what it added at the gateway is removed."""
    _run(revert, decision_id, store, config, actor)


def _run(change, decision_id: str, store: Path | None, config: Path | None, actor: str | None) -> None:
    try:
        d = change(existing_store(load(config, store=store)), decision_id, actor_name(actor))
    except DecisionError as exc:
        log.emit("error", "error", str(exc))
        raise typer.Exit(1) from None
    typer.echo(f"{d.decision_id}: {d.status} by {d.actor} ({d.tier} {d.subject_type} {d.subject_name or d.subject})")
