"""Incidents: findings grouped per subject and kind, and the alerts they send.

An :class:`IncidentTracker` is a controller :class:`~gatewatch.flows.control.controller.Observer`.
Findings on the same subject and kind join one incident while they keep
coming: a finding less than ``resolve_after_s`` of event time after the
incident's last one joins it; once the event-time watermark passes that gap
with no new finding, the incident resolves. Each destination hears about an
incident when it opens, when it escalates (its severity or the subject's
tier goes up) and when it resolves, and at most once per ``suppress_s`` of
event time before the resolve: an escalation inside that window is held back
and sent at the event time the window ends, unless the incident has resolved
by then. Everything is timed on event time, so ``replay`` sends what ``run``
would have sent, however the controller batches its work.

The incident's current state lives in the control database and every state
change is appended to the store's ``incidents`` table. Notifications go to
the outbox under deterministic ids (incident, event, destination), so a
finding replayed after a crash changes nothing and a receiver can recognise
a re-delivered alert by its id.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import msgspec

from gatewatch.flows import log
from gatewatch.flows.config import SEVERITIES, AlertsConfig, Config, Destination
from gatewatch.flows.events import Decision, Finding, stable_id
from gatewatch.sinks.control import ControlDB, OutboxEntry
from gatewatch.sinks.store import StoreWriter

if TYPE_CHECKING:
    from gatewatch.sinks.outbox import Channel

TIER_RANK = {"normal": 0, "elevated": 1, "restricted": 2, "blocked": 3}
TOP_REASONS = 3
# score bands of the severities; a restricted subject is at least "error", a blocked one "critical"
_SCORE_BANDS = ((0.95, "critical"), (0.8, "error"), (0.0, "warning"))
_TIER_SEVERITY = {"restricted": "error", "blocked": "critical"}
# decision statuses whose gateway deliveries lift a restriction, and what the alert calls them
LIFTS = {"expired": "expiry", "reverted": "revert"}
_IP_TOKEN = re.compile(
    r"(?<![\w.:])(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})(?![\w.:])"
)


class Incident(msgspec.Struct):
    """The current state of one incident (the control database keeps it as JSON)."""

    incident_id: str
    subject_type: str
    subject: str
    subject_name: str
    kind: str
    state: str  # "open" | "escalated" | "resolved"
    revision: int  # 1 when opened, +1 per escalation
    severity: str  # the highest reached
    tier: str  # the highest reached
    score: float  # of the latest finding
    max_score: float
    findings: int
    first_seen: float  # event time: start of the first finding's window
    last_seen: float  # end of the latest finding's window
    window_start: float  # the latest finding's window
    window_end: float
    reasons: list[dict]  # the latest finding's top reasons: feature, text, observed, baseline
    decision: dict | None  # the subject's latest active decision seen during the incident
    resolved_at: float = 0.0  # event time at which it resolved: the last finding plus the gap
    notified: dict[str, tuple[int, float]] = {}  # destination -> (revision sent, event time sent)


def severity_of(score: float, tier: str) -> str:
    """Severity from the score band, raised by the subject's tier."""
    band = next(name for floor, name in _SCORE_BANDS if score >= floor)
    return max(band, _TIER_SEVERITY.get(tier, "info"), key=SEVERITIES.index)


def iso(ts: float) -> str:
    """Event time as ISO 8601 UTC with a ``Z``."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def _hhmm(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%H:%M")


def redact_ip(text: str, mode: str) -> str:
    """Mask (IPv4 /24, IPv6 /48) or hash every IP address in ``text``; ``show`` keeps them."""
    if mode == "show":
        return text

    def one(m: re.Match) -> str:
        try:
            ip = ipaddress.ip_address(m.group())
        except ValueError:
            return m.group()
        if mode == "hash":
            return "ip-" + hashlib.sha256(str(ip).encode()).hexdigest()[:12]
        prefix = 24 if ip.version == 4 else 48
        return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))

    return _IP_TOKEN.sub(one, text)


def _redact_all(value: object, mode: str) -> object:
    if isinstance(value, str):
        return redact_ip(value, mode)
    if isinstance(value, dict):
        return {k: _redact_all(v, mode) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_all(v, mode) for v in value]
    return value


def top_reasons(finding: Finding) -> list[dict]:
    """The finding's first reasons with their observed and baseline values."""
    evidence = json.loads(finding.evidence or "{}").get("reasons", {})
    out = []
    for text, (feature, ev) in zip(finding.reasons[:TOP_REASONS], evidence.items(), strict=False):
        out.append({"feature": feature, "text": text, "observed": ev["observed"], "baseline": ev["baseline"]})
    return out


