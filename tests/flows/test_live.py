"""What ``gatewatch run`` prints as it goes: a line per finding, decision and incident; a status line; resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

from tests.conftest import GATEWATCH, SAMPLE, rows, start_gatewatch, stop, terminal, wait_for


def settled(store, n_findings: int = 50) -> bool:
    """Every finding of the sample written (the quiet input closes the last windows)."""
    try:
        return rows(store, "SELECT count(*) AS n FROM findings")[0]["n"] >= n_findings
    except Exception:  # noqa: BLE001 - no table yet
        return False


def test_json_lines_name_every_finding_decision_and_incident_the_store_holds(tmp_path, small_windows_config):
    store = tmp_path / "store"
    proc = start_gatewatch("run", str(SAMPLE), "--store", str(store), "--config", str(small_windows_config), "--output", "json")
    wait_for(lambda: settled(store), timeout=120, what="the sample's findings")
    time.sleep(2)  # the control plane's next round
    out, _ = stop(proc)
    *lines, summary = out.splitlines()
    assert summary.startswith("run: lines=4698 ")
    printed = [json.loads(line) for line in lines]
    by_type: dict[str, list[dict]] = {}
    for p in printed:
        by_type.setdefault(p["type"], []).append(p)
    assert {p["finding_id"] for p in by_type["finding"]} == {
        r["finding_id"] for r in rows(store, "SELECT finding_id FROM findings")
    }
    assert {(p["decision_id"], p["status"]) for p in by_type["decision"]} == {
        (r["decision_id"], r["status"]) for r in rows(store, "SELECT decision_id, status FROM decisions")
    }
    assert {(p["incident_id"], p["state"], p["findings"]) for p in by_type["incident"]} == {
        (r["incident_id"], r["state"], r["findings"]) for r in rows(store, "SELECT incident_id, state, findings FROM incidents")
    }
    seen = set()  # a finding's line comes before the line of the incident it opens
    for p in printed:
        key = (p.get("subject_type"), p.get("subject"), p.get("kind"))
        if p["type"] == "finding":
            seen.add(key)
        elif p["type"] == "incident" and p["state"] == "open":
            assert key in seen, p


def test_quiet_prints_only_the_summary_and_a_restart_says_where_it_resumes(tmp_path, small_windows_config):
    store = tmp_path / "store"
    args = ("run", str(SAMPLE), "--store", str(store), "--config", str(small_windows_config), "--quiet")
    proc = start_gatewatch(*args)
    wait_for(lambda: settled(store), timeout=120, what="the sample's findings")
    out, _ = stop(proc)
    assert out.splitlines() == [line for line in out.splitlines() if line.startswith("run: ")] and out.strip()
    again = start_gatewatch(*args)
    time.sleep(3)
    _, err = stop(again)
    lines = len(SAMPLE.read_bytes().splitlines())
    assert f"gatewatch: resuming {SAMPLE} at line {lines + 1:,}" in err


def test_a_terminal_gets_a_status_line(tmp_path, small_windows_config):
    store = tmp_path / "store"
    with terminal() as (tty, shown):
        proc = subprocess.Popen(
            [GATEWATCH, "run", str(SAMPLE), "--store", str(store), "--config", str(small_windows_config)],
            stdout=tty, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            wait_for(lambda: b"behind the log" in shown and b"finding" in shown, timeout=120, what="the status line")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
    assert proc.returncode == 0
    text = shown.decode(errors="replace")
    assert "lines/s" in text and "4,698 lines" in text
    assert "\x1b[" in text  # coloured: it is a terminal


def test_a_stdout_nobody_reads_never_holds_up_the_control_plane(tmp_path):
    from gatewatch.flows.live import LiveLines

    read_end, write_end = os.pipe()
    out = os.fdopen(write_end, "w")
    live = LiveLines(out, json_lines=True, max_queued=5)
    f = {"finding_id": "x", "kind": "brute_force", "subject_type": "ip", "subject": "192.0.2.7", "reasons": ["r" * 150]}
    started = time.monotonic()
    for i in range(2000):  # far more than a pipe holds, with no reader
        live._emit("finding", ("", {**f, "finding_id": str(i)}))
    assert time.monotonic() - started < 1.0 and live.dropped > 0
    got = bytearray()
    reader = threading.Thread(target=lambda: got.extend(iter_read(read_end)), daemon=True)
    reader.start()
    live.close()
    out.close()
    reader.join(10)
    lines = [json.loads(line) for line in got.decode().splitlines()]
    printed = [x for x in lines if "finding_id" in x]
    notes = [x for x in lines if x.get("type") == "dropped"]
    assert len(printed) + sum(n["lines"] for n in notes) == 2000 and notes


def iter_read(fd: int):
    while chunk := os.read(fd, 65536):
        yield from chunk
