"""The control database: durable, mutable state of the control plane.

Findings arrive in an *inbox*, decisions live here with their current state,
and everything that must reach the outside world waits in the *outbox* until
a sender delivers it. SQLite in WAL mode lets the pipeline, the CLI
(``gatewatch decisions approve``) and the dashboard use it at the same time,
which a DuckDB file would not allow.

Every insert is keyed by a deterministic id and made with ``INSERT OR
IGNORE``, so Bytewax replaying output after a crash changes nothing.
The store's Parquet tables keep the history (every decision state, every
delivery attempt); this file keeps only the present.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec

from gatewatch.flows.events import Decision, Finding

CONTROL_FILE = "control.sqlite"


def open_read_only(store: str | os.PathLike[str], timeout_s: float = 5.0) -> sqlite3.Connection | None:
    """A read-only connection to a store's control file, or None while there is no file yet.

    For readers outside the control plane (the dashboard, the decision API, the metrics and
    status threads): in WAL mode they see committed state and never block its writer.
    """
    path = Path(store) / CONTROL_FILE
    if not path.exists():
        return None
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout_s, check_same_thread=False)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    finding_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY,
    subject_type TEXT NOT NULL,
    subject TEXT NOT NULL,
    status TEXT NOT NULL,
    expires_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_by_subject ON decisions (subject_type, subject);
CREATE INDEX IF NOT EXISTS decisions_by_status ON decisions (status);
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    destination TEXT NOT NULL,
    ref_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at);
CREATE TABLE IF NOT EXISTS retries (entry_id TEXT NOT NULL, actor TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS target_state (
    destination TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (destination, key)
);
CREATE TABLE IF NOT EXISTS incidents (
    incident_id TEXT PRIMARY KEY,
    subject_type TEXT NOT NULL,
    subject TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_by_key ON incidents (subject_type, subject, kind, state);
CREATE INDEX IF NOT EXISTS incidents_by_state ON incidents (state);
CREATE TABLE IF NOT EXISTS incident_findings (finding_id TEXT PRIMARY KEY, incident_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS consumer_windows (
    window_end REAL NOT NULL,
    consumer TEXT NOT NULL,
    PRIMARY KEY (window_end, consumer)
) WITHOUT ROWID;
"""

