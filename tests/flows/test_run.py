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
    assert "keeping open windows for the next run" in err
    assert _requests(store) <= 2500  # the open windows wait in the recovery snapshot, not in the store

    _append(log, b"".join(LINES[2500:3000]))  # written while gatewatch is down
    proc = start_gatewatch(*args)
    _wait_read(store, LINES[:3000])
    with open(log, "r+b") as f:  # copytruncate-style rotation
        f.truncate(0)
    log.write_bytes(b"".join(LINES[3000:3500]))
    wait_for(lambda: _requests(store) == 3500, timeout=60, what="every request, the last windows idle-closed")
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
    wait_for(lambda: _requests(live) == len(LINES), timeout=60, what="every request, the last windows idle-closed")
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
    wait_for(lambda: _requests(store) == len(LINES), timeout=60, what="every request, the last windows idle-closed")
    stop(proc)
    assert errors == []
    assert queries >= 20
    assert seen == sorted(seen), "a reader saw the traffic total go down"
    assert seen[-1] > 0
    assert _requests(store) == len(LINES)
    files = os.listdir(store / "traffic")
    assert any(f.startswith("cmp-") for f in files), files


def test_a_stop_and_restart_in_the_middle_of_an_attack_finds_what_a_replay_finds(tmp_path):
    cfg = tmp_path / "gatewatch.toml"  # windows close on event time, or after 20 s of quiet
    cfg.write_text("[input]\npoll_ms = 50\n[pipeline]\nidle_close_s = 20\nsnapshot_interval_s = 1\n")
    replayed = tmp_path / "replayed"
    gatewatch("replay", str(SAMPLE), "--store", str(replayed))
    log, store = tmp_path / "apim_metrics.log", tmp_path / "live"
    attack = next(i for i, line in enumerate(LINES) if line.startswith(b"10:00:"))
    minute = [i for i, line in enumerate(LINES) if line.startswith(b"10:00:")]
    cut = minute[len(minute) // 2]  # half of the attack's first minute is written before the stop
    assert attack < cut
    log.write_bytes(b"".join(LINES[:cut]))
    args = ("run", str(log), "--store", str(store), "--config", str(cfg))

    proc = start_gatewatch(*args)
    _wait_read(store, LINES[:cut])
    _, err = stop(proc)  # the attack's window is open: it must not be judged on its first half
    assert "keeping open windows" in err
    _append(log, b"".join(LINES[cut:]))
    proc = start_gatewatch(*args)
    wait_for(lambda: _requests(store) == len(LINES), timeout=90, what="every request, the last windows idle-closed")
    stop(proc)

    q = "SELECT subject, kind, epoch(window_start) ws, score, reasons FROM findings ORDER BY ws, subject, kind"
    assert rows(store, q) == rows(replayed, q)
    t = "SELECT epoch(window_start) ws, api, consumer, requests, late_requests FROM traffic ORDER BY ALL"
    assert rows(store, t) == rows(replayed, t)


def test_run_on_a_glob_reads_each_line_once_through_copytruncate_rotations(tmp_path, small_windows_config):
    import gzip
    import shutil

    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "apim_metrics.log"
    log.write_bytes(b"")
    store = tmp_path / "store"
    proc = start_gatewatch(
        "run", str(logs / "apim_metrics.log*"), "--store", str(store), "--config", str(small_windows_config)
    )
    copy = logs / "apim_metrics.log.1"
    for i in range(0, 3000, 250):
        _append(log, b"".join(LINES[i : i + 250]))
        time.sleep(0.2)
        if i % 1000 == 750:  # logrotate: copytruncate, compress, delaycompress
            if copy.exists():
                with open(copy, "rb") as src, gzip.open(logs / f"apim_metrics.log.{i // 1000 + 1}.gz", "wb") as dst:
                    shutil.copyfileobj(src, dst)
                copy.unlink()
            shutil.copyfile(log, copy)
            with open(log, "r+b") as f:
                f.truncate(0)
    wait_for(lambda: _requests(store) >= 3000, timeout=60, what="every request, the last windows idle-closed")
    time.sleep(2)  # a copy read twice would show by now
    stop(proc)
    got = {(r["ws"], r["api"], r["consumer"]): r["n"] for r in rows(
        store, "SELECT epoch(window_start) ws, api, consumer, sum(requests) n FROM traffic GROUP BY ALL")}
    assert got == dict(_oracle_of(LINES[:3000]))
    assert scalar(store, "SELECT count(*) FROM rejected") == 0
