"""Bounded memory under a flood of one-off client IPs, user names or paths.

The sketch of distinct IPs (exact up to ``EXACT_IPS`` per cell, then a
HyperLogLog), the caps on cells per window (``pipeline.max_ips_per_window``,
``max_consumers_per_window``, ``max_endpoints_per_window``), the cap on the
values a cell keeps per set (``MAX_CELL_VALUES``) and the cap on tracked
subjects (``detectors.max_tracked_ips`` / ``max_tracked_subjects``): what each
keeps exact, that memory stops growing, and that an attacker is still found in
a flood.
"""

from __future__ import annotations

import gc
import json
import pickle
import random
import sys
import tracemalloc

from msgspec.structs import astuple

from gatewatch.flows.config import Config
from gatewatch.flows.events import Event
from gatewatch.flows.features import (
    BURST_S,
    EXACT_IPS,
    MAX_CELL_VALUES,
    MAX_LOGIN_TIMES,
    OVERFLOW,
    OVERFLOW_CONSUMER,
    ApiWindows,
    ConsumerWindows,
    HyperLogLog,
    IpSketch,
    IpWindows,
    api_features,
    consumer_windows,
    endpoint_of,
    example_ips,
    hash64,
    ip_features,
    ip_union,
    max_in_span,
    subnets_of,
)
from gatewatch.flows.shard import UNTRACKED, ApiShard, ConsumerShard, IpShard
from tests.conftest import gatewatch, rows, scalar

T0 = 1_793_599_980.0  # a window start (a whole minute)
ERR = 0.1  # 3 standard errors of a 1024-register HyperLogLog (1.04 / 32 = 3.3 %)


def ev(ts, ip, *, consumer="app", method="GET", resource="/items/{sku}", status=200, api="Shop:1"):
    return Event(ts, api, consumer, consumer.title(), "owner", "", ip, method, resource,
                 endpoint_of(resource), status, status in (401, 403), False, 500, 20, "okhttp")  # fmt: skip


def one_off(n, start=0):
    """``n`` distinct IPv4 addresses, numbered from ``start`` (none in 10.0.0.0/8)."""
    return [f"100.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}" for i in range(start, start + n)]


_PER_WINDOW = ("max_ips_per_window", "max_consumers_per_window", "max_endpoints_per_window")


def _cfg(**caps):
    cfg = Config()
    pipeline = {k: v for k, v in caps.items() if k in _PER_WINDOW}
    detectors = {k: v for k, v in caps.items() if k not in _PER_WINDOW}
    return cfg.model_copy(
        update={
            "pipeline": cfg.pipeline.model_copy(update=pipeline),
            "detectors": cfg.detectors.model_copy(update=detectors),
        }
    )


def _table(outputs, name):
    return [row for table, rows_ in outputs for row in rows_ if table == name]


def _shard(cls, cfg):
    shard = cls(cfg)
    shard.clock.hold_s = 0  # windows close as soon as the watermark passes them (no start-up hold)
    return shard


# -- the sketch ---------------------------------------------------------------------


def test_the_hash_is_stable_across_processes():
    # a salted hash() would differ per process; the sketches and the doorkeeper must not
    assert hash64("203.0.113.7") == 0x8901665CB3ECEAAF  # blake2b, 8 bytes, big-endian
    assert hash64("203.0.113.7") != hash64("203.0.113.8")
    assert 0 <= hash64("x") < 1 << 64


def test_hyperloglog_estimates_100k_distinct_values_within_three_standard_errors():
    for seed in range(3):
        h = HyperLogLog()
        for i in range(100_000):
            h.add_hash(hash64(f"{seed}:{i}"))
        for _ in range(3):  # adding the same values again changes nothing
            h.add_hash(hash64(f"{seed}:{7}"))
        assert abs(len(h) - 100_000) <= ERR * 100_000, (seed, len(h))
    assert len(HyperLogLog()) == 0


def test_hyperloglog_union_is_the_sketch_of_the_union():
    a, b, both = HyperLogLog(), HyperLogLog(), HyperLogLog()
    for i in range(30_000):
        (a if i % 3 else b).add_hash(hash64(str(i)))
        both.add_hash(hash64(str(i)))
    for i in range(10_000):  # overlapping values count once
        a.add_hash(hash64(str(i)))
    a.update(b)
    assert a.registers == both.registers
    assert abs(len(a) - 30_000) <= ERR * 30_000
    assert pickle.loads(pickle.dumps(a)).registers == a.registers


