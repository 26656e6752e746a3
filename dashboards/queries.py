"""Every query of the dashboard, run against the store.

Each function takes the store root plus parameters and returns a polars
DataFrame (or a small dataclass for single numbers). Aggregation happens in
DuckDB, so a page stays fast on millions of stored rows; values reach SQL only
as bound parameters, and the few SQL fragments that vary (the column a subject
type maps to) come from fixed tables in this module. Timestamps come back as
UTC-aware datetimes.

Time ranges are half-open, ``[since, until)``, on event time: the traffic and
findings ``window_start``, the decisions ``effective_from``, the incidents
``last_seen``. ``None`` leaves that side open. Rejected lines and deliveries
carry only wall-clock times, so their queries take no range.

``decisions`` and ``incidents`` are append-only state logs: their current
state is the latest row per id by ``changed_at``, and that is what is counted.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb
import polars as pl
import polars.selectors as cs

from gatewatch.sinks import store
from gatewatch.sinks.control import open_read_only

StoreRoot = str | os.PathLike[str]

SUBJECT_TYPES = ("consumer", "ip", "api")
PENDING_STATUSES = ("pending_review",)
ACTIVE_STATUSES = ("recorded", "approved", "applied")
OPEN_INCIDENT_STATES = ("open", "escalated")
# the traffic columns that identify a subject and name it; IPs have no traffic rows of their own
_TRAFFIC_KEYS = {"consumer": ("consumer", "consumer_name"), "api": ("api", "api")}

_CURRENT_DECISIONS = """
    cur_decisions AS (
        SELECT * FROM decisions
        QUALIFY row_number() OVER (PARTITION BY decision_id ORDER BY changed_at DESC) = 1
    )"""
_CURRENT_INCIDENTS = """
    cur_incidents AS (
        SELECT * FROM incidents
        QUALIFY row_number() OVER (PARTITION BY incident_id ORDER BY changed_at DESC) = 1
    )"""
_SUBJECT_NAME = "coalesce(nullif(subject_name, ''), subject)"
_LIMIT = "CASE WHEN limit_per_min >= 0 THEN limit_per_min END"  # negative: the tier sets no limit


@dataclass(frozen=True)
class OverviewTotals:
    """Headline traffic numbers for one time range."""

    requests: int
    status_4xx: int
    status_5xx: int
    auth_failures: int
    throttled: int
    findings: int
    minutes: int  # minutes with traffic
    last_minute_requests: int  # requests in the newest complete minute with traffic (see complete_until)

    @property
    def errors(self) -> int:
        """Requests answered with a 4xx or 5xx status."""
        return self.status_4xx + self.status_5xx

    def share(self, count: int) -> float | None:
        """``count`` as a share of the requests; ``None`` without requests."""
        return count / self.requests if self.requests else None

    @property
    def requests_per_minute(self) -> float | None:
        """Average requests per minute with traffic; ``None`` without traffic."""
        return self.requests / self.minutes if self.minutes else None


@dataclass(frozen=True)
class ControlState:
    """What gatewatch is doing right now, whatever the time range."""

    open_incidents: int
    pending_review: int
    active_decisions: int
    dead_letters: int  # deliveries that ended in the dead-letter state
    rejected: int  # rejected input lines, all of them


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


@dataclass(frozen=True)
class Freshness:
    """How far the pipeline has got: newest times seen in the store and the control database."""

    newest_event: datetime | None  # newest traffic window_end (event time)
    last_finding: datetime | None  # newest findings detected_at (wall clock)
    last_rejected: datetime | None  # newest rejected ingested_at (wall clock)
    late_requests: int  # requests counted after their window had closed
    watermark: datetime | None  # event time the pipeline has closed windows up to


_local = threading.local()


def _connection() -> duckdb.DuckDBPyConnection:
    """This thread's in-memory DuckDB (one per thread): opening one costs more than most queries."""
    con = getattr(_local, "con", None)
    if con is None:
        con = _local.con = duckdb.connect()
    return con


def _run(root: StoreRoot, sql: str, params: dict | None = None) -> pl.DataFrame:
    # every query re-lists the store's files, so new segments and compactions show at once
    df = pl.from_arrow(store.query(root, sql, params or {}, con=_connection()))
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


def _traffic_keys(subject_type: str) -> tuple[str, str] | None:
    if subject_type not in SUBJECT_TYPES:
        msg = f"subject_type must be one of {', '.join(SUBJECT_TYPES)}, got {subject_type!r}"
        raise ValueError(msg)
    return _TRAFFIC_KEYS.get(subject_type)


def _list(values) -> list[str] | None:
    return None if values is None else list(values)


def data_range(root: StoreRoot) -> DataRange:
    """Return the event-time extent of the stored traffic."""
    sql = """
        SELECT min(window_start) AS first, max(window_start) AS last, max(window_end) AS "end"
        FROM traffic
    """
    return DataRange(**_run(root, sql).row(0, named=True))


