"""The control plane: findings -> decisions -> outbox, outside the dataflow.

The dataflow only records findings (and how far event time has got) in the
control database. The :class:`Controller` reads them in order, asks the
policy what follows, stores each decision state, appends it to the store's
``decisions`` history and queues deliveries. A :class:`ControlLoop` thread
runs the controller and the outbox sender side by side with the dataflow,
so a slow gateway never stalls ingestion, and everything it has not done
yet is still on disk after a crash.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol

from msgspec.structs import astuple

from flows.config import Config
from flows.events import Decision, Finding
from flows.policy import Policy
from sinks.control import ACTIVE_STATUSES, ControlDB
from sinks.outbox import Sender
from sinks.store import StoreWriter

CONTROL_WRITER = "c0"  # segment writer id of the control plane (the dataflow writes as "w0")


class Observer(Protocol):
    """Something that reacts to findings and event time (e.g. alert incidents)."""

    def on_finding(self, finding: Finding, control: ControlDB) -> None: ...

    def on_watermark(self, watermark: float, control: ControlDB) -> None: ...


class Planner(Protocol):
    """Turns a decision state into outbox entries (one per gateway target)."""

    def plan(self, decision: Decision, control: ControlDB, con) -> None: ...


def build_policy(cfg: Config) -> Policy:
    pol = cfg.policy
    return Policy(
        mode=pol.mode,
        restrict_score=pol.restrict_score,
        ttl_s=pol.ttl_s,
        window_s=cfg.pipeline.window_s,
        limit_factor=pol.limit_factor,
        min_limit_per_min=pol.min_limit_per_min,
    )


class Controller:
    """Apply the policy to recorded findings, in order, exactly once."""

    def __init__(
        self,
        control: ControlDB,
        writer: StoreWriter,
        policy: Policy,
        *,
        planner: Planner | None = None,
        observers: Iterable[Observer] = (),
    ) -> None:
        self.control = control
        self.writer = writer
        self.policy = policy
        self.planner = planner
        self.observers = list(observers)
        self.decisions_made = 0  # new decisions (not later states) since construction

    def step(self) -> int:
        """Process new findings and expiries; return how many findings were handled."""
        control = self.control
        cursor = int(control.get_meta("cursor", "0"))
        handled = 0
        while batch := control.findings_after(cursor):
            for seq, finding in batch:
                active = control.active_decision(finding.subject_type, finding.subject)
                decisions = self.policy.decide(finding, active)
                self.commit(decisions, cursor_to=seq)
                self.decisions_made += len(decisions)
                for obs in self.observers:
                    obs.on_finding(finding, control)
                cursor = seq
                handled += 1
        watermark = control.watermark()
        if watermark is not None:
            self.commit(self.policy.expire(control.decisions(ACTIVE_STATUSES), watermark))
            for obs in self.observers:
                obs.on_watermark(watermark, control)
        return handled

    def commit(self, decisions: list[Decision], *, cursor_to: int | None = None) -> None:
        """Persist decision states, their history rows and their deliveries atomically.

        The history is appended first: a crash before the SQLite commit
        repeats a history row (readers take the latest state per decision),
        never loses one.
        """
        if decisions:
            self.writer.append("decisions", [astuple(d) for d in decisions])
        with self.control.transaction() as con:
            for d in decisions:
                self.control.put_decision(d, con)
                if self.planner is not None and d.mode == "enforce":
                    self.planner.plan(d, self.control, con)
            if cursor_to is not None:
                self.control.set_meta("cursor", str(cursor_to), con)


class ControlLoop:
    """Run a controller and a sender every ``interval_s`` in a thread of their own."""

    def __init__(self, controller: Controller, sender: Sender | None, interval_s: float = 0.5) -> None:
        self.controller = controller
        self.sender = sender
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gatewatch-control", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> ControlLoop:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                self.tick()
        except BaseException as exc:  # surfaced by stop(); the thread must not die silently
            self.error = exc

    def tick(self) -> None:
        self.controller.step()
        if self.sender is not None:
            self.sender.step()

    def stop(self) -> None:
        """Stop the thread, then run one last tick so nothing recorded is left unplanned."""
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise self.error
        self.tick()
