"""Every SQL query of the dashboard, run against the store.

Each function takes the store root plus parameters and returns a polars
DataFrame (or a small dataclass for single numbers). Aggregation happens in
DuckDB, so a page stays fast on millions of stored rows; values reach SQL only
as bound parameters. Timestamps come back as UTC-aware datetimes.

Time ranges are half-open, ``[since, until)``, on event time: the traffic and
findings ``window_start`` and the decisions ``effective_from``. ``None`` leaves
that side open.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

import polars as pl
import polars.selectors as cs

from sinks import store

StoreRoot = str | os.PathLike[str]


@dataclass(frozen=True)
class OverviewTotals:
    """Headline numbers for one time range."""

    requests: int
    status_4xx: int
    status_5xx: int
    auth_failures: int
    throttled: int
    consumers: int
    findings: int
    decisions: int
    rejected: int

    @property
    def errors(self) -> int:
        """Requests answered with a 4xx or 5xx status."""
        return self.status_4xx + self.status_5xx


@dataclass(frozen=True)
class DataRange:
    """Event-time extent of the traffic in the store; all ``None`` when it has none."""

    first: datetime | None  # oldest window_start
    last: datetime | None  # newest window_start
    end: datetime | None  # newest window_end

    @property
    def empty(self) -> bool:
        """Whether the store holds no traffic yet."""
        return self.last is None


def _run(root: StoreRoot, sql: str, params: dict) -> pl.DataFrame:
    df = pl.from_arrow(store.query(root, sql, params))
    # DuckDB labels TIMESTAMPTZ results with the session (machine) time zone
    return df.with_columns(cs.datetime(time_zone="*").dt.convert_time_zone("UTC"))


def _range(column: str) -> str:
    return f"($since IS NULL OR {column} >= $since) AND ($until IS NULL OR {column} < $until)"


def _range_params(since: datetime | None, until: datetime | None) -> dict[str, datetime | None]:
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            msg = f"{name} must be timezone-aware, got {value!r}"
            raise ValueError(msg)
    return {"since": since, "until": until}


def overview_totals(
    root: StoreRoot, since: datetime | None = None, until: datetime | None = None
) -> OverviewTotals:
    """Count requests, errors, consumers, findings and decisions in a time range.

    Rejected lines carry no event time (only when they were read), so
    ``rejected`` counts all of them, whatever the range. ``consumers`` leaves
    out anonymous traffic (an empty consumer id).
    """
    sql = f"""
        SELECT
            coalesce(sum(requests), 0)::BIGINT AS requests,
            coalesce(sum(status_4xx), 0)::BIGINT AS status_4xx,
            coalesce(sum(status_5xx), 0)::BIGINT AS status_5xx,
            coalesce(sum(auth_failures), 0)::BIGINT AS auth_failures,
            coalesce(sum(throttled), 0)::BIGINT AS throttled,
            count(DISTINCT nullif(consumer, '')) AS consumers,
            (SELECT count(*) FROM findings WHERE {_range("window_start")}) AS findings,
            (SELECT count(*) FROM decisions WHERE {_range("effective_from")}) AS decisions,
            (SELECT count(*) FROM rejected) AS rejected
        FROM traffic
        WHERE {_range("window_start")}
    """
    row = _run(root, sql, _range_params(since, until)).row(0, named=True)
    return OverviewTotals(**row)


def requests_per_minute(
    root: StoreRoot, since: datetime | None = None, until: datetime | None = None
) -> pl.DataFrame:
    """Traffic per minute, with the number of findings whose window starts in it.

    Returns:
        Columns ``minute``, ``requests``, ``errors`` (4xx + 5xx),
        ``auth_failures``, ``throttled``, ``findings``; one row per minute
        with traffic or findings, oldest first.
    """
    sql = f"""
        WITH t AS (
            SELECT
                time_bucket(INTERVAL 1 minute, window_start) AS minute,
                sum(requests)::BIGINT AS requests,
                sum(status_4xx + status_5xx)::BIGINT AS errors,
                sum(auth_failures)::BIGINT AS auth_failures,
                sum(throttled)::BIGINT AS throttled
            FROM traffic
            WHERE {_range("window_start")}
            GROUP BY 1
        ), f AS (
            SELECT time_bucket(INTERVAL 1 minute, window_start) AS minute, count(*) AS findings
            FROM findings
            WHERE {_range("window_start")}
            GROUP BY 1
        )
        SELECT
            coalesce(t.minute, f.minute) AS minute,
            coalesce(t.requests, 0)::BIGINT AS requests,
            coalesce(t.errors, 0)::BIGINT AS errors,
            coalesce(t.auth_failures, 0)::BIGINT AS auth_failures,
            coalesce(t.throttled, 0)::BIGINT AS throttled,
            coalesce(f.findings, 0)::BIGINT AS findings
        FROM t FULL OUTER JOIN f ON t.minute = f.minute
        ORDER BY minute
    """
    return _run(root, sql, _range_params(since, until))


def top_consumers(
    root: StoreRoot, since: datetime | None = None, until: datetime | None = None, limit: int = 10
) -> pl.DataFrame:
    """The consumers with the most requests, with their errors and findings.

    Returns:
        Columns ``consumer``, ``consumer_name``, ``consumer_owner`` (the
        latest seen), ``requests``, ``error_share`` (4xx + 5xx over requests,
        0..1), ``auth_failures``, ``distinct_ips`` (the most in one window),
        ``findings`` and ``max_score`` (null without findings), most requests
        first.
    """
    sql = f"""
        WITH t AS (
            SELECT
                consumer,
                arg_max(consumer_name, window_start) AS consumer_name,
                arg_max(consumer_owner, window_start) AS consumer_owner,
                sum(requests)::BIGINT AS requests,
                sum(status_4xx + status_5xx)::DOUBLE / nullif(sum(requests), 0) AS error_share,
                sum(auth_failures)::BIGINT AS auth_failures,
                max(distinct_ips)::BIGINT AS distinct_ips
            FROM traffic
            WHERE {_range("window_start")}
            GROUP BY consumer
        ), f AS (
            SELECT subject, count(*) AS findings, max(score)::DOUBLE AS max_score
            FROM findings
            WHERE subject_type = 'consumer' AND {_range("window_start")}
            GROUP BY subject
        )
        SELECT
            t.consumer, t.consumer_name, t.consumer_owner, t.requests, t.error_share,
            t.auth_failures, t.distinct_ips,
            coalesce(f.findings, 0)::BIGINT AS findings, f.max_score
        FROM t LEFT JOIN f ON f.subject = t.consumer
        ORDER BY t.requests DESC, t.consumer
        LIMIT $limit
    """
    return _run(root, sql, {**_range_params(since, until), "limit": limit})


def recent_findings(
    root: StoreRoot, since: datetime | None = None, until: datetime | None = None, limit: int = 50
) -> pl.DataFrame:
    """The newest findings, with their reasons as one string.

    Returns:
        Columns ``window_start``, ``window_end``, ``subject_type``,
        ``subject_name`` (the subject id when it has no name), ``kind``,
        ``score``, ``reasons`` (joined with "; ") and ``detector``, newest
        window first.
    """
    sql = f"""
        SELECT
            window_start, window_end, subject_type,
            coalesce(nullif(subject_name, ''), subject) AS subject_name,
            kind, score::DOUBLE AS score,
            array_to_string(reasons, '; ') AS reasons,
            detector
        FROM findings
        WHERE {_range("window_start")}
        ORDER BY window_start DESC, score DESC, finding_id
        LIMIT $limit
    """
    return _run(root, sql, {**_range_params(since, until), "limit": limit})


def data_range(root: StoreRoot) -> DataRange:
    """Return the event-time extent of the stored traffic."""
    sql = """
        SELECT min(window_start) AS first, max(window_start) AS last, max(window_end) AS "end"
        FROM traffic
    """
    return DataRange(**_run(root, sql, {}).row(0, named=True))