def _consumer_cell(ips, *, fail_every=0):
    t = ConsumerWindows(60, 10)
    t.add([ev(T0 + (i % 50), ip, status=401 if fail_every and i % fail_every == 0 else 200)
           for i, ip in enumerate(ips)])  # fmt: skip
    (w,) = t.close_all()
    return w.cells[("Shop:1", "app")]


def test_a_cell_counts_distinct_ips_exactly_up_to_the_threshold():
    ips = one_off(EXACT_IPS)
    acc = _consumer_cell(ips * 2)  # every IP twice
    assert type(acc.ips) is set and len(acc.ips) == EXACT_IPS
    (cw,) = consumer_windows({("Shop:1", "app"): acc}).values()
    x, subnets, _ = cw.features()
    assert x["distinct_ips"] == EXACT_IPS
    assert x["distinct_subnets"] == len(subnets) == EXACT_IPS // 256


def test_past_the_threshold_a_cell_keeps_a_bounded_sketch_with_counts_within_the_error():
    n = 50_000
    ips = one_off(n)
    random.Random(3).shuffle(ips)
    acc = _consumer_cell(ips, fail_every=2)
    assert isinstance(acc.ips, IpSketch) and isinstance(acc.fail_ips, IpSketch)
    (cw,) = consumer_windows({("Shop:1", "app"): acc}).values()
    x, subnets, _ = cw.features()
    assert abs(x["distinct_ips"] - n) <= ERR * n
    assert abs(x["failing_ips"] - n / 2) <= ERR * n / 2
    assert abs(x["distinct_subnets"] - n / 256) <= ERR * n / 256
    # the never-seen-subnets memory gets the subnets exactly, up to what it remembers (MAX_SEEN)
    assert subnets == acc.ips.sample() == {ip.rpartition(".")[0] for ip in ips}
    # bounded: two 1 KiB registers whatever the count, against ~90 B per IP of an exact set
    sketched = len(pickle.dumps(acc.fail_ips))
    exact = set(one_off(EXACT_IPS))
    assert sketched < 2_500 and sys.getsizeof(exact) + sum(map(sys.getsizeof, exact)) > 100 * sketched
    # examples for a finding's context: the lowest IPs of all it saw, whatever their order
    assert example_ips(acc.ips) == sorted(ips)[:5]


def test_cells_of_one_consumer_merge_exact_and_sketched_ips():
    big, small = one_off(20_000), one_off(3_000, start=19_000)  # 1,000 in common
    t = ConsumerWindows(60, 10)
    t.add([ev(T0 + 1, ip, api="A") for ip in big] + [ev(T0 + 2, ip, api="B") for ip in small])
    (w,) = t.close_all()
    assert isinstance(w.cells[("A", "app")].ips, IpSketch) and type(w.cells[("B", "app")].ips) is set
    (cw,) = consumer_windows(w.cells).values()
    x, _, _ = cw.features()
    assert abs(x["distinct_ips"] - 22_000) <= ERR * 22_000
    union = ip_union(c.ips for c in cw.cells)
    assert example_ips(union) == sorted(big)[:5]
    assert abs(subnets_of(union)[1] - 22_000 / 256) <= ERR * 22_000 / 256


def test_an_endpoint_cell_past_the_threshold_still_counts_failing_ips():
    ips = one_off(30_000)
    t = ApiWindows(60, 10)
    t.add([ev(T0 + i % 60, ip, method="POST", resource="/login", status=401) for i, ip in enumerate(ips)])
    (w,) = t.close_all()
    (acc,) = w.cells.values()
    x = api_features(acc)
    assert x["requests"] == 30_000
    assert abs(x["failing_ips"] - 30_000) <= ERR * 30_000
    assert abs(x["failing_subnets"] - 30_000 / 256) <= ERR * 30_000 / 256


# -- the IP cells of a window ---------------------------------------------------------


