from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

import pyarrow as pa
import pytest
from store_rows import API_A, at, traffic_row
from streamlit.testing.v1 import AppTest

import dashboards
from sinks.store import StoreWriter

STORE_METRICS = {
    "Requests": "1,100",
    "Error rate": "37.5%",  # (406 + 6) / 1100
    "Auth failures": "380",
    "Throttled": "15",
    "Consumers": "3",
    "Findings": "2",
    "Decisions": "1",
    "Rejected lines": "2",
}


@pytest.fixture(autouse=True)
def _no_store_flag(monkeypatch):
    # the app reads --store from sys.argv, which holds pytest's arguments here
    monkeypatch.setattr(sys, "argv", ["app.py"])
    monkeypatch.delenv("GATEWATCH_REFRESH_S", raising=False)


def run_app(monkeypatch, store) -> AppTest:
    monkeypatch.setenv("GATEWATCH_STORE", str(store))
    app = AppTest.from_file(dashboards.APP_PATH, default_timeout=60)
    app.run()
    assert not app.exception
    return app


def metrics(app: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


def table(app: AppTest, column: str):
    """Return the one table (as pandas) that has ``column``; display tables carry no key in AppTest."""
    (found,) = [df.value for df in app.dataframe if column in df.value.columns]
    return found


def test_app_shows_the_store_totals(monkeypatch, store_root):
    app = run_app(monkeypatch, store_root)

    assert metrics(app) == STORE_METRICS
    assert [s.value for s in app.subheader] == ["Requests per minute", "Top consumers", "Recent findings"]
    assert "refreshes every 5 s" in app.caption[0].value


def test_app_lists_top_consumers_and_recent_findings(monkeypatch, store_root):
    app = run_app(monkeypatch, store_root)

    consumers = table(app, "consumer_name")
    assert consumers[["consumer", "requests", "findings"]].values.tolist() == [
        ["c3", 500, 1],
        ["c1", 450, 0],
        ["c2", 150, 0],
    ]
    findings = table(app, "reasons")
    assert findings[["subject_name", "kind", "reasons"]].values.tolist() == [
        ["203.0.113.7", "scanning", "requests to 12 consumers; auth failures 240 vs baseline 3"],
        ["mallory-app", "credential_stuffing", "auth failures 140 vs baseline 2; 25 distinct IPs"],
    ]


def test_app_chart_marks_minutes_with_findings(monkeypatch, store_root):
    app = run_app(monkeypatch, store_root)

    (chart,) = app.get("vega_lite_chart")
    marks = [layer["mark"]["type"] for layer in json.loads(chart.proto.spec)["layer"]]
    assert marks == ["line", "rule"]
    rules = pa.ipc.open_stream(chart.proto.datasets[1].data.data).read_all()
    assert rules["minute"].to_pylist() == [at(2), at(3)]


def test_app_picks_up_new_rows_on_rerun(monkeypatch, store_root):
    app = run_app(monkeypatch, store_root)
    assert metrics(app)["Requests"] == "1,100"

    StoreWriter(store_root, writer="w1").open().append("traffic", [traffic_row(5, API_A, "c1", 400)])
    app.run()

    assert not app.exception
    assert metrics(app)["Requests"] == "1,500"


def test_app_time_range_counts_back_from_the_newest_data(monkeypatch, store_root):
    StoreWriter(store_root, writer="w1").open().append("traffic", [traffic_row(-120, API_A, "c2", 100)])
    app = run_app(monkeypatch, store_root)
    assert app.radio(key="time_range").value == "Last 1 h"
    assert metrics(app)["Requests"] == "1,100"

    app.radio(key="time_range").set_value("All").run()
    assert metrics(app)["Requests"] == "1,200"

    app.radio(key="time_range").set_value("Last 15 min").run()
    assert metrics(app)["Requests"] == "1,100"


@pytest.mark.parametrize("state", ["empty", "missing"])
def test_app_without_data_shows_first_run_help(monkeypatch, tmp_path, state):
    store = tmp_path / "store"
    if state == "empty":
        StoreWriter(store).open()

    app = run_app(monkeypatch, store)

    (info,) = app.info
    assert "gatewatch replay sample_logs/*.log" in info.value
    assert "gatewatch run FILE" in info.value
    assert str(store) in info.value
    assert not app.metric


def test_app_store_flag_wins_over_the_environment(monkeypatch, tmp_path, store_root):
    monkeypatch.setattr(sys, "argv", ["app.py", "--store", str(store_root)])

    app = run_app(monkeypatch, tmp_path / "elsewhere")

    assert metrics(app)["Requests"] == "1,100"


def test_app_warns_about_a_bad_refresh_interval(monkeypatch, store_root):
    monkeypatch.setenv("GATEWATCH_REFRESH_S", "soon")

    app = run_app(monkeypatch, store_root)

    assert "GATEWATCH_REFRESH_S" in app.sidebar.warning[0].value
    assert metrics(app)["Requests"] == "1,100"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_gatewatch_dashboard_serves_the_app_and_stops_on_ctrl_c(tmp_path, store_root):
    port = _free_port()
    cfg = tmp_path / "gatewatch.toml"
    cfg.write_text(f"[dashboard]\nport = {port}\n")
    gatewatch = str(Path(sys.executable).with_name("gatewatch"))
    proc = subprocess.Popen(
        [gatewatch, "dashboard", "--store", str(store_root), "--config", str(cfg)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == f"Dashboard: http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and health != "ok":
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).text
            except httpx.TransportError:
                time.sleep(0.3)
        assert health == "ok"
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        proc.communicate(timeout=30)
    assert proc.returncode == 0
