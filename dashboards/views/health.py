"""Pipeline health: throughput, lag, rejected lines, deliveries and dead letters, which can be retried."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import streamlit as st

from gatewatch.dashboards import queries, ui
from gatewatch.sinks.control import CONTROL_FILE, ControlDB

RETRY_RESULT = "retry_result"


def _retry(root: Path, entry_ids: list[str]) -> None:
    """Retry dead letters as ``gatewatch deliveries retry`` does, as the signed-in operator; keep the outcome to show.

    Who that is, is checked here, when the change is made: a disabled button is only the browser's doing.
    """
    actor = ui.access().actor
    if actor is None:
        st.session_state[RETRY_RESULT] = ("error", "Retry refused: no operator is signed in. Nothing changed.")
        return
    if not entry_ids:  # retry_dead_letters takes no ids as all of them
        st.session_state[RETRY_RESULT] = ("error", "Retry refused: no dead letter is picked. Nothing changed.")
        return
    if not (root / CONTROL_FILE).exists():  # opening it would create an empty one
        st.session_state[RETRY_RESULT] = ("error", f"Retry failed: no control database in {root}.")
        return
    control = ControlDB(root)
    try:
        retried, stale = control.retry_dead_letters(entry_ids, actor)
    except sqlite3.Error as exc:
        st.session_state[RETRY_RESULT] = ("error", f"Retry failed: {exc}")
        return
    finally:
        control.close()
    gone = sorted(set(entry_ids) - set(retried) - set(stale))
    parts = [f"Retried by {actor}, pending again: {', '.join(retried)}." if retried else "Nothing retried."]
    if stale:
        parts.append(f"Not retried, a newer delivery to the same destination supersedes it: {', '.join(stale)}.")
    if gone:
        parts.append(f"No longer dead letters (retried meanwhile?): {', '.join(gone)}.")
    st.session_state[RETRY_RESULT] = ("success" if retried else "warning", " ".join(parts))


def _dead_letter_label(row: dict) -> str:
    return f"{row['destination']} · {row['ref_id']} · {row['attempts']} attempts · {row['last_error'][:80]} · {row['id']}"


def retry_panel(root: Path) -> None:
    """Pick dead letters (all of them at first) and give them a fresh round of attempts."""
    result = st.session_state.get(RETRY_RESULT)  # stays until the next retry: the page refreshes itself
    if result:
        {"success": st.success, "warning": st.warning, "error": st.error}[result[0]](result[1])
    dead = queries.retryable_dead_letters(root)
    if dead.is_empty():
        return
    access = ui.access()
    with st.container(border=True):
        st.markdown("**Retry** · the same path as `gatewatch deliveries retry`")
        if access.read_only:
            st.caption(access.why_not)
        elif access.actor is None:
            st.caption(f"Not signed in: {access.why_not}")
        else:
            st.caption(f"Signed in as **{ui.escape_md(access.actor)}**.")
        labels = {row["id"]: _dead_letter_label(row) for row in dead.iter_rows(named=True)}
        picked = st.multiselect(
            "Dead letters to retry", list(labels), default=list(labels), format_func=labels.get, key="retry_pick"
        )
        if access.actor is None:
            why = f"Disabled: {access.why_not[0].lower()}{access.why_not[1:]}"
        elif not picked:
            why = "Disabled: no dead letter is picked."
        else:
            why = "Each gets a fresh round of attempts, unless a newer delivery to its destination supersedes it."
        st.button(
            "Retry",
            key="retry_dead_letters",
            disabled=access.actor is None or not picked,
            help=why,
            on_click=_retry,
            args=(root, picked),
        )


def render(view: ui.View) -> None:
    root = view.root
    fresh = queries.freshness(root)
    state = queries.control_state(root)
    backlog = queries.outbox_backlog(root)
    per_minute = queries.requests_per_minute(root, view.since, view.until)
    complete = per_minute.filter(per_minute["requests"] > 0)
    if fresh.watermark is not None:  # a minute past it may hold only some shards' rows yet
        complete = complete.filter(complete["minute"] + timedelta(minutes=1) <= fresh.watermark)
    newest = complete.tail(1)
    ui.metrics(
        {
            "Events/s": f"{newest['events_per_s'][0]:,.1f}" if newest.height else "–",
            "End-to-end lag": ui.age(fresh.newest_event),
            "Rejected lines": ui.count(state.rejected),
            "Late requests": ui.count(per_minute["late_requests"].sum()),
            "Outbox pending": ui.count(backlog.filter(backlog["state"] == "pending")["entries"].sum()),
            "Dead letters": ui.count(state.dead_letters),
        },
        {
            "Events/s": "Events per second in the newest complete minute with traffic (event time).",
            "End-to-end lag": "Now minus the newest event time in the store. For a replayed log this is the "
            "age of the log, not a delay.",
            "Rejected lines": "Input lines that could not be parsed, over all time whatever the time range: "
            "they carry only the wall-clock time they were read, no event time.",
            "Late requests": "Requests in this time range that arrived after their window had closed; "
            "counted, never dropped.",
            "Outbox pending": "Gateway calls and alerts waiting to be delivered.",
            "Dead letters": "Deliveries given up after their retries, over all time whatever the time range: "
            "deliveries carry only wall-clock times, no event time.",
        },
    )
    st.caption(
        f"Newest event {ui.when(fresh.newest_event)} · windows closed up to {ui.when(fresh.watermark)} · "
        f"last finding detected {ui.when(fresh.last_finding)} · "
        f"last rejected line {ui.when(fresh.last_rejected)}"
    )

    st.subheader("Events per second")
    if per_minute.is_empty():
        st.caption("No traffic in this time range.")
    else:
        st.altair_chart(
            ui.line_chart(per_minute, "events_per_s", "events/s (per minute)"), key="events_per_s"
        )

    st.subheader("Rejected lines by reason")
    st.caption("All rejected lines, whatever the time range: they carry only the time they were read.")
    reasons = queries.rejected_by_reason(root)
    ui.table(
        reasons,
        "rejected_by_reason",
        {
            "reason": "Reason",
            "lines": st.column_config.NumberColumn("Lines", format="localized"),
            "sources": st.column_config.NumberColumn("Files"),
            "last_seen": ui.time_column("Last seen", "YYYY-MM-DD HH:mm:ss"),
            "sample_detail": "Sample detail",
            "sample_raw": st.column_config.TextColumn("Sample line", width="large"),
        },
        "No rejected lines: every line read became an event.",
    )
    if not reasons.is_empty():
        reason = st.selectbox("Samples of", reasons["reason"].to_list(), key="reject_reason")
        ui.table(
            queries.rejected_samples(root, reason),
            "rejected_samples",
            {
                "ingested_at": ui.time_column("Read at", "YYYY-MM-DD HH:mm:ss"),
                "source": "File",
                "line_no": st.column_config.NumberColumn("Line", format="plain"),
                "offset": st.column_config.NumberColumn("Byte offset", format="plain"),
                "detail": "Detail",
                "raw": st.column_config.TextColumn("Line", width="large"),
            },
            "No samples.",
        )

    left, right = st.columns(2)
    with left:
        st.subheader("Deliveries by outcome")
        ui.table(
            queries.deliveries_by_outcome(root),
            "deliveries_by_outcome",
            {
                "channel": "Channel",
                "destination": "Destination",
                "outcome": "Outcome",
                "attempts": st.column_config.NumberColumn("Attempts"),
                "deliveries": st.column_config.NumberColumn("Deliveries"),
                "last_attempt": ui.time_column("Last attempt", "YYYY-MM-DD HH:mm:ss"),
            },
            "No deliveries yet: in dry-run nothing is sent, and no alert channel has fired.",
        )
    with right:
        st.subheader("Outbox")
        ui.table(
            backlog,
            "outbox_backlog",
            {
                "channel": "Channel",
                "state": "State",
                "entries": st.column_config.NumberColumn("Entries"),
                "oldest": ui.time_column("Oldest queued", "YYYY-MM-DD HH:mm:ss"),
            },
            "The outbox is empty.",
        )
    api = queries.api_callers(root)
    if api is not None:
        stats, callers = api
        st.subheader("Decision API")
        st.caption(
            f"{ui.count(stats['requests'])} requests from callers with a key since {ui.when(stats['started_at'])}; "
            f"{ui.count(stats['forbidden'])} refused for want of a valid key; {ui.count(stats['bad_requests'])} malformed; "
            f"{ui.count(stats.get('refused_connections', 0))} connections refused past api.max_connections. "
            f"Counted by the API process, updated {ui.age(stats['updated_at'])} ago."
        )
        ui.table(
            callers,
            "api_callers",
            {
                "caller": "Caller",
                "requests": st.column_config.NumberColumn("Requests", format="localized"),
                "per_s": st.column_config.NumberColumn("Requests/s", format="%.1f"),
                "errors": st.column_config.NumberColumn("Errors"),
                "last_seen": ui.time_column("Last request", "YYYY-MM-DD HH:mm:ss"),
            },
            "No caller has used its key yet.",
        )
    st.subheader("Dead letters")
    ui.table(
        queries.dead_letters(root),
        "dead_letters",
        {
            "attempted_at": ui.time_column("Given up", "YYYY-MM-DD HH:mm:ss"),
            "channel": "Channel",
            "destination": "Destination",
            "ref_id": "Decision / incident",
            "operation": "Operation",
            "attempt": st.column_config.NumberColumn("Attempts"),
            "http_status": st.column_config.NumberColumn("HTTP status", format="plain"),
            "error": st.column_config.TextColumn("Last error", width="large"),
        },
        "No dead letters.",
    )
    retry_panel(root)
    retries = queries.dead_letter_retries(root)
    if not retries.is_empty():
        st.caption("Dead letters retried, newest first")
        ui.table(
            retries,
            "dead_letter_retries",
            {
                "at": ui.time_column("Retried", "YYYY-MM-DD HH:mm:ss"),
                "actor": "By",
                "entry_id": "Delivery",
                "destination": "Destination",
                "ref_id": "Decision / incident",
            },
            "",
        )


st.title("Pipeline health")
ui.live(render, needs_traffic=False)
