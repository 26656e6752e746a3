"""gatewatch dashboard: traffic, top consumers and findings, refreshed live.

Run with ``streamlit run dashboards/app.py -- --store DIR``; without
``--store`` the store is ``$GATEWATCH_STORE``, else ``./gatewatch-data``.
``$GATEWATCH_REFRESH_S`` sets the refresh interval in seconds (default 5,
0 turns it off).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from datetime import timedelta
from pathlib import Path

import altair as alt
import duckdb
import polars as pl
import streamlit as st

# `streamlit run` puts only this file's folder on sys.path; when gatewatch is
# not installed, the repository root must be added for `dashboards` and `sinks`
_REPO_ROOT = str(Path(__file__).resolve().parents[1])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from dashboards import queries  # noqa: E402

DEFAULT_STORE = "gatewatch-data"
DEFAULT_REFRESH_S = 5.0
TIME_RANGES: dict[str, timedelta | None] = {
    "Last 15 min": timedelta(minutes=15),
    "Last 1 h": timedelta(hours=1),
    "Last 6 h": timedelta(hours=6),
    "Last 24 h": timedelta(hours=24),
    "All": None,
}
DEFAULT_TIME_RANGE = "Last 1 h"


def store_root() -> Path:
    """Return the store folder: ``--store``, then ``$GATEWATCH_STORE``, then the default."""
    # add_help/allow_abbrev off: under AppTest sys.argv holds pytest's arguments
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--store", type=Path)
    args, _ = parser.parse_known_args()
    return args.store or Path(os.environ.get("GATEWATCH_STORE") or DEFAULT_STORE)


def refresh_seconds() -> float:
    """Return the refresh interval from ``$GATEWATCH_REFRESH_S``; 0 means no auto-refresh."""
    raw = os.environ.get("GATEWATCH_REFRESH_S", "").strip()
    if not raw:
        return DEFAULT_REFRESH_S
    with contextlib.suppress(ValueError):
        value = float(raw)
        if 0 <= value < math.inf:
            return value
    st.sidebar.warning(
        f"GATEWATCH_REFRESH_S={raw!r} is not a number of seconds; using {DEFAULT_REFRESH_S:g} s."
    )
    return DEFAULT_REFRESH_S


def first_run(root: Path) -> None:
    """Explain how to fill an empty or missing store."""
    where = "does not exist yet" if not root.exists() else "holds no traffic yet"
    st.info(
        f"""
The store `{root}` {where}. Run the pipeline to fill it, for example:

```console
gatewatch replay sample_logs/*.log    # replay past logs, on their own timestamps
gatewatch run FILE                    # follow a live log
```

