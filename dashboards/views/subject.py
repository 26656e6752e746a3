"""Subject drill-down: one consumer, IP or API against its own baseline.

Open it for a subject with ``?type=consumer&id=<consumer id>`` (or ``ip``, ``api``).
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from gatewatch.dashboards import queries, ui

TYPE_LABELS = {"consumer": "Consumer", "ip": "Client IP", "api": "API"}
BASELINE_MINUTES = 30
BAND_K = 3.0


def pick_subject(view: ui.View) -> tuple[str, str | None]:
    """Draw the subject pickers (seeded from the URL when it names another subject); return the type and id.

    The pickers are set from ``?type=&id=`` whenever those differ from the last
    ones seeded, so a link opened in this session still shows its subject, while
    a subject picked by hand stays picked as the page refreshes.
    """
    params = st.query_params
    wanted_type = params.get("type") if params.get("type") in queries.SUBJECT_TYPES else None
    wanted = params.get("id") or None
    if (wanted_type or wanted) and st.session_state.get("subject_seeded") != (wanted_type, wanted):
        st.session_state["subject_seeded"] = (wanted_type, wanted)
        if wanted_type:
            st.session_state["subject_type"] = wanted_type
        if wanted:
            picked_type = wanted_type or st.session_state.get("subject_type", queries.SUBJECT_TYPES[0])
            st.session_state[f"subject_{picked_type}"] = wanted
    subject_type = st.radio(
        "Subject type",
        list(queries.SUBJECT_TYPES),
        format_func=TYPE_LABELS.get,
        key="subject_type",
        horizontal=True,
    )
    options = queries.subject_options(view.root, subject_type, view.since, view.until)
    labels = {
        row["subject"]: row["subject_name"]
        + (f" · {row['requests']:,} requests" if row["requests"] else "")
        + (f" · max score {row['max_score']:.2f}" if row["max_score"] is not None else "")
        for row in options.iter_rows(named=True)
    }
    if wanted and wanted_type in (None, subject_type):
        labels.setdefault(wanted, wanted)  # a subject with nothing in this time range can still be opened
    if not labels:
        st.caption(f"No {TYPE_LABELS[subject_type].lower()} has traffic or findings in this time range.")
        return subject_type, None
    subject = st.selectbox(
        TYPE_LABELS[subject_type],
        list(labels),
        format_func=labels.get,
        key=f"subject_{subject_type}",
        help="Riskiest first, then busiest. Type to search.",
    )
    return subject_type, subject


def traffic_section(view: ui.View, subject_type: str, subject: str) -> None:
    """Traffic against the subject's baseline band, status mix, client IPs, per-API or per-consumer split.

    The band is the detectors' own (``subject_windows``) where the store has
    it; otherwise it is computed from the subject's traffic history.
    """
    detector_view = queries.subject_baseline(view.root, subject_type, subject, view.since, view.until)
    series = queries.subject_traffic(
        view.root,
        subject_type,
        subject,
        view.since,
        view.until,
        baseline_minutes=BASELINE_MINUTES,
        band_k=BAND_K,
    )
    if series.is_empty() and detector_view.is_empty():
        st.caption("No traffic in this time range.")
        return
    if series.is_empty():
        totals = detector_view.select(pl.sum("requests"), pl.max("distinct_ips", "max_score"), pl.len()).row(
            0, named=True
        )
        ui.metrics(
            {
                "Requests": ui.count(totals["requests"]),
                "Windows": ui.count(totals["len"]),
                "Client IPs (max/window)": ui.count(totals["distinct_ips"]),
                "Top detector score": "–" if totals["max_score"] is None else f"{totals['max_score']:.2f}",
            }
        )
    else:
        totals = series.select(
            pl.sum("requests", "status_4xx", "status_5xx", "auth_failures", "throttled"),
            pl.max("distinct_ips"),
        ).row(0, named=True)
        requests = totals["requests"]
        ui.metrics(
            {
                "Requests": ui.count(requests),
                "Error rate": ui.percent(
                    (totals["status_4xx"] + totals["status_5xx"]) / requests if requests else None
                ),
                "Auth failures": ui.count(totals["auth_failures"]),
                "Throttled": ui.count(totals["throttled"]),
                "Client IPs (max/window)": ui.count(totals["distinct_ips"]),
            }
        )
    st.subheader("Requests against its own baseline")
    if detector_view.is_empty():
        st.altair_chart(ui.band_chart(series), key="subject_band")
        st.caption(
            f"Band: mean ± {BAND_K:g} standard deviations of the previous {BASELINE_MINUTES} minutes, "
            "leaving out minutes with findings (as the detectors do). Red points: minutes with findings."
        )
    else:
        st.altair_chart(
            ui.band_chart(detector_view, x="window_start", flagged="finding_score"), key="subject_band"
        )
        st.caption(
            "Band: the baseline the detectors held for this subject in each window (2 spreads either side, "
            "in log space); none while it had no history of its own. Red points: windows with findings."
        )
    if series.is_empty():
        return
    left, right = st.columns(2)
    with left:
        st.subheader("Status mix")
        st.altair_chart(ui.status_mix_chart(series), key="subject_status_mix")
    with right:
        st.subheader("Distinct client IPs")
        st.altair_chart(ui.line_chart(series, "distinct_ips", "most in one window"), key="subject_ips")
        st.caption(
            "The store keeps how many client IPs a window saw, not the addresses; IPs that detectors flag "
            "have their own drill-down (type Client IP). WSO2 logs carry only the user-agent family, "
            "and it is not aggregated per window yet."
        )
    st.subheader("APIs" if subject_type == "consumer" else "Consumers")
    ui.table(
        queries.subject_breakdown(view.root, subject_type, subject, view.since, view.until),
        "subject_breakdown",
        {
            "key": "API" if subject_type == "consumer" else "Consumer id",
            "name": "Name",
            "requests": st.column_config.NumberColumn("Requests", format="localized"),
            "error_share": st.column_config.NumberColumn("Errors", format="percent"),
            "auth_failures": st.column_config.NumberColumn("Auth failures", format="localized"),
            "throttled": st.column_config.NumberColumn("Throttled", format="localized"),
            "distinct_ips": st.column_config.NumberColumn("IPs (max/window)"),
            "latency_p95_ms": st.column_config.NumberColumn("p95 latency (ms)", format="%.0f"),
            "bytes_out": st.column_config.NumberColumn("Bytes out", format="bytes"),
        },
        "No traffic in this time range.",
    )


def findings_section(view: ui.View, subject_type: str, subject: str) -> None:
    """The subject's findings, what they observed against its baseline, and its decisions."""
    st.subheader("Findings")
    evidence = queries.finding_evidence(
        view.root, subject_type=subject_type, subject=subject, since=view.since, until=view.until
    )
    if not evidence.is_empty():
        st.altair_chart(ui.evidence_chart(evidence), key="subject_evidence")
        st.caption("Observed value against the baseline the detector held, in each flagged window.")
    ui.table(
        queries.findings(view.root, view.since, view.until, subject_types=[subject_type], subject=subject),
        "subject_findings",
        ui.FINDING_COLUMNS,
        "No findings in this time range.",
    )
    st.subheader("Decisions")
    ui.table(
        queries.current_decisions(view.root, subject_type=subject_type, subject=subject),
        "subject_decisions",
        ui.DECISION_COLUMNS,
        "No decisions about this subject.",
    )
    st.markdown("**History**")
    ui.table(
        ui.with_state_changes(queries.decision_log(view.root, subject_type=subject_type, subject=subject)),
        "subject_decision_log",
        ui.DECISION_LOG_COLUMNS,
        "No decision history.",
    )


def render(view: ui.View) -> None:
    subject_type, subject = pick_subject(view)
    if subject is None:
        return
    traffic_section(view, subject_type, subject)
    findings_section(view, subject_type, subject)


st.title("Subject drill-down")
ui.live(render)
