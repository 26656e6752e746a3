"""Cells counted where the events are parsed (``collect``), merged at the shard (``take``).

The router counts consumer and endpoint cells per batch; a shard merges the batches
of every input. However the events are split into batches, the merged cells must be
those of counting every event at the shard.
"""

from __future__ import annotations

import pickle
import zlib
from array import array
from itertools import product
from operator import attrgetter

from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from gatewatch.detectors.base import subnet
from gatewatch.flows.config import Config
from gatewatch.flows.dataflow import RunStats, _Router, _ShardBatch, shard_keys
from gatewatch.flows.events import Event
from gatewatch.flows.features import (
    EXACT_IPS,
    EXAMPLE_IPS,
    MAX_SEEN,
    ApiWindows,
    ConsumerWindows,
    HyperLogLog,
    IpSketch,
    IpWindows,
    OneEvent,
    TrafficAcc,
    _Slotted,
    cell_of,
    endpoint_of,
    hash64,
    ip_feature_columns,
    ip_features,
    ip_union,
    subnets_of,
)

T0 = 1_700_000_040.0

_events = st.builds(
    lambda ts, api, consumer, ip, method, resource, status, bytes_out, latency, ua: Event(
        T0 + ts, api, consumer, consumer.upper(), "owner", consumer, ip, method, resource,
        endpoint_of(resource), status, status in (401, 403), status == 429, bytes_out, latency, ua,
    ),
    st.floats(0, 179, allow_nan=False),  # three windows of 60 s
    st.sampled_from(["shop", "pay"]),
    st.sampled_from(["c1", "c2", ""]),
    st.sampled_from(["", "10.0.0.1", "10.0.0.2", "10.0.1.9", "2001:db8::1"]),
    st.sampled_from(["GET", "POST", "HEAD", ""]),
    st.sampled_from(["", "/items/1", "/items/2", "/login", "/a.js"]),
    st.sampled_from([200, 302, 401, 403, 404, 429, 500, 503]),
    st.integers(0, 5000),
    st.sampled_from([-1, 5, 20]),
    st.sampled_from(["", "curl/8.1", "okhttp/4.9"]),
)  # fmt: skip


def _state(windows: dict[tuple[bool, float], dict]) -> dict:
    """Cells as comparable values: dicts and sets compare regardless of order; a one-event IP cell
    (a OneEvent) as the IpAcc it stands for."""
    return {
        at: {key: (cell_of(acc) if type(acc) is OneEvent else acc).__getstate__() for key, acc in c.items()}
        for at, c in windows.items()
        if c
    }


