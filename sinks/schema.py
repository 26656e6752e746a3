"""The store's tables: names, columns and Arrow types, in one place.

Writers build rows as tuples in column order; readers get the same columns
from DuckDB. Timestamps are stored as ``TIMESTAMP WITH TIME ZONE`` (UTC).
"""

from __future__ import annotations

import pyarrow as pa

_TS = pa.timestamp("us", tz="UTC")

TABLES: dict[str, pa.Schema] = {
    "traffic": pa.schema(
        [
            ("window_start", _TS),
            ("window_end", _TS),
            ("api", pa.string()),
            ("consumer", pa.string()),
            ("consumer_name", pa.string()),
            ("consumer_owner", pa.string()),
            ("requests", pa.int64()),
            ("status_2xx", pa.int64()),
            ("status_3xx", pa.int64()),
            ("status_4xx", pa.int64()),
            ("status_5xx", pa.int64()),
            ("auth_failures", pa.int64()),
            ("throttled", pa.int64()),
            ("bytes_out", pa.int64()),
            ("latency_p50_ms", pa.float64()),
            ("latency_p95_ms", pa.float64()),
            ("distinct_ips", pa.int64()),
            # requests that arrived after their window had closed; they are
            # counted here (in a row of their own), never dropped
            ("late_requests", pa.int64()),
        ]
    ),
    "findings": pa.schema(
        [
            ("finding_id", pa.string()),
            ("subject_type", pa.string()),
            ("subject", pa.string()),
            ("subject_name", pa.string()),
            ("subject_owner", pa.string()),
            ("kind", pa.string()),
            ("detector", pa.string()),
            ("score", pa.float64()),
            ("window_start", _TS),
            ("window_end", _TS),
            ("detected_at", _TS),
            ("reasons", pa.list_(pa.string())),
            ("evidence", pa.string()),
        ]
    ),
    # per window and subject (every consumer and endpoint, flagged IPs): the main features beside the
    # baseline they were compared with (null while the subject has no history of its own)
    "subject_windows": pa.schema(
        [
            ("window_start", _TS),
            ("window_end", _TS),
            ("subject_type", pa.string()),  # "consumer" | "ip" | "api"
            ("subject", pa.string()),
            ("subject_name", pa.string()),
            ("requests", pa.int64()),
            ("requests_baseline", pa.float64()),
            ("requests_low", pa.float64()),  # baseline band: 2 spreads below / above, in log space
            ("requests_high", pa.float64()),
            ("distinct_ips", pa.int64()),  # null for ip subjects
            ("distinct_ips_baseline", pa.float64()),
            ("auth_failure_ratio", pa.float64()),
            ("auth_failure_ratio_baseline", pa.float64()),
            ("peer_shift", pa.float64()),  # the window's peer-wide rise of requests (log space)
            ("max_score", pa.float64()),  # highest detector score of the window (0-1)
            ("features", pa.string()),  # JSON: every feature of the window
        ]
    ),
    # append-only log: one row per state change of a decision (latest row = current state)
    "decisions": pa.schema(
        [
            ("decision_id", pa.string()),
            ("finding_id", pa.string()),
            ("subject_type", pa.string()),
            ("subject", pa.string()),
            ("subject_name", pa.string()),
            ("action", pa.string()),  # "restrict" | "block" | "revert"
            ("tier", pa.string()),  # "normal" | "elevated" | "restricted" | "blocked"
            ("previous_tier", pa.string()),
            ("limit_per_min", pa.int64()),  # absolute limit pushed to the gateway (0 = block)
            ("mode", pa.string()),  # "dry-run" | "enforce"
            # "recorded" (dry-run) | "pending_review" | "approved" | "applied" | "suppressed"
            # | "rejected" | "expired" | "reverted" | "failed"
            ("status", pa.string()),
            ("reason", pa.string()),
            ("inputs", pa.string()),  # JSON: score, evidence, policy settings used
            ("actor", pa.string()),  # "policy" or the person who approved / reverted
            ("effective_from", _TS),  # event time of the window that caused it
            ("expires_at", _TS),  # event time after which it reverts by itself
            ("created_at", _TS),  # wall clock
            ("changed_at", _TS),  # wall clock of this state change
        ]
    ),
    # append-only log: one row per state change of an incident
    "incidents": pa.schema(
        [
            ("incident_id", pa.string()),
            ("subject_type", pa.string()),
            ("subject", pa.string()),
            ("subject_name", pa.string()),
            ("kind", pa.string()),
            ("state", pa.string()),  # "open" | "escalated" | "resolved"
            ("max_score", pa.float64()),
            ("tier", pa.string()),
            ("findings", pa.int64()),
            ("first_seen", _TS),  # event time
            ("last_seen", _TS),
            ("reasons", pa.list_(pa.string())),
            ("changed_at", _TS),
        ]
    ),
    # one row per delivery attempt (gateway calls and alert notifications)
    "deliveries": pa.schema(
        [
            ("delivery_id", pa.string()),  # outbox id: deterministic, the same across retries
            ("channel", pa.string()),  # "wso2" | "kong" | "webhook" | "slack" | "pagerduty" | ...
            ("destination", pa.string()),  # configured destination name
            ("ref_id", pa.string()),  # decision_id or incident_id
            ("attempt", pa.int64()),
            ("operation", pa.string()),  # e.g. "POST /throttling/deny-policies"
            ("outcome", pa.string()),  # "sent" | "retry" | "dead_letter" | "skipped"
            ("http_status", pa.int64()),
            ("error", pa.string()),
            ("latency_ms", pa.float64()),
            ("attempted_at", _TS),
        ]
    ),
    "rejected": pa.schema(
        [
            ("source", pa.string()),
            ("line_no", pa.int64()),
            ("offset", pa.int64()),
            ("reason", pa.string()),
            ("detail", pa.string()),
            ("raw", pa.string()),
            ("ingested_at", _TS),
        ]
    ),
}

TIMESTAMP_COLUMNS: dict[str, frozenset[str]] = {
    name: frozenset(f.name for f in schema if pa.types.is_timestamp(f.type)) for name, schema in TABLES.items()
}
