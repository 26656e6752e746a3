"""``gatewatch run``'s Prometheus endpoint, scraped from a live run and compared with the store."""

from __future__ import annotations

import json
import os
import re
import socket
from wsgiref.util import setup_testing_defaults

import httpx
import pytest
from prometheus_client.core import CollectorRegistry

from gatewatch.flows.metrics import make_app
from tests.conftest import (
    ROOT,
    SAMPLE,
    free_ports,
    gatewatch,
    rows,
    scrape_metrics,
    start_gatewatch,
    stop,
    wait_for,
)


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    return scrape_metrics(f"{url}/metrics")


def test_a_live_run_exposes_its_counts_and_they_equal_the_store(tmp_path, small_windows_config):
    (port,) = free_ports(1)
    cfg = small_windows_config
    cfg.write_text(cfg.read_text() + f"[metrics]\nenabled = true\nport = {port}\n")
    log = tmp_path / "apim_metrics.log"
    log.write_bytes(SAMPLE.read_bytes() + b"not a wso2 line\n\n" + b"x" * 10 + b"\n")
    store = tmp_path / "store"
    url = f"http://127.0.0.1:{port}"
    proc = start_gatewatch("run", str(log), "--store", str(store), "--config", str(cfg))
    try:
        def healthy():
            try:
                return httpx.get(f"{url}/healthz").text == "ok\n"
            except httpx.ConnectError:
                return False  # not listening yet: it starts with the dataflow

        wait_for(healthy, timeout=60, what="the endpoint")
        wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, timeout=60, what="ready")
        lines = len(log.read_bytes().splitlines())

        def settled():
            m = scrape(url)
            findings = {k[1][0][1]: v for k, v in m.items() if k[0] == "gatewatch_findings_total"}
            stored = {r["kind"]: r["n"] for r in rows(store, "SELECT kind, count(*) AS n FROM findings GROUP BY 1")}
            done = m.get(("gatewatch_lines_read_total", ())) == lines and sum(findings.values()) >= 50
            return m if done and findings == stored else None

        wait_for(settled, timeout=120, what="every line read and its findings in the store")

        def decisions_shown():  # the control plane decides after the findings are stored; by current status
            decided = rows(store, "SELECT count(DISTINCT decision_id) AS n FROM decisions")[0]["n"]
            m = scrape(url)
            return m if decided and sum(v for k, v in m.items() if k[0] == "gatewatch_decisions") == decided else None

        m = wait_for(decisions_shown, timeout=60, what="the store's decisions, each counted once by its status")
        served = set(re.findall(r"^# TYPE (gatewatch_\w+)", httpx.get(f"{url}/metrics").text, re.MULTILINE))
    finally:
        stop(proc)
    rejected = {k[1][0][1]: v for k, v in m.items() if k[0] == "gatewatch_rejected_lines_total"}
    assert rejected == {"no_match": 2, "empty_line": 1}
    assert m[("gatewatch_events_total", ())] + sum(rejected.values()) == lines
    assert m[("gatewatch_event_time_lag_seconds", ())] > 86_400  # the sample is from weeks ago
    assert 0 <= m[("gatewatch_window_close_delay_seconds", ())] < 600
    assert m[("gatewatch_build_info", (("version", "0.1.0"),))] == 1
    # every series the shipped Grafana dashboard queries is one the endpoint serves
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    queried = {n for p in dashboard["panels"] for t in p["targets"] for n in re.findall(r"gatewatch_\w+", t["expr"])}
    assert queried and queried <= served  # families without samples (no delivery yet) included
    with pytest.raises(httpx.ConnectError):  # the endpoint stopped with the run
        httpx.get(f"{url}/healthz", timeout=2)


def test_readyz_says_503_until_the_flow_runs():
    ready = [False]
    app = make_app(CollectorRegistry(), lambda: ready[0])

    def call(path: str) -> tuple[str, bytes]:
        environ: dict = {"PATH_INFO": path}
        setup_testing_defaults(environ)
        got = {}
        body = b"".join(app(environ, lambda status, headers: got.update(status=status)))
        return got["status"], body

    assert call("/readyz")[0].startswith("503")
    ready[0] = True
    assert call("/readyz")[0].startswith("200")
    assert call("/healthz") == ("200 OK", b"ok\n")
    assert call("/other")[0].startswith("404")


def test_a_taken_metrics_port_stops_the_run_at_start_naming_the_key(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = tmp_path / "gatewatch.toml"
        cfg.write_text(f"[metrics]\nenabled = true\nport = {port}\n")
        proc = gatewatch(
            "run", str(SAMPLE), "--store", str(tmp_path / "s"), "--config", str(cfg), check=False, env=dict(os.environ)
        )
    assert proc.returncode == 2
    assert f"metrics.port: cannot listen on 127.0.0.1:{port}" in proc.stderr
