"""Overview: are we under attack, by whom, what did gatewatch do, is it healthy."""

from __future__ import annotations

import streamlit as st

from gatewatch.dashboards import queries, ui


def render(view: ui.View) -> None:
    root, since, until = view.root, view.since, view.until
    totals = queries.overview_totals(root, since, until)
    state = queries.control_state(root)
    per_min = totals.requests_per_minute
    ui.metrics(
        {
            "Requests": ui.count(totals.requests),
            "Requests/min": ui.count(totals.last_minute_requests),
            "Error rate": ui.percent(totals.share(totals.errors)),
            "Auth-failure rate": ui.percent(totals.share(totals.auth_failures)),
            "Throttled share": ui.percent(totals.share(totals.throttled)),
        },
        {
            "Requests/min": "Requests in the newest complete minute"
            + (f"; {per_min:,.1f} a minute on average in this range." if per_min is not None else "."),
            "Error rate": "Share of requests answered with a 4xx or 5xx status.",
            "Auth-failure rate": "Share of requests that failed authentication (401/403, WSO2 AUTH faults).",
            "Throttled share": "Share of requests the gateway throttled (429 or WSO2 THROTTLED faults).",
        },
    )
    ui.metrics(
        {
            "Findings": ui.count(totals.findings),
            "Open incidents": ui.count(state.open_incidents),
            "Pending review": ui.count(state.pending_review),
            "Active decisions": ui.count(state.active_decisions),
            "Dead letters": ui.count(state.dead_letters),
        },
        {
            "Findings": "Subjects × windows flagged in this time range.",
            "Open incidents": "Incidents not resolved yet, whatever the time range.",
            "Pending review": "Decisions waiting for a person to approve them now, whatever the time range "
            "(Decisions page).",
            "Active decisions": "Decisions in force now (recorded in dry-run, approved or applied), "
            "whatever the time range.",
            "Dead letters": "Gateway calls and alerts given up after their retries, over all time whatever the "
            "time range: deliveries carry only wall-clock times (Pipeline health page).",
        },
    )

    per_minute = queries.requests_per_minute(root, since, until)
    windows = queries.anomalous_windows(root, since, until)
    left, right = st.columns(2)
    with left:
        st.subheader("Requests per minute")
        st.altair_chart(ui.traffic_chart(per_minute, windows), key="requests_per_minute")
    with right:
        st.subheader("Error, auth-failure and throttled rates")
        st.altair_chart(ui.rates_chart(per_minute, windows), key="rates_per_minute")
    st.caption("Red bands: windows in which gatewatch flagged a subject (hover for who).")

    left, right = st.columns(2)
    with left:
        st.subheader("Open incidents")
        ui.table(
            ui.with_subject_links(queries.incidents(root, states=queries.OPEN_INCIDENT_STATES, limit=10)),
            "open_incidents",
            ui.INCIDENT_COLUMNS,
            "No open incidents.",
        )
    with right:
        st.subheader("Waiting for review")
        ui.table(
            queries.current_decisions(root, statuses=queries.PENDING_STATUSES, limit=10),
            "pending_review",
            ui.DECISION_COLUMNS,
            "No decision waits for review.",
        )

    left, right = st.columns(2)
    with left:
        st.subheader("Top consumers by volume")
        ui.table(
            queries.top_consumers(root, since, until),
            "top_consumers",
            {
                "consumer_name": "Consumer",
                "consumer_owner": "Owner",
                "requests": st.column_config.NumberColumn("Requests", format="localized"),
                "error_share": st.column_config.NumberColumn("Errors", format="percent"),
                "auth_failures": st.column_config.NumberColumn("Auth failures", format="localized"),
                "distinct_ips": st.column_config.NumberColumn("IPs (max/window)"),
                "findings": st.column_config.NumberColumn("Findings"),
                "max_score": ui.score_column("Max score"),
                "consumer": "Consumer id",
            },
            "No traffic in this time range.",
        )
    with right:
        st.subheader("Top subjects by risk")
        ui.table(
            ui.with_subject_links(queries.riskiest_subjects(root, since, until)),
            "riskiest_subjects",
            {
                "subject_type": "Type",
                "subject_name": "Subject",
                ui.SUBJECT_LINK: ui.subject_link_column(),
                "max_score": ui.score_column("Max score"),
                "findings": st.column_config.NumberColumn("Findings"),
                "kinds": "Kinds",
                "last_window": ui.time_column("Last flagged", "YYYY-MM-DD HH:mm"),
                "tier": "Tier",
                "status": "Decision",
            },
            "No consumer, IP or API was flagged in this time range.",
        )

    st.subheader("Recent findings")
    ui.table(
        ui.with_subject_links(queries.recent_findings(root, since, until, limit=20)),
        "recent_findings",
        ui.FINDING_COLUMNS,
        "No findings in this time range.",
    )


st.title("Overview")
ui.live(render)
