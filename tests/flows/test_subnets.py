"""Subnets are counted on parsed addresses: IPv6 /64s whatever their spelling, IPv4-mapped as IPv4."""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys

from gatewatch.flows.config import Config
from gatewatch.flows.events import Event
from gatewatch.flows.features import MAX_SEEN, IpSketch, subnets_of
from gatewatch.flows.shard import ConsumerShard

T0 = 1_790_000_040.0

SIX_IN_ONE_64 = [
    "2001:db8:1:2::1",
    "2001:db8:1:2::2",
    "2001:db8:1:2:0:0:0:3",
    "2001:0db8:0001:0002::4",
    "2001:db8:1:2:ffff::5",
    "2001:DB8:1:2::6",
]


def test_six_ipv6_addresses_of_one_64_are_one_subnet():
    nets, count = subnets_of(set(SIX_IN_ONE_64))
    assert count == 1 and nets == {"2001:db8:1:2::/64"}


def test_compressed_zeros_do_not_merge_different_64s():
    _, count = subnets_of({"2001:db8::1", "2001:db8:0:1::1", "2001:db8:1::1"})
    assert count == 3


def test_ipv4_mapped_addresses_share_their_ipv4_24():
    nets, count = subnets_of({"::ffff:198.51.100.7", "198.51.100.9", "::ffff:c633:640a"})
    assert count == 1 and nets == {"198.51.100"}


def test_the_sketch_counts_subnets_the_same_way():
    sketch = IpSketch.of(SIX_IN_ONE_64 + ["203.0.113.1"], keep_subnets=16)
    assert subnets_of(sketch)[1] == 2


_KEPT_SUBNETS = """
from gatewatch.flows.features import MAX_SEEN, SeenMemory
m = SeenMemory()
m.remember("app", {f"100.{64 + i // 256}.{i % 256}" for i in range(MAX_SEEN + 500)}, set(), 0.0)
fresh = {f"100.{64 + i // 256}.{i % 256}" for i in range(MAX_SEEN + 500)}
print(m.unseen("app", fresh, set())[0], min(s for s in fresh if m.unseen("app", {s}, set())[0] == 0))
"""


def test_which_subnets_a_consumer_keeps_past_the_cap_does_not_depend_on_string_hashing():
    # a window with more subnets than are kept: each process hashes strings with its own seed
    answers = {
        subprocess.run(
            [sys.executable, "-c", _KEPT_SUBNETS],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True, text=True, check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }  # fmt: skip
    assert len(answers) == 1, answers
    assert answers.pop().split()[0] == "500"  # MAX_SEEN kept, the rest unseen


def _mobile_window(rng: random.Random, start: float, per_api: dict[str, int]) -> list[Event]:
    """One window of a mobile app: each request from a new carrier-NAT address in 10.0.0.0/8."""
    out = []
    for api, n in per_api.items():
        for k in range(n):
            ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            out.append(Event(start + 50 * k / n, api, "app", "MobileApp", "owner", "", ip, "GET", "/menu", "/menu",
                             200, False, False, 500, 20, "okhttp"))  # fmt: skip
    out.sort(key=lambda e: e.ts)
    return out


def test_a_quieter_window_of_a_mobile_app_is_not_a_flood_of_never_seen_subnets():
    # An app used from thousands of subnets a window: past EXACT_IPS its busiest API's cell is a
    # sketch, and a sample of its subnets is compared with what the app was seen from. In a quieter
    # window every cell stays exact (their union holds more subnets than any sample): judged on all
    # of them, thousands looked new against the usual few hundred, and the key looked stolen.
    rng = random.Random(7)
    shard = ConsumerShard(Config())
    shard.clock.hold_s = 0
    busy = {"Menu:1": 6_000, "Orders:1": 2_500, "Shipments:1": 500}
    quiet = {"Menu:1": 3_500, "Orders:1": 3_000, "Shipments:1": 500}
    out = []
    for w in range(13):
        events = _mobile_window(rng, T0 + 60 * w, quiet if w == 12 else busy)
        for i in range(0, len(events), 2_000):
            out += shard.ingest(events[i : i + 2_000], "src", events[i : i + 2_000][-1].ts)
    out += shard.flush()
    new = [json.loads(r[-1])["new_subnets"] for t, rows in out if t == "subject_windows" for r in rows if r[4] == "MobileApp"]
    assert len(new) == 13 and max(new) <= MAX_SEEN
    assert new[-1] <= 1.5 * statistics.median(new[2:-1])  # the quiet window: no more new subnets than usual
    assert not [r for t, rows in out if t == "findings" for r in rows if r[5] == "key_compromise"]
