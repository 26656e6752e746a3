"""The command line as a user meets it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from gatewatch.flows.lab.simulate import generate_wso2
from tests.conftest import GATEWATCH, SAMPLE, gatewatch, scalar, terminal


def test_help_lists_every_command():
    out = gatewatch("--help").stdout
    for command in ("replay", "run", "sql", "dashboard", "validate"):
        assert command in out


def test_validate_lists_every_problem_and_exits_non_zero(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[pipeline]\nwindow_s = 0\nwindw_s = 60\n[policy]\nmode = \"yolo\"\n")
    proc = gatewatch("validate", "--config", str(bad), check=False)
    assert proc.returncode == 2
    errors = proc.stderr.splitlines()
    assert len(errors) == 3
    assert "error: pipeline.windw_s: unknown key" in errors
    assert any(e.startswith("error: pipeline.window_s:") for e in errors)
    assert any(e.startswith("error: policy.mode:") for e in errors)
    assert gatewatch("validate").stdout.strip() == "embedded defaults: OK"


def test_a_config_given_only_by_gatewatch_config_is_the_one_read(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[pipeline]\nwindw_s = 60\n")
    proc = gatewatch("validate", env={**os.environ, "GATEWATCH_CONFIG": str(bad)}, check=False)
    assert (proc.returncode, proc.stderr) == (2, "error: pipeline.windw_s: unknown key\n")
    good = tmp_path / "good.toml"
    good.write_text("[pipeline]\nwindow_s = 60\n")
    assert gatewatch("validate", env={**os.environ, "GATEWATCH_CONFIG": str(good)}).stdout == f"{good}: OK\n"


def test_replay_never_imports_pandas_duckdb_or_httpx_and_still_writes_every_event(tmp_path):
    """Start-up cost: pyarrow would import pandas (0.35 s) on its first conversion, and httpx its
    command line's modules (0.11 s); the pipeline hides both, only readers import duckdb, and
    only a run with somewhere to deliver to imports httpx (0.08 s)."""
    store = tmp_path / "s"
    code = (
        "import sys\nfrom gatewatch.flows.cli import main\n"
        f"sys.argv = ['gatewatch', 'replay', {str(SAMPLE)!r}, '--store', {str(store)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print('imported:', [m for m in ('pandas', 'duckdb', 'httpx', 'httpx._main') if m in sys.modules])\n"
    )
    cmd = [sys.executable, "-c", code]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    lines = proc.stdout.splitlines()
    assert lines[-1] == "imported: []"
    events = int(re.search(r"events=(\d+)", lines[-2]).group(1))
    assert events > 0 and scalar(store, "SELECT SUM(requests) FROM traffic") == events


def test_a_bad_config_stops_replay_before_it_reads_anything(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[input]\nformat = \"syslog\"\n")
    proc = gatewatch("replay", str(SAMPLE), "--config", str(bad), "--store", str(tmp_path / "s"), check=False)
    assert proc.returncode == 2
    assert "input.format" in proc.stderr
    assert not (tmp_path / "s").exists()


def test_run_reads_stdin_until_it_closes(tmp_path):
    store = tmp_path / "store"
    lines = SAMPLE.read_bytes().splitlines(keepends=True)[:2000]
    proc = subprocess.run(
        [GATEWATCH, "run", "-", "--store", str(store)], input=b"".join(lines), capture_output=True, timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert b"run: lines=2000 events=2000" in proc.stdout
    assert scalar(store, "SELECT sum(requests) FROM traffic") == 2000


def test_replay_shows_progress_on_a_terminal_only(tmp_path):
    log = tmp_path / "big.log"
    generate_wso2(log, start=datetime(2026, 11, 2, tzinfo=timezone.utc), minutes=60, seed=3, scale=6)
    piped = gatewatch("replay", str(log), "--store", str(tmp_path / "a"))
    assert piped.stderr == ""
    with terminal() as (tty, shown):
        proc = subprocess.run(
            [GATEWATCH, "replay", str(log), "--store", str(tmp_path / "b")],
            stdout=subprocess.PIPE, stderr=tty, timeout=300, check=False,
        )  # fmt: skip
    assert proc.returncode == 0
    assert b"replay" in shown and b"lines" in shown and b"MB" in shown


def test_validate_refuses_enforce_with_no_target_and_warns_of_a_dashboard_beyond_loopback(tmp_path):
    enforce = tmp_path / "enforce.toml"
    enforce.write_text('[policy]\nmode = "enforce"\n')
    proc = gatewatch("validate", "--config", str(enforce), check=False)
    assert proc.returncode == 2 and "policy.mode" in proc.stderr and "no target or API is enabled" in proc.stderr

    exposed = tmp_path / "exposed.toml"
    exposed.write_text('[dashboard]\naddress = "0.0.0.0"\n')
    no_operators = {k: v for k, v in os.environ.items() if k != "GATEWATCH_OPERATORS"}
    proc = gatewatch("validate", "--config", str(exposed), env=no_operators)
    assert "warning: dashboard.address: 0.0.0.0 listens beyond this machine" in proc.stderr
    assert "(it is read-only: no operators)" in proc.stderr
    # operators who can act, on a dashboard others reach: said louder
    acting = {**no_operators, "GATEWATCH_OPERATORS": "alice:" + "a" * 20}
    proc = gatewatch("validate", "--config", str(exposed), env=acting)
    assert "listens beyond this machine, and operators can act in it" in proc.stderr
    assert "a" * 20 not in proc.stderr
    quiet = gatewatch("validate", env=no_operators).stderr
    assert "warning" not in quiet
    assert "note: dashboard: read-only, nobody can approve or revert decisions in it" in quiet
    assert gatewatch("validate", env=acting).stderr == ""


def test_validate_and_dashboard_refuse_unusable_operator_tokens(tmp_path):
    operators = tmp_path / "operators"
    operators.write_text("alice:" + "a" * 20 + "\nbob:too-short\n")
    cfg = tmp_path / "operators.toml"
    cfg.write_text(f'[dashboard]\noperators_env = ""\noperators_file = "{operators}"\n')
    problem = f"error: dashboard.operators_file: {operators}: entry 2 is not NAME:TOKEN"
    for args in (["validate"], ["dashboard", "--store", str(tmp_path / "s")]):
        proc = gatewatch(*args, "--config", str(cfg), check=False, timeout=60)
        assert proc.returncode == 2, (args, proc.stderr)
        assert problem in proc.stderr
        assert "too-short" not in proc.stderr and "a" * 20 not in proc.stderr
        assert "Dashboard: http" not in proc.stdout  # the server never started


def test_version_env_defaults_and_a_warning_when_nearly_every_line_is_rejected(tmp_path):
    assert gatewatch("--version").stdout.startswith("gatewatch ")
    store = tmp_path / "store"
    env = {**os.environ, "GATEWATCH_STORE": str(store)}
    wrong = gatewatch("replay", str(SAMPLE), "--format", "combined", env=env)
    assert f"store={store}" in wrong.stdout  # GATEWATCH_STORE, as the dashboard reads it
    assert "lines were rejected: is --format combined the log's format?" in wrong.stderr
    counted = gatewatch("sql", "SELECT count(*) AS n FROM rejected", "--format", "csv", env=env).stdout
    assert counted.splitlines()[1] == str(len(SAMPLE.read_bytes().splitlines()))
    right = gatewatch("replay", str(SAMPLE), "--store", str(tmp_path / "other"))
    assert "warning" not in right.stderr


def test_log_format_json_makes_every_stderr_message_a_json_object(tmp_path):
    bad = gatewatch("--log-format", "json", "replay", str(tmp_path / "missing.log"), check=False)
    assert bad.returncode == 2
    (message,) = [json.loads(line) for line in bad.stderr.splitlines()]
    assert (message["level"], message["event"]) == ("error", "error")
    assert message["message"] == f"input {str(tmp_path / 'missing.log')!r}: no such file"

    proc = subprocess.Popen(
        [GATEWATCH, "run", str(SAMPLE), "--store", str(tmp_path / "s"), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "GATEWATCH_LOG_FORMAT": "json"},
    )  # fmt: skip
    started = json.loads(proc.stderr.readline())
    assert started["event"] == "following" and started["store"] == str(tmp_path / "s")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    events = [json.loads(line) for line in err.splitlines()]
    assert [e["event"] for e in events] == ["stopping"] and events[0]["signal"] == "SIGTERM"
    assert all(set(e) >= {"time", "level", "event", "message"} for e in [started, *events])


def test_short_help_everywhere_and_shell_completion():
    assert gatewatch("-h").stdout.startswith("Usage: gatewatch [OPTIONS] COMMAND")
    assert gatewatch("decisions", "list", "-h").stdout.startswith("Usage: gatewatch decisions list")
    # typer takes the shell from the parent process unless told not to; the test may run under sh
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    script = gatewatch("--show-completion", "bash", env=env).stdout
    assert "_gatewatch_completion()" in script and "complete " in script


def truth_without_incidents(folder: Path) -> Path:
    """A ground truth as ``simulate`` writes one, with no attack and no look-alike: every finding is a false positive."""
    import msgspec

    from gatewatch.flows.lab.simulate import GroundTruth

    truth = folder / "wso2.truth.json"
    truth.write_bytes(msgspec.json.encode(GroundTruth("wso2", 1, 0.0, 3600.0, 60, 0, "wso2.log", attacks=[], lookalikes=[])))
    return truth


def test_configuration_and_usage_errors_exit_2_in_every_command(tmp_path):
    from gatewatch.sinks.store import StoreWriter

    bad = tmp_path / "bad.toml"
    bad.write_text("[policy]\nmode = \"yolo\"\n")
    empty = tmp_path / "empty"
    StoreWriter(empty).open()
    not_simulated = str(SAMPLE.with_name("wso2_apim_metrics.truth.json"))  # the sample's, not simulate's
    truth = truth_without_incidents(tmp_path)
    for args in [
        ("validate", "--config", str(bad)),
        ("replay", str(SAMPLE), "--config", str(bad)),
        ("alerts", "test", "--config", str(bad)),
        ("sql", "DROP TABLE traffic", "--store", str(empty)),
        ("sql", "", "--store", str(empty)),
        ("evaluate", "--truth", not_simulated, "--store", str(empty)),
        ("evaluate", "--truth", str(truth), "--store", str(empty)),
    ]:
        proc = gatewatch(*args, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        (line,) = proc.stderr.splitlines()
        assert line.startswith("error: "), (args, line)
    # every command that reads a store: a missing one is an error, not an empty answer
    missing = tmp_path / "none"
    no_store = f"error: no store at {missing.resolve()}: gatewatch replay or run writes one (--store, GATEWATCH_STORE)"
    for args in [
        ("sql", "SELECT 1"),
        ("evaluate", "--truth", str(truth)),
        ("decisions", "list"),
        ("decisions", "approve", "d1"),
        ("decisions", "revert", "d1"),
        ("deliveries", "list"),
        ("deliveries", "retry", "--all"),
    ]:
        proc = gatewatch(*args, "--store", str(missing), check=False)
        assert (proc.returncode, proc.stderr.splitlines(), proc.stdout) == (2, [no_store], ""), args
    assert not missing.exists()


def test_output_names_what_a_command_prints_and_the_old_format_still_works(tmp_path):
    store = tmp_path / "s"
    gatewatch("replay", str(SAMPLE), "--store", str(store))
    for flag in ("--output", "-o", "--format"):
        out = gatewatch("sql", "SELECT 42 AS answer", "--store", str(store), flag, "json").stdout
        assert json.loads(out) == [{"answer": 42}]
        decisions = json.loads(gatewatch("decisions", "list", "--store", str(store), flag, "json").stdout)
        assert len(decisions) == scalar(store, "SELECT count(DISTINCT decision_id) FROM decisions") > 0
    truth = str(truth_without_incidents(tmp_path))
    findings = scalar(store, "SELECT count(*) FROM findings")
    for flag in ("--output", "-o"):
        assert json.loads(gatewatch("deliveries", "list", "--store", str(store), flag, "json").stdout) == []
        report = json.loads(gatewatch("evaluate", "--truth", truth, "--store", str(store), flag, "json").stdout)
        assert len(report["false_positives"]) == findings > 0
    text = gatewatch("evaluate", "--truth", truth, "--store", str(store)).stdout
    assert text.startswith("evaluation: format=wso2 seed=1\n") and f"false positives: {findings}\n" in text
    assert gatewatch("deliveries", "list", "--store", str(store), "-o", "csv").stdout == "id,destination,attempts,last_error\n"


def test_pending_deliveries_are_promised_to_the_command_that_takes_the_store(tmp_path, capsys):
    from gatewatch.flows.cli.ingest import _report_pending
    from gatewatch.sinks.control import ControlDB

    control = ControlDB(tmp_path).open()
    try:
        control.enqueue("d1", "enforce", "kong", "dec-1", {"op": "block"})
        _report_pending(control, replayable=True)
        err = capsys.readouterr().err
        assert "1 deliveries still pending in the outbox (kong: 1)" in err
        assert err.rstrip().endswith("; the next run or replay with this store sends them")
        _report_pending(control, replayable=False)  # the store of a run: replay refuses it
        assert capsys.readouterr().err.rstrip().endswith("; the next run with this store sends them")
    finally:
        control.close()
