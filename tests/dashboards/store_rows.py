"""Known rows for a small store: traffic, findings, state logs, deliveries and rejected lines.

Five one-minute windows from ``T0`` for three consumers (c1 alice-app, c2
bob-app, c3 mallory-app, who stuffs credentials in minutes 2 and 3) and one
scanning IP. ``decisions`` and ``incidents`` are append-only state logs, so
some ids have several rows; the current state is the latest. The tests
assert numbers derived by hand from these rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from gatewatch.sinks.schema import TABLES

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
API_A = "PizzaShackAPI:1.0.0"
API_B = "MenuAPI:2.0.0"
SCANNER = "203.0.113.7"
CONSUMERS = {
    "c1": ("alice-app", "alice"),
    "c2": ("bob-app", "bob"),
    "c3": ("mallory-app", "mallory"),
}


def at(minute: float) -> datetime:
    """Return the time ``minute`` minutes after ``T0``."""
    return T0 + timedelta(minutes=minute)


def ts(minute: float) -> float:
    """Epoch seconds of :func:`at`, as rows carry them."""
    return at(minute).timestamp()


def row(table: str, **values) -> tuple:
    """Build a row of ``table`` from column values, in the schema's order (every column is required)."""
    names = [field.name for field in TABLES[table]]
    extra = sorted(values.keys() - set(names))
    if extra:
        msg = f"{table} has no columns {extra}"
        raise KeyError(msg)
    return tuple(values[name] for name in names)


def traffic_row(
    minute: float,
    api: str,
    consumer: str,
    requests: int,
    *,
    s4xx: int = 0,
    s5xx: int = 0,
    auth: int = 0,
    throttled: int = 0,
    ips: int = 1,
    late: int = 0,
    window_s: float = 60.0,
) -> tuple:
    """Build a ``traffic`` row; requests that are not 4xx/5xx are 2xx."""
    name, owner = CONSUMERS[consumer]
    return row(
        "traffic",
        window_start=ts(minute), window_end=ts(minute) + window_s, api=api, consumer=consumer,
        consumer_name=name, consumer_owner=owner, requests=requests, status_2xx=requests - s4xx - s5xx,
        status_3xx=0, status_4xx=s4xx, status_5xx=s5xx, auth_failures=auth, throttled=throttled,
        bytes_out=requests * 512, latency_p50_ms=12.0, latency_p95_ms=80.0, distinct_ips=ips,
        late_requests=late,
    )  # fmt: skip


TRAFFIC = [
    traffic_row(0, API_A, "c1", 100, s4xx=2, s5xx=1, ips=2),
    traffic_row(0, API_A, "c2", 50),
    traffic_row(1, API_A, "c1", 120, s4xx=3, ips=3),
    traffic_row(1, API_B, "c1", 30, s5xx=2),
    traffic_row(1, API_A, "c2", 40),
    traffic_row(2, API_A, "c1", 110, s4xx=1),
    traffic_row(2, API_A, "c3", 200, s4xx=150, auth=140, throttled=10, ips=25),
    traffic_row(3, API_A, "c3", 300, s4xx=250, auth=240, throttled=5, ips=40),
    traffic_row(3, API_A, "c2", 60, s5xx=3),
    traffic_row(4, API_A, "c1", 90, late=4),
]

F1_EVIDENCE = (
    '{"features": {"requests": 200.0}, "reasons": {'
    '"auth_failure_ratio": {"observed": 0.7, "baseline": 0.01, "spread": 0.05}, '
    '"distinct_ips": {"observed": 25.0, "baseline": 1.5, "spread": 0.5}}}'
)
# another detector's shape: features at the top level, one without an observed value
F2_EVIDENCE = '{"consumers": {"observed": 12, "baseline": 1, "spread": 0.5}, "note": "fan-out"}'


def finding_row(
    finding_id, subject_type, subject, name, owner, kind, detector, score, minute, reasons, evidence
):
    return row(
        "findings",
        finding_id=finding_id, subject_type=subject_type, subject=subject, subject_name=name,
        subject_owner=owner, kind=kind, detector=detector, score=score, window_start=ts(minute),
        window_end=ts(minute + 1), detected_at=ts(minute + 1.1), reasons=reasons, evidence=evidence,
    )  # fmt: skip


FINDINGS = [
    finding_row(
        "f1", "consumer", "c3", "mallory-app", "mallory", "credential_stuffing", "auth_rate", 0.91, 2,
        ["auth failures 140 vs baseline 2", "25 distinct IPs"], F1_EVIDENCE,
    ),
    finding_row(
        "f2", "ip", SCANNER, "", "", "scanning", "ip_fanout", 0.97, 3,
        ["requests to 12 consumers", "auth failures 240 vs baseline 3"], F2_EVIDENCE,
    ),
]  # fmt: skip


LOGIN = f"{API_A} POST /login"  # an endpoint subject


