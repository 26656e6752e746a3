"""Cold start: a consumer or endpoint new among established peers is judged against them."""

from __future__ import annotations

from gatewatch.flows.config import Config
from gatewatch.flows.shard import ConsumerShard, IpShard
from tests.flows.test_detection import T0, _table, ev
from tests.flows.test_horizons import _run

PEERS = [f"partner{i}" for i in range(6)]


def _traffic(newcomer_per_min: int, newcomer_from: int = 15, minutes: int = 30, ips: int = 24):
    events = [
        ev(T0 + 60 * m + 10 * k + i, consumer=c, ip=f"192.0.2.{i}")
        for m in range(minutes)
        for i, c in enumerate(PEERS)
        for k in range(6)
    ]
    events += [
        ev(T0 + 60 * m + k * 60 / newcomer_per_min, consumer="newkey", ip=f"203.0.113.{k % ips}",
           resource=f"/items/{1000 + m * 100 + k}")
        for m in range(newcomer_from, minutes)
        for k in range(newcomer_per_min)
    ]  # fmt: skip
    return events


def test_a_new_key_scraping_from_24_ips_is_flagged_against_its_peers():
    out = _run(ConsumerShard(Config()), _traffic(70))
    found = [f for f in _table(out, "findings") if f[2] == "newkey"]
    assert found and {f[6] for f in found} == {"flooding"}
    assert found[0][8] == T0 + 15 * 60, "from its first window"
    assert found[0][11][0] == "requests of a newcomer (baseline: its peers' median) 70 vs baseline 6"
    assert all(0.5 <= f[7] < 0.8 for f in found), "watched, not restricted, at 70 a minute"
    assert not [f for f in _table(out, "findings") if f[2] in PEERS]


def test_a_newcomer_of_its_peers_size_is_not_flagged_and_one_is_only_a_newcomer_for_a_while():
    assert not [f for f in _table(_run(ConsumerShard(Config()), _traffic(8)), "findings") if f[2] == "newkey"]
    late = _run(ConsumerShard(Config()), _traffic(70, newcomer_from=15, minutes=40))
    ends = [f[9] for f in _table(late, "findings") if f[2] == "newkey"]
    assert ends and max(ends) <= T0 + (15 + 11) * 60


def test_a_new_client_ip_at_volume_is_not_judged_as_a_newcomer():
    out = _run(IpShard(Config()), _traffic(70, ips=1))
    assert not [f for f in _table(out, "findings") if f[6] == "flooding"]
