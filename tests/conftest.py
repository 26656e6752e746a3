"""Shared helpers: run the real ``gatewatch`` command, read the real store, build feature columns."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from gatewatch.sinks.store import query

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_logs" / "wso2_apim_metrics.log"
GATEWATCH = str(Path(sys.executable).with_name("gatewatch"))

pytest_plugins = ["tests.fakes.fixtures"]  # fake_wso2, fake_kong


def gatewatch(*args: str, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run the installed console script to completion."""
    proc = subprocess.run([GATEWATCH, *args], capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and proc.returncode != 0:
        msg = f"gatewatch {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        raise AssertionError(msg)
    return proc


def start_gatewatch(*args: str, **kw) -> subprocess.Popen:
    """Start the console script in the background; for ``run``, wait until it follows its inputs.

    Waiting matters: a signal sent before the command installs its handlers
    would kill it instead of stopping it cleanly.
    """
    proc = subprocess.Popen([GATEWATCH, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if args and args[0] == "run":
        line = proc.stderr.readline()
        assert line.startswith("gatewatch: following"), line + proc.stderr.read()
    return proc


def stop(proc: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    """SIGTERM a running pipeline and wait for its clean exit."""
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    return out, err


def rows(store: Path, sql: str, params=None) -> list[dict]:
    return query(store, sql, params).to_pylist()


def scalar(store: Path, sql: str, params=None):
    return next(iter(rows(store, sql, params)[0].values()))


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports free on 127.0.0.1 just now (for cluster addresses)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def median_s(fn, runs: int, *, warm_up: bool = False) -> float:
    """Median wall time of ``runs`` calls of ``fn`` (benchmarks); ``warm_up``: one untimed call first."""
    if warm_up:
        fn()
    secs = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        secs.append(time.perf_counter() - t0)
    return statistics.median(secs)


def wait_for(predicate, timeout: float = 60, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    msg = f"timed out waiting for {what}"
    raise AssertionError(msg)


@pytest.fixture
def small_windows_config(tmp_path: Path) -> Path:
    """A config for live tests: windows close quickly and the store compacts often."""
    cfg = tmp_path / "gatewatch.toml"
    cfg.write_text(
        "[input]\npoll_ms = 50\n"
        "[pipeline]\nidle_close_s = 1\nsnapshot_interval_s = 1\n"
        "[store]\ncompact_every_s = 1\ncompact_min_files = 2\n"
    )
    return cfg


@pytest.fixture
def env_no_color() -> dict[str, str]:
    return {**os.environ, "NO_COLOR": "1", "TERM": "dumb"}


def columns(xs: list[dict[str, float]]) -> dict[str, np.ndarray]:
    """Windows' feature dicts as the ``*_many`` methods take them; a feature a window lacks is 0."""
    return {k: np.array([x.get(k, 0.0) for x in xs]) for k in sorted({k for x in xs for k in x})}


@contextmanager
def terminal() -> Iterator[tuple[int, bytearray]]:
    """A pseudo-terminal: yields the end to give a child as its stdout or stderr, and what it has shown so far."""
    leader, follower = os.openpty()
    shown = bytearray()

    def drain():  # the terminal end must be read while the child writes, or it blocks
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        yield follower, shown
    finally:
        os.close(follower)
        reader.join(timeout=10)
        os.close(leader)


def scrape_metrics(url: str) -> dict[tuple[str, tuple], float]:
    """A Prometheus endpoint's samples (``url`` ends in /metrics): ``{(name, ((label, value), ...)): value}``."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(httpx.get(url).text)
        for s in family.samples
    }
