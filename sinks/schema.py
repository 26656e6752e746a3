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
    "decisions": pa.schema(
        [
            ("decision_id", pa.string()),
            ("finding_id", pa.string()),
            ("subject_type", pa.string()),
            ("subject", pa.string()),
            ("subject_name", pa.string()),
            ("action", pa.string()),
            ("tier", pa.string()),
            ("limit_per_min", pa.int64()),
            ("mode", pa.string()),
            ("status", pa.string()),
            ("reason", pa.string()),
            ("effective_from", _TS),
            ("expires_at", _TS),
            ("created_at", _TS),
        ]
    ),
    "deliveries": pa.schema(
        [
            ("delivery_id", pa.string()),
            ("decision_id", pa.string()),
            ("target", pa.string()),
            ("attempt", pa.int64()),
            ("request", pa.string()),
            ("outcome", pa.string()),  # "sent" | "retry" | "dead_letter"
            ("http_status", pa.int64()),
            ("error", pa.string()),
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
