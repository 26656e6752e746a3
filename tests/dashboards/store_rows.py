"""Known rows for a small store: traffic, findings, a decision and rejected lines.

Five one-minute windows from ``T0`` for three consumers (c1 alice-app, c2
bob-app, c3 mallory-app, who stuffs credentials in minutes 2 and 3). The
tests assert numbers derived by hand from these rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)
API_A = "PizzaShackAPI:1.0.0"
API_B = "MenuAPI:2.0.0"
CONSUMERS = {
    "c1": ("alice-app", "alice"),
    "c2": ("bob-app", "bob"),
    "c3": ("mallory-app", "mallory"),
}


def at(minute: float) -> datetime:
    """Return the time ``minute`` minutes after ``T0``."""
    return T0 + timedelta(minutes=minute)


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
    window_s: float = 60.0,
) -> tuple:
    """Build a ``traffic`` row; requests that are not 4xx/5xx are 2xx."""
    start = at(minute).timestamp()
    name, owner = CONSUMERS[consumer]
    return (
        start, start + window_s, api, consumer, name, owner,
        requests, requests - s4xx - s5xx, 0, s4xx, s5xx, auth, throttled,
        requests * 512, 12.0, 80.0, ips, 0,
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
    traffic_row(4, API_A, "c1", 90),
]

FINDINGS = [
    (
        "f1", "consumer", "c3", "mallory-app", "mallory", "credential_stuffing", "auth_rate", 0.91,
        at(2).timestamp(), at(3).timestamp(), at(3.1).timestamp(),
        ["auth failures 140 vs baseline 2", "25 distinct IPs"], "{}",
    ),
    (
        "f2", "ip", "203.0.113.7", "", "", "scanning", "ip_fanout", 0.97,
        at(3).timestamp(), at(4).timestamp(), at(4.1).timestamp(),
        ["requests to 12 consumers", "auth failures 240 vs baseline 3"], "{}",
    ),
]  # fmt: skip

DECISIONS = [
    (
        "d1", "f1", "consumer", "c3", "mallory-app", "restrict", "restricted", "normal", 10, "dry-run",
        "recorded", "credential stuffing", "{}", "policy", at(3).timestamp(), at(63).timestamp(),
        at(3.2).timestamp(), at(3.2).timestamp(),
    ),
]  # fmt: skip

REJECTED = [
    ("access.log", 7, 812, "bad_json", "unexpected end", '{"ts": 1', at(0.5).timestamp()),
    ("access.log", 9, 1030, "bad_status", "status 'abc'", '{"status": "abc"}', at(0.6).timestamp()),
]

