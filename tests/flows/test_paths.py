"""Endpoint folding and path flags, over generated paths."""

from __future__ import annotations

from itertools import accumulate

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gatewatch.flows import features
from gatewatch.flows.features import _ID, _LAST_NUMBER, classify, endpoint, endpoint_of, sequential_ids

# segments of every kind the folding and the flags look at: ids of each shape, templates,
# login and sensitive names, static and sensitive extensions, dot-files, near-misses
_SEGMENT = st.one_of(
    st.sampled_from(
        [
            "", "items", "v1", "oauth2", "oauth", "token", "login", "wp-login.php", "Sign-In", ".git", ".well-known",
            "HEAD", "id_rsa", "backup.sql", "app.js", "x.BAK", "{sku}", "{a}b", "deadbeef", "DEADBEEF-00",
            "ACC-293156", "ord_12", "abcdefghijklm1", "12.js", "42", "0042", "a-b", "é1", "1\n",
        ]
    ),  # fmt: skip
    st.from_regex(_ID, fullmatch=True),
    st.text(alphabet="aZ09-_.{}~é%", max_size=14),
)
_PATH = st.builds(
    lambda lead, segs, query: lead + "/".join(segs) + query,
    st.sampled_from(["/", "", "//"]),
    st.lists(_SEGMENT, max_size=6),
    st.sampled_from(["", "?q=1/2", "?"]),
)


def _fold_each_segment(resource: str) -> str:
    """The definition: a non-empty segment that is an id (templates aside) becomes ``{id}``."""
    path = resource.partition("?")[0]
    return "/".join(s if not s or s.startswith("{") or not _ID.fullmatch(s) else "{id}" for s in path.split("/"))


@settings(max_examples=1000, deadline=None)
@given(_PATH)
def test_endpoint_folds_exactly_the_id_segments(resource):
    assert endpoint(resource) == _fold_each_segment(resource)


@settings(max_examples=1000, deadline=None)
@given(_PATH)
def test_the_cached_folding_is_the_folding(resource):
    assert endpoint_of(resource) == endpoint(resource)
    assert endpoint_of(resource) == endpoint(resource)  # now from a cache


def test_paths_of_one_shape_share_a_cache_entry():
    features._shapes.clear()
    features._endpoints.clear()
    assert [endpoint_of(p) for p in ("/orders/80412", "/orders/11", "/orders/99", "/orders/x-1/a2")] == [
        "/orders/{id}", "/orders/{id}", "/orders/{id}", "/orders/{id}/{id}",
    ]  # fmt: skip
    assert len(features._shapes) == 3 and not features._endpoints  # /orders/00000, /orders/00, /orders/x-0/a0
    # digits outside the ids: the shape keeps a 0, so each path is folded itself
    folded = [endpoint_of(p) for p in ("/abc1x/7", "/abc2x/7", "/\ud800/10")]
    assert folded == ["/abc1x/{id}", "/abc2x/{id}", "/\ud800/{id}"]
    assert len(features._endpoints) == 2


@settings(max_examples=1000, deadline=None)
@given(_PATH)
def test_folding_ids_never_changes_the_flags(resource):
    # the IP windows classify the endpoint, not the concrete path, so one-off ids hit the cache
    assert classify(endpoint(resource)) == classify(resource)


def _sequential_ids_by_regex(paths: list[str]) -> int:
    """The definition: group paths by all but their last number (at most 12 digits), count ids in sequence."""
    groups: dict[str, set[int]] = {}
    for p in paths:
        m = _LAST_NUMBER.search(p)
        if m is not None and len(m.group()) <= 12:
            groups.setdefault(p[: m.start()] + "#" + p[m.end() :], set()).add(int(m.group()))
    return max((sum(1 for i in ids if i - 1 in ids or i - 2 in ids) for ids in groups.values()), default=0)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.text(alphabet="/a-_.09\n", max_size=16), max_size=12), st.lists(st.integers(1, 3), max_size=150))
@example([], [1, 2, 3] * 40)  # past _NUMPY_IDS
def test_sequential_ids_counts_the_last_number_of_each_path(paths, gaps):
    paths += [f"/items/{i}" for i in accumulate(gaps, initial=100)]  # runs with gaps next to the noise
    assert sequential_ids(paths) == _sequential_ids_by_regex(paths)
