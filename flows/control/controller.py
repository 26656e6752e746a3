"""The control plane: findings -> decisions -> outbox, outside the dataflow.

The dataflow only records findings, how far event time has got and which
consumers had traffic in each window (for the blast radius) in the control
database. The :class:`Controller` reads them in order, asks the
policy what follows, stores each decision state, appends it to the store's
``decisions`` history and queues deliveries. A :class:`ControlLoop` thread
runs the controller and the outbox sender side by side with the dataflow,
so a slow gateway never stalls ingestion, and everything it has not done
yet is still on disk after a crash.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from msgspec.structs import astuple, replace

from gatewatch.flows.config import Config
from gatewatch.flows.control.policy import LIVE, RANK, Policy, SubjectContext
from gatewatch.flows.events import Decision, Finding
from gatewatch.sinks.control import ACTIVE_STATUSES, ControlDB
from gatewatch.sinks.outbox import DUE_PAGE, Sender
from gatewatch.sinks.store import StoreWriter

CONTROL_WRITER = "c0"  # segment writer id of the control plane (the dataflow writes as "w0")


class Observer(Protocol):
    """Something that reacts to findings and event time (e.g. alert incidents)."""

    def on_finding(self, finding: Finding, control: ControlDB) -> None: ...

    def on_watermark(self, watermark: float, control: ControlDB) -> None: ...


class Planner(Protocol):
    """Turns a decision state into outbox entries (one per gateway target)."""

    def plan(self, decision: Decision, control: ControlDB, con) -> None: ...


def build_policy(cfg: Config) -> Policy:
    return Policy(window_s=cfg.pipeline.window_s, **cfg.policy.model_dump())


def merge_state(stored: Decision | None, new: Decision) -> Decision | None:
    """The state to store when ``new`` follows ``stored``; None if ``new`` came too late to apply.

    The pipeline's controller and a person (``gatewatch decisions``) may
    change one decision at the same time, each from the state it read. A
    final state (expired, reverted, ...) never changes again, and a TTL
    extension computed from an older state keeps the newer status (an
    approval made meanwhile stays).
    """
    if stored is None or stored.status == new.status:
        return new
    if stored.status not in LIVE:
        return None
    if new.status in LIVE and LIVE.index(new.status) < LIVE.index(stored.status):
        return replace(stored, expires_at=max(stored.expires_at, new.expires_at), changed_at=new.changed_at)
    return new


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
        on_decisions: Callable[[list[Decision]], None] | None = None,
    ) -> None:
        self.control = control
        self.writer = writer
        self.policy = policy
        self.planner = planner
        self.observers = list(observers)
        self.on_decisions = on_decisions  # told every decision state stored (gatewatch run's live lines)
        self.decisions_made = 0  # new decisions (not later states) since construction

    def step(self) -> int:
        """Process new findings and expiries; return how many findings were handled."""
        control = self.control
        cursor = int(control.get_meta("cursor", "0"))
        handled = 0
        # read before the inbox: the sink records a window's findings before it moves the
        # watermark past the window, so every finding this watermark covers is handled below
        watermark = control.watermark()
        while batch := control.findings_after(cursor):
            # one transaction and one history segment per batch of findings: each finding's
            # decisions and observers see the earlier ones' (same connection), and a crash
            # rolls back the whole batch, which is then handled again
            with control.transaction() as con:
                with self.writer.held():  # the observers' rows too
                    for _, finding in batch:
                        active = control.active_decision(finding.subject_type, finding.subject)
                        decisions = self.policy.decide(finding, active, self.context(finding))
                        stored = self._put(decisions, con)
                        self.decisions_made += sum(d.changed_at == d.created_at for d in decisions)
                        for obs in self.observers:
                            obs.on_finding(finding, control)  # joins this transaction
                        self._tell(stored)
                cursor = batch[-1][0]
                self.checkpoint(con, cursor=cursor)
            handled += len(batch)
        if watermark is not None:
            # every finding still to come is for a window ending after the watermark
            control.forget_consumers(watermark - self.policy.active_window_s)
            self.commit(self.policy.expire(control.decisions(ACTIVE_STATUSES), watermark))
            for obs in self.observers:
                obs.on_watermark(watermark, control)
        if applied := self.delivered():
            self.commit(applied)
        return handled

    def context(self, finding: Finding) -> SubjectContext:
        """What the policy needs beyond the finding: the subject's decisions and the fleet's."""
        control = self.control
        restricted = {
            d.subject
            for d in control.decisions(ACTIVE_STATUSES)
            if d.subject_type == "consumer" and d.subject != finding.subject and RANK[d.tier] >= RANK["restricted"]
        }
        return SubjectContext(
            history=control.subject_decisions(finding.subject_type, finding.subject),
            restricted_now=len(restricted),
            active_consumers=lambda: self.active_consumers(finding.window_end),
        )

    def active_consumers(self, until: float) -> int:
        """Resolved consumers with traffic in the policy's active window up to ``until`` (event time)."""
        return self.control.active_consumers(until - self.policy.active_window_s, until)

    def delivered(self) -> list[Decision]:
        """``applied`` states of approved decisions whose gateway deliveries have all been sent."""
        out = []
        for d in self.control.decisions(("approved",)):
            # a later decision's entry may carry this one's effect too: look at the subject's entries
            entries = [
                e for other in self.control.subject_decisions(d.subject_type, d.subject)
                for e in self.control.outbox_for(other.decision_id, since=d.created_at)
            ]  # fmt: skip
            states = {e.state for e in entries}
            if "sent" in states and states <= {"sent", "superseded"}:
                out.append(replace(d, status="applied", changed_at=time.time()))
        return out

    def commit(self, decisions: list[Decision]) -> list[Decision]:
        """Persist decision states, their history rows and their deliveries atomically.

        Each state is first merged with the stored one (:func:`merge_state`).
        The history rows are appended to the store first and acknowledged in
        the same SQLite transaction as the states (see :meth:`checkpoint`), so
        a crash in between neither loses nor repeats a row. Returns the
        states stored.
        """
        with self.control.transaction() as con:
            stored = self._put(decisions, con)
            self.checkpoint(con)
        self._tell(stored)
        return stored

    def _tell(self, stored: list[Decision]) -> None:
        if stored and self.on_decisions is not None:
            self.on_decisions(stored)

    def _put(self, decisions: list[Decision], con) -> list[Decision]:
        """Store the states :func:`merge_state` keeps, their history rows and deliveries; return them."""
        stored = [m for d in decisions if (m := merge_state(self.control.decision(d.decision_id), d))]
        if stored:
            self.writer.append("decisions", [astuple(d) for d in stored])
        for d in stored:
            self.control.put_decision(d, con)
            if self.planner is not None and d.mode == "enforce":
                self.planner.plan(d, self.control, con)
        return stored

    def checkpoint(self, con, *, cursor: int | None = None) -> None:
        """Acknowledge, inside a transaction, every store row written so far (and the inbox cursor)."""
        self.control.acknowledge_store(self.writer.last_seq, con)
        if cursor is not None:
            self.control.set_meta("cursor", str(cursor), con)

    def recover(self) -> None:
        """Remove store rows written after the last acknowledged commit (a crash came between)."""
        seq = self.control.acknowledged_store()
        if seq is not None:
            self.writer.rollback(seq)


