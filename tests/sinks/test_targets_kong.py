"""The Kong channel against the stateful fake Admin API (every request checked against the real spec)."""

from __future__ import annotations

import pytest

from gatewatch.sinks.control import ControlDB
from gatewatch.sinks.targets.kong import KongChannel, plugin_id
from tests.fakes.fixtures import KONG_CONSUMER, desired, drain, outcomes, sender

OTHER = "0b0b0b0b-0000-4000-8000-000000000001"


@pytest.fixture
def channel(tmp_path, fake_kong):
    return KongChannel("kong", admin_url=fake_kong.url, state=ControlDB(tmp_path).open(), timeout_s=1.0)


def deliver(tmp_path, ch, *states: dict):
    s = sender(tmp_path, {"kong": ch})
    for payload in states:
        s.control.enqueue(f"e{len(s.control.outbox())}", "kong", "kong", "d-test", payload)
        drain(s)
    return s


def consumer(**kw) -> dict:
    return desired("consumer", KONG_CONSUMER, name="partner1", **kw)


def test_rate_limit_is_put_with_our_id_and_changed_in_place(tmp_path, fake_kong, channel):
    deliver(tmp_path, channel, consumer(limit_per_min=60))
    assert fake_kong.consumer_plugins(KONG_CONSUMER)["rate-limiting"]["minute"] == 60
    deliver(tmp_path, channel, consumer(limit_per_min=20), consumer(limit_per_min=20))
    assert fake_kong.consumer_plugins(KONG_CONSUMER)["rate-limiting"]["minute"] == 20
    ours = [p for p in fake_kong.plugins.values() if p["name"] == "rate-limiting"]
    assert [p["id"] for p in ours] == [plugin_id("kong", KONG_CONSUMER, "rate-limiting")]
    assert ours[0]["tags"] == ["gatewatch"]


def test_block_and_revert_touch_only_our_plugins(tmp_path, fake_kong, channel):
    theirs = fake_kong.add_plugin("rate-limiting", {"minute": 5}, consumer=OTHER)
    deliver(tmp_path, channel, consumer(block=True, limit_per_min=30))
    assert fake_kong.consumer_plugins(KONG_CONSUMER)["request-termination"]["status_code"] == 403
    deliver(tmp_path, channel, consumer())
    assert fake_kong.consumer_plugins(KONG_CONSUMER) == {}
    assert fake_kong.plugins[theirs]["config"]["minute"] == 5


def test_an_operators_plugin_on_the_same_consumer_is_never_overwritten(tmp_path, fake_kong, channel):
    theirs = fake_kong.add_plugin("rate-limiting", {"minute": 500}, consumer=KONG_CONSUMER)
    s = deliver(tmp_path, channel, consumer(limit_per_min=20))
    (entry,) = s.control.outbox()
    assert entry.state == "dead_letter" and "did not create" in entry.last_error
    assert fake_kong.plugins[theirs]["config"]["minute"] == 500


def test_ip_block_creates_our_own_deny_list_and_revert_deletes_it(tmp_path, fake_kong, channel):
    deliver(tmp_path, channel, desired("ip", "203.0.113.7", block=True))
    assert fake_kong.denied_ips() == ["203.0.113.7"]
    assert plugin_id("kong", "", "ip-restriction") in fake_kong.plugins
    deliver(tmp_path, channel, desired("ip", "203.0.113.7"))
    assert fake_kong.denied_ips() == [] and fake_kong.plugins == {}


def test_an_ip_limit_is_skipped_with_the_reason_and_a_block_lifted_to_a_limit_is_removed(tmp_path, fake_kong, channel):
    s = deliver(tmp_path, channel, desired("ip", "203.0.113.7", limit_per_min=30))
    assert fake_kong.plugins == {}
    deliver(tmp_path, channel, desired("ip", "203.0.113.7", block=True), desired("ip", "203.0.113.7", limit_per_min=30))
    assert fake_kong.denied_ips() == []  # from blocked to limited: the block goes, the limit cannot come
    states = [(e.state, e.last_error) for e in s.control.outbox()]
    skipped = ("skipped", "no limit applied: Kong can block an IP (ip-restriction) but not limit one address")
    assert states == [skipped, ("sent", ""), skipped]


def test_ip_block_merges_into_the_operators_list_and_leaves_their_entries(tmp_path, fake_kong, channel):
    theirs = fake_kong.add_plugin("ip-restriction", {"deny": ["198.51.100.1", "192.0.2.9"], "status": 403})
    deliver(
        tmp_path, channel,
        desired("ip", "203.0.113.7", block=True), desired("ip", "203.0.113.8", block=True),
        desired("ip", "192.0.2.9", block=True),  # already on their list: theirs, stays after our revert
    )  # fmt: skip
    assert fake_kong.denied_ips() == ["192.0.2.9", "198.51.100.1", "203.0.113.7", "203.0.113.8"]
    deliver(tmp_path, channel, desired("ip", "203.0.113.7"), desired("ip", "192.0.2.9"))
    assert fake_kong.denied_ips() == ["192.0.2.9", "198.51.100.1", "203.0.113.8"]
    assert fake_kong.plugins[theirs]["config"]["status"] == 403  # the rest of their config is kept


@pytest.mark.parametrize(
    ("fault", "kw"),
    [
        ("status", {"status": 503, "times": 3}),
        ("delay", {"delay_s": 1.5}),
        ("drop", {}),
    ],
)
def test_faults_still_give_exactly_one_plugin_with_the_latest_limit(tmp_path, fake_kong, channel, fault, kw):
    fake_kong.inject(fault, path_prefix=f"/consumers/{KONG_CONSUMER}/plugins", **{"times": 1, **kw})
    deliver(tmp_path, channel, consumer(limit_per_min=40))
    assert [p["config"]["minute"] for p in fake_kong.plugins.values()] == [40]
    counts = outcomes(tmp_path)
    assert counts["sent"] == 1 and counts.get("retry", 0) >= 1 and "dead_letter" not in counts


def test_an_unknown_consumer_dead_letters_with_a_clear_error(tmp_path, fake_kong, channel):
    s = deliver(tmp_path, channel, desired("consumer", "no-such-consumer", name="ghost", limit_per_min=10))
    (entry,) = s.control.outbox()
    assert entry.state == "dead_letter" and "no consumer no-such-consumer" in entry.last_error