def _decision_summary(d: Decision | None) -> dict | None:
    if d is None:
        return None
    return {
        "action": d.action,
        "tier": d.tier,
        "limit_per_min": d.limit_per_min,
        "mode": d.mode,
        "status": d.status,
        "expires_at": iso(d.expires_at),
    }


def subject_label(inc: Incident) -> str:
    return f"{inc.subject_name or inc.subject} ({inc.subject_type})"


def summary(inc: Incident, event: str) -> str:
    """One sentence saying what happened."""
    label = subject_label(inc)
    kind = inc.kind.replace("_", " ")
    if event == "resolved":
        n = f"{inc.findings} finding{'s' if inc.findings != 1 else ''}"
        return (
            f"Resolved: {kind} on {label} ended at {_hhmm(inc.last_seen)} UTC after {n} "
            f"since {_hhmm(inc.first_seen)} UTC (max score {inc.max_score:.2f})."
        )
    why = inc.reasons[0]["text"] if inc.reasons else "no reason given"
    tier = inc.tier
    if inc.decision is not None and inc.decision["mode"] == "dry-run":
        tier += " (dry-run, not enforced)"
    lead = f"{label} shows {kind}" if event == "open" else f"{label} escalated to {inc.severity}: {kind}"
    return f"{lead}: {why}; score {inc.score:.2f}, tier {tier}."


def alert_document(inc: Incident, event: str, *, dashboard_url: str, client_ip: str, now: float) -> dict:
    """The channel-independent alert (the outbox payload): no secrets, IPs as configured."""
    link = f"{dashboard_url.rstrip('/')}/?incident={inc.incident_id}" if dashboard_url else ""
    doc = {
        "event": event,
        "incident_id": inc.incident_id,
        "summary": summary(inc, event),
        "severity": inc.severity,
        "subject": {"type": inc.subject_type, "id": inc.subject, "name": inc.subject_name},
        "kind": inc.kind,
        "score": inc.score,
        "max_score": inc.max_score,
        "tier": inc.tier,
        "decision": inc.decision,
        "reasons": inc.reasons,
        "window": {"start": iso(inc.window_start), "end": iso(inc.window_end)},
        "first_seen": iso(inc.first_seen),
        "last_seen": iso(inc.last_seen),
        "findings": inc.findings,
        "occurred_at": iso(now),
        "dashboard_url": link,
    }
    return _redact_all(doc, client_ip)  # type: ignore[return-value]


