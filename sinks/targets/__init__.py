"""Gateway targets: turn enforced decisions into outbox entries, and deliver them.

The :class:`GatewayPlanner` runs inside the controller's SQLite transaction.
For the subject of every decision state it computes the *desired state* at
the gateway from all of the subject's enforced decisions in force (blocked
if any is a block; the strictest limit of its restrictions), and queues it
once per destination when it differs from what was last queued there. A
newer entry retires the subject's undelivered older ones, so a retried old
entry can never overwrite a newer state. Expiry and revert are deliveries
too: the desired state just has less in it.

:func:`build_channels` makes the configured channels (one module each:
``wso2``, ``kong``, ``webhook``); each implements ``gatewatch.sinks.outbox.Channel``.
"""

from __future__ import annotations

import json
import sqlite3

from gatewatch.flows.config import Config
from gatewatch.flows.events import Decision, stable_id
from gatewatch.sinks.control import ControlDB
from gatewatch.sinks.outbox import Channel
from gatewatch.sinks.targets.base import Desired, Secret

ENFORCED = ("approved", "applied")


def desired_state(decision: Decision, control: ControlDB, con: sqlite3.Connection | None = None) -> Desired:
    """What the gateway should enforce on the decision's subject now."""
    in_force = [
        d
        for d in control.subject_decisions(decision.subject_type, decision.subject, con)
        if d.mode == "enforce" and d.status in ENFORCED
    ]
    limits = [d.limit_per_min for d in in_force if d.tier == "restricted"]
    owner = json.loads(decision.inputs or "{}").get("subject_owner", "")
    return Desired(
        subject_type=decision.subject_type,
        subject=decision.subject,
        subject_name=decision.subject_name,
        subject_owner=owner,
        block=any(d.tier == "blocked" for d in in_force),
        limit_per_min=min(limits) if limits else None,
        decision_id=decision.decision_id,
    )


class GatewayPlanner:
    """Queue each destination's desired state for a subject when a decision changes it."""

    def __init__(self, destinations: dict[str, str]) -> None:
        self.destinations = destinations  # destination name -> channel kind

    def plan(self, decision: Decision, control: ControlDB, con: sqlite3.Connection) -> None:
        desired = desired_state(decision, control, con)
        wanted = {"block": desired.block, "limit_per_min": desired.limit_per_min}
        nothing = {"block": False, "limit_per_min": None}
        key = f"planned|{decision.subject_type}|{decision.subject}"
        for dest, kind in self.destinations.items():
            last = control.get_state(dest, key, con)
            if last == wanted or (last is None and wanted == nothing):
                continue
            control.supersede_pending(dest, decision.subject_type, decision.subject, con)
            entry_id = stable_id(decision.decision_id, decision.status, dest, json.dumps(wanted, sort_keys=True))
            # the cause tells an expiry or revert (an alert if it fails, see FailedLifts); channels ignore it
            payload = {**desired.__dict__, "cause": decision.status}
            control.enqueue(entry_id, kind, dest, decision.decision_id, payload, con=con)
            control.put_state(dest, key, wanted, con)


def secrets(cfg: Config) -> dict[str, Secret | None]:
    """The secret of each enabled target, by destination name."""
    t = cfg.targets
    out: dict[str, Secret | None] = {}
    if t.wso2.enabled:
        out[t.wso2.name] = Secret("targets.wso2.password_env", t.wso2.password_env, t.wso2.password_file)
    if t.kong.enabled:
        out[t.kong.name] = Secret("targets.kong.admin_token_env", t.kong.admin_token_env) if t.kong.admin_token_env else None
    if t.webhook.enabled:
        out[t.webhook.name] = Secret("targets.webhook.secret_env", t.webhook.secret_env, t.webhook.secret_file)
    return out


