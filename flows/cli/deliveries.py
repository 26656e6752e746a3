"""``gatewatch deliveries``: see what the outbox gave up on, and send it again.

A delivery is dead-lettered after ``delivery.max_attempts`` failures or at once
on a 4xx. Once the cause is fixed (a gateway back, a token renewed), ``retry``
gives those entries a fresh round of attempts; the next step of a running
pipeline's sender, or of the next ``run``, sends them. An entry with a newer
one for the same incident or subject is not retried: it would undo it.
"""

from __future__ import annotations

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
from gatewatch.sinks.control import CONTROL_FILE, ControlDB

deliveries_app = typer.Typer(
    help="List dead-lettered deliveries and retry them.", no_args_is_help=True, rich_markup_mode=None
)
COLUMNS = ("id", "destination", "attempts", "last_error")


def _control(store: Path | None, config: Path | None) -> ControlDB | None:
    """The store's control database; None for a store without one (nothing was ever delivered there)."""
    root = existing_store(load(config, store=store))
    return ControlDB(root).open() if (root / CONTROL_FILE).exists() else None


@deliveries_app.command("list")
def list_command(
    store: StoreOpt = None,
    config: ConfigOpt = None,
    out: Annotated[SqlFormat, typer.Option("--output", "-o", help="Output format.")] = SqlFormat.table,
) -> None:
    """List the dead letters: id, destination, attempts and the last error."""
    dead = []
    if control := _control(store, config):
        try:
            dead = control.outbox("dead_letter")
        finally:
            control.close()
    rows = [{c: getattr(e, c) for c in COLUMNS} for e in dead]
    typer.echo(render_rows(rows, COLUMNS, out), nl=False)


@deliveries_app.command("retry")
def retry_command(
    entry_ids: Annotated[list[str] | None, typer.Argument(metavar="[ID]...", help="Dead letters to retry.")] = None,
    all_dead: Annotated[bool, typer.Option("--all", help="Retry every dead letter.")] = False,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    actor: ActorOpt = None,
) -> None:
    """Give dead letters a fresh round of attempts, recorded as the actor's."""
    if bool(entry_ids) == all_dead:
        log.emit("error", "error", "give dead-letter IDs or --all")
        raise typer.Exit(2)
    retried, stale = [], []
    if control := _control(store, config):
        try:
            retried, stale = control.retry_dead_letters(None if all_dead else entry_ids, actor_name(actor))
        finally:
            control.close()
    for entry_id in retried:
        typer.echo(f"{entry_id}: pending again")
    for entry_id in stale:
        log.emit("note", "not_retried", f"{entry_id}: not retried: a newer delivery to the same destination supersedes it")
    unknown = sorted(set(entry_ids or ()) - set(retried) - set(stale))
    for entry_id in unknown:
        log.emit("error", "error", f"{entry_id} is not a dead letter")
    if unknown:
        raise typer.Exit(1)
