"""Reading a file into a store that already holds it is refused: every count would double."""

from __future__ import annotations

import gzip
import shutil
import signal
from datetime import datetime, timezone

import pytest

from gatewatch.flows.lab.simulate import generate_wso2
from tests.conftest import SAMPLE, gatewatch, scalar, start_gatewatch, stop, wait_for

TOTAL = "SELECT coalesce(sum(requests), 0) FROM traffic"


def test_a_second_replay_of_the_same_file_is_refused_and_changes_nothing(tmp_path):
    store = tmp_path / "store"
    gatewatch("replay", str(SAMPLE), "--store", str(store))
    requests = scalar(store, "SELECT sum(requests) FROM traffic")

    again = gatewatch("replay", str(SAMPLE), "--store", str(store), check=False)
    assert again.returncode == 2
    assert "was already replayed into" in again.stderr and "give another --store" in again.stderr
    copy = tmp_path / "renamed.log"  # the same log under another name, or grown since
    shutil.copy(SAMPLE, copy)
    with copy.open("ab") as f:
        f.write(SAMPLE.read_bytes().splitlines(keepends=True)[0])
    assert gatewatch("replay", str(copy), "--store", str(store), check=False).returncode == 2
    assert scalar(store, "SELECT sum(requests) FROM traffic") == requests


def test_one_replay_of_a_log_and_its_copy_is_refused_and_writes_nothing(tmp_path):
    plain = tmp_path / "apim_metrics.log"
    shutil.copy(SAMPLE, plain)
    packed = tmp_path / "apim_metrics.log.1.gz"
    packed.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    store = tmp_path / "store"
    both = gatewatch("replay", str(tmp_path / "apim_metrics.log*"), "--store", str(store), check=False)
    assert (both.returncode, both.stdout) == (2, "")
    assert both.stderr == (
        f"error: {packed} and {plain} start with the same lines (the same log, a copy, or a gzip of it): "
        "replaying both would count those lines twice; give one of them\n"
    )
    assert not store.exists()


def test_another_file_goes_into_the_same_store(tmp_path):
    store = tmp_path / "store"
    lines = SAMPLE.read_bytes().splitlines(keepends=True)
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_bytes(b"".join(lines[: len(lines) // 2]))
    second.write_bytes(b"".join(lines[len(lines) // 2 :]))
    gatewatch("replay", str(first), "--store", str(store))
    gatewatch("replay", str(second), "--store", str(store))
    assert scalar(store, "SELECT count(*) FROM rejected") == 0
    assert scalar(store, "SELECT sum(requests) FROM traffic") == len(lines)


@pytest.mark.parametrize("first", ["plain", "gzip"])
def test_a_log_and_its_gzip_copy_are_the_same_file(tmp_path, first):
    plain = tmp_path / "apim_metrics.log"
    shutil.copy(SAMPLE, plain)
    packed = tmp_path / "apim_metrics.log.1.gz"
    packed.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    replayed, other = (plain, packed) if first == "plain" else (packed, plain)
    store = tmp_path / "store"
    gatewatch("replay", str(replayed), "--store", str(store))

    again = gatewatch("replay", str(other), "--store", str(store), check=False)

    assert again.returncode == 2, again.stderr
    assert f"{other} was already replayed into {store} ({replayed}," in again.stderr
    assert scalar(store, TOTAL) == len(SAMPLE.read_bytes().splitlines())


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_a_replay_stopped_part_way_is_refused_again_as_interrupted(tmp_path, sig):
    log = tmp_path / "apim_metrics.log"
    generate_wso2(log, start=datetime(2026, 11, 2, 9, tzinfo=timezone.utc), minutes=360, seed=11, scale=2)
    cfg = tmp_path / "gatewatch.toml"
    cfg.write_text("[input]\nmax_batch_bytes = 4096\n")  # small reads: the findings are written as it goes
    store = tmp_path / "store"
    args = ("replay", str(log), "--store", str(store), "--config", str(cfg))
    proc = start_gatewatch(*args)
    wait_for(lambda: scalar(store, "SELECT count(*) FROM findings"), interval=0.05, what="the first findings")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL, "the replay finished before it was killed"
    else:  # Ctrl-C: one line says what happened, no traceback
        assert proc.returncode == 130, err
        errors = [line for line in err.splitlines() if line.strip()]
        assert len(errors) == 1 and errors[0].startswith("error: replay interrupted after "), err
    findings = scalar(store, "SELECT count(*) FROM findings")

    again = gatewatch(*args, check=False)

    assert again.returncode == 2, again.stderr
    assert f"{log}: its replay into {store} ({log}," in again.stderr
    assert "was interrupted, so part of its lines are in the store" in again.stderr
    assert "replay it into a new --store" in again.stderr
    assert scalar(store, "SELECT count(*) FROM findings") == findings


def test_run_refuses_a_file_replayed_into_its_store(tmp_path):
    log = tmp_path / "apim_metrics.log"
    shutil.copy(SAMPLE, log)
    store = tmp_path / "store"
    gatewatch("replay", str(log), "--store", str(store))
    grown = tmp_path / "live" / "apim_metrics.log"  # the live log the replayed one was copied from
    grown.parent.mkdir()
    grown.write_bytes(SAMPLE.read_bytes() + SAMPLE.read_bytes().splitlines(keepends=True)[0])

    refused = gatewatch("run", str(tmp_path / "live" / "*.log"), "--store", str(store), check=False, timeout=60)

    assert refused.returncode == 2, refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1, refused.stderr
    assert errors[0].startswith(f"error: {grown} was replayed into {store} ({log}, ")
    assert errors[0].endswith("run would read it from its start and count its lines again; give another --store, or leave it out")
    assert scalar(store, TOTAL) == len(SAMPLE.read_bytes().splitlines())
    assert not (store / "_recovery").exists()  # refused before anything was read


def test_a_replay_into_a_store_run_follows_is_refused_and_changes_nothing(tmp_path, small_windows_config):
    log = tmp_path / "apim_metrics.log"
    shutil.copy(SAMPLE, log)
    lines = len(SAMPLE.read_bytes().splitlines())
    store = tmp_path / "store"
    args = ("--store", str(store), "--config", str(small_windows_config))
    proc = start_gatewatch("run", str(log), *args)
    wait_for(lambda: scalar(store, TOTAL) == lines, what="every line counted")
    stop(proc)
    other = tmp_path / "other.log"  # a file run never saw: its rows would be rolled back by run's next restart
    other.write_bytes(b"".join(SAMPLE.read_bytes().splitlines(keepends=True)[:100]))

    refused = gatewatch("replay", str(other), *args, check=False, timeout=60)

    assert refused.returncode == 2
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "is followed by gatewatch run" in errors[0], refused.stderr
    assert scalar(store, TOTAL) == lines
    out, err = stop(start_gatewatch("run", str(log), *args))
    assert f"resuming {log} at line {lines + 1:,}" in err
    assert out.startswith("run: lines=0 ")
