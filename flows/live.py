"""What ``gatewatch run`` prints as it goes: one line per finding, decision state and incident change.

Text by default (coloured on a terminal), JSON lines with ``--output json``, nothing with
``--quiet``. On a terminal, a status line below them says how the run is doing: lines per
second, how far behind the log it is, the outbox backlog.

The lines come from the control plane's thread as it handles each finding; a crash that
rolls a batch back handles (and prints) it again.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.text import Text

from gatewatch.flows.events import Decision, Finding
from gatewatch.sinks.control import open_read_only

_STYLE = {"finding": "yellow", "decision": "magenta", "incident": "cyan"}
_STATUS_EVERY_S = 1.0


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def finding_line(f: Finding) -> tuple[str, dict]:
    """A finding as a line of text and as a JSON object (what a person acts on, no evidence blob)."""
    who = f.subject_name if f.subject_name and f.subject_name != f.subject else ""
    text = (
        f"{_clock(f.window_end)} finding  {f.kind} {f.subject_type} {f.subject}"
        + (f" ({who})" if who else "")
        + f" score {f.score:.2f}: "
        + "; ".join(f.reasons[:3])
    )
    body = {
        "type": "finding", "finding_id": f.finding_id, "kind": f.kind, "detector": f.detector,
        "subject_type": f.subject_type, "subject": f.subject, "subject_name": f.subject_name,
        "score": f.score, "window_start": f.window_start, "window_end": f.window_end, "reasons": f.reasons,
    }  # fmt: skip
    return text, body


def decision_line(d: Decision) -> tuple[str, dict]:
    limit = {0: ", blocked"}.get(d.limit_per_min, f", limit {d.limit_per_min}/min" if d.limit_per_min > 0 else "")
    text = (
        f"{_clock(d.effective_from)} decision {d.tier} {d.subject_type} {d.subject}: {d.status}{limit}"
        f" by {d.actor}, until {_clock(d.expires_at)} [{d.decision_id}]"
    )
    body = {
        "type": "decision", "decision_id": d.decision_id, "subject_type": d.subject_type, "subject": d.subject,
        "tier": d.tier, "status": d.status, "mode": d.mode, "limit_per_min": d.limit_per_min, "actor": d.actor,
        "effective_from": d.effective_from, "expires_at": d.expires_at, "reason": d.reason,
    }  # fmt: skip
    return text, body


def incident_line(inc) -> tuple[str, dict]:
    text = (
        f"{_clock(inc.window_end)} incident {inc.state} {inc.kind} {inc.subject_type} {inc.subject}: "
        f"{inc.severity}, {inc.findings} finding(s), max score {inc.max_score:.2f} [{inc.incident_id}]"
    )
    body = {
        "type": "incident", "incident_id": inc.incident_id, "state": inc.state, "kind": inc.kind,
        "subject_type": inc.subject_type, "subject": inc.subject, "severity": inc.severity,
        "findings": inc.findings, "max_score": inc.max_score, "revision": inc.revision,
    }  # fmt: skip
    return text, body


class LiveLines:
    """Prints a run's findings, decisions and incidents (a controller observer).

    The control plane only queues a line; a thread of its own writes it. A reader of
    stdout that stops reading (a full pipe) must not stall decisions and deliveries:
    past ``max_queued`` lines waiting, new ones are dropped, and how many is said once the
    output moves again. :meth:`close` writes what is queued.
    """

    def __init__(
        self, out: TextIO, *, json_lines: bool = False, terminal: bool | None = None, max_queued: int = 10_000
    ) -> None:
        self.json_lines = json_lines
        self.console = Console(file=out, force_terminal=terminal, highlight=False, soft_wrap=True)
        self._lock = threading.Lock()  # the writer prints; the status thread redraws
        self._queue: queue.Queue[tuple[str, tuple[str, dict]] | None] = queue.Queue(max_queued)
        self.dropped = 0
        self._writer = threading.Thread(target=self._write_all, name="gatewatch-live", daemon=True)
        self._writer.start()

    def _emit(self, kind: str, line: tuple[str, dict]) -> None:
        try:
            self._queue.put_nowait((kind, line))
        except queue.Full:
            self.dropped += 1

    def _write_all(self) -> None:
        told = 0
        while (item := self._queue.get()) is not None:
            kind, (text, body) = item
            with self._lock:
                if self.dropped > told:
                    gap = self.dropped - told
                    told = self.dropped
                    self._write("note", f"{gap:,} lines were dropped: stdout was not read fast enough", {
                        "type": "dropped", "lines": gap,
                    })  # fmt: skip
                self._write(kind, text, body)

    def _write(self, kind: str, text: str, body: dict) -> None:
        if self.json_lines:
            self.console.file.write(json.dumps(body) + "\n")
            self.console.file.flush()
        else:
            self.console.print(Text(text, style=_STYLE.get(kind, "")))

    def close(self, timeout_s: float = 10.0) -> None:
        """Write the queued lines (for at most ``timeout_s``) and stop the writer."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._writer.join(timeout_s)

    def on_finding(self, finding: Finding, control) -> None:
        self._emit("finding", finding_line(finding))

    def on_watermark(self, watermark: float, control) -> None:
        pass

    def on_decisions(self, decisions: list[Decision]) -> None:
        for d in decisions:
            self._emit("decision", decision_line(d))

    def on_incident(self, incident) -> None:
        self._emit("incident", incident_line(incident))


class StatusLine:
    """A terminal's last line, redrawn every second: lines/s, lag behind the log, outbox backlog."""

    def __init__(self, lines: LiveLines, stats, store: Path) -> None:
        self.lines = lines
        self.stats = stats
        self.store = store
        self._con: sqlite3.Connection | None = None  # the status thread's own, read-only
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gatewatch-status", daemon=True)
        self._live = None

    def start(self) -> StatusLine:
        from rich.live import Live

        self._live = Live(Text(""), console=self.lines.console, transient=True, auto_refresh=False)
        self._live.start()
        self._thread.start()
        return self

    def backlog(self) -> int | None:
        """Deliveries waiting in the outbox, or None before the control plane has a file."""
        try:
            if self._con is None:
                self._con = open_read_only(self.store, timeout_s=1.0)
            if self._con is None:
                return None
            return self._con.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()[0]
        except sqlite3.Error:
            self._con = None
            return None

    def render(self, lines_per_s: float, now: float) -> str:
        newest = self.stats.newest_event_ts
        lag = "–" if newest is None else short_span(now - newest)
        pending = self.backlog()
        outbox = "" if pending is None else f" · outbox {pending:,} pending"
        return f"{self.stats.lines:,} lines · {lines_per_s:,.0f} lines/s · {lag} behind the log{outbox}"

    def _run(self) -> None:
        last_lines, last_t = self.stats.lines, time.monotonic()
        while not self._stop.wait(_STATUS_EVERY_S):
            t, n = time.monotonic(), self.stats.lines
            rate = (n - last_lines) / max(t - last_t, 1e-9)
            last_lines, last_t = n, t
            with self.lines._lock:
                self._live.update(Text(self.render(rate, time.time()), style="dim"), refresh=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        if self._live is not None:
            self._live.stop()


def short_span(seconds: float) -> str:
    """A time span short enough for a status line or a metric (the dashboard's ages too).

    >>> short_span(42), short_span(720), short_span(18_000), short_span(1_814_400), short_span(-3)
    ('42 s', '12 min', '5 h', '21 d', '0 s')
    """
    if seconds < 120:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86_400:.0f} d"
