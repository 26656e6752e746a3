"""The one path for people: list, approve and revert decisions (``gatewatch decisions`` and the dashboard).

A person's change is stored like the controller's: merged with the current
state (a decision that expired meanwhile stays expired), written to the
control database with the deliveries it causes in one transaction, and
appended to the store's ``decisions`` history with the person as ``actor``.
Deliveries go to the destinations of the pipeline that last ran on the
store (it records them at start), and its sender delivers them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from msgspec.structs import astuple, replace

from flows import log
from flows.events import Decision
from sinks.control import CONTROL_FILE, ControlDB

HUMAN_WRITER = "h0"  # store segment writer of people's changes
HUMAN_SEQ_KEY = "store_seq_h0"  # its newest acknowledged segment (see Controller.checkpoint)


class DecisionError(ValueError):
    """The decision does not exist or cannot make this change."""


def list_decisions(store: str | os.PathLike[str], status: str | None = None) -> list[Decision]:
    """Current state of every decision (or those with ``status``), oldest first."""
    if not (Path(store) / CONTROL_FILE).exists():
        return []
    control = ControlDB(store)
    try:
        return control.decisions(None if status is None else [status])
    finally:
        control.close()


def approve(store: str | os.PathLike[str], decision_id: str, actor: str) -> Decision:
    """Approve a decision waiting for review; its deliveries are queued. Returns the new state."""
    return _change(store, decision_id, actor, {"pending_review": "approved"})


def revert(store: str | os.PathLike[str], decision_id: str, actor: str) -> Decision:
    """Undo a decision: reject it if it waits for review, else revert it at the gateway. Returns the new state."""
    return _change(
        store, decision_id, actor,
        {"pending_review": "rejected", "recorded": "reverted", "approved": "reverted", "applied": "reverted"},
    )  # fmt: skip


def _change(store: str | os.PathLike[str], decision_id: str, actor: str, moves: dict[str, str]) -> Decision:
    if not actor.strip():
        msg = "an actor (who makes the change) is required"
        raise DecisionError(msg)
    if not (Path(store) / CONTROL_FILE).exists():
        msg = f"no control database in {store}: has a pipeline run on it?"
        raise DecisionError(msg)
    control = ControlDB(store).open()
    try:
        current = control.decision(decision_id)
        if current is None:
            msg = f"no decision {decision_id!r} in {store}"
            raise DecisionError(msg)
        if current.status not in moves:
            msg = f"decision {decision_id} is {current.status}: only {', '.join(moves)} decisions can change this way"
            raise DecisionError(msg)
        new = replace(current, status=moves[current.status], actor=actor, changed_at=time.time())
        stored = _commit(Path(store), control, new)
        if stored is None:  # the controller changed it meanwhile (e.g. it expired)
            latest = control.decision(decision_id)
            msg = f"decision {decision_id} became {latest.status} meanwhile; nothing changed"
            raise DecisionError(msg)
        return stored
    finally:
        control.close()


def _commit(store: Path, control: ControlDB, new: Decision) -> Decision | None:
    from flows.controller import merge_state
    from sinks.store import StoreWriter
    from sinks.targets import recorded_planner

    writer = StoreWriter(store, writer=HUMAN_WRITER)
    planner = recorded_planner(control)
    # one transaction serialises people's changes across processes, so the writer's
    # sequence numbers are found and used under the same lock
    with control.transaction() as con:
        acked = control.get_meta(HUMAN_SEQ_KEY)
        if acked is not None:
            writer.rollback(int(acked))  # rows of a change that crashed before its commit
        writer.open()
        merged = merge_state(control.decision(new.decision_id), new)
        if merged is None:
            return None
        writer.append("decisions", [astuple(merged)])
        control.put_decision(merged, con)
        if planner is not None and merged.mode == "enforce":
            planner.plan(merged, control, con)
        control.set_meta(HUMAN_SEQ_KEY, str(writer.last_seq), con)
    return merged


# -- gatewatch decisions ------------------------------------------------------------

decisions_app = typer.Typer(
    help="List, approve and revert policy decisions (the dashboard uses the same path).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
StoreOpt = Annotated[Path | None, typer.Option("--store", metavar="DIR", envvar="GATEWATCH_STORE", help="Store folder (default: the config's store.path).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", metavar="FILE", envvar="GATEWATCH_CONFIG", help="TOML config file (for the store path).")]
ActorOpt = Annotated[
    str | None, typer.Option("--actor", metavar="NAME", help="Who makes the change (default: $USER).")
]
COLUMNS = ("decision_id", "subject_type", "subject", "subject_name", "tier", "limit_per_min", "mode", "status", "actor", "expires_at", "reason")


def _store(store: Path | None, config: Path | None) -> Path:
    from flows.cli import _load

    return _load(config, store=store).store.path


def _show(decisions: list[Decision], out: str) -> None:
    import pyarrow as pa

    from flows.cli import SqlFormat, _render

    rows = [{c: getattr(d, c) for c in COLUMNS} for d in decisions]
    for row in rows:
        row["expires_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["expires_at"]))
    table = pa.Table.from_pylist(rows) if rows else pa.table({c: [] for c in COLUMNS})
    typer.echo(_render(table, SqlFormat(out)), nl=False)


def _actor(actor: str | None) -> str:
    return actor or os.environ.get("USER") or os.environ.get("LOGNAME") or ""


@decisions_app.command("list")
def list_command(
    status: Annotated[str | None, typer.Option("--status", help="Only decisions in this status, e.g. pending_review.")] = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    out: Annotated[
        str, typer.Option("--output", "-o", "--format", help="table | csv | json (--format is its older name)")
    ] = "table",
) -> None:
    """List decisions with their current status."""
    if out not in ("table", "csv", "json"):
        msg = "choose table, csv or json"
        raise typer.BadParameter(msg, param_hint="--output")
    _show(list_decisions(_store(store, config), status), out)


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
        d = change(_store(store, config), decision_id, _actor(actor))
    except DecisionError as exc:
        log.emit("error", "error", str(exc))
        raise typer.Exit(1) from None
    typer.echo(f"{d.decision_id}: {d.status} by {d.actor} ({d.tier} {d.subject_type} {d.subject_name or d.subject})")