def subject_window_row(
    subject_type, subject, name, minute, requests, baseline, ips, ips_base, auth, auth_base, top
):
    return row(
        "subject_windows",
        window_start=ts(minute), window_end=ts(minute + 1), subject_type=subject_type, subject=subject,
        subject_name=name, requests=requests, requests_baseline=baseline,
        requests_low=None if baseline is None else baseline / 2,
        requests_high=None if baseline is None else baseline * 2,
        distinct_ips=ips, distinct_ips_baseline=ips_base, auth_failure_ratio=auth,
        auth_failure_ratio_baseline=auth_base, peer_shift=0.0, max_score=top, features="{}",
    )  # fmt: skip


SUBJECT_WINDOWS = [
    subject_window_row("consumer", "c3", "mallory-app", 2, 200, 4.0, 25, 1.0, 0.7, 0.01, 0.91),
    subject_window_row("consumer", "c3", "mallory-app", 3, 300, 4.5, 40, 1.0, 0.8, 0.01, 0.3),
    subject_window_row("ip", SCANNER, "", 3, 310, None, None, None, 0.8, None, 0.97),
    subject_window_row("api", LOGIN, LOGIN, 3, 300, 20.0, 40, 3.0, 0.8, 0.02, 0.6),
]  # fmt: skip


def decision_row(decision_id, finding_id, subject_type, subject, name, tier, status, actor, minute, changed):
    return row(
        "decisions",
        decision_id=decision_id, finding_id=finding_id, subject_type=subject_type, subject=subject,
        subject_name=name, action={"blocked": "block", "elevated": "watch"}.get(tier, "restrict"), tier=tier,
        previous_tier="normal", limit_per_min={"blocked": 0, "elevated": -1}.get(tier, 10), mode="enforce",
        status=status, reason=f"{tier} by policy",
        inputs="{}", actor=actor, effective_from=ts(minute), expires_at=ts(minute + 60),
        created_at=ts(minute + 0.2), changed_at=ts(changed),
    )  # fmt: skip


# d1: restricted, then reverted by alice; d2: a block waiting for review; d3: approved, then applied;
# d4: the login endpoint watched (elevated: no limit)
DECISIONS = [
    decision_row("d4", "f1", "api", LOGIN, LOGIN, "elevated", "recorded", "policy", 2, 2.2),
    decision_row("d1", "f1", "consumer", "c3", "mallory-app", "restricted", "approved", "policy", 3, 3.2),
    decision_row("d1", "f1", "consumer", "c3", "mallory-app", "restricted", "reverted", "alice", 3, 10),
    decision_row("d2", "f2", "ip", SCANNER, "", "blocked", "pending_review", "policy", 4, 4.2),
    decision_row("d3", "f1", "consumer", "c3", "mallory-app", "restricted", "approved", "policy", 4, 4.3),
    decision_row("d3", "f1", "consumer", "c3", "mallory-app", "restricted", "applied", "policy", 4, 4.5),
]  # fmt: skip


def incident_row(
    incident_id, subject_type, subject, name, kind, state, score, findings, first, last, changed
):
    return row(
        "incidents",
        incident_id=incident_id, subject_type=subject_type, subject=subject, subject_name=name, kind=kind,
        state=state, max_score=score, tier="restricted", findings=findings, first_seen=ts(first),
        last_seen=ts(last), reasons=[f"{kind} on {name or subject}"], changed_at=ts(changed),
    )  # fmt: skip


# i1: opened, then escalated (still open); i2: opened, then resolved
STUFFING = "credential_stuffing"
INCIDENTS = [
    incident_row("i1", "consumer", "c3", "mallory-app", STUFFING, "open", 0.91, 1, 2, 3, 3.1),
    incident_row("i1", "consumer", "c3", "mallory-app", STUFFING, "escalated", 0.95, 2, 2, 4, 4.1),
    incident_row("i2", "ip", SCANNER, "", "scanning", "open", 0.97, 1, 3, 4, 4.1),
    incident_row("i2", "ip", SCANNER, "", "scanning", "resolved", 0.97, 1, 3, 4, 9),
]  # fmt: skip


def delivery_row(delivery_id, ref_id, attempt, outcome, status, error, minute):
    return row(
        "deliveries",
        delivery_id=delivery_id, channel="webhook", destination="hooks", ref_id=ref_id, attempt=attempt,
        operation="POST /gatewatch", outcome=outcome, http_status=status, error=error, latency_ms=12.5,
        attempted_at=ts(minute),
    )  # fmt: skip


# e1: two 503s, then sent; e2: one timeout, then given up
DELIVERIES = [
    delivery_row("e1", "d3", 1, "retry", 503, "HTTP 503", 4.6),
    delivery_row("e1", "d3", 2, "retry", 503, "HTTP 503", 4.7),
    delivery_row("e1", "d3", 3, "sent", 200, "", 4.9),
    delivery_row("e2", "d1", 1, "retry", None, "timed out", 10.1),
    delivery_row("e2", "d1", 2, "dead_letter", None, "timed out", 10.5),
]

REJECTED = [
    ("access.log", 7, 812, "bad_json", "unexpected end", '{"ts": 1', ts(0.5)),
    ("access.log", 9, 1030, "bad_field", "status 'abc'", '{"status": "abc"}', ts(0.6)),
    ("other.log", 2, 40, "bad_json", "unexpected end", '{"ts": 2', ts(0.7)),
]