def test_past_the_cap_ips_share_one_overflow_cell_and_every_request_is_counted():
    t = IpWindows(60, 10)
    t.max_cells = 100
    flood = one_off(5_000)
    events = [ev(T0 + i * 0.01, ip) for i, ip in enumerate(flood)]
    events += [ev(T0 + 55, flood[4_000])]  # a flood IP comes back: it gets a cell
    t.add(events)
    (w,) = t.close_all()
    over = w.cells.pop(OVERFLOW)
    assert len(w.cells) == 100  # the returning IP took the place of a single-request cell
    assert flood[4_000] in w.cells and over.folded == 1
    assert sum(acc.requests for acc in w.cells.values()) + over.requests == len(events)
    assert abs(len(over.ips) - 4_901) <= ERR * 4_901


def test_a_new_ip_that_comes_back_past_the_cap_loses_at_most_its_first_request():
    flood = [ev(T0 + i * 0.01, ip) for i, ip in enumerate(one_off(1_000))]
    burst = [ev(T0 + 30 + i, "10.8.8.8", method="POST", resource="/login", status=401) for i in range(5)]
    one_batch, one_by_one = IpWindows(60, 10), IpWindows(60, 10)
    for t in (one_batch, one_by_one):
        t.max_cells = 100
        t.take(IpWindows.collect(flood, 60))
    one_batch.take(IpWindows.collect(burst, 60))
    for e in burst:  # as a live tail may deliver it
        one_by_one.take(IpWindows.collect([e], 60))
    for t, kept in ((one_batch, 5), (one_by_one, 4)):
        (w,) = t.close_all()
        over = w.cells.pop(OVERFLOW)
        assert w.cells["10.8.8.8"].requests == w.cells["10.8.8.8"].auth == kept
        assert len(w.cells) == 100 and over.folded == 1  # it took a single-request cell's place
        assert over.requests + sum(acc.requests for acc in w.cells.values()) == len(flood) + len(burst)
        assert over.auth_failures == 5 - kept


def test_a_tracked_ip_gets_a_cell_past_the_cap():
    t = IpWindows(60, 10)
    t.max_cells = 100
    t.tracked = {"10.9.9.9": T0 - 60}
    t.add([ev(T0 + i * 0.01, ip) for i, ip in enumerate(one_off(1_000))] + [ev(T0 + 30, "10.9.9.9")])
    (w,) = t.close_all()
    assert w.cells["10.9.9.9"].requests == 1  # its only request, after the flood filled the window


# -- the shards -------------------------------------------------------------------------


def _window_of_flood(w, n_flood, *, extra=()):
    """One window: ``n_flood`` one-off IPs (numbered by window), then ``extra`` events."""
    start = T0 + 60 * w
    events = [ev(start + 50 * i / n_flood, ip) for i, ip in enumerate(one_off(n_flood, start=w * n_flood))]
    return events + [e for e in extra]


def test_a_flood_of_one_off_ips_stays_within_the_caps_and_an_attacker_is_still_found():
    cap, tracked_cap, n_flood = 50, 200, 400
    shard = _shard(IpShard, _cfg(max_ips_per_window=cap, max_tracked_ips=tracked_cap))
    regular = "10.7.7.7"  # a normal client for 12 windows, then quiet for 13 while the flood goes on
    out, peak_tracked, fed = [], 0, 0
    for w in range(30):
        start = T0 + 60 * w
        extra = [ev(start + 51 + i, regular) for i in range(3)] if w < 12 or w > 25 else []
        if w == 25:  # it comes back brute-forcing, after the flood has filled the window
            extra = [ev(start + 51 + i * 0.5, regular, method="POST", resource="/wp-login.php", status=401)
                     for i in range(9)]  # fmt: skip
        if w == 27:  # an IP never seen before brute-forces after the flood filled the window
            extra += [ev(start + 52 + i / 2, "10.8.8.8", method="POST", resource="/wp-login.php", status=401)
                      for i in range(9)]  # fmt: skip
        events = _window_of_flood(w, n_flood, extra=extra)
        fed += len(events)
        out += shard.ingest(events, "src", start + 75)
        peak_tracked = max(peak_tracked, len(shard.last_seen))
        assert all(len(cells) <= cap + 2 for cells in shard.table.open.values())  # + overflow, tracked
        assert list(shard.table.open) == []  # the window closed
    out += shard.flush()
    assert peak_tracked <= tracked_cap
    findings = {(f[2], f[6], f[8]) for f in _table(out, "findings")}
    assert (regular, "brute_force", T0 + 60 * 25) in findings
    assert ("10.8.8.8", "brute_force", T0 + 60 * 27) in findings
    # the regular client kept its baselines through the flood (plain LRU would have dropped it after
    # 4 windows of 50 newcomers each): IPs seen in one window only went first
    assert shard.baselines.history(regular) == 12 + 4  # not the attack window
    assert shard.evicted_over_cap > 0
    # each window says what was not tracked one by one, and nothing is lost from the totals
    capacity = [r for r in _table(out, "subject_windows") if r[3] == UNTRACKED]
    assert len(capacity) == 30
    features = [json.loads(r[15]) for r in capacity]
    assert all(f["tracked_subjects"] <= tracked_cap and f["max_ips_per_window"] == cap for f in features)
    assert all(abs(f["untracked_ips"] - (n_flood - cap)) <= ERR * n_flood for f in features)
    flagged = {r[3]: r[5] for r in _table(out, "subject_windows") if r[3] != UNTRACKED}
    assert sum(r[5] for r in capacity) >= 30 * (n_flood - cap)
    assert flagged[regular] == 9 and flagged["10.8.8.8"] == 9  # its attempts came in one batch: a cell


