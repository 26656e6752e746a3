"""Subnets are counted on parsed addresses: IPv6 /64s whatever their spelling, IPv4-mapped as IPv4."""

from __future__ import annotations

import os
import subprocess
import sys

from gatewatch.flows.features import IpSketch, subnets_of

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