class IncidentTracker:
    """Group findings into incidents and queue their notifications (a controller observer).

    Args:
        writer: the control plane's store writer (``incidents`` rows).
        alerts: the ``[alerts]`` config: gap, destinations and their filters.
    """

    def __init__(
        self, writer: StoreWriter, alerts: AlertsConfig, on_change: Callable[[Incident], None] | None = None
    ) -> None:
        self.writer = writer
        self.alerts = alerts
        self.on_change = on_change  # told every state row appended (gatewatch run's live lines)
        self._decode = msgspec.json.Decoder(Incident).decode

    def on_finding(self, finding: Finding, control: ControlDB) -> None:
        gap = self.alerts.resolve_after_s
        with control.transaction() as con:
            body = control.live_incident(finding.subject_type, finding.subject, finding.kind)
            inc = self._decode(body) if body else None
            stale = inc is not None and finding.window_start - inc.last_seen >= gap
            if inc is None or stale:
                incident_id = stable_id(
                    "incident", finding.subject_type, finding.subject, finding.kind, finding.window_start
                )
            else:
                incident_id = inc.incident_id
            if not control.link_finding(finding.finding_id, incident_id, con):
                return  # seen before the crash that replayed it
            if stale:
                # the watermark has not caught up yet; the gap already says it is over
                self._resolve(inc, control, con)
                inc = None
            elif inc is not None:
                self._release(inc, finding.window_end, control, con)
            active = control.active_decision(finding.subject_type, finding.subject)
            if inc is None:
                inc = self._open(incident_id, finding, active)
                changed = True
            else:
                changed = self._join(inc, finding, active)
            if changed:
                self._append(inc, control, con)
            self._notify(inc, finding.window_end, control, con)
            self._put(inc, control, con)

    def on_watermark(self, watermark: float, control: ControlDB) -> None:
        due = []
        for body in control.incident_bodies(live=True):
            inc = self._decode(body)
            ends = watermark >= self._ends_at(inc)
            if ends or any(at <= watermark for _, at in self._held(inc)):
                due.append((inc, ends))
        if not due:
            return
        # one transaction and one history segment for every incident the watermark moves on:
        # a crash rolls them all back, and they are handled again
        with control.transaction() as con:
            with self.writer.held():
                for inc, ends in due:
                    self._release(inc, watermark, control, con)
                    if ends:
                        self._resolve(inc, control, con)
                    else:
                        self._put(inc, control, con)
            control.acknowledge_store(self.writer.last_seq, con)

    def _ends_at(self, inc: Incident) -> float:
        """Event time at which the incident resolves unless another finding comes."""
        return inc.last_seen + self.alerts.resolve_after_s

    def _open(self, incident_id: str, f: Finding, active: Decision | None) -> Incident:
        tier = active.tier if active else "normal"
        return Incident(
            incident_id=incident_id,
            subject_type=f.subject_type,
            subject=f.subject,
            subject_name=f.subject_name,
            kind=f.kind,
            state="open",
            revision=1,
            severity=severity_of(f.score, tier),
            tier=tier,
            score=f.score,
            max_score=f.score,
            findings=1,
            first_seen=f.window_start,
            last_seen=f.window_end,
            window_start=f.window_start,
            window_end=f.window_end,
            reasons=top_reasons(f),
            decision=_decision_summary(active),
        )

    def _join(self, inc: Incident, f: Finding, active: Decision | None) -> bool:
        """Add a finding; return whether the incident escalated."""
        tier = active.tier if active else "normal"
        severity = severity_of(f.score, tier)
        inc.findings += 1
        inc.score = f.score
        inc.max_score = max(inc.max_score, f.score)
        inc.last_seen = max(inc.last_seen, f.window_end)
        inc.window_start, inc.window_end = f.window_start, f.window_end
        inc.reasons = top_reasons(f) or inc.reasons
        inc.decision = _decision_summary(active) or inc.decision
        higher_severity = SEVERITIES.index(severity) > SEVERITIES.index(inc.severity)
        higher_tier = TIER_RANK.get(tier, 0) > TIER_RANK.get(inc.tier, 0)
        if not (higher_severity or higher_tier):
            return False
        if higher_severity:
            inc.severity = severity
        if higher_tier:
            inc.tier = tier
        inc.state = "escalated"
        inc.revision += 1
        return True

    def _resolve(self, inc: Incident, control: ControlDB, con) -> None:
        inc.state = "resolved"
        inc.resolved_at = self._ends_at(inc)
        self._append(inc, control, con)
        for dest in self.alerts.destinations:
            if inc.notified.get(dest.name, (0, 0.0))[0] > 0:  # only those that heard of it hear it ended
                self._send(inc, dest, "resolved", inc.resolved_at, control=control, con=con)
        self._put(inc, control, con)

    def _wants(self, dest: Destination, inc: Incident) -> bool:
        return (
            inc.max_score >= dest.min_score
            and SEVERITIES.index(inc.severity) >= SEVERITIES.index(dest.min_severity)
            and (not dest.kinds or inc.kind in dest.kinds)
            and (not dest.subject_types or inc.subject_type in dest.subject_types)
        )

    def _notify(self, inc: Incident, now: float, control: ControlDB, con) -> None:
        """Send the open, or an escalation outside the suppression window, to each destination."""
        for dest in self.alerts.destinations:
            sent_rev, sent_at = inc.notified.get(dest.name, (0, 0.0))
            if sent_rev >= inc.revision or not self._wants(dest, inc):
                continue
            if sent_rev == 0:
                self._send(inc, dest, "open", now, control=control, con=con)
            elif now - sent_at >= dest.suppress_s:
                self._send(inc, dest, "escalated", now, control=control, con=con)

    def _held(self, inc: Incident) -> list[tuple[Destination, float]]:
        """Destinations whose escalation waits out its suppression window, with the event time it is due."""
        out = []
        for dest in self.alerts.destinations:
            sent_rev, sent_at = inc.notified.get(dest.name, (0, 0.0))
            if 0 < sent_rev < inc.revision and self._wants(dest, inc):
                out.append((dest, sent_at + dest.suppress_s))
        return out

    def _release(self, inc: Incident, until: float, control: ControlDB, con) -> None:
        """Send held-back escalations due by ``until``, each at the event time it fell due.

        Sending at the due time, not at whenever the controller runs, keeps
        alerts the same however the work is batched (``replay`` = ``run``).
        One still held when the incident resolves is dropped: the resolve says it all.
        """
        for dest, due in self._held(inc):
            if due <= until and due < self._ends_at(inc):
                self._send(inc, dest, "escalated", due, control=control, con=con)

    def _send(
        self, inc: Incident, dest: Destination, event: str, at: float, *, control: ControlDB, con
    ) -> None:
        """Queue one notification; its outbox id is the same whenever the same one is made again."""
        label = f"escalated-{inc.revision}" if event == "escalated" else event
        doc = alert_document(
            inc, event, dashboard_url=self.alerts.dashboard_url, client_ip=self.alerts.client_ip, now=at
        )
        control.enqueue(
            stable_id(inc.incident_id, label, dest.name), dest.type, dest.name, inc.incident_id, doc, con=con
        )
        if event != "resolved":
            inc.notified[dest.name] = (inc.revision, at)

    def _put(self, inc: Incident, control: ControlDB, con) -> None:
        control.put_incident(
            inc.incident_id,
            inc.subject_type,
            inc.subject,
            inc.kind,
            inc.state,
            msgspec.json.encode(inc).decode(),
            con,
        )

    def _append(self, inc: Incident, control: ControlDB, con) -> None:
        """Append a state row to the store and acknowledge it in the caller's transaction.

        A crash before the commit leaves the row unacknowledged, and the
        control loop's recovery removes it before the finding is seen again.
        """
        if self.on_change is not None:
            self.on_change(inc)
        self.writer.append(
            "incidents",
            [
                (
                    inc.incident_id,
                    inc.subject_type,
                    inc.subject,
                    inc.subject_name,
                    inc.kind,
                    inc.state,
                    inc.max_score,
                    inc.tier,
                    inc.findings,
                    inc.first_seen,
                    inc.last_seen,
                    [r["text"] for r in inc.reasons],
                    time.time(),
                )
            ],
        )
        control.acknowledge_store(self.writer.last_seq, con)