To look at another store, start the dashboard with `--store DIR` or set `GATEWATCH_STORE`.
This page refreshes itself, so the numbers appear as soon as the pipeline writes them.
""",
        title="No data yet",
    )


def metric_row(totals: queries.OverviewTotals) -> None:
    """Show the headline numbers."""
    error_rate = f"{totals.errors / totals.requests:.1%}" if totals.requests else "–"
    values = {
        "Requests": f"{totals.requests:,}",
        "Error rate": error_rate,
        "Auth failures": f"{totals.auth_failures:,}",
        "Throttled": f"{totals.throttled:,}",
        "Consumers": f"{totals.consumers:,}",
        "Findings": f"{totals.findings:,}",
        "Decisions": f"{totals.decisions:,}",
        "Rejected lines": f"{totals.rejected:,}",
    }
    helps = {
        "Error rate": "Share of requests answered with a 4xx or 5xx status.",
        "Rejected lines": "Log lines that could not be parsed, over all time.",
    }
    items = list(values.items())
    # two rows of four: eight metrics in one row truncate their values on a laptop screen
    for row in (items[:4], items[4:]):
        for column, (label, value) in zip(st.columns(len(row)), row, strict=True):
            column.metric(label, value, help=helps.get(label), border=True)


def traffic_chart(per_minute: pl.DataFrame) -> alt.LayerChart:
    """Requests, errors and auth failures per minute; red rules mark minutes with findings."""
    series = ["requests", "errors", "auth_failures"]
    minute = alt.Tooltip("utcyearmonthdatehoursminutes(minute):T", title="minute (UTC)")
    lines = (
        alt.Chart(per_minute)
        .transform_fold(series, as_=["series", "count"])
        .mark_line(point=alt.OverlayMarkDef(size=20))
        .encode(
            x=alt.X("minute:T", title="UTC", scale=alt.Scale(type="utc"), axis=alt.Axis(format="%H:%M")),
            y=alt.Y("count:Q", title="per minute"),
            color=alt.Color(
                "series:N",
                title=None,
                sort=series,
                legend=alt.Legend(labelExpr="replace(datum.label, '_', ' ')"),
            ),
            tooltip=[minute, "series:N", "count:Q"],
        )
    )
    findings = (
        alt.Chart(per_minute.filter(pl.col("findings") > 0))
        .mark_rule(color="#d62728", strokeDash=[4, 3])
        .encode(x="minute:T", tooltip=[minute, "findings:Q"])
    )
    return alt.layer(lines, findings)


def page(root: Path, span: timedelta | None, refresh_s: float) -> None:
    """Render everything that reads the store."""
    rng = queries.data_range(root)
    if rng.empty:
        first_run(root)
        return
    # replayed logs lie in the past: ranges count back from the newest window
    since = rng.end - span if span else None
    refresh = f"refreshes every {refresh_s:g} s" if refresh_s else "auto-refresh off"
    st.caption(
        f"Store `{root}` · traffic from {rng.first:%Y-%m-%d %H:%M} to {rng.end:%Y-%m-%d %H:%M} UTC"
        f" · {refresh}"
    )

    metric_row(queries.overview_totals(root, since))

    st.subheader("Requests per minute")
    st.altair_chart(traffic_chart(queries.requests_per_minute(root, since)), key="requests_per_minute")

    st.subheader("Top consumers")
    st.dataframe(
        queries.top_consumers(root, since),
        key="top_consumers",
        hide_index=True,
        column_config={
            "consumer": "Consumer id",
            "consumer_name": "Name",
            "consumer_owner": "Owner",
            "requests": st.column_config.NumberColumn("Requests", format="localized"),
            "error_share": st.column_config.NumberColumn("Errors", format="percent"),
            "auth_failures": st.column_config.NumberColumn("Auth failures", format="localized"),
            "distinct_ips": st.column_config.NumberColumn("IPs (max/window)"),
            "findings": st.column_config.NumberColumn("Findings"),
            "max_score": st.column_config.ProgressColumn(
                "Max score", min_value=0.0, max_value=1.0, format="%.2f"
            ),
        },
    )

    st.subheader("Recent findings")
    findings = queries.recent_findings(root, since)
    if findings.is_empty():
        st.caption("No findings in this time range.")
        return
    st.dataframe(
        findings,
        key="recent_findings",
        hide_index=True,
        column_config={
            "window_start": st.column_config.DatetimeColumn("From", format="YYYY-MM-DD HH:mm"),
            "window_end": st.column_config.DatetimeColumn("To", format="HH:mm"),
            "subject_type": "Type",
            "subject_name": "Subject",
            "kind": "Kind",
            "score": st.column_config.ProgressColumn("Score", min_value=0.0, max_value=1.0, format="%.2f"),
            "reasons": st.column_config.TextColumn("Reasons", width="large"),
            "detector": "Detector",
        },
    )


def main() -> None:
    """Lay out the page; the part that reads the store refreshes itself."""
    st.set_page_config(page_title="gatewatch", layout="wide")
    root = store_root()
    refresh_s = refresh_seconds()

    st.sidebar.title("gatewatch")
    label = st.sidebar.radio(
        "Time range",
        list(TIME_RANGES),
        index=list(TIME_RANGES).index(DEFAULT_TIME_RANGE),
        key="time_range",
        help="Counted back from the newest data in the store, since replayed logs lie in the past.",
    )
    st.title("API gateway traffic")

    @st.fragment(run_every=refresh_s or None)
    def live() -> None:
        try:
            page(root, TIME_RANGES[label], refresh_s)
        except (duckdb.Error, OSError) as exc:
            st.error(f"Could not read the store `{root}`: {exc}")

    live()


if __name__ == "__main__":
    main()