def test_the_consumer_and_api_families_stay_exact_under_the_flood():
    events = []
    for w in range(3):
        events += _window_of_flood(w, 6_000)
    consumer, api = (_shard(cls, _cfg(max_ips_per_window=50)) for cls in (ConsumerShard, ApiShard))
    traffic = _table(consumer.ingest(events, "src", events[-1].ts) + consumer.flush(), "traffic")
    assert sum(r[6] for r in traffic) == len(events)
    assert all(abs(r[16] - 6_000) <= ERR * 6_000 for r in traffic)  # distinct_ips: estimated past EXACT_IPS
    windows = _table(api.ingest(events, "src", events[-1].ts) + api.flush(), "subject_windows")
    assert sum(r[5] for r in windows) == len(events)


def test_consumers_seen_once_are_dropped_first_past_max_tracked_subjects():
    shard = _shard(ConsumerShard, _cfg(max_tracked_subjects=20))
    out = []
    for w in range(12):
        start = T0 + 60 * w
        events = [ev(start + i, "10.0.0.1", consumer="steady") for i in range(5)]
        events += [ev(start + 10 + i * 0.1, "10.0.0.2", consumer=f"once-{w}-{i}") for i in range(15)]
        out += shard.ingest(events, "src", start + 75)
        assert len(shard.last_seen) <= 20
    out += shard.flush()
    assert shard.baselines.history("steady") == 12
    assert "once-11-14" in shard.last_seen and "once-0-0" not in shard.last_seen
    capacity = [json.loads(r[15]) for r in _table(out, "subject_windows") if r[3] == UNTRACKED]
    assert capacity and sum(f["evicted_subjects"] for f in capacity) == shard.evicted_over_cap > 0


def test_a_shard_with_an_overflowing_window_survives_a_snapshot():
    shard = _shard(IpShard, _cfg(max_ips_per_window=20, max_tracked_ips=100))
    shard.ingest(_window_of_flood(0, 200), "src", T0 + 75)  # window 0 closes: 20 IPs tracked
    shard.ingest(_window_of_flood(1, 200)[:150], "src", T0 + 60 + 40)  # window 1 open and past the cap
    assert len(shard.last_seen) == 20
    restored = pickle.loads(pickle.dumps(shard, protocol=pickle.HIGHEST_PROTOCOL))
    restored.clock.hold_s = 0
    assert restored.table.tracked is restored.last_seen
    assert len(restored.table.open[T0 + 60]) == 21  # 20 cells and the overflow
    rest = _window_of_flood(1, 200)[150:] + [ev(T0 + 70, one_off(1)[0])]  # a tracked IP comes back
    a = shard.ingest(rest, "src", T0 + 135) + shard.flush()
    b = restored.ingest(rest, "src", T0 + 135) + restored.flush()
    assert _table(a, "subject_windows") == _table(b, "subject_windows") != []
    assert restored.last_seen == shard.last_seen and list(restored.last_seen) == list(shard.last_seen)
    assert one_off(1)[0] in shard.last_seen


