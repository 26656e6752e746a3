"""Subject families, window features and the detectors working together.

Plain-Python tests drive the shard processors directly with events; the
CrowdSec parity test runs the real ``gatewatch replay`` on CrowdSec's own hub
test logs (``tests/data/crowdsec/``, MIT) and checks that every IP CrowdSec
alerts on is flagged.
"""

from __future__ import annotations

import doctest
import json
import math
import zlib

import pytest

from gatewatch.flows import features
from gatewatch.flows.config import Config
from gatewatch.flows.dataflow import RunStats, _Router, shard_keys
from gatewatch.flows.events import Chunk, Event
from gatewatch.flows.features import endpoint, endpoint_of
from gatewatch.flows.shard import ApiShard, ConsumerShard, IpShard
from tests.conftest import ROOT, SAMPLE, gatewatch, rows

CROWDSEC = ROOT / "tests" / "data" / "crowdsec"
# the hub tests gatewatch reads (nginx, Apache, syslog-wrapped, the nginx copy of the crawl test, Caddy JSON)
PARITY_LOGS = [
    "http-bad-user-agent/nginx-bad-user-agent/nginx-bad-user-agent.log",
    "http-bf-wordpress_bf/http-bf-wordpress-bf/http-bf-wordpress-bf.log",
    "http-crawl-non_statics/envoy-http-crawl-non_statics/derived-as-nginx-vhost-combined.log",
    "http-generic-bf/caddy-basic-auth-bf/caddy-logs.log",
    "http-generic-bf/nginx-http-generic-bf/nginx-http-generic-bf.log",
    "http-probing/apache-http-probing/apache-http-probing.log",
    "http-sensitive-files/apache2-http-sensitive-files/apache2-http-sensitive-files.log",
    "http-sensitive-files/nginx-http-sensitive-files/nginx-http-sensitive-files.log",
    "http-sqli-probing/nginx-http-sqli-probing/nginx-http-sqli-probing.log",
    "http-xss-probing/nginx-http-xss-probing/nginx-http-xss-probing.log",
    "http-path-traversal-probing/nginx-http-path-traversal/nginx-http-path-traversal.log",
    "http-dos-random-uri/http-dos-random-uri/http_dos_random_uri.log",
    "http-dos-bypass-cache/http-dos-bypass-cache/http_dos_bypass_cache.log",
    "http-admin-interface-probing/http-admin-interface-probing/http-admin-interface-probing.log",
    "http-wordpress-scan/http-wordpress-scan/http-wordpress-scan.log",
    "http-wordpress_user-enum/http-wordpress_user-enum/http-wordpress_user-enum.log",
    "http-dos-switching-ua/http-dos-switching-ua/http-dos-switching-ua.log",
    "http-open-proxy/nginx-http-open-proxy/nginx-http-open-proxy.log",
    "http-dos-invalid-http-versions/http-dos-invalid-http-versions/http-dos-invalid-http-versions.log",
]
T0 = 1_793_599_980.0  # a window start (a whole minute)


def ev(ts, *, consumer="app", ip="10.0.0.1", method="GET", resource="/items/{sku}", status=200, api="Shop:1",
       auth=None, throttled=False, ua="okhttp", size=500) -> Event:  # fmt: skip
    auth_failure = status in (401, 403) if auth is None else auth
    return Event(ts, api, consumer, consumer.title(), "owner", "", ip, method, resource,
                 endpoint_of(resource), status, auth_failure, throttled, size, 20, ua)  # fmt: skip


def _feed(shard, events):
    out = shard.ingest(events, "src", max(e.ts for e in events))
    return out + shard.flush()


def _table(outputs, name):
    return [row for table, rows_ in outputs for row in rows_ if table == name]


def test_feature_docstring_examples():
    assert doctest.testmod(features).failed == 0