def _split(events: list[Event], cuts: list[int]) -> list[list[Event]]:
    bounds = sorted({0, len(events), *(min(c, len(events)) for c in cuts)})
    return [events[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(_events, max_size=80),
    st.integers(0, 80),
    st.lists(st.integers(0, 80), max_size=6),
    st.sampled_from([0.0, 60.0, 120.0, 180.0]),
)
def test_cells_merged_from_any_split_into_batches_equal_counting_every_event_at_once(
    events, mid, cuts, close_at
):
    first, rest = events[:mid], events[mid:]
    for table_type in (ConsumerWindows, IpWindows, ApiWindows):
        merged = table_type(60, 10)
        for batch in _split(first, cuts):
            merged.take(table_type.collect(batch, 60))
        closed = merged.close_until(T0 + close_at)  # the rest of a closed window's events go to late cells
        cut = merged.closed_until
        for batch in _split(rest, cuts):
            merged.take(table_type.collect(batch, 60))
        state = {(False, w.start): w.cells for w in closed}
        state |= {(False, start): cells for start, cells in merged.open.items()}
        state |= {(True, start): cells for start, cells in merged.late.items()}

        # the reference: each window's events counted one by one, in one pass
        on_time = first + [e for e in rest if e.ts - e.ts % 60 >= cut]
        late = [e for e in rest if e.ts - e.ts % 60 < cut]
        expected = {(False, s): c for s, c in table_type.collect(on_time, 60).items()}
        expected |= {(True, s): c for s, c in table_type.collect(late, 60).items()}
        assert _state(state) == _state(expected)
        # in the order of each cell's first event: once a window is full, the order picks the cells that make room
        assert {at: list(c) for at, c in state.items() if c} == {
            at: list(c) for at, c in expected.items() if c
        }


@settings(max_examples=200, deadline=None)
@given(st.lists(_events, min_size=1, max_size=80))
def test_the_feature_columns_of_a_windows_ip_cells_hold_each_cells_own_features(events):
    for cells in IpWindows.collect(events, 60).values():
        accs = list(cells.values())
        columns = ip_feature_columns(accs)
        for k, acc in enumerate(accs):
            assert {name: float(values[k]) for name, values in columns.items()} == ip_features(acc)


_METHODS = ["GET", "HEAD", "POST", "OPTIONS", "CONNECT", "PUT", ""]
_RESOURCES = [
    "", "/", "/items/42", "/items/43", "/contact", "/wp-login.php", "/.git/HEAD", "/backup.sql",
    "/phpmyadmin/index.php", "http://elsewhere.example/", "example.com:443", "/a.js", "/api/v1/login",
    "/static/..%2f..%2fetc/passwd",
]  # fmt: skip
_QUERIES = ["", "author=3", "id=1%27%20OR%20%271%27%3D%271", "page=2", "x"]
_STATUSES = [200, 204, 302, 400, 401, 402, 403, 404, 405, 429, 500, 503]
_UAS = ["", "curl/8.1", "sqlmap/1.7", "Mozilla/5.0 (Nikto/2.1.5)"]


def _wild(ts, ip, method, resource, query, status, ua, bad, consumer) -> Event:  # noqa: PLR0913
    return Event(
        T0 + ts, "shop", consumer, consumer.upper(), "", "", ip, method, resource, endpoint_of(resource), status,
        status in (401, 403), status == 429, 100, 5, ua, query, bad,
    )  # fmt: skip


# every branch of IpWindows.count: logins, forms, sensitive files, probes, proxies, payloads, scanners
_wild_events = st.builds(
    _wild,
    st.floats(0, 179, allow_nan=False),
    st.sampled_from(["", "10.0.0.1", "10.0.0.2", "10.0.1.9", "2001:db8::1", "10.9.9.9"]),
    *map(st.sampled_from, (_METHODS, _RESOURCES, _QUERIES, _STATUSES, _UAS)),
    st.booleans(),
    st.sampled_from(["", "c1"]),
)


def test_every_kind_of_one_event_cell_has_the_features_of_the_ipacc_counting_its_event():
    combos = product(_METHODS, _RESOURCES, _QUERIES, _STATUSES, _UAS)
    events = [
        _wild(k % 60, f"10.{k >> 16}.{k >> 8 & 255}.{k & 255}", *combo, k % 3 == 0, "c1" if k % 2 else "")
        for k, combo in enumerate(combos)
    ]
    (cells,) = IpWindows.collect(events, 60).values()
    assert all(type(c) is OneEvent for c in cells.values())
    columns, expected = ip_feature_columns(list(cells.values())), ip_feature_columns(list(map(cell_of, cells.values())))
    assert list(columns) == list(expected)  # the order of a finding's features
    for name, values in expected.items():
        assert columns[name].tolist() == values.tolist(), name


@settings(max_examples=300, deadline=None)
@given(st.lists(_wild_events, min_size=1, max_size=40))
def test_a_window_of_one_event_and_other_cells_has_each_cells_features(events):
    for cells in IpWindows.collect(events, 60).values():
        kept = list(cells.values())
        counted = [cell_of(c) if type(c) is OneEvent else c for c in kept]
        columns, expected = ip_feature_columns(kept), ip_feature_columns(counted)
        assert list(columns) == list(expected)  # the order of a finding's features
        for name, values in expected.items():
            assert columns[name].tolist() == values.tolist(), name


@settings(max_examples=300, deadline=None)
@given(st.lists(_wild_events, max_size=40))
def test_a_batch_keeps_its_windows_cells_in_the_order_counting_event_by_event_gives(events):
    # the order decides which single-request cells make room once a window is full
    collected, counted = IpWindows.collect(events, 60), IpWindows.count(events, 60)
    assert {s: list(c) for s, c in collected.items()} == {s: list(c) for s, c in counted.items()}
    assert list(collected) == list(counted)
    assert _state({(False, s): c for s, c in collected.items()}) == _state(
        {(False, s): c for s, c in counted.items()}
    )
    ips = [e.client_ip for e in events]
    for cells in collected.values():
        for ip, cell in cells.items():
            assert type(cell) is not OneEvent or ips.count(ip) == 1  # only an IP's one event in the batch


_ip = st.one_of(
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.tuples(st.integers(0, 3), st.integers(0, 65535)).map(lambda t: f"2001:db8:{t[0]:x}::{t[1]:x}"),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_ip, max_size=300), st.lists(_ip, max_size=5), st.sampled_from([0, 3, MAX_SEEN]))
def test_adding_ips_at_once_is_adding_them_one_by_one(ips, before, keep_subnets):
    one_by_one, at_once = IpSketch(keep_subnets), IpSketch(keep_subnets)
    for ip in before:
        one_by_one.add(ip)
        at_once.add(ip)
    for ip in ips:
        one_by_one.add(ip)
    at_once.add_all(ips)
    assert at_once.ips.registers == one_by_one.ips.registers
    assert at_once.subnets.registers == one_by_one.subnets.registers
    assert at_once.sample() == one_by_one.sample()
    assert at_once.examples == one_by_one.examples


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_ip, max_size=400),
    st.lists(st.integers(0, 400), max_size=5),
    st.sampled_from([3, 20]),
    st.randoms(),
)
def test_a_sketch_is_the_same_whatever_order_its_ips_come_in_and_its_parts_merge_in(
    ips, cuts, keep_subnets, rnd
):
    # a consumer's cells counted on several processes merge in the order they arrive: the sample
    # of subnets its never-seen count is taken over, and its example IPs, must not depend on it
    whole = IpSketch.of(ips, keep_subnets)
    shuffled = rnd.sample(ips, len(ips))
    parts: list = [set(p) for p in _split(shuffled, cuts)]
    for k, part in enumerate(parts):
        if k % 2:  # some parts already sketches, some built IP by IP
            sketch = IpSketch(keep_subnets)
            for ip in rnd.sample(sorted(part), len(part)):
                sketch.add(ip)
            parts[k] = sketch
    merged = ip_union(rnd.sample(parts, len(parts)) + [IpSketch(keep_subnets)], keep_subnets)
    nets = {subnet(ip) for ip in ips}
    lowest = set(sorted(nets, key=hash64)[:keep_subnets])
    for sketch in (whole, merged):
        assert (
            sketch.ips.registers == whole.ips.registers
            and sketch.subnets.registers == whole.subnets.registers
        )
        assert sketch.sample() == lowest == subnets_of(set(ips), keep_subnets)[0]
        assert sketch.examples == sorted(set(ips))[:EXAMPLE_IPS]


