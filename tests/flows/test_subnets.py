"""Subnets are counted on parsed addresses: IPv6 /64s whatever their spelling, IPv4-mapped as IPv4."""

from __future__ import annotations

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
