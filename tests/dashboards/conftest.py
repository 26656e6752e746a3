"""Fixtures: a store of known rows (``store_rows``) and a store filled by a real replay of the sample log."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from store_rows import DECISIONS, DELIVERIES, FINDINGS, INCIDENTS, REJECTED, SUBJECT_WINDOWS, TRAFFIC

from gatewatch.sinks.store import StoreWriter
from tests.conftest import GATEWATCH, SAMPLE, free_ports, gatewatch

CASES = Path(__file__).with_name("cases")


@pytest.fixture
def store_root(tmp_path):
    """A store holding the rows of ``store_rows``, traffic in two segments."""
    root = tmp_path / "store"
    writer = StoreWriter(root).open()
    writer.append("traffic", TRAFFIC[:5])
    writer.append("traffic", TRAFFIC[5:])
    for table, rows in [
        ("findings", FINDINGS),
        ("subject_windows", SUBJECT_WINDOWS),
        ("decisions", DECISIONS),
        ("incidents", INCIDENTS),
        ("deliveries", DELIVERIES),
        ("rejected", REJECTED),
    ]:
        writer.append(table, rows)
    return root


@pytest.fixture(scope="session")
def replay_store(tmp_path_factory) -> Path:
    """A store filled by ``gatewatch replay`` of the sample log plus a few unusable lines.

    Tests must not change it; copy it (``replay_copy``) to act on it.
    """
    root = tmp_path_factory.mktemp("replay") / "store"
    gatewatch("replay", str(SAMPLE), str(CASES / "unusable_lines.log"), "--store", str(root))
    return root


@pytest.fixture
def replay_copy(replay_store, tmp_path) -> Path:
    """A private copy of the replayed store, for tests that change it."""
    return Path(shutil.copytree(replay_store, tmp_path / "store"))


@pytest.fixture(scope="session")
def review_store(tmp_path_factory) -> Path:
    """A store replayed in enforce mode with every tier reviewed: decisions wait for a person.

    Tests must not change it; copy it (``review_copy``) to act on it.
    """
    root = tmp_path_factory.mktemp("review") / "store"
    config = root.with_name("enforce.toml")
    config.write_text('[policy]\nmode = "enforce"\nreview_tiers = ["restricted", "blocked"]\n')
    gatewatch("replay", str(SAMPLE), "--store", str(root), "--config", str(config))
    return root


@pytest.fixture
def review_copy(review_store, tmp_path) -> Path:
    """A private copy of ``review_store``, for tests that approve or revert."""
    return Path(shutil.copytree(review_store, tmp_path / "store"))


@pytest.fixture
def serve_dashboard(tmp_path):
    """Start ``gatewatch dashboard`` on a store and a free port; return (process, port) once Streamlit is healthy.

    ``config`` is more of the TOML config (its ``[dashboard]`` table goes on after the port);
    ``env`` the process's environment, without ``$GATEWATCH_OPERATORS`` unless it sets it. The
    process leads its own session, so a test can signal it alone or its whole group.
    """

    def serve(store: Path, config: str = "", env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
        (port,) = free_ports(1)
        cfg = tmp_path / "dashboard.toml"
        cfg.write_text(f"[dashboard]\nport = {port}\n{config}")
        base = {k: v for k, v in os.environ.items() if k != "GATEWATCH_OPERATORS"}
        proc = subprocess.Popen(
            [GATEWATCH, "dashboard", "--store", str(store), "--config", str(cfg)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
            env={**base, **(env or {})},
        )  # fmt: skip
        assert proc.stdout.readline().strip() == f"Dashboard: http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and health != "ok":
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).text
            except httpx.TransportError:
                time.sleep(0.3)
        assert health == "ok"
        return proc, port

    return serve
