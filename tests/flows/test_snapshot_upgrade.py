"""Open windows in a recovery snapshot taken by an earlier version still load after an upgrade.

Window cells are pickled as the tuple of their slots; a version that adds a slot
must still read the shorter tuples of the versions before it (their slot lists are
kept in ``LEGACY_SLOTS``), giving each added slot its empty value.
"""

from __future__ import annotations

import pickle
from array import array

import pytest

from gatewatch.detectors.baselines import SubjectRows
from gatewatch.flows.config import Config
from gatewatch.flows.features import ApiAcc, IpAcc, IpSketch, hash64, ip_features
from gatewatch.flows.horizons import SPECS, Trail, Trails
from gatewatch.flows.shard import IpShard

# what an IP cell of each earlier version pickled: (slot, value) in its slot order
EARLIER_IP_CELLS = {
    17: dict(auth=2, bytes_out=900, consumer="", detail=1, error_paths={"/x"}, errors=1, login_paths={"/login"},
             login_ts=[1.0, 2.0], paths={"/a", "/items/1"}, reads=3, requests=5, s5xx=0, sensitive=set(),
             throttled=0, ts=[1.0, 2.0, 3.0, 4.0, 5.0], uas={"curl/8"}, writes=2),
    23: dict(auth=2, bad=0, bad_versions=0, bytes_out=900, consumer="", detail=1, error_paths={"/x"}, errors=1,
             login_paths={"/login"}, login_ts=[1.0, 2.0], paths={"/a", "/items/1"}, payloads=1, probes=set(), proxy=0,
             queries={"/a?q=1"}, reads=3, requests=5, s5xx=0, sensitive=set(), throttled=0,
             ts=[1.0, 2.0, 3.0, 4.0, 5.0], uas={"curl/8"}, writes=2),
    27: dict(auth=2, bad=0, bad_versions=0, bytes_out=900, consumer="", detail=1, error_paths={"/x"}, early_posts=(),
             errors=1, hasty=0, login_paths={"/login"}, login_ts=[1.0, 2.0], page="", page_ts=0.0,
             paths={"/a", "/items/1"}, payloads=1, probes=(), proxy=0, queries={"/a?q=1"}, reads=3, requests=5, s5xx=0,
             sensitive=(), throttled=0, ts=array("d", [1.0, 2.0, 3.0, 4.0, 5.0]), uas={"curl/8"}, writes=2),
}  # fmt: skip


def _from_state(cls, state: tuple):
    cell = cls.__new__(cls)
    cell.__setstate__(state)
    return pickle.loads(pickle.dumps(cell))


@pytest.mark.parametrize("n", sorted(EARLIER_IP_CELLS))
def test_an_ip_cell_of_an_earlier_version_loads_and_counts_on(n):
    earlier = EARLIER_IP_CELLS[n]
    assert tuple(earlier) == IpAcc.LEGACY_SLOTS[n]
    cell = _from_state(IpAcc, tuple(earlier.values()))
    assert (cell.requests, cell.auth, cell.paths) == (5, 2, {"/a", "/items/1"})
    assert (cell.hasty, cell.page, list(cell.early_posts)) == (0, "", [])
    assert cell.logins == 2  # every login of an earlier version kept its timestamp
    newer = IpAcc("")
    newer.requests, newer.hasty, newer.logins, newer.login_ts = 1, 1, 1, [3.0]
    cell.merge(newer)
    x = ip_features(cell)
    assert x["requests"] == 6 and x["hasty_posts"] == 1 and x["auth_failures"] == 2
    assert x["login_requests"] == 3 and x["login_burst"] == 3


def test_an_endpoint_cell_of_an_earlier_version_loads_without_latencies():
    cell = _from_state(ApiAcc, (0, 100, set(), {"10.0.0.1"}, 4, 1, 0, 0))
    assert (cell.requests, cell.latencies) == (4, {})


def test_a_sketch_whose_sample_was_the_first_subnets_seen_keeps_those_of_lowest_hash():
    old = IpSketch(5)
    old.add_all([f"10.0.{i}.1" for i in range(40)])
    first_seen = {f"10.0.{i}" for i in range(5)}  # an earlier version's sample: the first 5 subnets, keeping 5
    sketch = _from_state(IpSketch, (old.examples, old.ips, 5, first_seen, old.subnets))
    assert sketch.sample() == first_seen
    sketch.add("10.9.9.1")  # a sixth: the 5 of lowest hash stay
    assert sketch.sample() == set(sorted({*first_seen, "10.9.9"}, key=hash64)[:5])
    assert abs(len(sketch) - 41) <= 2 and sketch.examples == old.examples  # within the estimate's error


def test_a_trail_pickled_with_its_running_totals_loads_and_is_judged_on():
    windows = [(0.0, [4.0, 3.0, 0.0]), (60.0, [6.0, 5.0, 1.0])]
    earlier = (0.0, windows, [10.0, 8.0, 1.0], {"failing_ips": {"10.0.0.1": 0.0, "10.0.0.2": 60.0}})
    trails = Trails(SPECS["consumer"], keep_s=3600)
    trails.trails["c"] = _from_state(Trail, earlier)
    assert trails.features("c", 60.0, 0.0)["auth_failures"] == 5.0
    assert trails.bound("c")["auth_failures"] == 8.0
    assert trails.bound("c")["failing_ips"] == 2.0


def test_a_state_of_no_known_version_is_an_error():
    with pytest.raises(KeyError):
        _from_state(IpAcc, (1, 2, 3))


def test_a_shard_whose_baselines_kept_rows_of_their_own_unites_them_and_judges_on():
    """Before a shard's baselines shared one SubjectRows, each detector's kept its own rows."""
    from tests.flows.test_detection import T0, _feed, _table, ev

    normal = [ev(T0 + 60 * w + i, ip=f"192.0.2.{i % 7}", resource=f"/items/{i}") for w in range(12) for i in range(20)]
    later = [ev(e.ts + 60 * 13, ip=e.client_ip, resource=e.resource) for e in normal[:20]] + [
        ev(T0 + 60 * 13 + i * 0.5, ip="192.0.2.3", method="POST", resource="/login", status=401) for i in range(60)
    ]  # one of them guesses passwords
    shard = IpShard(Config())
    _feed(shard, normal)
    old = pickle.loads(pickle.dumps(shard))
    for group in ("subject_rows", "horizon_rows"):  # laid out as before: the rows of the subjects each one learned
        shared = getattr(old, group)
        for b in shared.members:
            own = SubjectRows()
            own.rows = {s: r for s, r in shared.rows.items() if b.history(s)}
            own.size, own.members = shared.size, [b]
            b.index = own
        delattr(old, group)
    resumed = pickle.loads(pickle.dumps(old))
    subjects = sorted(shard.subject_rows.rows)
    for group in ("subject_rows", "horizon_rows"):
        members = getattr(resumed, group).members
        assert members and all(b.index is getattr(resumed, group) for b in members)
        for a, b in zip(getattr(shard, group).members, members, strict=True):
            assert [a.history(s) for s in subjects] == [b.history(s) for s in subjects]

    def judged(out):
        return sorted((f[2], f[6], f[8], f[7]) for f in _table(out, "findings"))

    assert judged(_feed(resumed, later)) == judged(_feed(shard, later)) != []
