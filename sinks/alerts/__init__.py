"""Alert channels (Standard Webhooks, Slack, PagerDuty), registered by config ``type``.

Each is an outbox :class:`~gatewatch.sinks.outbox.Channel`: the control plane queues a
channel-independent alert document, and the channel renders, signs and sends
it at delivery time. Secrets come from the environment here and nowhere else.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from gatewatch.flows.config import (
    AlertsConfig,
    ConfigError,
    GenericDestination,
    PagerDutyDestination,
    SlackDestination,
)
from gatewatch.sinks.alerts.base import AlertChannel
from gatewatch.sinks.alerts.generic import GenericWebhook
from gatewatch.sinks.alerts.pagerduty import PagerDutyEvents
from gatewatch.sinks.alerts.slack import SlackWebhook
from gatewatch.sinks.signing import SECRET_PREFIX

ALERT_CHANNELS: dict[str, type[AlertChannel]] = {
    c.kind: c for c in (GenericWebhook, SlackWebhook, PagerDutyEvents)
}
SECRET_BYTES = (24, 64)  # the Standard Webhooks spec's key length


def _whsec_problem(value: str) -> str | None:
    if not value.startswith(SECRET_PREFIX):
        return f"is not a {SECRET_PREFIX}<base64> secret"
    try:
        key = base64.b64decode(value[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        return f"is not valid base64 after {SECRET_PREFIX}"
    lo, hi = SECRET_BYTES
    if not lo <= len(key) <= hi:
        return f"holds {len(key)} bytes; the spec asks for {lo} to {hi}"
    return None


def _tls(dest) -> dict:
    return {"verify_tls": dest.verify_tls, "ca_file": dest.ca_file}


def build_channels(alerts: AlertsConfig, env: Mapping[str, str]) -> dict[str, AlertChannel]:
    """One channel per destination, secrets read from ``env``.

    Raises:
        ConfigError: listing every missing or malformed secret (never its value).
    """
    problems: list[str] = []
    channels: dict[str, AlertChannel] = {}

    def secret(i: int, key: str, var: str) -> str:
        value = env.get(var, "").strip()
        if not value:
            problems.append(f"alerts.destinations.{i}.{key}: environment variable {var} is not set")
        return value

    for i, dest in enumerate(alerts.destinations):
        if isinstance(dest, GenericDestination):
            secrets = [secret(i, "secret_env", var) for var in dest.secret_env]
            for var, value in zip(dest.secret_env, secrets, strict=True):
                problem = _whsec_problem(value) if value else None
                if problem:
                    problems.append(f"alerts.destinations.{i}.secret_env: {var} {problem}")
            channels[dest.name] = GenericWebhook(dest.name, dest.url, secrets, dest.timeout_s, **_tls(dest))
        elif isinstance(dest, SlackDestination):
            url = secret(i, "url_env", dest.url_env)
            if url and not url.startswith(("https://", "http://")):
                problems.append(
                    f"alerts.destinations.{i}.url_env: {dest.url_env} does not hold an http(s) URL"
                )
            channels[dest.name] = SlackWebhook(dest.name, url, dest.timeout_s, **_tls(dest))
        elif isinstance(dest, PagerDutyDestination):
            key = secret(i, "routing_key_env", dest.routing_key_env)
            channels[dest.name] = PagerDutyEvents(dest.name, dest.url, key, dest.timeout_s, **_tls(dest))
    if problems:
        raise ConfigError(problems)
    return channels


def alert_problems(alerts: AlertsConfig, env: Mapping[str, str]) -> list[str]:
    """Problems with the destinations' secrets (for ``gatewatch validate``)."""
    try:
        build_channels(alerts, env)
    except ConfigError as exc:
        return exc.problems
    return []