def overview_totals(
    root: StoreRoot, since: datetime | None = None, until: datetime | None = None
) -> OverviewTotals:
    """Count requests, errors and findings in a time range, and the requests of its newest complete minute."""
    sql = f"""
        WITH m AS (
            SELECT
                time_bucket(INTERVAL 1 minute, window_start) AS minute,
                sum(requests) AS requests, sum(status_4xx) AS status_4xx, sum(status_5xx) AS status_5xx,
                sum(auth_failures) AS auth_failures, sum(throttled) AS throttled
            FROM traffic
            WHERE {_range("window_start")}
            GROUP BY 1
        )
        SELECT
            coalesce(sum(requests), 0)::BIGINT AS requests,
            coalesce(sum(status_4xx), 0)::BIGINT AS status_4xx,
            coalesce(sum(status_5xx), 0)::BIGINT AS status_5xx,
            coalesce(sum(auth_failures), 0)::BIGINT AS auth_failures,
            coalesce(sum(throttled), 0)::BIGINT AS throttled,
            (SELECT count(*) FROM findings WHERE {_range("window_start")}) AS findings,
            count(*) AS minutes,
            coalesce(
                arg_max(requests, minute) FILTER (WHERE $complete IS NULL OR minute + INTERVAL 1 minute <= $complete),
                0
            )::BIGINT AS last_minute_requests
        FROM m
    """
    params = {**_range_params(since, until), "complete": complete_until(root)}
    return OverviewTotals(**_run(root, sql, params).row(0, named=True))


def complete_until(root: StoreRoot) -> datetime | None:
    """Event time up to which every shard has written its windows (the control plane's watermark).

    A minute after it may hold some shards' rows and not yet the others': not a rate to show.
    None when the store has no control plane (every minute is then taken as complete).
    """
    rows = _control_rows(root, "SELECT value FROM meta WHERE key = 'watermark'")
    return datetime.fromtimestamp(float(rows[0][0]), timezone.utc) if rows else None


def control_state(root: StoreRoot) -> ControlState:
    """Count open incidents, decisions by current state, dead letters and rejected lines."""
    sql = f"""
        WITH {_CURRENT_DECISIONS}, {_CURRENT_INCIDENTS}
        SELECT
            (SELECT count(*) FROM cur_incidents WHERE list_contains($open, state)) AS open_incidents,
            (SELECT count(*) FROM cur_decisions WHERE list_contains($pending, status)) AS pending_review,
            (SELECT count(*) FROM cur_decisions WHERE list_contains($active, status)) AS active_decisions,
            (SELECT count(DISTINCT delivery_id) FROM deliveries WHERE outcome = 'dead_letter')
                AS dead_letters,
            (SELECT count(*) FROM rejected) AS rejected
    """
    params = {
        "open": list(OPEN_INCIDENT_STATES),
        "pending": list(PENDING_STATUSES),
        "active": list(ACTIVE_STATUSES),
    }
    return ControlState(**_run(root, sql, params).row(0, named=True))


def requests_per_minute(
    root: StoreRoot, since: datetime | None = None, until: datetime | None = None
) -> pl.DataFrame:
    """Traffic per minute with its rates, and the number of findings whose window starts in it.

    Returns:
        Columns ``minute``, ``requests``, ``errors`` (4xx + 5xx),
        ``auth_failures``, ``throttled``, ``late_requests``, ``error_rate``,
        ``auth_failure_rate``, ``throttled_share`` (0..1, null without
        requests), ``events_per_s`` and ``findings``; one row per minute with
        traffic or findings, oldest first.
    """
    sql = f"""
        WITH t AS (
            SELECT
                time_bucket(INTERVAL 1 minute, window_start) AS minute,
                sum(requests)::BIGINT AS requests,
                sum(status_4xx + status_5xx)::BIGINT AS errors,
                sum(auth_failures)::BIGINT AS auth_failures,
                sum(throttled)::BIGINT AS throttled,
                sum(late_requests)::BIGINT AS late_requests
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
            coalesce(t.late_requests, 0)::BIGINT AS late_requests,
            t.errors / nullif(t.requests, 0) AS error_rate,
            t.auth_failures / nullif(t.requests, 0) AS auth_failure_rate,
            t.throttled / nullif(t.requests, 0) AS throttled_share,
            coalesce(t.requests, 0) / 60.0 AS events_per_s,
            coalesce(f.findings, 0)::BIGINT AS findings
        FROM t FULL OUTER JOIN f ON t.minute = f.minute
        ORDER BY minute
    """
    return _run(root, sql, _range_params(since, until))


