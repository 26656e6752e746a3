"""The decision API served by a real ``gatewatch run``, called over HTTP and by a real CrowdSec bouncer."""

from __future__ import annotations

import json
import os
import socket

import httpx
import pytest

from tests.conftest import SAMPLE, free_ports, gatewatch, scrape_metrics, start_gatewatch, stop, wait_for
from tests.flows.crowdsec_bouncer import running_bouncer

BOUNCER_KEY = "bouncer-key-0123456789"
IDP_KEY = "idp-key-abcdefghijklmnop"
ATTACKER_IP = "103.56.218.248"  # the sample's brute-force IP: restricted under the thresholds below
ATTACKER_APP = "3f8a1c2e-7b4d-4e9a-8c6f-2d1e0b9a7c54"


def api_config(tmp_path, port: int, metrics_port: int | None = None) -> str:
    cfg = tmp_path / "gatewatch.toml"
    cfg.write_text(
        "[input]\npoll_ms = 50\n"
        "[pipeline]\nidle_close_s = 1\nsnapshot_interval_s = 1\n"
        '[policy]\nmode = "enforce"\nreview_tiers = []\nelevate_score = 0.5\nrestrict_score = 0.6\n'
        f'[api]\nenabled = true\nport = {port}\nkeys_env = "GW_TEST_API_KEYS"\nrefresh_ms = 100\n'
        + (f"[metrics]\nenabled = true\nport = {metrics_port}\n" if metrics_port else "")
    )
    return str(cfg)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """``gatewatch run`` on the sample in enforce mode, serving the API; yields (base URL, store)."""
    tmp = tmp_path_factory.mktemp("api")
    port, metrics_port = free_ports(2)
    store = tmp / "store"
    env = {**os.environ, "GW_TEST_API_KEYS": f"bouncer:{BOUNCER_KEY},idp:{IDP_KEY}"}
    cfg = api_config(tmp, port, metrics_port)
    proc = start_gatewatch("run", str(SAMPLE), "--store", str(store), "--config", cfg, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        line = proc.stderr.readline()
        assert line.strip() == f"gatewatch: decision API on {url}/v1/", line

        def served():
            r = httpx.get(f"{url}/v1/decisions", params={"ip": ATTACKER_IP}, headers={"X-Api-Key": IDP_KEY})
            return r.json()

        wait_for(served, timeout=120, what="the attacker's decision served")
        yield url, store, f"http://127.0.0.1:{metrics_port}/metrics"
    finally:
        stop(proc)
    with pytest.raises(httpx.ConnectError):  # the API process stopped with the run
        httpx.get(f"{url}/v1/decisions", timeout=2)


def test_callers_need_a_key_and_bad_requests_get_a_message(live):
    url, _, _ = live
    assert httpx.get(f"{url}/v1/decisions").status_code == 403
    wrong = httpx.get(f"{url}/v1/decisions", headers={"X-Api-Key": IDP_KEY + "x"})
    assert wrong.status_code == 403 and IDP_KEY not in wrong.text
    key = {"Authorization": f"Bearer {IDP_KEY}"}
    assert httpx.get(f"{url}/v1/decisions", params={"ip": "nope"}, headers=key).status_code == 400
    bad = httpx.post(f"{url}/v1/score", content=b'{"current_request": {"ip": "1', headers=key)
    assert bad.status_code == 400 and "truncated" in bad.json()["message"]
    huge = httpx.post(f"{url}/v1/score", content=b" " * 20_000, headers=key)
    assert huge.status_code == 413
    assert httpx.get(f"{url}/v2/anything", headers=key).status_code == 404
    assert httpx.delete(f"{url}/v1/score", headers=key).status_code == 405


def test_decisions_allow_and_score_answer_from_the_live_state(live):
    url, _, _ = live
    key = {"X-Api-Key": IDP_KEY}
    (served,) = httpx.get(f"{url}/v1/decisions", params={"ip": ATTACKER_IP}, headers=key).json()
    assert (served["type"], served["scope"], served["value"], served["origin"]) == ("throttle", "Ip", ATTACKER_IP, "gatewatch")
    assert served["scenario"] == "gatewatch/brute_force"
    assert httpx.get(f"{url}/v1/decisions", params={"ip": "192.0.2.1"}, headers=key).json() is None
    assert httpx.get(f"{url}/v1/allow", params={"ip": ATTACKER_IP}, headers=key).json() == {"decision": "throttle"}

    answer = httpx.post(f"{url}/v1/score", json={"current_request": {"ip": ATTACKER_IP}}, headers=key).json()
    assert answer["tier"] == "restricted" and answer["limit_per_min"] >= 10
    assert answer["reasons"][0].startswith("ip ")
    app = httpx.post(f"{url}/v1/score", json={"api_context": {"consumer": ATTACKER_APP}}, headers=key).json()
    assert app["tier"] == "blocked" and app["limit_per_min"] == 0 and app["score"] >= 0.97
    assert "PartnerPortal" not in json.dumps(app)  # the consumer's owner is never revealed
    stranger = httpx.post(f"{url}/v1/score", json={"current_request": {"ip": "100.64.9.9"}}, headers=key).json()
    assert (stranger["tier"], stranger["limit_per_min"]) == ("normal", None)


def test_a_real_crowdsec_bouncer_adds_the_decision_and_deletes_it_once_reverted(live, tmp_path):
    url, store, _ = live
    with running_bouncer(url, BOUNCER_KEY, tmp_path) as bouncer:
        bouncer.wait_for(lambda events: any(e[0] == "add" and e[1] == ATTACKER_IP for e in events))
        (decision,) = [
            d
            for d in json.loads(gatewatch("decisions", "list", "--store", str(store), "--format", "json").stdout)
            if d["subject"] == ATTACKER_IP and d["status"] in ("approved", "applied")
        ]
        gatewatch("decisions", "revert", decision["decision_id"], "--store", str(store), "--actor", "test")
        events = bouncer.wait_for(lambda events: any(e[0] == "del" and e[1] == ATTACKER_IP for e in events))
    assert [e[0] for e in events if e[1] == ATTACKER_IP] == ["add", "del"]



def test_the_api_counts_its_callers_for_the_dashboard_and_prometheus(live):
    url, store, metrics_url = live
    httpx.get(f"{url}/v1/decisions")  # no key
    httpx.get(f"{url}/v1/decisions", params={"ip": "nope"}, headers={"X-Api-Key": IDP_KEY})

    def counted():
        path = store / "api-stats.json"
        stats = json.loads(path.read_text()) if path.exists() else {}
        idp = stats.get("callers", {}).get("idp", {})
        return stats if stats.get("forbidden", 0) >= 1 and idp.get("errors", 0) >= 1 else None

    stats = wait_for(counted, timeout=30, what="the API's counters")
    assert stats["bad_requests"] >= 1 and stats["requests"] >= stats["callers"]["idp"]["requests"]
    assert IDP_KEY not in json.dumps(stats) and BOUNCER_KEY not in json.dumps(stats)
    # the run's Prometheus endpoint serves them too
    scraped = scrape_metrics(metrics_url)
    assert scraped[("gatewatch_api_forbidden_total", ())] >= 1
    assert scraped[("gatewatch_api_requests_total", (("caller", "idp"), ("outcome", "error")))] >= 1


def test_a_run_with_the_api_but_no_keys_stops_at_start_naming_the_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "GW_TEST_API_KEYS"}
    cfg = api_config(tmp_path, free_ports(1)[0])
    proc = gatewatch("run", str(SAMPLE), "--store", str(tmp_path / "s"), "--config", cfg, env=env, check=False)
    assert proc.returncode == 2
    assert "api.keys_env: environment variable GW_TEST_API_KEYS is not set" in proc.stderr
    assert gatewatch("validate", "--config", cfg, env=env, check=False).returncode == 2


def test_a_run_whose_api_port_is_taken_stops_at_start_naming_the_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "GW_TEST_API_KEYS": f"bouncer:{BOUNCER_KEY}"}
        cfg = api_config(tmp_path, port)
        proc = gatewatch("run", str(SAMPLE), "--store", str(tmp_path / "s"), "--config", cfg, env=env, check=False)
    assert proc.returncode == 2
    assert f"api.port: cannot listen on 127.0.0.1:{port}" in proc.stderr
