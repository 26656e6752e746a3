"""Decisions: pending review, active, expired, reverted; approve or revert them; who did what."""

from __future__ import annotations

from types import ModuleType

import streamlit as st

from gatewatch.dashboards import queries, ui

# which current statuses each section shows; pending and active ones show whatever the time range
GROUPS = {
    "Pending review": queries.PENDING_STATUSES,
    "Active": queries.ACTIVE_STATUSES,
    "Expired": ("expired",),
    "Reverted": ("reverted",),
    "Other": ("suppressed", "rejected", "failed"),
}
ALWAYS_SHOWN = ("Pending review", "Active")
VERBS = {"approve": "Approve", "revert": "Revert"}
HELPS = {
    "approve": "Its gateway changes are queued for delivery.",
    "revert": "What it added at the gateway is removed; a decision waiting for review is rejected.",
}
# why a button is disabled, shown as its help (and why nobody may act, from ui.access)
NOTHING_TO = {
    "approve": "Disabled: no decision is waiting for review. Active ones can only be reverted.",
    "revert": "Disabled: no decision is waiting for review or in force, so there is nothing to revert.",
}


def _button_help(action: str, picked: str | None, access: ui.Access) -> str:
    """The help of an action's button: why it is disabled, else what it does."""
    if access.actor is None:
        return f"Disabled: {access.why_not[0].lower()}{access.why_not[1:]}"
    if picked is None:
        return NOTHING_TO[action]
    return HELPS[action]


def _label(row: dict) -> str:
    limit = "no limit" if row["limit_per_min"] is None else f"{row['limit_per_min']}/min"
    return f"{row['subject_name']} · {row['tier']} {limit} · {row['status']} · {row['decision_id']}"


def _act(actions: ModuleType, root, action: str, decision_id: str) -> None:
    """Run ``approve`` or ``revert`` (the CLI's code path) as the signed-in operator, and keep the outcome to show.

    Who that is, is checked here, when the change is made: a disabled button is
    only the browser's doing, and a token may have been taken away meanwhile.
    """
    st.session_state.pop("confirm", None)
    actor = ui.access().actor
    if actor is None:
        st.session_state["action_result"] = (
            "error", f"{VERBS[action]} {decision_id} refused: no operator is signed in. Nothing changed."
        )  # fmt: skip
        return
    try:
        new = getattr(actions, action)(root, decision_id, actor)
    # whatever the enforcement path refuses with is shown to the person who asked, not raised
    except Exception as exc:  # noqa: BLE001
        st.session_state["action_result"] = ("error", f"{VERBS[action]} {decision_id} failed: {exc}")
    else:
        st.session_state["action_result"] = (
            "success",
            f"Decision {decision_id} is now {new.status}, by {actor}.",
        )


def review_panel(root, actions: ModuleType) -> None:
    """Pick a decision, approve or revert it after a confirmation."""
    result = st.session_state.get("action_result")  # stays until the next change: the page refreshes itself
    if result:
        (st.success if result[0] == "success" else st.error)(result[1])
    pending = queries.current_decisions(root, statuses=queries.PENDING_STATUSES)
    live = queries.current_decisions(root, statuses=(*queries.PENDING_STATUSES, *queries.ACTIVE_STATUSES))
    access = ui.access()
    actor = access.actor
    with st.container(border=True):
        st.markdown("**Review** · approve or revert through the same code path as `gatewatch decisions`")
        if access.read_only:
            st.info(access.why_not, icon=":material/lock:")
        elif actor is None:
            st.caption(f"Not signed in: {access.why_not}")
        else:
            st.caption(f"Signed in as **{ui.escape_md(actor)}**: what you do is recorded under this name.")
        columns = st.columns(2)
        for column, action, options in zip(columns, VERBS, (pending, live), strict=True):
            labels = {row["decision_id"]: _label(row) for row in options.iter_rows(named=True)}
            with column:
                picked = st.selectbox(
                    f"Decision to {action}",
                    list(labels),
                    format_func=labels.get,
                    key=f"{action}_pick",
                    placeholder="None waiting" if action == "approve" else "None active",
                )
                if st.button(
                    f"{VERBS[action]}…",
                    key=action,
                    disabled=picked is None or actor is None,
                    help=_button_help(action, picked, access),
                ):
                    st.session_state["confirm"] = (action, picked, labels[picked])
        confirm = st.session_state.get("confirm")
        if confirm and actor is None:  # signed out (or the token went) before confirming
            st.session_state.pop("confirm", None)
        elif confirm:
            action, decision_id, label = confirm
            st.warning(f"{VERBS[action]} **{ui.escape_md(label)}** as **{ui.escape_md(actor)}**?")
            yes, no, _ = st.columns([1, 1, 6])
            yes.button(
                f"Confirm {action}",
                key="confirm_yes",
                type="primary",
                on_click=_act,
                args=(actions, root, action, decision_id),
            )
            no.button("Cancel", key="confirm_no", on_click=st.session_state.pop, args=("confirm", None))


def render(view: ui.View) -> None:
    root = view.root
    # pending and active ones are counted whatever the time range, as their sections list them
    now = dict(queries.decision_counts(root).iter_rows())
    in_range = dict(queries.decision_counts(root, view.since, view.until).iter_rows())
    ui.metrics(
        {
            group: ui.count(sum((now if group in ALWAYS_SHOWN else in_range).get(s, 0) for s in statuses))
            for group, statuses in GROUPS.items()
        },
        {
            group: f"Decisions now {', '.join(statuses)}, "
            + ("whatever the time range." if group in ALWAYS_SHOWN else "taking effect in this time range.")
            for group, statuses in GROUPS.items()
        },
    )
    actions = ui.decision_actions()
    if actions is None:
        st.caption(
            "Approving and reverting needs the enforcement path (`gatewatch.flows.control.decisions`); this install lacks it."
        )
    else:
        review_panel(root, actions)
    for group, statuses in GROUPS.items():
        since, until = (None, None) if group in ALWAYS_SHOWN else (view.since, view.until)
        st.subheader(group)
        ui.table(
            queries.current_decisions(root, since, until, statuses=statuses),
            f"decisions_{group.lower().replace(' ', '_')}",
            ui.DECISION_COLUMNS,
            f"No {group.lower()} decisions" + ("." if group in ALWAYS_SHOWN else " in this time range."),
        )
    st.subheader("Who did what")
    ui.table(
        ui.with_state_changes(queries.decision_log(root)), "decision_log", ui.DECISION_LOG_COLUMNS, "No decisions yet."
    )


st.title("Decisions")
ui.live(render)
