from __future__ import annotations

import re
from datetime import datetime

import pytest
from store_rows import API_A, T0, at, traffic_row

from dashboards import queries
from sinks.store import StoreWriter


def test_overview_totals_counts_everything_without_a_range(store_root):
    assert queries.overview_totals(store_root, None, None) == queries.OverviewTotals(
        requests=1100,
        status_4xx=406,
        status_5xx=6,
        auth_failures=380,
        throttled=15,
        consumers=3,
        findings=2,
        decisions=1,
        rejected=2,
    )


def test_overview_totals_is_half_open_on_window_start(store_root):
    totals = queries.overview_totals(store_root, since=at(2), until=at(4))

    assert totals == queries.OverviewTotals(
        requests=670,
        status_4xx=401,
        status_5xx=3,
        auth_failures=380,
        throttled=15,
        consumers=3,
        findings=2,
        decisions=1,
        rejected=2,  # rejected lines have no event time: always all of them
    )
    assert totals.errors == 404


def test_overview_totals_of_the_last_window_only(store_root):
    totals = queries.overview_totals(store_root, since=at(4))

    assert (totals.requests, totals.consumers, totals.findings, totals.decisions) == (90, 1, 0, 0)


def test_overview_totals_of_an_empty_store_are_zero(tmp_path):
    totals = queries.overview_totals(tmp_path / "missing")

    assert totals == queries.OverviewTotals(0, 0, 0, 0, 0, 0, 0, 0, 0)


def test_overview_totals_rejects_naive_datetimes(store_root):
    naive = datetime(2026, 11, 20, 10, 0)  # noqa: DTZ001
    with pytest.raises(ValueError, match=re.escape("since must be timezone-aware")):
        queries.overview_totals(store_root, since=naive)


def test_requests_per_minute_sums_windows_and_counts_findings(store_root):
    df = queries.requests_per_minute(store_root)

    assert df.columns == ["minute", "requests", "errors", "auth_failures", "throttled", "findings"]
    assert df.rows() == [
        (at(0), 150, 3, 0, 0, 0),
        (at(1), 190, 5, 0, 0, 0),
        (at(2), 310, 151, 140, 10, 1),
        (at(3), 360, 253, 240, 5, 1),
        (at(4), 90, 0, 0, 0, 0),
    ]
    assert str(df["minute"].dtype.time_zone) == "UTC"


def test_requests_per_minute_respects_the_range(store_root):
    df = queries.requests_per_minute(store_root, since=at(1), until=at(3))

    assert df.select("minute", "requests", "findings").rows() == [(at(1), 190, 0), (at(2), 310, 1)]


def test_requests_per_minute_buckets_shorter_windows_by_minute(tmp_path):
    StoreWriter(tmp_path).open().append(
        "traffic",
        [
            traffic_row(0, API_A, "c1", 10, window_s=30),
            traffic_row(0.5, API_A, "c1", 20, s4xx=5, auth=5, window_s=30),
            traffic_row(1, API_A, "c1", 7, window_s=30),
        ],
    )

    df = queries.requests_per_minute(tmp_path)

    assert df.select("minute", "requests", "errors", "auth_failures").rows() == [
        (at(0), 30, 5, 5),
        (at(1), 7, 0, 0),
    ]


def test_top_consumers_ranks_by_requests_with_findings(store_root):
    df = queries.top_consumers(store_root)

    assert df.columns == [
        "consumer",
        "consumer_name",
        "consumer_owner",
        "requests",
        "error_share",
        "auth_failures",
        "distinct_ips",
        "findings",
        "max_score",
    ]
    assert df.drop("error_share").rows() == [
        ("c3", "mallory-app", "mallory", 500, 380, 40, 1, 0.91),
        ("c1", "alice-app", "alice", 450, 0, 3, 0, None),
        ("c2", "bob-app", "bob", 150, 0, 1, 0, None),
    ]
    assert df["error_share"].to_list() == pytest.approx([400 / 500, 9 / 450, 3 / 150])


def test_top_consumers_honours_limit_and_range(store_root):
    df = queries.top_consumers(store_root, since=at(0), until=at(2), limit=1)

    assert df.select("consumer", "requests", "findings").rows() == [("c1", 250, 0)]


def test_recent_findings_newest_first_with_joined_reasons(store_root):
    df = queries.recent_findings(store_root)

    assert df.rows(named=True) == [
        {
            "window_start": at(3),
            "window_end": at(4),
            "subject_type": "ip",
            "subject_name": "203.0.113.7",  # no name: falls back to the subject
            "kind": "scanning",
            "score": 0.97,
            "reasons": "requests to 12 consumers; auth failures 240 vs baseline 3",
            "detector": "ip_fanout",
        },
        {
            "window_start": at(2),
            "window_end": at(3),
            "subject_type": "consumer",
            "subject_name": "mallory-app",
            "kind": "credential_stuffing",
            "score": 0.91,
            "reasons": "auth failures 140 vs baseline 2; 25 distinct IPs",
            "detector": "auth_rate",
        },
    ]


def test_recent_findings_honours_limit_and_range(store_root):
    assert queries.recent_findings(store_root, limit=1)["subject_name"].to_list() == ["203.0.113.7"]
    assert queries.recent_findings(store_root, until=at(3))["subject_name"].to_list() == ["mallory-app"]
    assert queries.recent_findings(store_root, since=at(4)).height == 0


def test_data_range_spans_the_traffic(store_root):
    rng = queries.data_range(store_root)

    assert rng == queries.DataRange(first=T0, last=at(4), end=at(5))
    assert not rng.empty


def test_data_range_of_an_empty_store_is_empty(tmp_path):
    StoreWriter(tmp_path).open()

    rng = queries.data_range(tmp_path)

    assert rng == queries.DataRange(None, None, None)
    assert rng.empty