def test_replay_accounts_for_every_line_under_a_flood_and_reports_the_overflow(tmp_path):
    lines = []
    for w in range(4):
        start = T0 + 60 * w
        for i, ip in enumerate(one_off(500, start=w * 500)):
            lines.append(_caddy(start + 50 * i / 500, ip, "GET", "/items/1", 200))
        if w == 2:
            lines += [_caddy(start + 51 + i / 2, "10.6.6.6", "POST", "/wp-login.php", 401) for i in range(9)]
        if w == 1:
            lines.append("not a log line")
    log = tmp_path / "flood.log"
    log.write_text("\n".join(lines) + "\n")
    config = tmp_path / "caps.toml"
    config.write_text("[pipeline]\nmax_ips_per_window = 20\n[detectors]\nmax_tracked_ips = 50\n")
    store = tmp_path / "store"
    gatewatch("replay", str(log), "--store", str(store), "--config", str(config))
    requests = scalar(store, "SELECT sum(requests) FROM traffic")
    rejected = scalar(store, "SELECT count(*) FROM rejected")
    assert requests + rejected == len(lines) and rejected == 1
    sql = "SELECT requests, distinct_ips, features FROM subject_windows WHERE subject = $s"
    capacity = rows(store, sql, {"s": UNTRACKED})
    assert len(capacity) == 4
    assert all(json.loads(r["features"])["tracked_subjects"] <= 50 for r in capacity)
    assert sum(r["requests"] for r in capacity) >= 4 * (500 - 20)
    found = rows(store, "SELECT subject, kind FROM findings WHERE subject_type = 'ip'")
    assert {"subject": "10.6.6.6", "kind": "brute_force"} in found


def _caddy(ts, ip, method, uri, status):
    return json.dumps(
        {
            "ts": ts, "request": {"client_ip": ip, "method": method, "host": "shop", "uri": uri,
                                  "headers": {"User-Agent": ["Mozilla/5.0"]}},
            "user_id": "", "size": 100, "status": status,
        }  # fmt: skip
    )


# -- floods of user names and paths ------------------------------------------------------


def _word(i):
    """A name of letters only: never folded as an id (a distinct endpoint per path)."""
    out, i = "", i + 26**3
    while i:
        i, r = divmod(i, 26)
        out += chr(97 + r)
    return out


def _user_names(n, start=0, *, window=0, ips=("10.5.5.1", "10.5.5.2", "10.5.5.3")):
    """Credential stuffing: ``n`` distinct basic-auth user names failing from a few IPs, in one window."""
    t = T0 + 60 * window
    return [Event(t + 50 * k / n, "Shop:1", f"user-{_word(i)}", f"user-{_word(i)}", "", f"user-{_word(i)}",
                  ips[i % len(ips)], "POST", "/login", "/login", 401, True, False, 100, 5, "curl/8")
            for k, i in enumerate(range(start, start + n))]  # fmt: skip


def _paths(n, start=0, *, ip="10.5.5.9"):
    """A scanner: ``n`` distinct paths (and user agents) from one IP, answered 404, in one window."""
    out = []
    for k, i in enumerate(range(start, start + n)):
        path = f"/{_word(i)}/{_word(7 * i)}"
        out.append(Event(T0 + 50 * k / n, "Shop:1", "", "", "", "", ip, "GET", path, endpoint_of(path), 404,
                         False, False, 100, 5, f"scan/{_word(i)}"))  # fmt: skip
    return out


def _growth(cls, cfg, events, n1, n2):
    """Bytes per extra subject, from the ``n1``-th to the ``n2``-th event of one open window.

    The router's cells of 1,000 events at a time, as the shard takes them: the traced heap it
    holds, and its recovery snapshot. The process-wide caches of path flags are filled first.
    A full collection before each measure empties CPython's free lists: a freed tuple waits in
    one (up to 2,000 a size) still traced, and whether a batch's cell keys sat there or not
    moved the figure by up to 7 B an event.
    """
    cls.table_type.collect(events[:n2], 60)
    shard = _shard(cls, cfg)
    sizes = []
    tracemalloc.start()
    try:
        for i in range(1_000, n2 + 1, 1_000):
            shard.take(cls.table_type.collect(events[i - 1_000 : i], 60), "src", T0 + 40)  # the window stays open
            if i in (n1, n2):
                gc.collect()
                sizes.append((tracemalloc.get_traced_memory()[0], len(pickle.dumps(shard))))
    finally:
        tracemalloc.stop()
    (heap1, snap1), (heap2, snap2) = sizes
    return (heap2 - heap1) / (n2 - n1), (snap2 - snap1) / (n2 - n1), shard


