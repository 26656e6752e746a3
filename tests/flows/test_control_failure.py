"""A control plane that dies stops the run at once, loudly, with a non-zero exit.

Ingestion must not carry on while decisions and alerts have stopped: the
control loop's first error is printed as it happens and stops the pipeline.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time

from tests.conftest import SAMPLE, start_gatewatch


def _inbox_rows(path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path) as con:
            return con.execute("SELECT count(*) FROM inbox").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_a_control_plane_error_stops_run_with_a_non_zero_exit(tmp_path):
    store = tmp_path / "store"
    log = tmp_path / "apim_metrics.log"
    log.write_bytes(SAMPLE.read_bytes())
    proc = start_gatewatch("run", str(log), "--store", str(store))
    # wait for the first findings in the inbox: by then the pipeline's sink has opened the
    # control database, so nothing recreates the table dropped below
    deadline = time.monotonic() + 120
    while not _inbox_rows(store / "control.sqlite"):
        assert time.monotonic() < deadline and proc.poll() is None, "no findings reached the inbox"
        time.sleep(0.2)
    with sqlite3.connect(store / "control.sqlite") as con:  # what a damaged control database does to it
        con.execute("DROP TABLE inbox")
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        msg = "run carried on after its control plane died"
        raise AssertionError(msg) from None
    assert proc.returncode != 0
    assert "control plane stopped" in err and "no such table: inbox" in err
