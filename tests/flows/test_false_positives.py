"""Look-alikes that once raised findings: what an app serves, and a partner's traffic moving between its IPs."""

from __future__ import annotations

from gatewatch.flows.config import Config
from gatewatch.flows.shard import IpShard
from tests.flows.test_detection import T0, _table, ev
from tests.flows.test_horizons import _run


def _sql_files(status):
    return [ev(T0 + i, ip="192.0.2.40", resource=f"/migrations/{i:04d}_step.sql", status=status) for i in range(8)]


def test_sql_files_an_app_serves_are_its_content_and_missing_ones_are_probed():
    served = _table(_run(IpShard(Config()), _sql_files(200)), "findings")
    assert not served
    missing = _table(_run(IpShard(Config()), _sql_files(404)), "findings")
    assert {f[6] for f in missing} == {"probing"}
    assert any(r.startswith("sensitive files requested 8") for f in missing for r in f[11])


def _history_then_burst(consumer):
    quiet = [ev(T0 + 60 * m + 5 * k, ip="198.51.100.9", consumer=consumer) for m in range(20) for k in range(2)]
    burst = [ev(T0 + 20 * 60 + k * 60 / 67, ip="198.51.100.9", consumer=consumer) for k in range(67)]
    return quiet + burst


def test_a_partners_ip_at_67_a_minute_against_2_is_judged_on_its_consumer_not_alone():
    keyed = _table(_run(IpShard(Config()), _history_then_burst("partner")), "findings")
    assert not [f for f in keyed if f[6] == "flooding"]
    anonymous = _table(_run(IpShard(Config()), _history_then_burst("")), "findings")
    assert [f[11][0] for f in anonymous if f[6] == "flooding"] == ["requests 67 vs baseline 2"]


def _backend(consumer):
    # 8 reads a minute of ever new account ids, 2 of them missing: over 2 hours
    return [
        ev(T0 + 60 * m + 7 * k, ip="10.20.7.31", consumer=consumer, resource=f"/accounts/{(m * 8 + k) * 7919 % 100_003}",
           status=404 if k < 2 else 200)
        for m in range(120)
        for k in range(8)
    ]  # fmt: skip


def test_a_backend_reading_its_users_records_is_not_a_crawler_over_the_hour():
    keyed = _table(_run(IpShard(Config()), _backend("loyalty")), "findings")
    assert not keyed
    anonymous = _table(_run(IpShard(Config()), _backend("")), "findings")
    assert {(f[6], f[9] - f[8]) for f in anonymous} == {("scraping", 3600.0)}