def failed_lift_document(
    entry: OutboxEntry, error: str, decision: Decision, *, dashboard_url: str, client_ip: str, now: float
) -> dict:
    """The alert for a dead-lettered delivery that was to lift a restriction (``event`` ``enforcement_failed``).

    It has every field of an incident's alert, so receivers read it alike,
    and says what failed in ``enforcement``.
    """
    action = LIFTS[entry.payload["cause"]]
    label = f"{decision.subject_name or decision.subject} ({decision.subject_type})"
    what = "block" if decision.tier == "blocked" else "restrict"
    link = f"{dashboard_url.rstrip('/')}/subject?" + urlencode({"type": decision.subject_type, "id": decision.subject})
    doc = {
        "event": "enforcement_failed",
        "incident_id": stable_id("enforcement_failed", entry.id, now),  # a retried entry that fails again alerts again
        "summary": (
            f"The {action} of decision {decision.decision_id} did not reach {entry.destination}: {error}. "
            f"The gateway may still {what} {label}: lift it there, or fix the cause and run "
            f"`gatewatch deliveries retry {entry.id}`."
        ),
        "severity": "critical",
        "subject": {"type": decision.subject_type, "id": decision.subject, "name": decision.subject_name},
        "kind": "enforcement_failed",
        "score": 0.0,
        "max_score": 0.0,
        "tier": decision.tier,
        "decision": _decision_summary(decision),
        "reasons": [],
        "window": {"start": iso(decision.effective_from), "end": iso(decision.expires_at)},
        "first_seen": iso(decision.effective_from),
        "last_seen": iso(decision.expires_at),
        "findings": 0,
        "occurred_at": iso(now),
        "dashboard_url": link if dashboard_url else "",
        "enforcement": {
            "action": action,
            "target": entry.destination,
            "target_type": entry.channel,
            "decision_id": decision.decision_id,
            "delivery_id": entry.id,
            "attempts": entry.attempts + 1,
            "error": error,
        },
    }
    return _redact_all(doc, client_ip)  # type: ignore[return-value]