def test_the_consumer_family_writes_every_event_into_traffic_once():
    events = [
        ev(T0 + i, consumer=f"c{i % 3}", ip="" if i % 5 == 0 else f"10.0.0.{i % 7}") for i in range(300)
    ]
    traffic = _table(_feed(ConsumerShard(Config()), events), "traffic")
    assert sum(r[6] for r in traffic) == 300
    assert {r[3] for r in traffic} == {"c0", "c1", "c2"}
    assert _table(_feed(IpShard(Config()), events), "traffic") == []
    assert _table(_feed(ApiShard(Config()), events), "traffic") == []


def test_a_brute_force_burst_becomes_an_ip_finding_with_evidence():
    events = [
        ev(T0 + 5 + i * 0.2, ip="81.150.104.130", method="POST", resource="/wp-login.php", ua="Mozilla/5.0")
        for i in range(9)
    ]
    findings = _table(_feed(IpShard(Config()), events), "findings")
    assert [(f[1], f[2], f[6]) for f in findings] == [("ip", "81.150.104.130", "brute_force")]
    evidence = json.loads(findings[0][12])
    assert evidence["features"]["login_burst"] == 9
    assert evidence["reasons"]["login_burst"] == {"observed": 9.0, "baseline": 0.0, "spread": 0.5}
    assert evidence["context"]["paths"] == ["/wp-login.php"]
    assert findings[0][11] == ["login attempts within 10 s 9 vs baseline 0"]


def test_api_subjects_fold_concrete_ids_and_skip_events_without_an_endpoint():
    events = [ev(T0 + i, resource=f"/items/{1000 + i}", api="shop") for i in range(20)]
    events += [ev(T0 + 30, method="", resource="", status=429, throttled=True)]  # a WSO2 throttle fault
    rows_ = _table(_feed(ApiShard(Config()), events), "subject_windows")
    assert [(r[2], r[3], r[5]) for r in rows_] == [("api", "shop GET /items/{id}", 20)]
    assert endpoint("/items/1042/stock?x=1") == "/items/{id}/stock"


def test_every_event_reaches_one_shard_of_each_family_and_an_endpoint_always_the_same_one():
    cfg = Config().model_copy(update={"pipeline": Config().pipeline.model_copy(update={"shards": 3})})
    router = _Router(cfg, RunStats())
    lines = SAMPLE.read_bytes().splitlines()[:2000]
    routed = router(Chunk("s.log", 1, 0, lines))
    by_key = {key: batch.batch for key, batch in routed}
    keys = shard_keys(3)
    assert sorted(by_key) == sorted(k for names in keys.values() for k in names)
    # every shard gets the cells the router counted from the events
    cells = {k: [cell for part in by_key[k].values() for cell in part.items()] for k in by_key}
    assert sum(acc.requests for k in keys["c"] for _, acc in cells[k]) == 2000
    events, _ = router.parser.parse(Chunk("s.log", 1, 0, lines))
    with_endpoint = sum(1 for e in events if e.resource or e.method)  # WSO2 faults name none
    assert sum(acc.requests for k in keys["a"] for _, acc in cells[k]) == with_endpoint > 0
    with_ip = sum(1 for e in events if e.client_ip)  # nor do they carry a client IP
    assert sum(acc.requests for k in keys["i"] for _, acc in cells[k]) == with_ip > 0
    for i, key in enumerate(keys["i"]):
        assert {zlib.crc32(ip.encode()) % 3 for ip, _ in cells[key]} <= {i}
    for i, key in enumerate(keys["a"]):
        assert {zlib.crc32(ep.encode()) % 3 for (_, _, ep), _ in cells[key]} <= {i}
    for i, key in enumerate(keys["c"]):
        assert {zlib.crc32(consumer.encode()) % 3 for (_, consumer), _ in cells[key]} <= {i}


