"""``gatewatch run``: following live files, restarting, and readers alongside."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from tests.conftest import SAMPLE, gatewatch, rows, scalar, start_gatewatch, stop, wait_for
from tests.flows.test_pipeline import _oracle

LINES = SAMPLE.read_bytes().splitlines(keepends=True)
LATENESS_S = 10


def _closed_lines(written: list[bytes], window_s: int = 60) -> int:
    """How many of ``written`` fall in windows the watermark has already closed."""
    tmp = _oracle_of(written, window_s)
    newest = max(ws for ws, _, _ in tmp) + window_s  # upper bound of the newest event time
    newest_event = _newest_ts(written)
    return sum(n for (ws, _, _), n in tmp.items() if ws + window_s <= newest_event - LATENESS_S) if newest else 0


def _oracle_of(lines: list[bytes], window_s: int = 60):
    import tempfile

    with tempfile.NamedTemporaryFile("wb", suffix=".log") as f:
        f.write(b"".join(lines))
        f.flush()
        return _oracle(Path(f.name), window_s)


def _newest_ts(lines: list[bytes]) -> float:
    import json
    from datetime import datetime

    newest = 0.0
    for line in lines:
        rec = json.loads(line[line.index(b"{") :])
        newest = max(newest, datetime.fromisoformat(rec["requestTimestamp"]).timestamp())
    return newest


def _requests(store: Path) -> int:
    return scalar(store, "SELECT coalesce(sum(requests), 0) FROM traffic")


def _wait_read(store: Path, written: list[bytes]) -> None:
    target = _closed_lines(written)
    wait_for(lambda: _requests(store) >= target, timeout=60, what=f"{target} requests in closed windows")


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_run_follows_appends_rotation_truncation_and_restarts_exactly_once(tmp_path, small_windows_config):
    log = tmp_path / "apim_metrics.log"
    store = tmp_path / "store"
    args = ("run", str(log), "--store", str(store), "--config", str(small_windows_config))

    half = len(LINES[1000]) // 2
    log.write_bytes(b"".join(LINES[:1000]) + LINES[1000][:half])  # a half-written last line
    proc = start_gatewatch(*args)
    _wait_read(store, LINES[:1000])
    _append(log, LINES[1000][half:] + b"".join(LINES[1001:2000]))
    _wait_read(store, LINES[:2000])

    os.rename(log, log.with_name("apim_metrics.log.1"))  # rotation by rename
    log.write_bytes(b"".join(LINES[2000:2500]))
    _wait_read(store, LINES[:2500])
    _, err = stop(proc)
    assert "flushing open windows" in err
    assert _requests(store) == 2500  # the stop flushed every open window

    _append(log, b"".join(LINES[2500:3000]))  # written while gatewatch is down
    proc = start_gatewatch(*args)
    _wait_read(store, LINES[:3000])
    with open(log, "r+b") as f:  # copytruncate-style rotation
        f.truncate(0)
    log.write_bytes(b"".join(LINES[3000:3500]))
    _wait_read(store, LINES[:3500])
    stop(proc)

    assert scalar(store, "SELECT count(*) FROM rejected") == 0
    got = {(r["ws"], r["api"], r["consumer"]): r["n"] for r in rows(
        store, "SELECT epoch(window_start) ws, api, consumer, sum(requests) n FROM traffic GROUP BY ALL")}
    assert got == dict(_oracle_of(LINES[:3500]))


def test_run_and_replay_give_the_same_findings(tmp_path, small_windows_config):
    replayed = tmp_path / "replayed"
    gatewatch("replay", str(SAMPLE), "--store", str(replayed))
    live = tmp_path / "live"
    proc = start_gatewatch("run", str(SAMPLE), "--store", str(live), "--config", str(small_windows_config))
    _wait_read(live, LINES)
    stop(proc)
    q = "SELECT subject, kind, epoch(window_start) ws, score, reasons FROM findings ORDER BY ws, subject, kind"
    assert rows(live, q) == rows(replayed, q)
    assert len(rows(live, q)) > 0
    dq = "SELECT subject, tier, limit_per_min, epoch(expires_at) e FROM decisions ORDER BY ALL"
    assert rows(live, dq) == rows(replayed, dq)


def test_readers_query_while_the_pipeline_writes_and_compacts(tmp_path, small_windows_config):
    log = tmp_path / "apim_metrics.log"
    log.write_bytes(b"")
    store = tmp_path / "store"
    proc = start_gatewatch("run", str(log), "--store", str(store), "--config", str(small_windows_config))
    writing = threading.Event()
    writing.set()

    def writer():
        for i in range(0, len(LINES), 150):
            _append(log, b"".join(LINES[i : i + 150]))
            time.sleep(0.1)
        writing.clear()

    t = threading.Thread(target=writer)
    t.start()
    seen, errors, queries = [], [], 0
    deadline = time.monotonic() + 120
    # until the writer is done and the pipeline has stored something: on a busy machine the
    # writer can finish before the run's first segment
    while writing.is_set() or queries < 20 or (not (seen and seen[-1]) and time.monotonic() < deadline):
        try:
            seen.append(_requests(store))
        except Exception as exc:  # any error is a failure: collect and report them all
            errors.append(repr(exc))
        queries += 1
        time.sleep(0.02)
    t.join()
    _wait_read(store, LINES)
    stop(proc)
    assert errors == []
    assert queries >= 20
    assert seen == sorted(seen), "a reader saw the traffic total go down"
    assert seen[-1] > 0
    assert _requests(store) == len(LINES)
    files = os.listdir(store / "traffic")
    assert any(f.startswith("cmp-") for f in files), files