def test_memory_stops_growing_past_each_familys_cap():
    # before the caps: 1.1 KiB of heap per user name (a traffic row), 0.9 KiB per endpoint, 150 B per
    # path and user agent in an IP's cell, for as long as the flood lasts
    caps = _cfg(max_consumers_per_window=100, max_endpoints_per_window=100)
    users, paths = _user_names(12_000), _paths(12_000)
    for cls, events in ((ConsumerShard, users), (ApiShard, paths), (IpShard, paths)):
        heap, snapshot, shard = _growth(cls, caps, events, 6_000, 12_000)
        assert heap < 2 and snapshot < 2, (cls.family, heap, snapshot)
        (cells,) = shard.table.open.values()
        assert len(cells) <= 100 + 2  # + the overflow, and the consumers' ~overflow row
    (acc,) = (a for k, a in cells.items() if k != OVERFLOW)  # the scanner's IP cell
    assert acc.requests == 12_000
    assert MAX_CELL_VALUES <= len(acc.paths) <= MAX_CELL_VALUES + 1_000  # + at most one batch
    assert MAX_CELL_VALUES <= len(acc.uas) <= MAX_CELL_VALUES + 1_000
    assert ip_features(acc)["error_paths"] >= MAX_CELL_VALUES  # far above the probing thresholds


def test_a_login_flood_from_one_ip_keeps_its_timestamps_bounded_and_counts_every_login():
    events = _user_names(3 * MAX_LOGIN_TIMES, ips=("10.5.5.1",))  # 246 logins a second for 50 s
    (whole,) = IpWindows.collect(events, 60)[T0].values()  # counted in one batch
    merged = None
    for i in range(0, len(events), 1_000):  # and as the router's batches, merged at the shard
        (part,) = IpWindows.collect(events[i : i + 1_000], 60)[T0].values()
        merged = merged or part
        if merged is not part:
            merged.merge(part)
    for cell in (whole, merged):
        assert cell.logins == len(events) and len(cell.login_ts) == MAX_LOGIN_TIMES
        x = ip_features(cell)
        assert x["login_requests"] == len(events) and x["login_share"] == 1.0
        # the most in 10 s among the first MAX_LOGIN_TIMES, which span more than 10 s: the flood's own rate
        assert x["login_burst"] == max_in_span([e.ts for e in events], BURST_S)


def test_a_flood_of_user_names_counts_every_event_in_an_overflow_row_per_api():
    shard = _shard(ConsumerShard, _cfg(max_consumers_per_window=50))
    events = _user_names(3_000) + [ev(T0 + 55, "10.0.0.1", consumer="other", api="Blog:1")]
    out = []
    for i in range(0, len(events), 500):
        out += shard.ingest(events[i : i + 500], "src", T0 + 40)
    out += shard.flush()
    traffic = _table(out, "traffic")
    assert sum(r[6] for r in traffic) == len(events)
    assert len(traffic) == 50 + 2  # the first 50 user names, and an overflow row per API
    overflow = {r[2]: r for r in traffic if r[3] == OVERFLOW_CONSUMER}
    assert overflow["Shop:1"][6] == 3_000 - 50 == overflow["Shop:1"][11]  # requests, auth failures
    assert overflow["Shop:1"][16] == 3 and overflow["Blog:1"][6] == 1  # distinct IPs; a late newcomer
    # not a subject: no baselines, no finding, no row of its own; the capacity row says how many
    assert OVERFLOW_CONSUMER not in shard.last_seen and len(shard.last_seen) == 50
    windows = _table(out, "subject_windows")
    assert OVERFLOW_CONSUMER not in {r[3] for r in windows} | {f[2] for f in _table(out, "findings")}
    (capacity,) = (json.loads(r[15]) for r in windows if r[3] == UNTRACKED)
    assert capacity["untracked_requests"] == 3_000 - 50 + 1 and capacity["max_consumers_per_window"] == 50
    assert abs(capacity["untracked_subjects"] - 2_951) <= ERR * 2_951


