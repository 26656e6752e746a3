"""Alert destinations in the config, ``gatewatch validate`` and ``gatewatch alerts test``."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from gatewatch.flows.config import (
    ConfigError,
    GenericDestination,
    PagerDutyDestination,
    SlackDestination,
    load_config,
)
from gatewatch.sinks.alerts import build_channels
from tests.conftest import ROOT, gatewatch, rows
from tests.sinks.alerts_receiver import ROUTING_KEY, Receiver, whsec


def test_the_example_destinations_load_once_uncommented(tmp_path):
    example = (ROOT / "gatewatch.example.toml").read_text()
    block = example[example.index("# [[alerts.destinations]]") :]
    tables = [
        line[2:] for line in block.splitlines() if line.startswith("# ") and not line.startswith("# # ")
    ]
    names = iter(["hook", "slack", "pager"])
    text = "\n".join(re.sub(r'^name = ".*"$', lambda _: f'name = "{next(names)}"', t) for t in tables)
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    dests = load_config(cfg).alerts.destinations
    assert [type(d) for d in dests] == [GenericDestination, SlackDestination, PagerDutyDestination]
    assert dests[0].suppress_s == 600 and dests[2].url == "https://events.pagerduty.com/v2/enqueue"


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ('[[alerts.destinations]]\ntype = "teams"\nname = "x"\n', "alerts.destinations.0:"),
        (
            '[[alerts.destinations]]\ntype = "slack"\nname = "x"\nurl_env = "U"\nkinds = ["ddos"]\n',
            "unknown kind(s) ddos",
        ),
        (
            '[[alerts.destinations]]\ntype = "slack"\nname = "x"\nurl = "https://h.ex/x"\nurl_env = "U"\n',
            "alerts.destinations.0.slack.url: unknown key",
        ),
        (
            '[[alerts.destinations]]\ntype = "generic"\nname = "x"\nurl = "ftp://x"\nsecret_env = ["S"]\n',
            "alerts.destinations.0.generic.url:",
        ),
        (
            '[[alerts.destinations]]\ntype = "generic"\nname = "x"\nurl = "http://x"\nsecret_env = []\n',
            "alerts.destinations.0.generic.secret_env:",
        ),
        ('[alerts]\nclient_ip = "partial"\n', "alerts.client_ip:"),
        (
            '[[alerts.destinations]]\ntype = "slack"\nname = "x"\nurl_env = "U"\n'
            '[[alerts.destinations]]\ntype = "pagerduty"\nname = "x"\nrouting_key_env = "K"\n',
            "names must be unique: x",
        ),
    ],
)
def test_bad_destinations_are_reported_with_their_key(tmp_path, toml, problem):
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert any(problem in p for p in err.value.problems), err.value.problems


def _dest_config(tmp_path: Path, receiver: Receiver | None = None, generic_url: str | None = None) -> Path:
    url = generic_url or (receiver.url("generic") if receiver else "http://127.0.0.1:9/")
    pd = receiver.url("pagerduty") if receiver else "http://127.0.0.1:9/v2/enqueue"
    cfg = tmp_path / "alerts.toml"
    cfg.write_text(
        f'[[alerts.destinations]]\ntype = "generic"\nname = "ops-hook"\nurl = "{url}"\n'
        'secret_env = ["GW_WHSEC"]\n'
        '[[alerts.destinations]]\ntype = "slack"\nname = "ops-slack"\nurl_env = "GW_SLACK_URL"\n'
        f'[[alerts.destinations]]\ntype = "pagerduty"\nname = "ops-pager"\nurl = "{pd}"\n'
        'routing_key_env = "GW_PD_KEY"\n'
    )
    return cfg


def _env(receiver: Receiver | None, **over: str) -> dict[str, str]:
    env = {
        **os.environ,
        "GW_WHSEC": whsec("cli"),
        "GW_SLACK_URL": receiver.url("slack")
        if receiver
        else "https://hooks.slack.com/services/T/B/secretpart",
        "GW_PD_KEY": ROUTING_KEY,
    }
    env.update(over)
    return env


def test_validate_lists_missing_and_malformed_secrets_without_their_values(tmp_path):
    cfg = _dest_config(tmp_path)
    env = _env(None, GW_WHSEC="whsec_bm90IGxvbmcgZW5vdWdo", GW_PD_KEY="")
    proc = gatewatch("validate", "--config", str(cfg), env=env, check=False)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: alerts.destinations.0.secret_env: GW_WHSEC holds 15 bytes; the spec asks for 24 to 64",
        "error: alerts.destinations.2.routing_key_env: environment variable GW_PD_KEY is not set",
    ]
    assert gatewatch("validate", "--config", str(cfg), env=_env(None)).stdout.endswith(": OK\n")


def test_channels_are_built_only_with_every_secret():
    from gatewatch.flows.config import AlertsConfig

    alerts = AlertsConfig(
        destinations=[{"type": "generic", "name": "h", "url": "http://x/", "secret_env": ["A", "B"]}]
    )
    with pytest.raises(ConfigError) as err:
        build_channels(alerts, {"A": whsec("a"), "B": "plain-password"})
    assert err.value.problems == ["alerts.destinations.0.secret_env: B is not a whsec_<base64> secret"]
    (channel,) = build_channels(alerts, {"A": whsec("a"), "B": whsec("b")}).values()
    assert channel.secrets == [whsec("a"), whsec("b")]


def test_alerts_test_sends_a_marked_alert_everywhere_and_prints_the_answers(tmp_path, httpserver):
    receiver = Receiver(httpserver, [whsec("cli")])
    cfg = _dest_config(tmp_path, receiver)
    store = tmp_path / "store"
    out = gatewatch("alerts", "test", "--config", str(cfg), "--store", str(store), env=_env(receiver)).stdout
    assert receiver.errors == []
    assert receiver.events("generic") == ["test"] and receiver.events("slack") == ["test"]
    assert receiver.events("pagerduty") == ["trigger", "resolve"]  # the test leaves no open PagerDuty alert
    lines = out.splitlines()
    assert lines[0] == "ops-hook (generic) POST /hooks/gatewatch: HTTP 204 NO CONTENT"
    assert lines[1] == "ops-slack (slack) POST slack incoming webhook: HTTP 200 OK: ok"
    assert lines[2].startswith(
        'ops-pager (pagerduty) POST /v2/enqueue trigger: HTTP 202 ACCEPTED: {"status": "success"'
    )
    assert lines[3].startswith("ops-pager (pagerduty) POST /v2/enqueue resolve: HTTP 202 ACCEPTED:")
    assert "slacksecretpath" not in out
    got = rows(store, "SELECT destination, outcome, http_status FROM deliveries ORDER BY attempted_at")
    assert [(r["destination"], r["outcome"], r["http_status"]) for r in got] == [
        ("ops-hook", "sent", 204),
        ("ops-slack", "sent", 200),
        ("ops-pager", "sent", 202),
        ("ops-pager", "sent", 202),
    ]


def test_alerts_test_one_destination_and_failures(tmp_path, httpserver):
    receiver = Receiver(httpserver, [whsec("cli")])
    httpserver.expect_request("/gone").respond_with_data("endpoint disabled", status=410)
    cfg = _dest_config(tmp_path, receiver, generic_url=httpserver.url_for("/gone"))
    env = _env(receiver)
    out = gatewatch("alerts", "test", "--config", str(cfg), "--destination", "ops-slack", env=env).stdout
    assert out.splitlines() == ["ops-slack (slack) POST slack incoming webhook: HTTP 200 OK: ok"]
    failed = gatewatch(
        "alerts", "test", "--config", str(cfg), "--destination", "ops-hook", env=env, check=False
    )
    assert failed.returncode == 1
    assert failed.stdout == "ops-hook (generic) POST /gone: HTTP 410 GONE: endpoint disabled\n"
    unknown = gatewatch("alerts", "test", "--config", str(cfg), "--destination", "nope", env=env, check=False)
    assert unknown.returncode == 2
    assert "no destination named 'nope'; configured: ops-hook, ops-slack, ops-pager" in unknown.stderr
    missing = gatewatch(
        "alerts", "test", "--config", str(cfg), env=_env(receiver, GW_SLACK_URL=""), check=False
    )
    assert missing.returncode == 2 and "GW_SLACK_URL is not set" in missing.stderr


def test_alerts_test_neither_prints_nor_stores_a_secret_the_receiver_echoes(tmp_path, httpserver):
    token = "XoXb9Secret4dWebhook7Token"  # a Slack webhook's secret is the last part of its path
    path = f"/services/T000/B000/{token}"
    httpserver.expect_request(path).respond_with_data(f"no_service: {path} (see {httpserver.url_for(path)})", 404)
    cfg = tmp_path / "alerts.toml"
    cfg.write_text('[[alerts.destinations]]\ntype = "slack"\nname = "ops-slack"\nurl_env = "GW_SLACK_URL"\n')
    store = tmp_path / "store"
    env = {**os.environ, "GW_SLACK_URL": httpserver.url_for(path)}
    proc = gatewatch("alerts", "test", "--config", str(cfg), "--store", str(store), env=env, check=False)
    assert proc.returncode == 1
    assert proc.stdout.startswith("ops-slack (slack) POST slack incoming webhook: HTTP 404 NOT FOUND: no_service")
    (stored,) = [r["error"] for r in rows(store, "SELECT error FROM deliveries")]
    for text in (proc.stdout, proc.stderr, stored):
        assert token not in text
    assert "[secret]" in proc.stdout and "[secret]" in stored