def build_channels(cfg: Config, control: ControlDB) -> dict[str, Channel]:
    """The enabled gateway channels by destination name (no I/O until the first delivery)."""
    t = cfg.targets
    keys = secrets(cfg)
    channels: dict[str, Channel] = {}
    if t.wso2.enabled:
        from gatewatch.sinks.targets.wso2 import Wso2Channel

        w = t.wso2
        channels[w.name] = Wso2Channel(
            w.name, base_url=w.base_url, version=w.version, username=w.username, password=keys[w.name],
            state=control, block_with=w.block_with, restrict_business_plan=w.restrict_business_plan,
            ip_custom_policy=w.ip_custom_policy,
            api_ids=tuple(w.api_ids), timeout_s=w.timeout_s, verify_tls=w.verify_tls, ca_file=w.ca_file,
        )  # fmt: skip
    if t.kong.enabled:
        from gatewatch.sinks.targets.kong import KongChannel

        k = t.kong
        channels[k.name] = KongChannel(
            k.name, admin_url=k.admin_url, state=control, admin_token=keys[k.name],
            block_status_code=k.block_status_code, block_message=k.block_message,
            timeout_s=k.timeout_s, verify_tls=k.verify_tls, ca_file=k.ca_file,
        )  # fmt: skip
    if t.webhook.enabled:
        from gatewatch.sinks.targets.webhook import WebhookChannel

        h = t.webhook
        channels[h.name] = WebhookChannel(
            h.name, url=h.url, secret=keys[h.name], timeout_s=h.timeout_s, verify_tls=h.verify_tls, ca_file=h.ca_file
        )
    return channels


def build_planner(cfg: Config) -> GatewayPlanner | None:
    """The planner for the enabled targets, or None when none is enabled."""
    t = cfg.targets
    destinations = {
        section.name: kind
        for kind, section in (("wso2", t.wso2), ("kong", t.kong), ("webhook", t.webhook))
        if section.enabled
    }
    return GatewayPlanner(destinations) if destinations else None


def check_secrets(cfg: Config) -> list[str]:
    """Secrets of enabled targets that cannot be read, by config key (no network)."""
    return [p for s in secrets(cfg).values() if s is not None and (p := s.problem())]


def limit_gaps(cfg: Config, control: ControlDB) -> list[str]:
    """The subjects an enabled target, as configured, can block but not limit (no network).

    The policy restricts consumers and IPs; what a target cannot limit is recorded as a
    ``skipped`` delivery. ``gatewatch validate`` says so up front.
    """
    gaps = []
    for name, channel in build_channels(cfg, control).items():
        for subject_type, label in (("consumer", "consumer"), ("ip", "IP")):
            if reason := channel.cannot_limit(subject_type):
                gaps.append(
                    f"targets.{name}: {label} restrictions are skipped, not sent: {reason} (blocks still apply)"
                )
    return gaps


def check_targets(cfg: Config, control: ControlDB) -> list[str]:
    """Ask each enabled target whether our credentials and configured tiers work (network)."""
    problems = []
    for channel in build_channels(cfg, control).values():
        problems.extend(channel.check())
        channel.close()
    return problems


DESTINATIONS_KEY = "targets"  # meta: the destinations the pipeline delivers to (read by `gatewatch decisions`)


def record_destinations(control: ControlDB, planner: GatewayPlanner | None) -> None:
    """Remember where the running pipeline delivers, for people approving decisions from elsewhere."""
    control.set_meta(DESTINATIONS_KEY, json.dumps(planner.destinations if planner else {}, sort_keys=True))


def recorded_planner(control: ControlDB) -> GatewayPlanner | None:
    """The planner of the pipeline that last ran on this store (None: it delivers nowhere)."""
    destinations = json.loads(control.get_meta(DESTINATIONS_KEY, "{}"))
    return GatewayPlanner(destinations) if destinations else None


def name_problems(cfg: Config, alert_names: list[str]) -> list[str]:
    """Target names that clash with each other or with alert destinations (they share one sender)."""
    t = cfg.targets
    names = [(k, s.name) for k, s in (("wso2", t.wso2), ("kong", t.kong), ("webhook", t.webhook)) if s.enabled]
    problems = []
    for i, (kind, name) in enumerate(names):
        if name in alert_names or any(name == other for _, other in names[:i]):
            problems.append(f"targets.{kind}.name: {name!r} is already the name of another destination")
    return problems


def wire_targets(
    cfg: Config, control: ControlDB, channels: dict[str, Channel]
) -> tuple[GatewayPlanner | None, dict[str, Channel]]:
    """The planner, and the sender's channels with the gateway targets added (for ``run``/``replay``)."""
    planner = build_planner(cfg)
    record_destinations(control, planner)
    return planner, {**channels, **build_channels(cfg, control)}


def sender_options(cfg: Config) -> dict:
    """Keyword arguments of ``gatewatch.sinks.outbox.Sender`` from ``[delivery]``."""
    return cfg.delivery.model_dump(exclude={"interval_s"})