ACTIVE_STATUSES = ("recorded", "pending_review", "approved", "applied")
# the control plane's newest store segment whose rows a committed transaction acknowledges
_STORE_SEQ_KEY = "store_seq"
UNRESOLVED_CONSUMERS = frozenset(("", "UNKNOWN", "anonymous"))  # ids that name nobody in particular


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One thing to deliver, with its delivery state."""

    id: str
    channel: str
    destination: str
    ref_id: str
    payload: dict
    state: str  # "pending" | "sent" | "skipped" | "dead_letter" | "superseded"
    attempts: int
    next_at: float
    last_error: str


class ControlDB:
    """Inbox, decisions and outbox in one SQLite file under the store.

    Construction does no I/O; :meth:`open` creates the file and tables.
    One instance per thread (SQLite connections are not shared across threads).
    """

    def __init__(self, store: str | os.PathLike[str], timeout_s: float = 30.0) -> None:
        self.path = Path(store) / CONTROL_FILE
        self.timeout_s = timeout_s
        self._con: sqlite3.Connection | None = None

    def open(self) -> ControlDB:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=NORMAL")
                con.executescript(_SCHEMA)
                break
            except sqlite3.OperationalError as exc:
                # a cluster's processes open a new file at once: SQLite refuses the journal-mode
                # switch of all but one at once, without waiting on its busy timeout
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    con.close()
                    raise
                time.sleep(0.05)
        self._con = con
        return self

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    @property
    def con(self) -> sqlite3.Connection:
        if self._con is None:
            self.open()
        return self._con

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run statements atomically (``BEGIN IMMEDIATE``: one writer at a time).

        Inside another transaction it joins that one, which commits or rolls back the whole.
        """
        con = self.con
        if con.in_transaction:
            yield con
            return
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    # -- inbox -------------------------------------------------------------

    def record_findings(self, findings: Iterable[Finding]) -> int:
        """Queue findings for the controller; a finding seen before is ignored."""
        enc = msgspec.json.encode
        with self.transaction() as con:
            cur = con.executemany(
                "INSERT OR IGNORE INTO inbox (finding_id, body) VALUES (?, ?)",
                [(f.finding_id, enc(f).decode()) for f in findings],
            )
            return cur.rowcount

    def findings_after(self, seq: int, limit: int = 1000) -> list[tuple[int, Finding]]:
        rows = self.con.execute(
            "SELECT seq, body FROM inbox WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ).fetchall()
        dec = msgspec.json.Decoder(Finding).decode
        return [(s, dec(b)) for s, b in rows]

    # -- active consumers (the blast radius) --------------------------------

    def record_consumers(self, pairs: Iterable[tuple[float, str]]) -> None:
        """Record ``(window_end, consumer)``: the consumer had traffic then (unresolved ids aside)."""
        rows = [(end, c) for end, c in pairs if c not in UNRESOLVED_CONSUMERS]
        with self.transaction() as con:
            con.executemany("INSERT OR IGNORE INTO consumer_windows VALUES (?, ?)", rows)

    def active_consumers(self, since: float, until: float) -> int:
        """Distinct consumers with traffic in a window ending in ``(since, until]``."""
        return self.con.execute(
            "SELECT COUNT(DISTINCT consumer) FROM consumer_windows WHERE window_end > ? AND window_end <= ?",
            (since, until),
        ).fetchone()[0]

    def forget_consumers(self, before: float) -> None:
        """Drop the windows that ended at or before ``before``."""
        self.con.execute("DELETE FROM consumer_windows WHERE window_end <= ?", (before,))

    # -- meta --------------------------------------------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str, con: sqlite3.Connection | None = None) -> None:
        (con or self.con).execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def acknowledge_store(self, seq: int, con: sqlite3.Connection) -> None:
        """Inside the transaction that commits a state change, acknowledge the store rows written for it."""
        self.set_meta(_STORE_SEQ_KEY, str(seq), con)

    def acknowledged_store(self) -> int | None:
        """The newest acknowledged control-plane segment; anything after it was written by a crashed run."""
        value = self.get_meta(_STORE_SEQ_KEY)
        return int(value) if value is not None else None

    def advance_watermark(self, event_ts: float) -> None:
        """Record the newest event time the pipeline has closed windows up to (never moves back)."""
        with self.transaction() as con:
            row = con.execute("SELECT value FROM meta WHERE key = 'watermark'").fetchone()
            if row is None or float(row[0]) < event_ts:
                self.set_meta("watermark", repr(event_ts), con)

    def watermark(self) -> float | None:
        value = self.get_meta("watermark")
        return float(value) if value is not None else None

    # -- decisions ---------------------------------------------------------

    def put_decision(self, d: Decision, con: sqlite3.Connection | None = None) -> None:
        """Insert or update a decision's current state."""
        (con or self.con).execute(
            "INSERT INTO decisions (decision_id, subject_type, subject, status, expires_at, body) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (decision_id) DO UPDATE SET "
            "status = excluded.status, expires_at = excluded.expires_at, body = excluded.body",
            (d.decision_id, d.subject_type, d.subject, d.status, d.expires_at, msgspec.json.encode(d).decode()),
        )

    def decision(self, decision_id: str) -> Decision | None:
        row = self.con.execute("SELECT body FROM decisions WHERE decision_id = ?", (decision_id,)).fetchone()
        return msgspec.json.decode(row[0], type=Decision) if row else None

    def decisions(self, statuses: Iterable[str] | None = None) -> list[Decision]:
        if statuses is None:
            rows = self.con.execute("SELECT body FROM decisions ORDER BY rowid").fetchall()
        else:
            statuses = list(statuses)
            marks = ",".join("?" * len(statuses))
            rows = self.con.execute(
                f"SELECT body FROM decisions WHERE status IN ({marks}) ORDER BY rowid", statuses
            ).fetchall()
        dec = msgspec.json.Decoder(Decision).decode
        return [dec(r[0]) for r in rows]

    def active_decision(self, subject_type: str, subject: str) -> Decision | None:
        marks = ",".join("?" * len(ACTIVE_STATUSES))
        row = self.con.execute(
            f"SELECT body FROM decisions WHERE subject_type = ? AND subject = ? AND status IN ({marks}) "
            "ORDER BY rowid DESC LIMIT 1",
            (subject_type, subject, *ACTIVE_STATUSES),
        ).fetchone()
        return msgspec.json.decode(row[0], type=Decision) if row else None

    # -- incidents (flows/control/incidents.py owns the body's shape) ---------------

    def put_incident(
        self, incident_id: str, subject_type: str, subject: str, kind: str, state: str, body: str,
        con: sqlite3.Connection | None = None,
    ) -> None:  # fmt: skip
        """Insert or update an incident's current state."""
        (con or self.con).execute(
            "INSERT INTO incidents (incident_id, subject_type, subject, kind, state, body) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (incident_id) DO UPDATE SET state = excluded.state, body = excluded.body",
            (incident_id, subject_type, subject, kind, state, body),
        )

    def live_incident(self, subject_type: str, subject: str, kind: str) -> str | None:
        """Body of the subject's unresolved incident of this kind, if any."""
        row = self.con.execute(
            "SELECT body FROM incidents WHERE subject_type = ? AND subject = ? AND kind = ? AND state != 'resolved' "
            "ORDER BY rowid DESC LIMIT 1",
            (subject_type, subject, kind),
        ).fetchone()
        return row[0] if row else None

    def incident_bodies(self, *, live: bool = False) -> list[str]:
        """Bodies of every incident (or only the unresolved ones), oldest first."""
        where = " WHERE state != 'resolved'" if live else ""
        return [r[0] for r in self.con.execute(f"SELECT body FROM incidents{where} ORDER BY rowid").fetchall()]

    def link_finding(self, finding_id: str, incident_id: str, con: sqlite3.Connection | None = None) -> bool:
        """Attach a finding to an incident; False if it was attached before (a replayed finding)."""
        cur = (con or self.con).execute(
            "INSERT OR IGNORE INTO incident_findings (finding_id, incident_id) VALUES (?, ?)", (finding_id, incident_id)
        )
        return cur.rowcount == 1

    # -- outbox ------------------------------------------------------------

    def enqueue(
        self,
        entry_id: str,
        channel: str,
        destination: str,
        ref_id: str,
        payload: dict,
        *,
        not_before: float | None = None,
        con: sqlite3.Connection | None = None,
    ) -> bool:
        """Add a delivery unless one with the same id exists; return whether it was added."""
        now = time.time()
        cur = (con or self.con).execute(
            "INSERT OR IGNORE INTO outbox (id, channel, destination, ref_id, payload, next_at, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (entry_id, channel, destination, ref_id, json.dumps(payload), not_before or now, now, now),
        )
        return cur.rowcount == 1

    def due(self, now: float, limit: int = 100) -> list[OutboxEntry]:
        rows = self.con.execute(
            "SELECT id, channel, destination, ref_id, payload, state, attempts, next_at, last_error FROM outbox "
            "WHERE state = 'pending' AND next_at <= ? ORDER BY next_at, created_at, rowid LIMIT ?",
            (now, limit),
        ).fetchall()
        return [_entry(r) for r in rows]

    def outbox(self, state: str | None = None) -> list[OutboxEntry]:
        sql = "SELECT id, channel, destination, ref_id, payload, state, attempts, next_at, last_error FROM outbox"
        rows = (
            self.con.execute(sql + " WHERE state = ? ORDER BY created_at, rowid", (state,)).fetchall()
            if state
            else self.con.execute(sql + " ORDER BY created_at, rowid").fetchall()
        )
        return [_entry(r) for r in rows]

    def settle(
        self, entry_id: str, *, state: str, attempts: int, next_at: float, last_error: str, con=None
    ) -> None:
        """Record the outcome of a delivery attempt."""
        (con or self.con).execute(
            "UPDATE outbox SET state = ?, attempts = ?, next_at = ?, last_error = ?, updated_at = ? WHERE id = ?",
            (state, attempts, next_at, last_error, time.time(), entry_id),
        )

    # -- gateway targets -----------------------------------------------------

    def subject_decisions(
        self, subject_type: str, subject: str, con: sqlite3.Connection | None = None
    ) -> list[Decision]:
        """Every decision about one subject (current states), oldest first."""
        rows = (con or self.con).execute(
            "SELECT body FROM decisions WHERE subject_type = ? AND subject = ? ORDER BY rowid", (subject_type, subject)
        ).fetchall()
        dec = msgspec.json.Decoder(Decision).decode
        return [dec(r[0]) for r in rows]

    def outbox_for(self, ref_id: str, since: float = 0.0) -> list[OutboxEntry]:
        """The outbox entries made for one decision (or incident), at or after ``since`` (wall clock)."""
        rows = self.con.execute(
            "SELECT id, channel, destination, ref_id, payload, state, attempts, next_at, last_error FROM outbox "
            "WHERE ref_id = ? AND created_at >= ? ORDER BY created_at",
            (ref_id, since),
        ).fetchall()
        return [_entry(r) for r in rows]

    def retry_dead_letters(self, entry_ids: list[str] | None, actor: str) -> tuple[list[str], list[str]]:
        """Give dead letters (these, or all) a fresh round of attempts; return (retried, stale).

        Each retry is recorded with ``actor``, who asked for it (``retries``). A dead letter
        is stale when the same destination has a newer entry for the same incident or the
        same subject's decisions: it carries an older state (a block since lifted, an alert
        since resolved), and sending it now would undo the newer one.
        """
        with self.transaction() as con:
            dead = con.execute(
                "SELECT id, destination, ref_id, created_at FROM outbox WHERE state = 'dead_letter'"
                + (f" AND id IN ({','.join('?' * len(entry_ids))})" if entry_ids else "")
                + " ORDER BY created_at, rowid",
                entry_ids or (),
            ).fetchall()
            retried, stale = [], []
            for entry_id, destination, ref_id, created_at in dead:
                newer = con.execute(
                    "SELECT 1 FROM outbox o WHERE o.destination = ? AND o.created_at > ? AND (o.ref_id = ? OR o.ref_id IN ("
                    " SELECT b.decision_id FROM decisions a JOIN decisions b USING (subject_type, subject)"
                    " WHERE a.decision_id = ?)) LIMIT 1",
                    (destination, created_at, ref_id, ref_id),
                ).fetchone()
                if newer:
                    stale.append(entry_id)
                    continue
                now = time.time()
                con.execute(
                    "UPDATE outbox SET state = 'pending', attempts = 0, next_at = ?, last_error = '', updated_at = ? "
                    "WHERE id = ?",
                    (now, now, entry_id),
                )
                con.execute("INSERT INTO retries (entry_id, actor, at) VALUES (?, ?, ?)", (entry_id, actor, now))
                retried.append(entry_id)
        return retried, stale

    def supersede_pending(
        self, destination: str, subject_type: str, subject: str, con: sqlite3.Connection | None = None
    ) -> int:
        """Retire a subject's undelivered entries to ``destination`` (a newer one carries the whole desired state)."""
        cur = (con or self.con).execute(
            "UPDATE outbox SET state = 'superseded', updated_at = ? WHERE state = 'pending' AND destination = ? "
            "AND ref_id IN (SELECT decision_id FROM decisions WHERE subject_type = ? AND subject = ?)",
            (time.time(), destination, subject_type, subject),
        )
        return cur.rowcount

    def get_state(self, destination: str, key: str, con: sqlite3.Connection | None = None) -> dict | None:
        """What a target channel recorded under ``key`` (e.g. which gateway objects it created)."""
        row = (con or self.con).execute(
            "SELECT value FROM target_state WHERE destination = ? AND key = ?", (destination, key)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def put_state(self, destination: str, key: str, value: dict, con: sqlite3.Connection | None = None) -> None:
        (con or self.con).execute(
            "INSERT OR REPLACE INTO target_state (destination, key, value) VALUES (?, ?, ?)",
            (destination, key, json.dumps(value, sort_keys=True)),
        )

    def delete_state(self, destination: str, key: str, con: sqlite3.Connection | None = None) -> None:
        (con or self.con).execute("DELETE FROM target_state WHERE destination = ? AND key = ?", (destination, key))

    def state_items(self, destination: str, prefix: str) -> list[tuple[str, dict]]:
        """Every ``(key, value)`` a channel recorded under keys starting with ``prefix``."""
        rows = self.con.execute(
            "SELECT key, value FROM target_state WHERE destination = ? AND substr(key, 1, ?) = ? ORDER BY key",
            (destination, len(prefix), prefix),
        ).fetchall()
        return [(k, json.loads(v)) for k, v in rows]


def _entry(row: tuple) -> OutboxEntry:
    entry_id, channel, destination, ref_id, payload, state, attempts, next_at, last_error = row
    return OutboxEntry(entry_id, channel, destination, ref_id, json.loads(payload), state, attempts, next_at, last_error)