def test_a_sketch_takes_the_extreme_hashes_at_once_as_one_by_one():
    hashes = [0, 1, (1 << 27) - 1, 1 << 27, (1 << 53) + 1, (1 << 54) - 1, 1 << 54, (1 << 64) - 1]
    one_by_one, at_once = HyperLogLog(), HyperLogLog()
    for h in hashes:
        one_by_one.add_hash(h)
    at_once.add_hashes(hashes)
    assert at_once.registers == one_by_one.registers


def test_a_merge_past_the_exact_threshold_gives_the_sketch_of_all_ips():
    ips = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(EXACT_IPS + 500)]
    whole, merged = TrafficAcc("c", ""), TrafficAcc("c", "")
    for ip in ips:
        whole.ips.add(ip)
    whole.ips = IpSketch.of(whole.ips, MAX_SEEN)
    for half in (ips[: len(ips) // 2], ips[len(ips) // 2 :]):
        part = TrafficAcc("c", "")
        part.ips = set(half)
        merged.merge(part)
    assert type(merged.ips) is IpSketch
    assert merged.ips.ips.registers == whole.ips.ips.registers
    assert merged.ips.subnets.registers == whole.ips.subnets.registers
    assert merged.ips.examples == sorted(ips)[:5]
    assert merged.ips.sample() == {subnet(ip) for ip in ips}  # 18, fewer than MAX_SEEN


@settings(max_examples=200, deadline=None)
@given(st.lists(_events, max_size=80), st.integers(1, 4))
def test_the_router_gives_each_shard_the_cells_of_its_own_subjects(events, shards):
    router = _Router(Config.model_validate({"pipeline": {"shards": shards}}), RunStats())
    routed = dict(router.route(events, "src"))
    assert len(routed) == 3 * shards  # every shard hears about the source
    keys = shard_keys(shards)
    subject = {"c": attrgetter("consumer"), "i": attrgetter("client_ip"), "a": attrgetter("endpoint")}
    for family, collect in zip("cia", router.collect, strict=True):
        for i, key in enumerate(keys[family]):
            # the reference: the events of the shard's own subjects, counted there
            mine = [e for e in events if zlib.crc32(subject[family](e).encode()) % shards == i]
            expected, batch = collect(mine, 60), routed[key].batch
            assert _state({(False, s): c for s, c in batch.items()}) == _state(
                {(False, s): c for s, c in expected.items()}
            )


def _deep(value: object) -> object:
    """A value with its nested sketches and arrays as plain, comparable values."""
    if isinstance(value, _Slotted):
        return (type(value).__name__, tuple(_deep(v) for v in value.__getstate__()))
    if isinstance(value, array):
        return (value.typecode, value.tolist())
    return value


def _sent_and_received(events: list[Event]) -> None:
    for table_type in (ConsumerWindows, IpWindows, ApiWindows):
        batch = table_type.collect(events, 60)
        arrived = pickle.loads(pickle.dumps(_ShardBatch(batch, "shard", "src", T0), protocol=5))
        assert (arrived.shard, arrived.source, arrived.source_ts) == ("shard", "src", T0)
        cells = {s: {k: _deep(a) for k, a in c.items()} for s, c in batch.items()}
        assert {s: {k: _deep(a) for k, a in c.items()} for s, c in arrived.batch.items()} == cells
        assert [list(c) for c in arrived.batch.values()] == [list(c) for c in batch.values()]  # in order


@settings(max_examples=200, deadline=None)
@given(st.lists(_events, max_size=80))
def test_a_batch_of_cells_sent_to_another_process_arrives_as_it_was_counted(events):
    _sent_and_received(events)


def test_cells_holding_sketches_arrive_as_they_were_counted():
    first = Event(T0, "shop", "c1", "C1", "owner", "c1", "10.0.0.1", "GET", "/items/1", "/items/{id}", 200,
                  False, False, 10, 5, "curl/8.1")  # fmt: skip
    # past EXACT_IPS, the consumer and endpoint cells hold sketches of their IPs
    _sent_and_received([replace(first, client_ip=f"10.9.{i >> 8}.{i & 255}") for i in range(2 * EXACT_IPS)])
