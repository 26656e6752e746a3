"""Every dashboard query against the hand-made store of ``store_rows`` (numbers derived by hand there)."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from store_rows import API_A, API_B, LOGIN, SCANNER, T0, at, traffic_row, ts

from gatewatch.dashboards import queries
from gatewatch.sinks.control import ControlDB
from gatewatch.sinks.store import StoreWriter


def test_overview_totals_counts_everything_without_a_range(store_root):
    totals = queries.overview_totals(store_root, None, None)

    assert totals == queries.OverviewTotals(
        requests=1100,
        status_4xx=406,
        status_5xx=6,
        auth_failures=380,
        throttled=15,
        findings=2,
        minutes=5,
        last_minute_requests=90,
    )
    assert totals.errors == 412
    assert totals.share(totals.auth_failures) == pytest.approx(380 / 1100)
    assert totals.requests_per_minute == pytest.approx(220.0)


def test_overview_totals_is_half_open_on_window_start(store_root):
    totals = queries.overview_totals(store_root, since=at(2), until=at(4))

    assert totals == queries.OverviewTotals(
        requests=670,
        status_4xx=401,
        status_5xx=3,
        auth_failures=380,
        throttled=15,
        findings=2,
        minutes=2,
        last_minute_requests=360,
    )


def test_overview_totals_of_an_empty_store_are_zero(tmp_path):
    totals = queries.overview_totals(tmp_path / "missing")

    assert totals == queries.OverviewTotals(0, 0, 0, 0, 0, 0, 0, 0)
    assert totals.share(0) is None
    assert totals.requests_per_minute is None


def test_queries_reject_naive_datetimes(store_root):
    naive = datetime(2026, 11, 20, 10, 0)  # noqa: DTZ001
    with pytest.raises(ValueError, match=re.escape("since must be timezone-aware")):
        queries.overview_totals(store_root, since=naive)
    with pytest.raises(ValueError, match=re.escape("until must be timezone-aware")):
        queries.findings(store_root, until=naive)


def test_control_state_counts_current_states_not_log_rows(store_root):
    # i1 open -> escalated (open), i2 open -> resolved; d1 -> reverted, d2 pending, d3 -> applied, d4 recorded
    assert queries.control_state(store_root) == queries.ControlState(
        open_incidents=1, pending_review=1, active_decisions=2, dead_letters=1, rejected=3
    )


def test_requests_per_minute_sums_windows_with_rates_and_findings(store_root):
    df = queries.requests_per_minute(store_root)

    assert df.select(
        "minute", "requests", "errors", "auth_failures", "throttled", "late_requests", "findings"
    ).rows() == [
        (at(0), 150, 3, 0, 0, 0, 0),
        (at(1), 190, 5, 0, 0, 0, 0),
        (at(2), 310, 151, 140, 10, 0, 1),
        (at(3), 360, 253, 240, 5, 0, 1),
        (at(4), 90, 0, 0, 0, 4, 0),
    ]
    assert df["error_rate"].to_list() == pytest.approx([3 / 150, 5 / 190, 151 / 310, 253 / 360, 0])
    assert df["auth_failure_rate"].to_list() == pytest.approx([0, 0, 140 / 310, 240 / 360, 0])
    assert df["throttled_share"].to_list() == pytest.approx([0, 0, 10 / 310, 5 / 360, 0])
    assert df["events_per_s"].to_list() == pytest.approx([2.5, 190 / 60, 310 / 60, 6.0, 1.5])
    assert str(df["minute"].dtype.time_zone) == "UTC"


def test_requests_per_minute_respects_the_range_and_buckets_short_windows(store_root, tmp_path):
    assert queries.requests_per_minute(store_root, since=at(1), until=at(3)).select(
        "minute", "requests"
    ).rows() == [
        (at(1), 190),
        (at(2), 310),
    ]
    StoreWriter(tmp_path).open().append(
        "traffic",
        [
            traffic_row(0, API_A, "c1", 10, window_s=30),
            traffic_row(0.5, API_A, "c1", 20, s4xx=5, auth=5, window_s=30),
        ],
    )
    df = queries.requests_per_minute(tmp_path)
    assert df.select("minute", "requests", "errors", "auth_failures").rows() == [(at(0), 30, 5, 5)]


def test_anomalous_windows_name_the_flagged_subjects(store_root):
    assert queries.anomalous_windows(store_root).rows() == [
        (at(2), at(3), 1, 0.91, "mallory-app"),
        (at(3), at(4), 1, 0.97, SCANNER),  # no name: the subject id
    ]
    assert queries.anomalous_windows(store_root, since=at(3)).height == 1


def test_top_consumers_ranks_by_requests_with_findings(store_root):
    df = queries.top_consumers(store_root)

    assert df.drop("error_share").rows() == [
        ("c3", "mallory-app", "mallory", 500, 380, 40, 1, 0.91),
        ("c1", "alice-app", "alice", 450, 0, 3, 0, None),
        ("c2", "bob-app", "bob", 150, 0, 1, 0, None),
    ]
    assert df["error_share"].to_list() == pytest.approx([400 / 500, 9 / 450, 3 / 150])
    assert queries.top_consumers(store_root, since=at(0), until=at(2), limit=1).select(
        "consumer", "requests"
    ).rows() == [("c1", 250)]


def test_riskiest_subjects_show_the_live_decision(store_root):
    df = queries.riskiest_subjects(store_root)

    assert df.select("subject_type", "subject", "subject_name", "findings", "max_score", "kinds").rows() == [
        ("ip", SCANNER, SCANNER, 1, 0.97, "scanning"),
        ("consumer", "c3", "mallory-app", 1, 0.91, "credential_stuffing"),
    ]
    assert df["last_window"].to_list() == [at(4), at(3)]
    # c3's newest change is d1's revert, but d3 is still applied: that is what matters now
    assert df.select("tier", "status").rows() == [("blocked", "pending_review"), ("restricted", "applied")]


def test_incidents_are_current_states_open_first(store_root):
    df = queries.incidents(store_root)

    assert df.select("incident_id", "state", "subject_name", "max_score", "findings").rows() == [
        ("i1", "escalated", "mallory-app", 0.95, 2),
        ("i2", "resolved", SCANNER, 0.97, 1),
    ]
    assert df["reasons"].to_list() == ["credential_stuffing on mallory-app", f"scanning on {SCANNER}"]
    assert queries.incidents(store_root, states=queries.OPEN_INCIDENT_STATES)["incident_id"].to_list() == [
        "i1"
    ]
    assert queries.incidents(store_root, subject_types=["ip"])["incident_id"].to_list() == ["i2"]
    assert queries.incidents(store_root, kinds=["scanning"], min_score=0.96)["incident_id"].to_list() == [
        "i2"
    ]
    assert queries.incidents(store_root, since=at(5)).height == 0


def test_findings_filter_and_count_the_decisions_they_caused(store_root):
    df = queries.findings(store_root)

    assert df.select(
        "finding_id", "subject_name", "kind", "score", "decisions", "decision_status"
    ).rows() == [
        ("f2", SCANNER, "scanning", 0.97, 1, "pending_review"),
        ("f1", "mallory-app", "credential_stuffing", 0.91, 3, "applied"),
    ]
    assert df["reasons"].to_list() == [
        "requests to 12 consumers; auth failures 240 vs baseline 3",
        "auth failures 140 vs baseline 2; 25 distinct IPs",
    ]
    assert queries.findings(store_root, kinds=["credential_stuffing"])["finding_id"].to_list() == ["f1"]
    assert queries.findings(store_root, subject_types=["ip"])["finding_id"].to_list() == ["f2"]
    assert queries.findings(store_root, subject="c3")["finding_id"].to_list() == ["f1"]
    assert queries.findings(store_root, min_score=0.95)["finding_id"].to_list() == ["f2"]
    assert queries.findings(store_root, until=at(3))["finding_id"].to_list() == ["f1"]
    assert queries.recent_findings(store_root, limit=1)["finding_id"].to_list() == ["f2"]


def test_finding_facets_list_types_and_kinds(store_root):
    assert queries.finding_facets(store_root).rows() == [
        ("consumer", "credential_stuffing", 1),
        ("ip", "scanning", 1),
    ]


def test_finding_evidence_reads_observed_against_baseline(store_root):
    df = queries.finding_evidence(store_root)

    assert df.rows() == [
        ("f1", at(2), "auth_failure_ratio", 0.7, 0.01, 0.05),
        ("f1", at(2), "distinct_ips", 25.0, 1.5, 0.5),
        ("f2", at(3), "consumers", 12.0, 1.0, 0.5),  # top-level shape; "note" has no observed value
    ]
    assert queries.finding_evidence(store_root, finding_ids=["f2"])["feature"].to_list() == ["consumers"]
    assert queries.finding_evidence(store_root, subject_type="consumer", subject="c3").height == 2
    assert queries.finding_evidence(store_root, since=at(3))["finding_id"].to_list() == ["f2"]


def test_current_decisions_are_the_latest_state_per_decision(store_root):
    df = queries.current_decisions(store_root)

    assert df.select("decision_id", "status", "actor", "tier", "limit_per_min").rows() == [
        ("d2", "pending_review", "policy", "blocked", 0),
        ("d3", "applied", "policy", "restricted", 10),
        ("d1", "reverted", "alice", "restricted", 10),
        ("d4", "recorded", "policy", "elevated", None),  # the tier sets no limit
    ]
    assert df["subject_name"].to_list() == [SCANNER, "mallory-app", "mallory-app", LOGIN]
    active = queries.current_decisions(store_root, statuses=queries.ACTIVE_STATUSES)
    assert active["decision_id"].to_list() == ["d3", "d4"]
    assert queries.current_decisions(store_root, finding_ids=["f1"])["decision_id"].to_list() == [
        "d3",
        "d1",
        "d4",
    ]
    assert queries.current_decisions(store_root, subject_type="ip", subject=SCANNER)[
        "decision_id"
    ].to_list() == ["d2"]
    # the range is on effective_from: d4 took effect at minute 2, d1 at minute 3, d2 and d3 at minute 4
    assert queries.current_decisions(store_root, since=at(3), until=at(4))["decision_id"].to_list() == ["d1"]


def test_decision_counts_and_log(store_root):
    assert queries.decision_counts(store_root).rows() == [
        ("applied", 1),
        ("pending_review", 1),
        ("recorded", 1),
        ("reverted", 1),
    ]

    log = queries.decision_log(store_root)
    assert log.select("decision_id", "status", "actor").rows() == [
        ("d1", "reverted", "alice"),
        ("d3", "applied", "policy"),
        ("d3", "approved", "policy"),
        ("d2", "pending_review", "policy"),
        ("d1", "approved", "policy"),
        ("d4", "recorded", "policy"),
    ]
    assert log["changed_at"].to_list() == [at(10), at(4.5), at(4.3), at(4.2), at(3.2), at(2.2)]
    assert log["limit_per_min"].to_list() == [10, 10, 10, 0, 10, None]
    assert queries.decision_log(store_root, subject_type="ip", subject=SCANNER)["decision_id"].to_list() == [
        "d2"
    ]


def test_subject_options_riskiest_then_busiest(store_root):
    assert queries.subject_options(store_root, "consumer").rows() == [
        ("c3", "mallory-app", 500, 0.91),
        ("c1", "alice-app", 450, None),
        ("c2", "bob-app", 150, None),
    ]
    # IPs and endpoints have no traffic rows: their requests come from subject windows
    assert queries.subject_options(store_root, "ip").rows() == [(SCANNER, SCANNER, 310, 0.97)]
    assert queries.subject_options(store_root, "api").rows() == [
        (API_A, API_A, 1070, None),
        (LOGIN, LOGIN, 300, None),
        (API_B, API_B, 30, None),
    ]
    assert queries.subject_options(store_root, "consumer", since=at(4)).rows() == [
        ("c1", "alice-app", 90, None)
    ]
    with pytest.raises(ValueError, match="subject_type must be one of consumer, ip, api"):
        queries.subject_options(store_root, "user")


def test_subject_traffic_fills_gaps_and_bands_the_previous_minutes(store_root):
    df = queries.subject_traffic(store_root, "consumer", "c1", baseline_minutes=2, band_k=3.0)

    # c1: 100, 150 (two APIs), 110, nothing in minute 3, 90
    assert df.select("minute", "requests", "status_4xx", "status_5xx", "distinct_ips").rows() == [
        (at(0), 100, 2, 1, 2),
        (at(1), 150, 3, 2, 3),
        (at(2), 110, 1, 0, 1),
        (at(3), 0, 0, 0, 0),
        (at(4), 90, 0, 0, 1),
    ]
    assert df["baseline"].to_list()[1:] == pytest.approx([100, 125, 130, 55])
    assert df["baseline"][0] is None
    sd = [0, 25, 20, 55]  # population sd of the previous two minutes
    assert df["band_high"].to_list()[1:] == pytest.approx(
        [b + 3 * s for b, s in zip([100, 125, 130, 55], sd, strict=True)]
    )
    assert df["band_low"].to_list()[1:] == pytest.approx([100, 50, 70, 0])  # never below 0

    later = queries.subject_traffic(store_root, "consumer", "c1", since=at(3), baseline_minutes=2)
    assert later.select("minute", "requests", "baseline").rows() == [(at(3), 0, 130.0), (at(4), 90, 55.0)]


def test_subject_traffic_leaves_flagged_minutes_out_of_the_baseline(store_root):
    df = queries.subject_traffic(store_root, "consumer", "c3")

    assert df.select("minute", "requests", "max_score").rows() == [(at(2), 200, 0.91), (at(3), 300, None)]
    # minute 2 had a finding, so minute 3 has no baseline yet
    assert df["baseline"].to_list() == [None, None]


def test_subject_traffic_of_an_api_and_of_an_ip(store_root):
    api = queries.subject_traffic(store_root, "api", API_B)
    assert api.select("minute", "requests").rows() == [(at(1), 30)]
    assert queries.subject_traffic(store_root, "ip", SCANNER).height == 0


def test_subject_baseline_is_the_detectors_view_of_each_window(store_root):
    df = queries.subject_baseline(store_root, "consumer", "c3")

    assert df.select(
        "window_start", "requests", "baseline", "band_low", "band_high", "max_score", "finding_score"
    ).rows() == [
        (at(2), 200, 4.0, 2.0, 8.0, 0.91, 0.91),
        (at(3), 300, 4.5, 2.25, 9.0, 0.3, None),
    ]
    assert df.select("distinct_ips", "distinct_ips_baseline", "auth_failure_ratio").rows() == [
        (25, 1.0, 0.7),
        (40, 1.0, 0.8),
    ]
    ip = queries.subject_baseline(store_root, "ip", SCANNER)
    assert ip.select("requests", "baseline", "distinct_ips", "finding_score").rows() == [
        (310, None, None, 0.97)
    ]
    assert queries.subject_baseline(store_root, "consumer", "c3", since=at(3))["requests"].to_list() == [300]
    assert queries.subject_baseline(store_root, "consumer", "c1").height == 0


def test_subject_breakdown_splits_by_api_or_by_consumer(store_root):
    by_api = queries.subject_breakdown(store_root, "consumer", "c1")
    assert by_api.select("key", "name", "requests", "auth_failures", "distinct_ips", "bytes_out").rows() == [
        (API_A, API_A, 420, 0, 3, 420 * 512),
        (API_B, API_B, 30, 0, 1, 30 * 512),
    ]
    assert by_api["error_share"].to_list() == pytest.approx([7 / 420, 2 / 30])
    assert by_api["latency_p95_ms"].to_list() == pytest.approx([80.0, 80.0])

    by_consumer = queries.subject_breakdown(store_root, "api", API_A, since=at(3))
    assert by_consumer.select("key", "name", "requests").rows() == [
        ("c3", "mallory-app", 300),
        ("c1", "alice-app", 90),
        ("c2", "bob-app", 60),
    ]
    assert queries.subject_breakdown(store_root, "ip", SCANNER).height == 0


def test_freshness_reads_the_store_and_the_watermark(store_root):
    fresh = queries.freshness(store_root)
    assert fresh == queries.Freshness(
        newest_event=at(5), last_finding=at(4.1), last_rejected=at(0.7), late_requests=4, watermark=None
    )

    control = ControlDB(store_root).open()
    control.advance_watermark(ts(4.5))
    control.close()
    assert queries.freshness(store_root).watermark == at(4.5)


def test_rejected_lines_by_reason_with_samples(store_root):
    assert queries.rejected_by_reason(store_root).rows() == [
        ("bad_json", 2, 2, at(0.7), "unexpected end", '{"ts": 2'),
        ("bad_field", 1, 1, at(0.6), "status 'abc'", '{"status": "abc"}'),
    ]
    samples = queries.rejected_samples(store_root, "bad_json")
    assert samples.select("source", "line_no", "offset", "raw").rows() == [
        ("other.log", 2, 40, '{"ts": 2'),
        ("access.log", 7, 812, '{"ts": 1'),
    ]
    assert queries.rejected_samples(store_root, limit=1)["reason"].to_list() == ["bad_json"]


def test_deliveries_by_outcome_and_dead_letters(store_root):
    assert queries.deliveries_by_outcome(store_root).rows() == [
        ("webhook", "hooks", "dead_letter", 1, 1, at(10.5)),
        ("webhook", "hooks", "retry", 3, 2, at(10.1)),
        ("webhook", "hooks", "sent", 1, 1, at(4.9)),
    ]
    assert queries.dead_letters(store_root).rows() == [
        (at(10.5), "webhook", "hooks", "d1", "POST /gatewatch", 2, None, "timed out")
    ]


def test_outbox_backlog_reads_the_control_database_without_creating_it(store_root):
    assert queries.outbox_backlog(store_root).height == 0
    assert not (store_root / "control.sqlite").exists()

    control = ControlDB(store_root).open()
    control.enqueue("o1", "webhook", "hooks", "d3", {"a": 1}, not_before=ts(5))
    control.enqueue("o2", "webhook", "hooks", "d1", {"a": 2}, not_before=ts(5))
    control.enqueue("o3", "wso2", "apim", "d1", {"a": 3}, not_before=ts(5))
    control.settle("o2", state="dead_letter", attempts=8, next_at=ts(6), last_error="timed out")
    control.close()

    df = queries.outbox_backlog(store_root)
    assert df.select("channel", "state", "entries").rows() == [
        ("webhook", "dead_letter", 1),
        ("webhook", "pending", 1),
        ("wso2", "pending", 1),
    ]
    assert str(df["oldest"].dtype.time_zone) == "UTC"
    assert all(abs((t - datetime.now(T0.tzinfo)).total_seconds()) < 300 for t in df["oldest"])


def test_data_range_spans_the_traffic(store_root, tmp_path):
    rng = queries.data_range(store_root)
    assert rng == queries.DataRange(first=T0, last=at(4), end=at(5))
    assert not rng.empty

    StoreWriter(tmp_path).open()
    assert queries.data_range(tmp_path) == queries.DataRange(None, None, None)
    assert queries.data_range(tmp_path).empty


def test_values_never_become_sql(store_root):
    hostile = "c1' OR '1'='1"
    assert queries.findings(store_root, subject=hostile).height == 0
    assert queries.subject_traffic(store_root, "consumer", hostile).height == 0
    assert queries.rejected_samples(store_root, hostile).height == 0
    assert queries.overview_totals(store_root).requests == 1100
