"""``gatewatch validate``: check a config, its secrets and the gateways it names before a run."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from gatewatch.flows import log
from gatewatch.flows.cli.common import ConfigOpt, fail, is_loopback
from gatewatch.flows.cli.ingest import RECOVERY_DIR, shards_problem
from gatewatch.flows.cli.view import read_only_note
from gatewatch.flows.config import ConfigError, check_paths, example_toml, load_config


def validate(
    config: ConfigOpt = None,
    print_example: Annotated[bool, typer.Option("--print-example", help="Print every key with its default.")] = False,
) -> None:
    """Check a config file; list every problem and exit non-zero if there is one."""
    if print_example:
        sys.stdout.write(example_toml())
        return
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise fail(exc.problems) from None
    from gatewatch.sinks.alerts import alert_problems
    from gatewatch.sinks.control import ControlDB
    from gatewatch.sinks.targets import check_secrets, check_targets, limit_gaps, name_problems

    control = ControlDB(cfg.store.path)  # opens its file on first use; the checks below use none
    problems = check_paths(cfg) + alert_problems(cfg.alerts, os.environ)
    problems += name_problems(cfg, [d.name for d in cfg.alerts.destinations]) + check_secrets(cfg)
    if shards := shards_problem(cfg.store.path / RECOVERY_DIR, cfg.pipeline.shards):
        problems.append(shards)
    t = cfg.targets
    if cfg.policy.mode == "enforce" and not (t.wso2.enabled or t.kong.enabled or t.webhook.enabled or cfg.api.enabled):
        problems.append('policy.mode: is "enforce", but no target or API is enabled: nothing would ever enforce it')
    from gatewatch.flows.credentials import operators_problem, read_operators
    from gatewatch.flows.kafka import kafka_problems

    problems += kafka_problems(cfg.input.kafka)
    dash = cfg.dashboard
    if operators := operators_problem(dash.operators_env, dash.operators_file):
        problems.append(operators)
    if cfg.api.enabled:
        from gatewatch.flows.control.decision_api import ApiKeysError, read_keys

        try:
            read_keys(cfg.api)
        except ApiKeysError as exc:
            problems.append(str(exc))
    if not problems:  # ask the enabled gateways whether our credentials and tiers work
        problems = check_targets(cfg, control)
    if problems:
        raise fail(problems)
    for gap in limit_gaps(cfg, control):
        log.emit("note", "limit_gap", gap)
    acting = read_operators(dash.operators_env, dash.operators_file) is not None
    if not is_loopback(dash.address):
        if acting:
            exposed = (
                "and operators can act in it: whoever reaches it reads every finding and decision, and "
                "the sign-in tokens cross the network in clear text unless TLS is in front of it"
            )
        else:
            exposed = "and whoever reaches it reads every finding and decision (it is read-only: no operators)"
        log.emit("warning", "dashboard_exposed", f"dashboard.address: {dash.address} listens beyond this machine, {exposed}")
    elif not acting:
        log.emit("note", "dashboard_read_only", read_only_note(dash))
    typer.echo(f"{config or 'embedded defaults'}: OK")
