"""The longer horizons: slow attacks found over 10 minutes or an hour, told once, never learned."""

from __future__ import annotations

import pickle

import numpy as np

from gatewatch.flows.config import Config
from gatewatch.flows.horizons import MAX_DISTINCT, SPECS, Trails
from gatewatch.flows.shard import ApiShard, ConsumerShard, IpShard
from tests.flows.test_detection import T0, _table, ev


def _run(shard, events, step_s=60.0):
    """Feed the events a window at a time (as a live log arrives), then flush."""
    out, batch, end = [], [], T0 + step_s
    for e in sorted(events, key=lambda e: e.ts):
        if e.ts >= end:
            if batch:
                out += shard.ingest(batch, "src", batch[-1].ts)
            batch, end = [], end + step_s * ((e.ts - end) // step_s + 1)
        batch.append(e)
    out += shard.ingest(batch, "src", batch[-1].ts)
    return out + shard.flush()


def _findings(out):
    return [(f[2], f[6], f[9] - f[8], f[11]) for f in _table(out, "findings")]


def test_one_ip_failing_a_login_every_20_s_is_found_over_10_minutes():
    events = [
        ev(T0 + 20 * i, ip="203.0.113.9", method="POST", resource="/login", status=401) for i in range(180)
    ]
    out = _run(IpShard(Config()), events)
    found = _findings(out)
    assert found, "a slow brute force must be found on a longer horizon"
    subject, kind, length, reasons = found[0]
    assert (subject, kind, length) == ("203.0.113.9", "brute_force", 600.0)
    assert any(r.startswith("auth failures 15 in 10 min vs baseline 0") for r in reasons), reasons
    first = min(f[9] for f in _table(out, "findings"))
    assert first <= T0 + 6 * 60, "found within its horizon, once 15 failures are in it"
    # per minute it stays under every threshold: only horizon findings
    assert all(length > 60 for _, _, length, _ in found)


def test_distributed_stuffing_spread_over_40_minutes_is_found_on_the_login_endpoint():
    # 150 IPs in many subnets, 2 failed logins each, one failure every 8 s; plus ordinary logins
    events = [
        ev(T0 + 8 * i, ip=f"198.{i % 150 // 10}.{i % 150}.7", method="POST", resource="/login", status=401,
           consumer="partner")
        for i in range(300)
    ]  # fmt: skip
    events += [ev(T0 + 30 * i + 3, ip="192.0.2.1", method="POST", resource="/login", consumer="partner")
               for i in range(80)]  # fmt: skip
    found_api = _findings(_run(ApiShard(Config()), events))
    assert ("Shop:1 POST /login", "credential_stuffing", 600.0) in {f[:3] for f in found_api}
    assert all(f[2] > 60 for f in found_api), "no minute holds enough failing IPs"
    reasons = next(f[3] for f in found_api if f[2] == 600.0)
    assert any(r.startswith("failing ") and " in 10 min vs baseline 0" in r for r in reasons), reasons
    found_consumer = _findings(_run(ConsumerShard(Config()), events))
    assert ("partner", "credential_stuffing", 600.0) in {f[:3] for f in found_consumer}


def test_a_behaviour_is_told_once_at_its_shortest_scale():
    # a fast brute force: every minute flags it; its horizons add nothing
    events = [
        ev(T0 + 2 * i, ip="203.0.113.10", method="POST", resource="/login", status=401) for i in range(300)
    ]
    found = _findings(_run(IpShard(Config()), events))
    assert found and all(length == 60 for _, _, length, _ in found)


def test_a_quiet_ip_gets_no_trail_and_a_trail_expires_after_the_longest_horizon():
    shard = IpShard(Config())
    _run(shard, [ev(T0 + 5, ip="192.0.2.50")])
    assert len(shard.trails) == 0
    _run(shard, [ev(T0 + 65, ip="192.0.2.51", status=404)])
    assert len(shard.trails) == 0, "one 404 starts no trail"
    pairs = [ev(T0 + 125 + i, ip="192.0.2.51", status=404) for i in range(2)]
    pairs += [ev(T0 + 2 * 3600 + i, ip="192.0.2.52", status=404) for i in range(2)]
    _run(shard, pairs)
    assert "192.0.2.51" not in shard.trails.trails and "192.0.2.52" in shard.trails.trails


def test_horizon_windows_of_an_attack_are_not_learned_and_normal_full_ones_are():
    shard = IpShard(Config())
    # a client whose 404s are a third of its requests, on ever new paths: over the onsets, under the share
    normal = [
        ev(T0 + 6 * i, ip="192.0.2.60", resource=f"/items/{i * 7919 % 100_003}", status=404 if i % 3 == 0 else 200)
        for i in range(10 * 60 * 3)
    ]
    _run(shard, normal)
    ten = next(h for h in shard.horizons if h.key == "over_10m")
    probing = next(d for d in ten.detectors if d.name == "probing")
    learned = probing.baselines.history("192.0.2.60")
    # 180 windows, the first 9 of them before the subject was trailed for 10 minutes
    assert learned == 180 - 9
    attack = [ev(T0 + 3 * 3600 + 20 * i, ip="192.0.2.60", method="POST", resource="/login", status=401)
              for i in range(90)]  # fmt: skip
    out = _run(shard, attack)
    assert any(f[1] == "brute_force" and f[2] == 600.0 for f in _findings(out))
    assert probing.baselines.history("192.0.2.60") <= learned + 5, "attack windows stay out of the baseline"
    shard._drop(["192.0.2.60"])  # idle long enough, or past max_tracked_ips
    assert all(d.baselines.history("192.0.2.60") == 0 for h in shard.horizons for d in h.detectors)
    assert not shard.horizon_rows.rows, "its horizons' baselines are forgotten with it"


def test_trails_count_distinct_values_inside_the_horizon_only_and_stay_bounded():
    trails = Trails(SPECS["consumer"], keep_s=3600)
    X = {"requests": np.array([2.0]), "auth_failures": np.array([2.0]), "throttled": np.array([0.0])}
    [values] = trails.window_values(X, [0])
    for minute in range(30):
        ips = [f"10.{minute}.{i // 250}.{i % 250}" for i in range(100)]
        assert trails.record(T0 + 60 * minute, "c", values, {"failing_ips": ips}, signal=True)
    last = T0 + 29 * 60
    assert trails.features("c", last, 0.0)["failing_ips"] == 100
    assert trails.features("c", last - 540, 0.0)["failing_ips"] == 1000
    assert trails.features("c", last - 1200, 0.0)["failing_ips"] == MAX_DISTINCT  # capped, most recent kept
    assert trails.features("c", last - 540, 0.0)["auth_failures"] == 20
    again = pickle.loads(pickle.dumps(trails))
    assert again.features("c", last, 0.0) == trails.features("c", last, 0.0)
    trails.expire(last + 3600)
    assert len(trails) == 0


def test_a_horizon_is_found_as_it_crosses_its_threshold_not_while_it_stays_over():
    attack = [ev(T0 + 20 * i, ip="203.0.113.11", method="POST", resource="/login", status=401) for i in range(45)]
    after = [ev(T0 + 900 + 60 * i, ip="203.0.113.11") for i in range(30)]  # it goes on, quietly
    found = _table(_run(IpShard(Config()), attack + after), "findings")
    assert found
    assert max(f[9] for f in found) <= T0 + 960, "no finding once the failures stopped"


def test_an_ip_flagged_only_over_a_horizon_gets_its_window_row():
    events = [ev(T0 + 20 * i, ip="203.0.113.12", method="POST", resource="/login", status=401) for i in range(30)]
    out = _run(IpShard(Config()), events)
    found = {f[9] for f in _table(out, "findings")}
    assert found
    assert {r[1] for r in _table(out, "subject_windows") if r[3] == "203.0.113.12"} == found