def lift_delivered_document(failed: dict, entry: OutboxEntry, *, now: float) -> dict:
    """The ``resolved`` alert for an ``enforcement_failed`` one: the lift reached the gateway on a retry."""
    enforcement = failed["enforcement"]
    label = f"{failed['subject']['name'] or failed['subject']['id']} ({failed['subject']['type']})"
    return {
        **failed,
        "event": "resolved",
        "summary": (
            f"Resolved: the {enforcement['action']} of decision {enforcement['decision_id']} reached "
            f"{enforcement['target']} on a retry; the gateway no longer restricts {label} for it."
        ),
        "occurred_at": iso(now),
        "enforcement": {**enforcement, "attempts": entry.attempts + 1, "error": ""},
    }


_FAILED_LIFTS = "~failed_lifts"  # control-plane state of the alerts still open (no destination's name has ~)


class FailedLifts:
    """Alert when a delivery that lifts a restriction is dead-lettered (the outbox sender's ``on_dead_letter``).

    An expiry or a revert that never reaches the gateway leaves the block or
    limit in force there while the decision says it is over: every alert
    destination hears of it (its filters select incidents, and this is
    none), and the log says so. Once a retry delivers it (:meth:`delivered`,
    the sender's ``on_sent``), every destination hears that it is resolved:
    PagerDuty closes the alert it opened.
    """

    def __init__(self, control: ControlDB, alerts: AlertsConfig) -> None:
        self.control = control
        self.alerts = alerts

    def delivered(self, entry: OutboxEntry, con) -> None:
        failed = self.control.get_state(_FAILED_LIFTS, entry.id, con=con)
        if failed is None:
            return  # never dead-lettered, or its alert was resolved already
        doc = lift_delivered_document(failed, entry, now=time.time())
        log.emit(
            "info", "enforcement_restored", doc["summary"], subject_type=doc["subject"]["type"],
            subject=doc["subject"]["id"], target=entry.destination, delivery_id=entry.id,
        )  # fmt: skip
        self._alert_everyone(doc, con, "resolved")
        self.control.delete_state(_FAILED_LIFTS, entry.id, con=con)

    def __call__(self, entry: OutboxEntry, error: str, con) -> None:
        if entry.payload.get("cause") not in LIFTS:
            return  # an alert, or a delivery that restricts: the dead letter says it all
        decision = self.control.decision(entry.ref_id)
        if decision is None:
            return
        doc = failed_lift_document(
            entry, error, decision, dashboard_url=self.alerts.dashboard_url, client_ip=self.alerts.client_ip,
            now=time.time(),
        )  # fmt: skip
        log.emit(
            "error", "enforcement_failed", doc["summary"], subject_type=decision.subject_type,
            subject=doc["subject"]["id"], target=entry.destination, decision_id=decision.decision_id,
            delivery_id=entry.id, error=doc["enforcement"]["error"],
        )  # fmt: skip
        self._alert_everyone(doc, con)
        self.control.put_state(_FAILED_LIFTS, entry.id, doc, con=con)  # for the alert that resolves it

    def _alert_everyone(self, doc: dict, con, *event: str) -> None:
        """Queue ``doc`` for every alert destination, once each (its id: the alert's, the destination's, ``event``)."""
        alert_id = doc["incident_id"]
        for dest in self.alerts.destinations:
            self.control.enqueue(stable_id(alert_id, dest.name, *event), dest.type, dest.name, alert_id, doc, con=con)


def build_alerting(
    cfg: Config,
    writer: StoreWriter,
    env: Mapping[str, str] | None = None,
    on_change: Callable[[Incident], None] | None = None,
) -> tuple[list[IncidentTracker], dict[str, Channel]]:
    """The incident observer and one channel per configured destination.

    Raises:
        ConfigError: a destination's secret is missing from the environment or malformed.
    """
    from gatewatch.sinks.alerts import build_channels

    channels = build_channels(cfg.alerts, os.environ if env is None else env)
    return [IncidentTracker(writer, cfg.alerts, on_change)], channels
