"""Incidents & findings: what was flagged, why (observed vs baseline), and what it caused."""

from __future__ import annotations

import polars as pl
import streamlit as st

from gatewatch.dashboards import queries, ui

FINDINGS_LIMIT = 500


def filters(root) -> tuple[list[str] | None, list[str] | None, float]:
    """Draw the filters; return the kinds and subject types to keep (``None``: all) and the minimum score."""
    facets = queries.finding_facets(root)
    kinds_col, types_col, score_col = st.columns([2, 2, 1])
    kinds = kinds_col.multiselect(
        "Kind", sorted(set(facets["kind"].to_list())), key="kinds", placeholder="All kinds"
    )
    types = types_col.multiselect(
        "Subject type", list(queries.SUBJECT_TYPES), key="subject_types", placeholder="All subject types"
    )
    min_score = score_col.slider("Minimum score", 0.0, 1.0, 0.0, 0.05, key="min_score")
    return kinds or None, types or None, min_score


def finding_detail(root, findings) -> None:
    """Reasons, evidence and decisions of one finding the user picks."""
    labels = {
        row["finding_id"]: f"{row['window_start']:%Y-%m-%d %H:%M} · {row['subject_name']} · "
        f"{row['kind']} · {row['score']:.2f}"
        for row in findings.iter_rows(named=True)
    }
    finding_id = st.selectbox(
        "Finding", list(labels), format_func=labels.get, key="finding", help="Newest window first."
    )
    if finding_id is None:
        return
    row = findings.row(by_predicate=pl.col("finding_id") == finding_id, named=True)
    reasons_col, evidence_col = st.columns(2)
    with reasons_col:
        # names, subjects and reasons come from the logs: escaped, never read as Markdown
        name = ui.escape_md(f"{row['subject_type']} {row['subject_name']}")
        st.markdown(f"**{name}** ({ui.escape_md(row['subject'])}), detector {ui.escape_md(row['detector'])}")
        reasons = [f"- {ui.escape_md(r)}" for r in row["reasons"].split("; ") if r]
        st.markdown("\n".join(reasons) or "No reasons recorded.")
    with evidence_col:
        ui.table(
            queries.finding_evidence(root, finding_ids=[finding_id]),
            "finding_evidence",
            {
                "feature": "Feature",
                "observed": st.column_config.NumberColumn("Observed", format="%.3g"),
                "baseline": st.column_config.NumberColumn("Baseline", format="%.3g"),
                "spread": st.column_config.NumberColumn("Spread", format="%.3g"),
            },
            "No observed-vs-baseline evidence recorded for this finding.",
        )
    st.markdown("**Decisions it caused**")
    ui.table(
        queries.current_decisions(root, finding_ids=[finding_id]),
        "finding_decisions",
        ui.DECISION_COLUMNS,
        "No decision: the score was below the policy's threshold, the subject was already restricted, "
        "or it cannot be restricted.",
    )


def render(view: ui.View) -> None:
    root, since, until = view.root, view.since, view.until
    kinds, types, min_score = filters(root)

    st.subheader("Incidents")
    ui.table(
        ui.with_subject_links(
            queries.incidents(root, since, until, kinds=kinds, subject_types=types, min_score=min_score)
        ),
        "incidents",
        ui.INCIDENT_COLUMNS,
        "No incidents in this time range.",
    )

    found = queries.findings(
        root, since, until, kinds=kinds, subject_types=types, min_score=min_score, limit=FINDINGS_LIMIT
    )
    more = "+" if found.height == FINDINGS_LIMIT else ""
    st.subheader(f"Findings ({found.height:,}{more})")
    ui.table(ui.with_subject_links(found), "findings", ui.FINDING_COLUMNS, "No findings match.")
    if not found.is_empty():
        st.subheader("Finding detail")
        finding_detail(root, found)


st.title("Incidents & findings")
ui.live(render)
