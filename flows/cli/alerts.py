"""``gatewatch alerts``: check alert destinations by hand."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from gatewatch.flows.events import stable_id

alerts_app = typer.Typer(
    name="alerts",
    help="Alert destinations (see [alerts] in the config).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def sample_alert(destination: str, dashboard_url: str, now: float) -> dict:
    """A clearly marked test alert with every field a real one has."""
    from gatewatch.flows.control.incidents import iso

    return {
        "event": "test",
        "incident_id": "test-" + stable_id("test", destination, now),
        "summary": f"[TEST] gatewatch test alert for destination {destination}: it works, no action needed.",
        "severity": "info",
        "subject": {"type": "consumer", "id": "gatewatch-test", "name": "gatewatch test"},
        "kind": "test",
        "score": 0.0,
        "max_score": 0.0,
        "tier": "normal",
        "decision": None,
        "reasons": [
            {
                "feature": "requests",
                "text": "[TEST] requests 120 vs baseline 4",
                "observed": 120.0,
                "baseline": 4.0,
            }
        ],
        "window": {"start": iso(now - 60), "end": iso(now)},
        "first_seen": iso(now - 60),
        "last_seen": iso(now),
        "findings": 0,
        "occurred_at": iso(now),
        "dashboard_url": dashboard_url,
    }


@alerts_app.command("test")
def send_test(
    destination: Annotated[
        str | None,
        typer.Option("--destination", metavar="NAME", help="Only this destination (default: every one)."),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", metavar="FILE", envvar="GATEWATCH_CONFIG", help="TOML config file.")] = None,
    store: Annotated[
        Path | None,
        typer.Option("--store", metavar="DIR", envvar="GATEWATCH_STORE", help="Store that records the attempts in deliveries."),
    ] = None,
) -> None:
    """Send a test alert to each destination and print what it answered (no retries)."""
    import httpx

    from gatewatch.flows.cli.common import fail, load
    from gatewatch.flows.config import ConfigError
    from gatewatch.sinks.alerts import build_channels
    from gatewatch.sinks.outbox import outcome_of, scrub
    from gatewatch.sinks.store import StoreWriter

    cfg = load(config, store=store)
    names = [d.name for d in cfg.alerts.destinations]
    if not names:
        raise fail(["no [[alerts.destinations]] in the config"])
    if destination is not None and destination not in names:
        raise fail(
            [f"--destination: no destination named {destination!r}; configured: {', '.join(names)}"]
        )
    try:
        channels = build_channels(cfg.alerts, os.environ)
    except ConfigError as exc:
        raise fail(exc.problems) from None
    writer = StoreWriter(cfg.store.path, writer=f"t{os.getpid()}")
    rows = []
    failed = 0
    for name, channel in channels.items():
        if destination is not None and name != destination:
            continue
        now = time.time()
        alert = sample_alert(name, cfg.alerts.dashboard_url, now)
        calls = [alert]
        if channel.kind == "pagerduty":  # resolve it again, so the test leaves no open PagerDuty alert
            calls.append({**alert, "event": "resolved"})
        for doc in calls:
            msg_id = stable_id(doc["incident_id"], doc["event"], name)
            started = time.perf_counter()
            try:
                r = channel.send(doc, msg_id)
                text = r.text[:300].strip()
                status, answer = (
                    r.status_code,
                    f"HTTP {r.status_code} {r.reason_phrase}" + (f": {text}" if text else ""),
                )
            except httpx.TransportError as exc:
                status, answer = 0, f"{type(exc).__name__}: {exc}"
            answer = scrub(answer, channel.secret_values())  # a receiver may echo its secret URL or key
            outcome = "sent" if outcome_of(status) == "sent" else "dead_letter"  # a test is never retried
            failed += outcome != "sent"
            op = channel.operation(doc)
            typer.echo(f"{name} ({channel.kind}) {op}: {answer}")
            rows.append(
                (
                    msg_id,
                    channel.kind,
                    name,
                    doc["incident_id"],
                    1,
                    op,
                    outcome,
                    status,
                    "" if outcome == "sent" else answer,
                    (time.perf_counter() - started) * 1000,
                    time.time(),
                )
            )
    writer.append("deliveries", rows)
    if failed:
        raise typer.Exit(1)