def _window(start, consumers, scale=1.0, heavy=None):
    """One minute of traffic from ``consumers`` (name -> requests/min) with ``heavy`` multiplied."""
    out = []
    for name, per_min in consumers.items():
        n = round(per_min * scale * (10 if name == heavy else 1))
        out += [
            ev(start + 60 * i / n, consumer=name, ip=f"10.1.{hash(name) % 200}.{i % 3}") for i in range(n)
        ]
    return out


def test_a_flash_crowd_is_not_a_flood_but_one_consumer_at_ten_times_is():
    consumers = {f"c{i}": 20 + 10 * i for i in range(8)}
    events = []
    for w in range(15):
        events += _window(T0 + 60 * w, consumers)
    for w in range(15, 20):  # everyone triples
        events += _window(T0 + 60 * w, consumers, scale=3.0)
    events += _window(T0 + 60 * 21, consumers, heavy="c3")
    out = _feed(ConsumerShard(Config()), events)
    floods = {(f[2], f[8]) for f in _table(out, "findings") if f[6] == "flooding"}
    assert floods == {("c3", T0 + 60 * 21)}
    crowd_shifts = [r[13] for r in _table(out, "subject_windows") if T0 + 60 * 15 <= r[0] < T0 + 60 * 20]
    assert min(crowd_shifts) > math.log(2)


def test_a_flagged_window_is_not_learned():
    normal = [ev(T0 + i, ip="192.0.2.7") for i in range(10)]
    scan = [
        ev(T0 + 120 + i * 0.1, ip="192.0.2.7", resource=f"/.env{i}", status=404, ua="sqlmap/1.7")
        for i in range(20)
    ]
    shard = IpShard(Config())
    out = _feed(shard, normal + scan)
    assert {(f[6], f[8]) for f in _table(out, "findings")} == {("probing", T0 + 120)}
    assert shard.baselines.history("192.0.2.7") == 1
    assert all(d.baselines.history("192.0.2.7") == 1 for d in shard.detectors)


def test_idle_subjects_are_forgotten():
    cfg = Config().model_copy(
        update={"detectors": Config().detectors.model_copy(update={"forget_idle_ip_s": 600})}
    )
    shard = IpShard(cfg)
    _feed(shard, [ev(T0, ip="198.51.100.1")] + [ev(T0 + 60 * w, ip="198.51.100.2") for w in range(1, 25)])
    assert "198.51.100.1" not in shard.last_seen
    assert shard.baselines.history("198.51.100.1") == 0
    assert shard.baselines.history("198.51.100.2") == 24


@pytest.mark.slow
@pytest.mark.parametrize("log", PARITY_LOGS, ids=[p.split("/")[1] for p in PARITY_LOGS])
def test_replay_flags_every_ip_crowdsec_alerts_on(tmp_path, log):
    path = CROWDSEC / log
    expected = {
        a["source_ip"] for a in json.loads((path.parent / "expected.json").read_text())["expected_alerts"]
    }
    store = tmp_path / "store"
    gatewatch("replay", str(path), "--store", str(store))
    flagged = {
        r["subject"] for r in rows(store, "SELECT DISTINCT subject FROM findings WHERE subject_type = 'ip'")
    }
    assert expected <= flagged
    reasons = rows(store, "SELECT reasons FROM findings WHERE subject_type = 'ip'")
    assert all(" vs baseline " in text for r in reasons for text in r["reasons"])


@pytest.mark.slow
def test_more_shards_give_the_same_findings_on_the_sample(tmp_path):
    config = tmp_path / "shards.toml"
    config.write_text("[pipeline]\nshards = 3\n")
    found = {}
    for name, extra in (("one", ()), ("three", ("--config", str(config)))):
        store = tmp_path / name
        gatewatch("replay", str(SAMPLE), "--store", str(store), *extra)
        found[name] = rows(
            store, "SELECT subject_type, subject, kind, epoch(window_start) ws FROM findings ORDER BY ALL"
        )
    assert found["one"] == found["three"]
    assert {r["kind"] for r in found["one"]} >= {"credential_stuffing"}