def anomalous_windows(
    root: StoreRoot, since: datetime | None = None, until: datetime | None = None
) -> pl.DataFrame:
    """The windows with findings, to mark on charts.

    Returns:
        Columns ``window_start``, ``window_end``, ``findings``, ``max_score``
        and ``subjects`` (their names, comma-separated), oldest first.
    """
    sql = f"""
        SELECT
            window_start, window_end, count(*) AS findings, max(score)::DOUBLE AS max_score,
            string_agg(DISTINCT {_SUBJECT_NAME}, ', ' ORDER BY {_SUBJECT_NAME}) AS subjects
        FROM findings
        WHERE {_range("window_start")}
        GROUP BY window_start, window_end
        ORDER BY window_start, window_end
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


def riskiest_subjects(
    root: StoreRoot, since: datetime | None = None, until: datetime | None = None, limit: int = 10
) -> pl.DataFrame:
    """Consumers, IPs and APIs ranked by their highest finding score in the range.

    Returns:
        Columns ``subject_type``, ``subject``, ``subject_name``, ``findings``,
        ``max_score``, ``kinds`` (comma-separated), ``last_window`` (newest
        window_end), and the ``tier`` / ``status`` of the subject's live
        decision (pending or active), else its newest (null without one);
        highest score first.
    """
    sql = f"""
        WITH {_CURRENT_DECISIONS}, f AS (
            SELECT
                subject_type, subject,
                arg_max({_SUBJECT_NAME}, window_start) AS subject_name,
                count(*) AS findings,
                max(score)::DOUBLE AS max_score,
                string_agg(DISTINCT kind, ', ' ORDER BY kind) AS kinds,
                max(window_end) AS last_window
            FROM findings
            WHERE {_range("window_start")}
            GROUP BY subject_type, subject
        ), d AS (
            -- the subject's decision that is live (pending or active), else its newest
            SELECT subject_type, subject,
                arg_max(tier, (list_contains($live, status), created_at)) AS tier,
                arg_max(status, (list_contains($live, status), created_at)) AS status
            FROM cur_decisions
            GROUP BY subject_type, subject
        )
        SELECT f.subject_type, f.subject, f.subject_name, f.findings, f.max_score, f.kinds,
            f.last_window, d.tier, d.status
        FROM f LEFT JOIN d USING (subject_type, subject)
        ORDER BY f.max_score DESC, f.findings DESC, f.subject
        LIMIT $limit
    """
    params = {**_range_params(since, until), "live": [*PENDING_STATUSES, *ACTIVE_STATUSES], "limit": limit}
    return _run(root, sql, params)


def incidents(
    root: StoreRoot,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    states=None,
    kinds=None,
    subject_types=None,
    min_score: float = 0.0,
    limit: int = 200,
) -> pl.DataFrame:
    """Incidents in their current state; a range keeps those seen in it (by ``last_seen``).

    ``states``, ``kinds`` and ``subject_types`` are collections to keep, or
    ``None`` for all.

    Returns:
        Columns ``incident_id``, ``state``, ``subject_type``, ``subject``,
        ``subject_name``, ``kind``, ``max_score``, ``tier``, ``findings``,
        ``first_seen``, ``last_seen``, ``reasons`` (joined with "; ") and
        ``changed_at``; open ones first, then highest score.
    """
    sql = f"""
        WITH {_CURRENT_INCIDENTS}
        SELECT
            incident_id, state, subject_type, subject, {_SUBJECT_NAME} AS subject_name, kind,
            max_score::DOUBLE AS max_score, tier, findings, first_seen, last_seen,
            array_to_string(reasons, '; ') AS reasons, changed_at
        FROM cur_incidents
        WHERE {_range("last_seen")}
            AND ($states IS NULL OR list_contains($states, state))
            AND ($kinds IS NULL OR list_contains($kinds, kind))
            AND ($types IS NULL OR list_contains($types, subject_type))
            AND max_score >= $min_score
        ORDER BY list_contains($open, state) DESC, max_score DESC, last_seen DESC, incident_id
        LIMIT $limit
    """
    params = {
        **_range_params(since, until),
        "states": _list(states),
        "kinds": _list(kinds),
        "types": _list(subject_types),
        "min_score": min_score,
        "open": list(OPEN_INCIDENT_STATES),
        "limit": limit,
    }
    return _run(root, sql, params)


def finding_facets(root: StoreRoot) -> pl.DataFrame:
    """The subject types and kinds that occur in findings, for filters.

    Returns:
        Columns ``subject_type``, ``kind`` and ``findings``, sorted.
    """
    sql = """
        SELECT subject_type, kind, count(*) AS findings
        FROM findings GROUP BY subject_type, kind ORDER BY subject_type, kind
    """
    return _run(root, sql)


def findings(
    root: StoreRoot,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    kinds=None,
    subject_types=None,
    subject: str | None = None,
    min_score: float = 0.0,
    limit: int = 500,
) -> pl.DataFrame:
    """Findings with their reasons and the decisions they caused, newest window first.

    ``kinds`` and ``subject_types`` are collections to keep, or ``None`` for
    all; ``subject`` keeps one subject id.

    Returns:
        Columns ``finding_id``, ``window_start``, ``window_end``,
        ``subject_type``, ``subject``, ``subject_name`` (the subject id when
        it has no name), ``kind``, ``score``, ``reasons`` (joined with "; "),
        ``detector``, ``decisions`` (how many) and ``decision_status`` (the
        current status of the newest one, null without one).
    """
    sql = f"""
        WITH {_CURRENT_DECISIONS}, d AS (
            SELECT finding_id, count(*) AS decisions, arg_max(status, created_at) AS decision_status
            FROM cur_decisions GROUP BY finding_id
        )
        SELECT
            f.finding_id, f.window_start, f.window_end, f.subject_type, f.subject,
            coalesce(nullif(f.subject_name, ''), f.subject) AS subject_name,
            f.kind, f.score::DOUBLE AS score,
            array_to_string(f.reasons, '; ') AS reasons,
            f.detector,
            coalesce(d.decisions, 0)::BIGINT AS decisions, d.decision_status
        FROM findings f LEFT JOIN d USING (finding_id)
        WHERE {_range("f.window_start")}
            AND ($kinds IS NULL OR list_contains($kinds, f.kind))
            AND ($types IS NULL OR list_contains($types, f.subject_type))
            AND ($subject IS NULL OR f.subject = $subject)
            AND f.score >= $min_score
        ORDER BY f.window_start DESC, f.score DESC, f.finding_id
        LIMIT $limit
    """
    params = {
        **_range_params(since, until),
        "kinds": _list(kinds),
        "types": _list(subject_types),
        "subject": subject,
        "min_score": min_score,
        "limit": limit,
    }
    return _run(root, sql, params)


def recent_findings(
    root: StoreRoot, since: datetime | None = None, until: datetime | None = None, limit: int = 50
) -> pl.DataFrame:
    """The newest findings, as :func:`findings` returns them."""
    return findings(root, since, until, limit=limit)


def finding_evidence(
    root: StoreRoot,
    *,
    finding_ids=None,
    subject_type: str | None = None,
    subject: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pl.DataFrame:
    """What each finding observed against the subject's baseline, one row per feature.

    Reads the ``reasons`` object of a finding's evidence JSON
    (``{feature: {observed, baseline, spread}}``), or the top level when
    there is none; entries without an ``observed`` value are left out.

    Returns:
        Columns ``finding_id``, ``window_start``, ``feature``, ``observed``,
        ``baseline`` and ``spread`` (doubles), oldest window first.
    """
    sql = f"""
        WITH f AS (
            SELECT finding_id, window_start, coalesce(evidence::JSON -> 'reasons', evidence::JSON) AS r
            FROM findings
            WHERE json_valid(evidence)
                AND ($ids IS NULL OR list_contains($ids, finding_id))
                AND ($type IS NULL OR subject_type = $type)
                AND ($subject IS NULL OR subject = $subject)
                AND {_range("window_start")}
        ), e AS (
            SELECT finding_id, window_start, k AS feature, r -> k AS v
            FROM f, unnest(json_keys(r)) AS t(k)
            WHERE json_type(r) = 'OBJECT'
        )
        SELECT
            finding_id, window_start, feature,
            TRY_CAST(v ->> 'observed' AS DOUBLE) AS observed,
            TRY_CAST(v ->> 'baseline' AS DOUBLE) AS baseline,
            TRY_CAST(v ->> 'spread' AS DOUBLE) AS spread
        FROM e
        WHERE json_type(v) = 'OBJECT' AND TRY_CAST(v ->> 'observed' AS DOUBLE) IS NOT NULL
        ORDER BY window_start, finding_id, feature
    """
    params = {
        **_range_params(since, until),
        "ids": _list(finding_ids),
        "type": subject_type,
        "subject": subject,
    }
    return _run(root, sql, params)


def decision_counts(
    root: StoreRoot, since: datetime | None = None, until: datetime | None = None
) -> pl.DataFrame:
    """How many decisions are in each current status; a range counts those by ``effective_from``.

    Returns:
        Columns ``status`` and ``decisions``, sorted by status.
    """
    sql = f"""
        WITH {_CURRENT_DECISIONS}
        SELECT status, count(*) AS decisions FROM cur_decisions
        WHERE {_range("effective_from")}
        GROUP BY status ORDER BY status
    """
    return _run(root, sql, _range_params(since, until))


def current_decisions(
    root: StoreRoot,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    statuses=None,
    finding_ids=None,
    subject_type: str | None = None,
    subject: str | None = None,
    limit: int = 500,
) -> pl.DataFrame:
    """Decisions in their current state (the latest row per decision), newest first.

    A range keeps decisions by ``effective_from``. ``statuses`` and
    ``finding_ids`` are collections to keep, or ``None`` for all.

    Returns:
        Columns ``decision_id``, ``finding_id``, ``subject_type``,
        ``subject``, ``subject_name``, ``action``, ``tier``,
        ``previous_tier``, ``limit_per_min`` (null when the tier sets no
        limit), ``mode``, ``status``,
        ``reason``, ``actor``, ``effective_from``, ``expires_at``,
        ``created_at`` and ``changed_at``.
    """
    sql = f"""
        WITH {_CURRENT_DECISIONS}
        SELECT
            decision_id, finding_id, subject_type, subject, {_SUBJECT_NAME} AS subject_name,
            action, tier, previous_tier, {_LIMIT} AS limit_per_min, mode, status, reason, actor,
            effective_from, expires_at, created_at, changed_at
        FROM cur_decisions
        WHERE {_range("effective_from")}
            AND ($statuses IS NULL OR list_contains($statuses, status))
            AND ($ids IS NULL OR list_contains($ids, finding_id))
            AND ($type IS NULL OR subject_type = $type)
            AND ($subject IS NULL OR subject = $subject)
        ORDER BY created_at DESC, decision_id
        LIMIT $limit
    """
    params = {
        **_range_params(since, until),
        "statuses": _list(statuses),
        "ids": _list(finding_ids),
        "type": subject_type,
        "subject": subject,
        "limit": limit,
    }
    return _run(root, sql, params)


# the columns of a decision's state rows whose changes the decision history shows
DECISION_LOG_TRACKED = ("status", "tier", "limit_per_min", "mode", "actor", "effective_from", "expires_at", "reason")


def decision_log(
    root: StoreRoot, *, subject_type: str | None = None, subject: str | None = None, limit: int = 200
) -> pl.DataFrame:
    """Every state change of the decisions (who did what), newest first.

    Returns:
        Columns ``changed_at``, ``decision_id``, ``subject_type``,
        ``subject_name``, ``status``, ``tier``, ``limit_per_min``, ``mode``,
        ``actor``, ``effective_from``, ``expires_at`` and ``reason``; and for
        each of :data:`DECISION_LOG_TRACKED` a ``before_<column>`` with its
        value in the decision's previous state row, and ``first_state``
        (whether the row is the decision's first, which has none).
    """
    before = ", ".join(f"lag({c}) OVER w AS before_{c}" for c in DECISION_LOG_TRACKED)
    sql = f"""
        WITH states AS (
            SELECT DISTINCT
                changed_at, decision_id, subject_type, {_SUBJECT_NAME} AS subject_name,
                status, tier, {_LIMIT} AS limit_per_min, mode, actor, effective_from, expires_at, reason
            FROM decisions
            WHERE ($type IS NULL OR subject_type = $type) AND ($subject IS NULL OR subject = $subject)
        )
        SELECT *, {before}, row_number() OVER w = 1 AS first_state
        FROM states
        WINDOW w AS (PARTITION BY decision_id ORDER BY changed_at, status, actor)
        ORDER BY changed_at DESC, decision_id
        LIMIT $limit
    """
    return _run(root, sql, {"type": subject_type, "subject": subject, "limit": limit})


def subject_options(
    root: StoreRoot,
    subject_type: str,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 500,
) -> pl.DataFrame:
    """The subjects of one type seen in traffic, subject windows or findings, riskiest then busiest first.

    Returns:
        Columns ``subject``, ``subject_name``, ``requests`` (from traffic,
        else from subject windows, else 0) and ``max_score`` (null without
        findings).
    """
    keys = _traffic_keys(subject_type)
    if keys is None:
        traffic = "SELECT NULL::VARCHAR AS subject, NULL::VARCHAR AS name, 0::BIGINT AS requests WHERE false"
    else:
        key, name = keys
        traffic = f"""
            SELECT {key} AS subject, arg_max({name}, window_start) AS name, sum(requests)::BIGINT AS requests
            FROM traffic WHERE {_range("window_start")} GROUP BY {key}
        """
    sql = f"""
        WITH t AS ({traffic}), w AS (
            SELECT subject, arg_max(nullif(subject_name, ''), window_start) AS name,
                sum(requests)::BIGINT AS requests
            FROM subject_windows WHERE subject_type = $type AND {_range("window_start")} GROUP BY subject
        ), f AS (
            SELECT subject, arg_max(nullif(subject_name, ''), window_start) AS name,
                max(score)::DOUBLE AS max_score
            FROM findings WHERE subject_type = $type AND {_range("window_start")} GROUP BY subject
        )
        SELECT
            subject,
            coalesce(nullif(t.name, ''), w.name, f.name, subject) AS subject_name,
            coalesce(t.requests, w.requests, 0)::BIGINT AS requests,
            f.max_score
        FROM t FULL OUTER JOIN w USING (subject) FULL OUTER JOIN f USING (subject)
        ORDER BY f.max_score DESC NULLS LAST, requests DESC, subject
        LIMIT $limit
    """
    return _run(root, sql, {**_range_params(since, until), "type": subject_type, "limit": limit})


def subject_traffic(
    root: StoreRoot,
    subject_type: str,
    subject: str,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    baseline_minutes: int = 30,
    band_k: float = 3.0,
) -> pl.DataFrame:
    """A consumer's or an API's traffic per minute against its own baseline band.

    Minutes without traffic count as zero. The baseline of a minute is the
    mean of the subject's previous ``baseline_minutes`` minutes (reaching
    back before ``since``), leaving out minutes with a finding on the
    subject, as the detectors do; the band is that mean ± ``band_k``
    standard deviations (not below 0). IPs have no traffic rows: the result
    is then empty.

    Returns:
        Columns ``minute``, ``requests``, ``status_2xx``, ``status_3xx``,
        ``status_4xx``, ``status_5xx``, ``auth_failures``, ``throttled``,
        ``distinct_ips`` (the most in one window), ``baseline``,
        ``band_low``, ``band_high`` (null until there is history) and
        ``max_score`` (of the subject's findings in that minute, null
        without); oldest first.
    """
    keys = _traffic_keys(subject_type)
    if keys is None:
        key_filter = "false"
    else:
        key_filter = f"{keys[0]} = $subject"
    sql = f"""
        WITH t AS (
            SELECT
                time_bucket(INTERVAL 1 minute, window_start) AS minute,
                sum(requests) AS requests, sum(status_2xx) AS status_2xx, sum(status_3xx) AS status_3xx,
                sum(status_4xx) AS status_4xx, sum(status_5xx) AS status_5xx,
                sum(auth_failures) AS auth_failures, sum(throttled) AS throttled,
                max(distinct_ips) AS distinct_ips
            FROM traffic
            WHERE {key_filter}
                AND ($since IS NULL OR window_start >= $since::TIMESTAMPTZ - to_minutes($n::BIGINT))
                AND ($until IS NULL OR window_start < $until)
            GROUP BY 1
        ), f AS (
            SELECT time_bucket(INTERVAL 1 minute, window_start) AS minute, max(score)::DOUBLE AS max_score
            FROM findings
            WHERE subject_type = $type AND subject = $subject
            GROUP BY 1
        ), grid AS (
            SELECT unnest(generate_series(min(minute), max(minute), INTERVAL 1 minute)) AS minute FROM t
        ), g AS (
            SELECT
                grid.minute,
                coalesce(t.requests, 0)::BIGINT AS requests,
                coalesce(t.status_2xx, 0)::BIGINT AS status_2xx,
                coalesce(t.status_3xx, 0)::BIGINT AS status_3xx,
                coalesce(t.status_4xx, 0)::BIGINT AS status_4xx,
                coalesce(t.status_5xx, 0)::BIGINT AS status_5xx,
                coalesce(t.auth_failures, 0)::BIGINT AS auth_failures,
                coalesce(t.throttled, 0)::BIGINT AS throttled,
                coalesce(t.distinct_ips, 0)::BIGINT AS distinct_ips,
                f.max_score
            FROM grid LEFT JOIN t USING (minute) LEFT JOIN f USING (minute)
        ), b AS (
            SELECT
                *,
                avg(CASE WHEN max_score IS NULL THEN requests END) OVER w AS baseline,
                stddev_pop(CASE WHEN max_score IS NULL THEN requests END) OVER w AS spread
            FROM g
            WINDOW w AS (ORDER BY minute ROWS BETWEEN $n PRECEDING AND 1 PRECEDING)
        )
        SELECT
            minute, requests, status_2xx, status_3xx, status_4xx, status_5xx, auth_failures, throttled,
            distinct_ips, baseline,
            greatest(baseline - $k * spread, 0) AS band_low,
            baseline + $k * spread AS band_high,
            max_score
        FROM b
        WHERE $since IS NULL OR minute >= $since
        ORDER BY minute
    """
    params = {
        **_range_params(since, until),
        "type": subject_type,
        "subject": subject,
        "n": baseline_minutes,
        "k": band_k,
    }
    return _run(root, sql, params)


def subject_baseline(
    root: StoreRoot,
    subject_type: str,
    subject: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pl.DataFrame:
    """A subject's windows as the detectors saw them: features beside the baseline they held.

    Reads ``subject_windows`` (every consumer and endpoint, and flagged IPs).
    Baselines are null while the subject has no history of its own.

    Returns:
        Columns ``window_start``, ``window_end``, ``requests``, ``baseline``,
        ``band_low``, ``band_high``, ``distinct_ips``,
        ``distinct_ips_baseline``, ``auth_failure_ratio``,
        ``auth_failure_ratio_baseline``, ``max_score`` (the detectors' top
        score) and ``finding_score`` (of the subject's findings in that
        window, null without); oldest first.
    """
    _traffic_keys(subject_type)
    sql = f"""
        WITH w AS (
            SELECT
                window_start, window_end,
                sum(requests)::BIGINT AS requests,
                max(requests_baseline) AS baseline,
                max(requests_low) AS band_low,
                max(requests_high) AS band_high,
                max(distinct_ips)::BIGINT AS distinct_ips,
                max(distinct_ips_baseline) AS distinct_ips_baseline,
                max(auth_failure_ratio) AS auth_failure_ratio,
                max(auth_failure_ratio_baseline) AS auth_failure_ratio_baseline,
                max(max_score) AS max_score
            FROM subject_windows
            WHERE subject_type = $type AND subject = $subject AND {_range("window_start")}
            GROUP BY window_start, window_end
        ), f AS (
            SELECT window_start, max(score)::DOUBLE AS finding_score
            FROM findings
            WHERE subject_type = $type AND subject = $subject AND {_range("window_start")}
            GROUP BY window_start
        )
        SELECT w.*, f.finding_score
        FROM w LEFT JOIN f USING (window_start)
        ORDER BY window_start
    """
    return _run(root, sql, {**_range_params(since, until), "type": subject_type, "subject": subject})


def subject_breakdown(
    root: StoreRoot,
    subject_type: str,
    subject: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pl.DataFrame:
    """A consumer's traffic per API, or an API's per consumer; empty for IPs.

    Returns:
        Columns ``key`` (the API, or the consumer id), ``name``,
        ``requests``, ``error_share``, ``auth_failures``, ``throttled``,
        ``distinct_ips`` (the most in one window), ``latency_p95_ms``
        (request-weighted mean of the windows' p95) and ``bytes_out``; most
        requests first.
    """
    keys = _traffic_keys(subject_type)
    if keys is None:
        sql = """
            SELECT NULL::VARCHAR AS key, NULL::VARCHAR AS name, 0::BIGINT AS requests,
                NULL::DOUBLE AS error_share, 0::BIGINT AS auth_failures, 0::BIGINT AS throttled,
                0::BIGINT AS distinct_ips, NULL::DOUBLE AS latency_p95_ms, 0::BIGINT AS bytes_out
            WHERE false
        """
        return _run(root, sql)
    key, other = ("api", "api") if subject_type == "consumer" else ("consumer", "consumer_name")
    sql = f"""
        SELECT
            {key} AS key,
            arg_max({other}, window_start) AS name,
            sum(requests)::BIGINT AS requests,
            sum(status_4xx + status_5xx)::DOUBLE / nullif(sum(requests), 0) AS error_share,
            sum(auth_failures)::BIGINT AS auth_failures,
            sum(throttled)::BIGINT AS throttled,
            max(distinct_ips)::BIGINT AS distinct_ips,
            sum(latency_p95_ms * requests)
                / nullif(sum(requests) FILTER (WHERE latency_p95_ms IS NOT NULL), 0)
                AS latency_p95_ms,
            sum(bytes_out)::BIGINT AS bytes_out
        FROM traffic
        WHERE {keys[0]} = $subject AND {_range("window_start")}
        GROUP BY {key}
        ORDER BY requests DESC, key
    """
    return _run(root, sql, {**_range_params(since, until), "subject": subject})


def freshness(root: StoreRoot) -> Freshness:
    """Newest event, finding and rejected line, late requests, and the pipeline's watermark."""
    sql = """
        SELECT
            (SELECT max(window_end) FROM traffic) AS newest_event,
            (SELECT max(detected_at) FROM findings) AS last_finding,
            (SELECT max(ingested_at) FROM rejected) AS last_rejected,
            (SELECT coalesce(sum(late_requests), 0)::BIGINT FROM traffic) AS late_requests
    """
    return Freshness(**_run(root, sql).row(0, named=True), watermark=complete_until(root))


def rejected_by_reason(root: StoreRoot) -> pl.DataFrame:
    """Rejected lines per reason, with the newest one as a sample.

    Returns:
        Columns ``reason``, ``lines``, ``sources`` (how many files),
        ``last_seen`` (wall clock), ``sample_detail`` and ``sample_raw``;
        most lines first.
    """
    sql = """
        SELECT
            reason, count(*) AS lines, count(DISTINCT source) AS sources, max(ingested_at) AS last_seen,
            arg_max(detail, (ingested_at, line_no)) AS sample_detail,
            arg_max(raw, (ingested_at, line_no)) AS sample_raw
        FROM rejected
        GROUP BY reason
        ORDER BY lines DESC, reason
    """
    return _run(root, sql)


def rejected_samples(root: StoreRoot, reason: str | None = None, limit: int = 20) -> pl.DataFrame:
    """The newest rejected lines, of one reason or of all.

    Returns:
        Columns ``ingested_at``, ``source``, ``line_no``, ``offset``,
        ``reason``, ``detail`` and ``raw``.
    """
    sql = """
        SELECT ingested_at, source, line_no, "offset", reason, detail, raw
        FROM rejected
        WHERE $reason IS NULL OR reason = $reason
        ORDER BY ingested_at DESC, source, line_no DESC
        LIMIT $limit
    """
    return _run(root, sql, {"reason": reason, "limit": limit})


def deliveries_by_outcome(root: StoreRoot) -> pl.DataFrame:
    """Delivery attempts per channel, destination and outcome.

    Returns:
        Columns ``channel``, ``destination``, ``outcome``, ``attempts``,
        ``deliveries`` (distinct outbox entries) and ``last_attempt``.
    """
    sql = """
        SELECT
            channel, destination, outcome, count(*) AS attempts,
            count(DISTINCT delivery_id) AS deliveries, max(attempted_at) AS last_attempt
        FROM deliveries
        GROUP BY channel, destination, outcome
        ORDER BY channel, destination, outcome
    """
    return _run(root, sql)


def dead_letters(root: StoreRoot, limit: int = 50) -> pl.DataFrame:
    """The newest deliveries that were given up, with the last error.

    Returns:
        Columns ``attempted_at``, ``channel``, ``destination``, ``ref_id``,
        ``operation``, ``attempt``, ``http_status`` and ``error``.
    """
    sql = """
        SELECT attempted_at, channel, destination, ref_id, operation, attempt, http_status, error
        FROM deliveries
        WHERE outcome = 'dead_letter'
        ORDER BY attempted_at DESC, delivery_id
        LIMIT $limit
    """
    return _run(root, sql, {"limit": limit})


def outbox_backlog(root: StoreRoot) -> pl.DataFrame:
    """Outbox entries per channel and state, from the control database (read-only).

    Returns:
        Columns ``channel``, ``state``, ``entries`` and ``oldest`` (when the
        oldest was queued, UTC); empty without a control database.
    """
    rows = _control_rows(
        root,
        "SELECT channel, state, count(*), min(created_at) FROM outbox "
        "GROUP BY channel, state ORDER BY channel, state",
    )
    return pl.DataFrame(
        rows,
        schema={"channel": pl.String, "state": pl.String, "entries": pl.Int64, "oldest": pl.Float64},
        orient="row",
    ).with_columns((pl.col("oldest") * 1e6).cast(pl.Int64).cast(pl.Datetime("us", "UTC")))


def retryable_dead_letters(root: StoreRoot) -> pl.DataFrame:
    """The outbox's dead letters now, from the control database (read-only): what a retry can send again.

    Returns:
        Columns ``id``, ``channel``, ``destination``, ``ref_id``, ``attempts``
        and ``last_error``, oldest first; empty without a control database.
    """
    rows = _control_rows(
        root,
        "SELECT id, channel, destination, ref_id, attempts, last_error FROM outbox "
        "WHERE state = 'dead_letter' ORDER BY created_at, rowid",
    )
    return pl.DataFrame(
        rows,
        schema={
            "id": pl.String, "channel": pl.String, "destination": pl.String, "ref_id": pl.String,
            "attempts": pl.Int64, "last_error": pl.String,
        },
        orient="row",
    )  # fmt: skip


def dead_letter_retries(root: StoreRoot, limit: int = 50) -> pl.DataFrame:
    """Who retried which dead letters, and when, newest first, from the control database (read-only).

    Returns:
        Columns ``at`` (UTC), ``actor``, ``entry_id``, ``destination`` and ``ref_id``; empty
        without a control database or retries.
    """
    rows = _control_rows(
        root,
        "SELECT r.at, r.actor, r.entry_id, o.destination, o.ref_id FROM retries r "
        f"LEFT JOIN outbox o ON o.id = r.entry_id ORDER BY r.at DESC, r.rowid DESC LIMIT {int(limit)}",
    )
    return pl.DataFrame(
        rows,
        schema={"at": pl.Float64, "actor": pl.String, "entry_id": pl.String, "destination": pl.String, "ref_id": pl.String},
        orient="row",
    ).with_columns((pl.col("at") * 1e6).cast(pl.Int64).cast(pl.Datetime("us", "UTC")))


def _control_rows(root: StoreRoot, sql: str) -> list[tuple]:
    """Run a read-only query on the control database; no rows when it or its tables do not exist yet."""
    con = open_read_only(root, timeout_s=10)
    if con is None:
        return []
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        con.close()


def api_callers(root: StoreRoot) -> tuple[dict, pl.DataFrame] | None:
    """The decision API's counters (``api-stats.json``, written by its process): totals and one row per caller.

    None when the API has never run on this store.
    """
    from gatewatch.flows.control.decision_api import read_stats

    stats = read_stats(root)
    if stats is None:
        return None
    up_s = max(stats["updated_at"] - stats["started_at"], 1.0)
    callers = pl.DataFrame(
        [
            {
                "caller": name,
                "requests": int(c["requests"]),
                "per_s": c["requests"] / up_s,
                "errors": int(c["errors"]),
                "last_seen": datetime.fromtimestamp(c["last_seen"], timezone.utc),
            }
            for name, c in sorted(stats["callers"].items())
        ],
        schema={
            "caller": pl.String, "requests": pl.Int64, "per_s": pl.Float64, "errors": pl.Int64,
            "last_seen": pl.Datetime("us", "UTC"),
        },
    )  # fmt: skip
    for key in ("started_at", "updated_at"):
        stats[key] = datetime.fromtimestamp(stats[key], timezone.utc)
    return stats, callers
