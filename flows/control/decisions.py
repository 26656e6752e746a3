"""The one path for people: list, approve and revert decisions (the ``gatewatch decisions`` commands and the dashboard).

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

from msgspec.structs import astuple, replace

from gatewatch.flows.events import Decision
from gatewatch.sinks.control import CONTROL_FILE, ControlDB

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
    from gatewatch.flows.control.controller import merge_state
    from gatewatch.sinks.store import StoreWriter
    from gatewatch.sinks.targets import recorded_planner

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