def test_credential_stuffing_with_a_flood_of_user_names_is_still_found():
    # 12 quiet windows, then 20,000 user names from 3 IPs in one window, consumers capped at 100: the
    # IPs are flagged (their cells count every failure), and so is a known consumer attacked from 40 IPs
    # once the flood has filled the window (it has baselines: it keeps its cell)
    cfg = _cfg(max_consumers_per_window=100, max_tracked_subjects=500)
    consumer, ip = _shard(ConsumerShard, cfg), _shard(IpShard, cfg)
    out = []
    for w in range(14):
        start = T0 + 60 * w
        events = [ev(start + i, f"10.0.{i}.1", consumer="alice") for i in range(5)]
        if w == 13:
            events = _user_names(20_000, window=w) + [
                ev(start + 51 + i / 10, f"10.{i}.0.9", consumer="alice", method="POST", resource="/login", status=401)
                for i in range(40)
            ]  # fmt: skip
        for i in range(0, len(events), 5_000):
            batch = events[i : i + 5_000]
            out += consumer.ingest(batch, "src", batch[-1].ts) + ip.ingest(batch, "src", batch[-1].ts)
    out += consumer.flush() + ip.flush()
    found = {(f[1], f[2], f[6]) for f in _table(out, "findings")}
    for stuffer in ("10.5.5.1", "10.5.5.2", "10.5.5.3"):
        assert ("ip", stuffer, "brute_force") in found
    assert ("consumer", "alice", "credential_stuffing") in found
    assert sum(r[6] for r in _table(out, "traffic")) == 13 * 5 + 20_040
    assert len(consumer.last_seen) <= 100 + 1  # the window's cells and alice
    flagged = {r[3]: json.loads(r[15]) for r in _table(out, "subject_windows") if r[2] == "ip"}
    assert flagged["10.5.5.1"]["auth_failures"] == 20_000 // 3 + 1  # exact


def test_a_brute_forcer_hidden_in_a_flood_of_paths_is_still_found():
    # a scanner's 10,000 one-off paths fill the api family's window; the login endpoint, known for 12
    # windows, is stuffed from 40 IPs after them and keeps its cell; the IP that brute-forces it too
    cfg = _cfg(max_endpoints_per_window=100)
    api, ip = _shard(ApiShard, cfg), _shard(IpShard, cfg)
    out, fed = [], 0
    for w in range(14):
        start = T0 + 60 * w
        events = [ev(start + i, f"10.0.{i}.1", method="POST", resource="/login") for i in range(5)]
        if w == 13:
            events = [Event(e.ts + 60 * w, *astuple(e)[1:]) for e in _paths(10_000)]
            events += [ev(start + 51 + i / 10, f"10.{i}.0.9", method="POST", resource="/login", status=401)
                       for i in range(40)]  # fmt: skip
            events += [ev(start + 52 + i / 2, "10.6.6.6", method="POST", resource="/wp-login.php", status=401)
                       for i in range(9)]  # fmt: skip
        fed += len(events)
        for i in range(0, len(events), 2_000):
            batch = events[i : i + 2_000]
            out += api.ingest(batch, "src", batch[-1].ts) + ip.ingest(batch, "src", batch[-1].ts)
    out += api.flush() + ip.flush()
    found = {(f[1], f[2], f[6]) for f in _table(out, "findings")}
    assert ("api", "Shop:1 POST /login", "credential_stuffing") in found
    assert ("ip", "10.6.6.6", "brute_force") in found
    assert ("ip", "10.5.5.9", "probing") in found  # the scanner itself
    windows = [r for r in _table(out, "subject_windows") if r[2] == "api"]
    assert sum(r[5] for r in windows) == fed  # every event: the endpoints' rows and the capacity row
    (capacity,) = (json.loads(r[15]) for r in windows if r[3] == UNTRACKED)
    assert capacity["untracked_requests"] >= 10_000 - 100 and len(api.last_seen) <= 100 + 1


def test_a_consumer_shard_with_an_overflowing_window_survives_a_snapshot():
    shard = _shard(ConsumerShard, _cfg(max_consumers_per_window=20))
    events = _user_names(400)
    shard.ingest(events[:300], "src", T0 + 40)
    restored = pickle.loads(pickle.dumps(shard, protocol=pickle.HIGHEST_PROTOCOL))
    restored.clock.hold_s = 0
    assert restored.table.tracked is restored.last_seen and restored.table.max_cells == 20
    a = shard.ingest(events[300:], "src", T0 + 75) + shard.flush()
    b = restored.ingest(events[300:], "src", T0 + 75) + restored.flush()
    assert _table(a, "traffic") == _table(b, "traffic") != []
    assert sum(r[6] for r in _table(b, "traffic")) == 400