class ControlLoop:
    """Run a controller and a sender every ``interval_s`` in a thread of their own.

    The sender must write through ``controller.writer``: :meth:`start`
    recovers that one writer, and both acknowledge its segments.
    """

    def __init__(
        self,
        controller: Controller,
        sender: Sender | None,
        interval_s: float = 0.5,
        *,
        compact_every_s: float = 300.0,
        compact_min_files: int = 16,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.controller = controller
        self.sender = sender
        self.interval_s = interval_s
        self.compact_every_s = compact_every_s
        self.compact_min_files = compact_min_files
        self._last_compact = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gatewatch-control", daemon=True)
        self.error: BaseException | None = None
        self.on_failure = on_failure  # called from the thread, at once: the run must not go on without it

    def start(self) -> ControlLoop:
        self.controller.recover()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                self.tick(self._stop)
        except BaseException as exc:  # surfaced by stop(); the thread must not die silently
            self.error = exc
            if self.on_failure is not None:
                self.on_failure(exc)

    def tick(self, stop: threading.Event | None = None) -> None:
        self.controller.step()
        if self.sender is not None:
            self.sender.step(stop=stop)
        if time.monotonic() - self._last_compact >= self.compact_every_s:
            self.compact()

    def compact(self) -> None:
        """Merge the control plane's small segments (safe to roll back: one row group per segment)."""
        self.controller.writer.compact_all(self.compact_min_files)
        self._last_compact = time.monotonic()

    def stop(self) -> None:
        """Stop the thread, then run one last tick so nothing recorded is left unplanned."""
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise self.error
        self.controller.step()
        # one last try of every destination; a full page may have left more due (a replay's end
        # records many at once), a page with fewer attempts means the rest wait for a retry time or
        # an unreachable destination (one more step would try a hung receiver again: a timeout more)
        while self.sender is not None and self.sender.step() == DUE_PAGE:
            pass
        self.compact()
