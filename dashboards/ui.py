"""What every dashboard page shares: settings, the live refresh, formatting and charts.

A page calls :func:`live` with a function that draws it from a :class:`View`
(the store, the time range). :func:`live` runs that function in a fragment
that reruns by itself every ``$GATEWATCH_REFRESH_S`` seconds, so only the
data part refreshes and the sidebar and widgets stay put.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from urllib.parse import urlencode

import altair as alt
import duckdb
import polars as pl
import streamlit as st

from gatewatch.dashboards import queries
from gatewatch.flows.credentials import DEFAULT_OPERATORS_ENV, CredentialsError, name_of, read_operators
from gatewatch.flows.live import short_span

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
TIME_RANGE_KEY = "time_range"
ANOMALY_COLOR = "#d62728"
SERIES_COLORS = ["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b"]  # red is kept for anomalies
_UTC_AXIS = {"title": "UTC", "scale": alt.Scale(type="utc"), "axis": alt.Axis(format="%H:%M")}


@dataclass(frozen=True)
class View:
    """What a page draws: the store and the chosen time range (event time)."""

    root: Path
    since: datetime | None  # None: from the start
    until: datetime | None  # None: up to the newest data
    data: queries.DataRange


def _arguments() -> argparse.Namespace:
    """The app's own arguments (after ``--`` of ``streamlit run``)."""
    # add_help/allow_abbrev off: under AppTest sys.argv holds pytest's arguments
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--store", type=Path)
    parser.add_argument("--operators-env")
    parser.add_argument("--operators-file", default="")
    args, _ = parser.parse_known_args()
    return args


def store_root() -> Path:
    """Return the store folder: ``--store``, then ``$GATEWATCH_STORE``, then the default."""
    return _arguments().store or Path(os.environ.get("GATEWATCH_STORE") or DEFAULT_STORE)


def refresh_setting() -> tuple[float, str | None]:
    """Return the refresh interval from ``$GATEWATCH_REFRESH_S`` (0: off) and a problem with it, if any."""
    raw = os.environ.get("GATEWATCH_REFRESH_S", "").strip()
    if not raw:
        return DEFAULT_REFRESH_S, None
    with contextlib.suppress(ValueError):
        value = float(raw)
        if 0 <= value < math.inf:
            return value, None
    return (
        DEFAULT_REFRESH_S,
        f"GATEWATCH_REFRESH_S={raw!r} is not a number of seconds; using {DEFAULT_REFRESH_S:g} s.",
    )


# -- operators: who may act ----------------------------------------------------------------

TOKEN_KEY = "_operator_token"  # the signed-in operator's token: server-side session state, never drawn
TOKEN_INPUT = "operator_token"  # the sign-in form's password field, emptied once read
SIGN_IN_NOTE = "_sign_in_note"
READ_ONLY_UNUSABLE = "Read-only: the operators' tokens cannot be used"
SIGN_IN_FIRST = "sign in with your operator token first (sidebar); your name is recorded as who did it."


class SignInLimit:
    """Failed sign-ins per client address: past ``max_failures`` within ``window_s``, that address
    must wait until the oldest of them is ``window_s`` old, whatever token it tries.

    Tokens are long enough that guessing one is hopeless; this keeps a script from trying at the
    dashboard's speed all the same. Behind a reverse proxy every client has the proxy's address,
    so they share one allowance. Module state: one per dashboard process, across its sessions.
    """

    MAX_CLIENTS = 10_000  # addresses remembered; past it the oldest are forgotten

    def __init__(self, max_failures: int = 5, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()  # sessions run in threads of their own

    def wait_s(self, client: str) -> float:
        """How long ``client`` must wait before its next try (0: it may try now)."""
        with self._lock:
            recent = self._recent(client)
            return self.window_s - (self.clock() - recent[0]) if len(recent) >= self.max_failures else 0.0

    def failed(self, client: str) -> None:
        with self._lock:
            self._failures[client] = [*self._recent(client), self.clock()]
            while len(self._failures) > self.MAX_CLIENTS:
                del self._failures[next(iter(self._failures))]

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)

    def _recent(self, client: str) -> list[float]:
        now = self.clock()
        return [t for t in self._failures.get(client, ()) if now - t < self.window_s]


SIGN_IN_LIMIT = SignInLimit()


@dataclass(frozen=True)
class Access:
    """Who may act in this session: the signed-in operator, else why nobody may."""

    actor: str | None  # the operator's verified name: recorded as who did it
    why_not: str | None  # when actor is None: why, as a sentence
    read_only: bool  # no operators are usable: nobody can act in this dashboard


def operator_sources() -> tuple[str, str]:
    """The variable and the file the operators' tokens come from (``--operators-env``, ``--operators-file``)."""
    args = _arguments()
    env = DEFAULT_OPERATORS_ENV if args.operators_env is None else args.operators_env
    return ("" if args.operators_file else env), args.operators_file or ""


def read_only_reason(env: str, file: str) -> str:
    """Why the dashboard is read-only when no operator is configured, and how to configure them."""
    where = f"`${env}` is not set" if env else "no variable is named (`[dashboard] operators_env`)"
    return (
        f"Read-only: no operators are configured ({where}, and no `[dashboard] operators_file`), so nobody "
        f"can approve, revert or retry deliveries here. To allow it, give each operator a token of 16 characters or more: "
        f"`{env or 'GATEWATCH_OPERATORS'}=alice:TOKEN,bob:TOKEN` in the dashboard's environment, or a file "
        f"named by `operators_file` with one `NAME:TOKEN` a line; then restart `gatewatch dashboard`. "
        f"`gatewatch decisions approve|revert` and `gatewatch deliveries retry` still work."
    )


def access() -> Access:
    """Check, now, who may act: the operators are read again and the session's token matched against them."""
    env, file = operator_sources()
    try:
        operators = read_operators(env, file)
    except CredentialsError as exc:
        return Access(None, f"{READ_ONLY_UNUSABLE}: {exc}", read_only=True)
    if operators is None:
        return Access(None, read_only_reason(env, file), read_only=True)
    token = st.session_state.get(TOKEN_KEY)
    name = name_of(operators, token) if token else None
    if name is None:
        if token:  # its token was taken away since it signed in
            st.session_state.pop(TOKEN_KEY, None)
            st.session_state[SIGN_IN_NOTE] = "Your token is no longer an operator's: you are signed out."
        return Access(None, SIGN_IN_FIRST, read_only=False)
    return Access(name, None, read_only=False)


def _sign_in() -> None:
    """The sign-in form's callback: keep the token if it is an operator's; the field is emptied either way."""
    token = str(st.session_state.get(TOKEN_INPUT) or "").strip()
    st.session_state[TOKEN_INPUT] = ""
    client = st.context.ip_address
    client = client if isinstance(client, str) else ""  # None when unknown (and not a str in AppTest)
    if wait_s := SIGN_IN_LIMIT.wait_s(client):
        st.session_state.pop(TOKEN_KEY, None)
        st.session_state[SIGN_IN_NOTE] = (
            f"Too many failed sign-ins from your address: not signed in. Try again in {math.ceil(wait_s)} s."
        )
        return
    env, file = operator_sources()
    try:
        operators = read_operators(env, file) or {}
    except CredentialsError:
        operators = {}
    if token and name_of(operators, token) is not None:
        SIGN_IN_LIMIT.succeeded(client)
        st.session_state[TOKEN_KEY] = token
        st.session_state.pop(SIGN_IN_NOTE, None)
    else:
        SIGN_IN_LIMIT.failed(client)
        st.session_state.pop(TOKEN_KEY, None)
        st.session_state[SIGN_IN_NOTE] = "That token is no operator's: not signed in, and nothing can be changed."


def _sign_out() -> None:
    st.session_state.pop(TOKEN_KEY, None)
    st.session_state.pop("confirm", None)


def operator_panel() -> None:
    """The sidebar's sign-in: who is signed in, a form to sign in, or why the dashboard is read-only."""
    now = access()
    if now.read_only:
        if now.why_not.startswith(READ_ONLY_UNUSABLE):
            st.sidebar.error(now.why_not, icon=":material/lock:")
        else:
            st.sidebar.info(
                "Read-only: no operators are configured, so nobody can approve or revert decisions here. "
                "The Decisions page says how to add them.",
                icon=":material/lock:",
            )
        return
    if now.actor is not None:
        st.sidebar.success(f"Signed in as **{escape_md(now.actor)}**", icon=":material/person:")
        st.sidebar.button("Sign out", key="sign_out", on_click=_sign_out)
        return
    with st.sidebar.form("sign_in", border=True):
        st.text_input(
            "Operator token", type="password", key=TOKEN_INPUT,
            help="Yours, from the dashboard's operators (NAME:TOKEN). Approvals and reverts are recorded under your name.",
        )  # fmt: skip
        st.form_submit_button("Sign in", on_click=_sign_in)
    note = st.session_state.get(SIGN_IN_NOTE)
    if note:
        st.sidebar.error(note)


def sidebar() -> None:
    """Draw the settings every page shares: the time range, the store, the refresh, the sign-in."""
    refresh_s, problem = refresh_setting()
    st.sidebar.radio(
        "Time range",
        list(TIME_RANGES),
        index=list(TIME_RANGES).index(DEFAULT_TIME_RANGE),
        key=TIME_RANGE_KEY,
        help="Event time, counted back from the newest data in the store: replayed logs lie in the past.",
    )
    if problem:
        st.sidebar.warning(problem)
    refresh = f"refreshes every {refresh_s:g} s" if refresh_s else "auto-refresh off"
    st.sidebar.caption(f"Store `{store_root()}` · {refresh}")
    operator_panel()


def live(render: Callable[[View], None], *, needs_traffic: bool = True) -> None:
    """Draw a page from the store, again every refresh interval.

    Args:
        render: Draws the page's data for a :class:`View`.
        needs_traffic: Show the first-run help instead of ``render`` while the
            store has no traffic; when ``False`` the page is drawn anyway,
            after that help.
    """
    root = store_root()
    refresh_s, _ = refresh_setting()
    span = TIME_RANGES.get(st.session_state.get(TIME_RANGE_KEY, DEFAULT_TIME_RANGE))

    @st.fragment(run_every=refresh_s or None)
    def body() -> None:
        try:
            data = queries.data_range(root)
            if data.empty:
                first_run(root)
                if needs_traffic:
                    return
            else:
                st.caption(
                    f"Traffic from {data.first:%Y-%m-%d %H:%M} to {data.end:%Y-%m-%d %H:%M} UTC (event time)"
                )
            since = data.end - span if span and not data.empty else None
            render(View(root=root, since=since, until=None, data=data))
        except (duckdb.Error, sqlite3.Error, OSError) as exc:
            st.error(f"Could not read the store `{root}`: {exc}")

    body()


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


def decision_actions() -> ModuleType | None:
    """Return ``gatewatch.flows.control.decisions`` when it offers ``approve`` and ``revert``, else ``None``."""
    try:
        module = importlib.import_module("gatewatch.flows.control.decisions")
    except ModuleNotFoundError as exc:
        if exc.name != "gatewatch.flows.control.decisions":  # it exists but is broken: that must show
            raise
        return None
    if all(callable(getattr(module, name, None)) for name in ("approve", "revert")):
        return module
    return None


def metrics(values: dict[str, str], helps: dict[str, str] | None = None) -> None:
    """Show bordered metrics in one row."""
    helps = helps or {}
    for column, (label, value) in zip(st.columns(len(values)), values.items(), strict=True):
        column.metric(label, value, help=helps.get(label), border=True)


_MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character
# GitHub-flavoured autolinks ignore escapes: an invisible word joiner breaks their prefixes
_AUTOLINK = re.compile(r"(https?|ftp|www|@)", re.IGNORECASE)
WORD_JOINER = "\u2060"


def escape_md(text: str) -> str:
    r"""``text`` as literal Markdown: a name from a log must not render as a link, an image or a colour.

    Every ASCII punctuation character is escaped, and a word joiner (invisible) follows each
    ``http``, ``www`` and ``@``, which Streamlit would otherwise turn into links.

    >>> escape_md("[x](https://evil.example) :red[y] **z**").replace(WORD_JOINER, "+")
    '\\[x\\]\\(https+\\:\\/\\/evil\\.example\\) \\:red\\[y\\] \\*\\*z\\*\\*'
    """
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", text).replace("\n", " ")
    return _AUTOLINK.sub(lambda m: m.group() + WORD_JOINER, escaped)


def signed_span(delta: timedelta) -> str:
    """Format a time difference with its sign: ``+1 h``, ``-30 min``, ``+45 s``, ``+1 h 30 min``.

    >>> signed_span(timedelta(hours=1)), signed_span(timedelta(minutes=-30)), signed_span(timedelta(days=2))
    ('+1 h', '-30 min', '+2 d')
    """
    sign = "-" if delta < timedelta(0) else "+"
    seconds = round(abs(delta).total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
    return sign + (" ".join(parts[:2]) or "0 s")


def _state_value(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    return str(value)


def state_changes(row: dict, tracked=queries.DECISION_LOG_TRACKED) -> str:
    """What differs in a decision's state row from its previous one (``before_<column>``).

    >>> state_changes({"first_state": False, "status": "applied", "before_status": "approved",
    ...                "actor": "bob", "before_actor": "policy"}, ("status", "actor"))
    'status approved → applied; actor policy → bob'
    """
    if row.get("first_state"):
        return "created"
    changes = []
    for column in tracked:
        old, new = row.get(f"before_{column}"), row.get(column)
        if old == new:
            continue
        label = column.replace("_", " ")
        if column == "reason":
            changes.append("reason changed")
        elif isinstance(old, datetime) and isinstance(new, datetime):
            changes.append(f"{label} {signed_span(new - old)}")
        else:
            changes.append(f"{label} {_state_value(old)} → {_state_value(new)}")
    return "; ".join(changes) or "no change"


def with_state_changes(log: pl.DataFrame) -> pl.DataFrame:
    """``log`` (from :func:`queries.decision_log`) with a ``changed`` column: :func:`state_changes` of each row."""
    if log.is_empty():
        return log
    changed = [state_changes(row) for row in log.iter_rows(named=True)]
    return log.with_columns(pl.Series("changed", changed, dtype=pl.String))


def count(value: int | None) -> str:
    """Format a count with thousands separators."""
    return "–" if value is None else f"{value:,}"


def percent(value: float | None) -> str:
    """Format a share (0..1) as a percentage."""
    return "–" if value is None else f"{value:.1%}"


def age(then: datetime | None, now: datetime | None = None) -> str:
    """Format how long ago ``then`` was, short enough for a metric: ``4 s``, ``12 min``, ``5 h``, ``21 d``."""
    if then is None:
        return "–"
    return short_span(((now or datetime.now(timezone.utc)) - then).total_seconds())


def when(value: datetime | None) -> str:
    """Format a UTC time for captions."""
    return "–" if value is None else f"{value:%Y-%m-%d %H:%M:%S} UTC"


def table(df: pl.DataFrame, key: str, columns: dict, empty: str) -> None:
    """Show ``df`` with labelled columns (only those in ``columns``), or a caption when it is empty."""
    if df.is_empty():
        st.caption(empty)
        return
    st.dataframe(
        df.select([c for c in columns if c in df.columns]),
        key=key,
        hide_index=True,
        width="stretch",
        column_config=columns,
    )


SUBJECT_PAGE = "subject"  # the subject page's url path (app.PAGES)
SUBJECT_LINK = "subject_link"


def subject_url(subject_type: str, subject: str) -> str:
    """The subject page's URL for one subject, relative to the page it is on.

    >>> subject_url("api", "Pizza API:1.0.0 POST /login")
    'subject?type=api&id=Pizza+API%3A1.0.0+POST+%2Flogin'
    """
    return f"{SUBJECT_PAGE}?{urlencode({'type': subject_type, 'id': subject})}"


def with_subject_links(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with a ``subject_link`` column: the URL of each row's subject page (from ``subject_type``, ``subject``)."""
    if df.is_empty() or not {"subject_type", "subject"} <= set(df.columns):
        return df
    links = [subject_url(t, s) for t, s in zip(df["subject_type"], df["subject"], strict=True)]
    return df.with_columns(pl.Series(SUBJECT_LINK, links, dtype=pl.String))


def subject_link_column() -> st.column_config.LinkColumn:
    return st.column_config.LinkColumn(
        "Drill-down", display_text="Open ↗", help="The subject's own page: its traffic against its baseline."
    )


def score_column(label: str = "Score") -> st.column_config.ProgressColumn:
    return st.column_config.ProgressColumn(label, min_value=0.0, max_value=1.0, format="%.2f")


def time_column(label: str, fmt: str = "YYYY-MM-DD HH:mm") -> st.column_config.DatetimeColumn:
    return st.column_config.DatetimeColumn(label, format=fmt)


FINDING_COLUMNS = {
    "window_start": time_column("From"),
    "window_end": time_column("To", "HH:mm"),
    "subject_type": "Type",
    "subject_name": "Subject",
    SUBJECT_LINK: subject_link_column(),
    "kind": "Kind",
    "score": score_column(),
    "reasons": st.column_config.TextColumn("Reasons", width="large"),
    "detector": "Detector",
    "decisions": st.column_config.NumberColumn("Decisions"),
    "decision_status": "Decision status",
}
DECISION_COLUMNS = {
    "subject_type": "Type",
    "subject_name": "Subject",
    "tier": "Tier",
    "limit_per_min": st.column_config.NumberColumn("Limit/min"),
    "status": "Status",
    "action": "Action",
    "effective_from": time_column("From"),
    "expires_at": time_column("Expires"),
    "mode": "Mode",
    "actor": "By",
    "changed_at": time_column("Changed", "YYYY-MM-DD HH:mm:ss"),
    "reason": st.column_config.TextColumn("Reason", width="large"),
    "decision_id": "Decision id",
}
DECISION_LOG_COLUMNS = {
    "changed_at": time_column("When (wall clock)", "YYYY-MM-DD HH:mm:ss"),
    "actor": "Who",
    "status": "Status",
    "changed": st.column_config.TextColumn("Changed", help="What differs from the decision's previous state."),
    "subject_type": "Type",
    "subject_name": "Subject",
    "tier": "Tier",
    "limit_per_min": st.column_config.NumberColumn("Limit/min"),
    "decision_id": "Decision id",
    "reason": st.column_config.TextColumn("Reason", width="large"),
}
INCIDENT_COLUMNS = {
    "state": "State",
    "subject_type": "Type",
    "subject_name": "Subject",
    SUBJECT_LINK: subject_link_column(),
    "kind": "Kind",
    "max_score": score_column("Max score"),
    "tier": "Tier",
    "findings": st.column_config.NumberColumn("Findings"),
    "first_seen": time_column("First seen"),
    "last_seen": time_column("Last seen"),
    "reasons": st.column_config.TextColumn("Reasons", width="large"),
}


def _window_marks(windows: pl.DataFrame) -> alt.Chart:
    """Red bands over the windows with findings."""
    return (
        alt.Chart(windows)
        .mark_rect(color=ANOMALY_COLOR, opacity=0.18)
        .encode(
            x=alt.X("window_start:T", **_UTC_AXIS),
            x2="window_end:T",
            tooltip=[
                alt.Tooltip("utcyearmonthdatehoursminutes(window_start):T", title="window (UTC)"),
                alt.Tooltip("subjects:N", title="flagged"),
                alt.Tooltip("max_score:Q", title="max score", format=".2f"),
            ],
        )
    )


def _lines(df: pl.DataFrame, series: list[str], y_title: str, y_format: str | None = None) -> alt.Chart:
    minute = alt.Tooltip("utcyearmonthdatehoursminutes(minute):T", title="minute (UTC)")
    value = alt.Tooltip("value:Q", format=y_format) if y_format else "value:Q"
    return (
        alt.Chart(df.select("minute", *series))
        .transform_fold(series, as_=["series", "value"])
        .mark_line(point=alt.OverlayMarkDef(size=16))
        .encode(
            x=alt.X("minute:T", **_UTC_AXIS),
            y=alt.Y("value:Q", title=y_title, axis=alt.Axis(format=y_format) if y_format else alt.Axis()),
            color=alt.Color(
                "series:N",
                title=None,
                sort=series,
                scale=alt.Scale(domain=series, range=SERIES_COLORS[: len(series)]),
                legend=alt.Legend(orient="bottom", labelExpr="replace(datum.label, /_/g, ' ')"),
            ),
            tooltip=[minute, "series:N", value],
        )
    )


def traffic_chart(per_minute: pl.DataFrame, windows: pl.DataFrame) -> alt.LayerChart:
    """Requests, errors and auth failures per minute; red bands mark windows with findings."""
    lines = _lines(per_minute, ["requests", "errors", "auth_failures"], "per minute")
    return alt.layer(_window_marks(windows), lines).properties(height=280)


def rates_chart(per_minute: pl.DataFrame, windows: pl.DataFrame) -> alt.LayerChart:
    """Error rate, auth-failure rate and throttled share per minute, with the same marks."""
    lines = _lines(
        per_minute, ["error_rate", "auth_failure_rate", "throttled_share"], "share of requests", "%"
    )
    return alt.layer(_window_marks(windows), lines).properties(height=280)


def band_chart(series: pl.DataFrame, x: str = "minute", flagged: str = "max_score") -> alt.LayerChart:
    """A subject's requests over its baseline band; red points are windows with findings.

    Args:
        series: Columns ``x``, ``requests``, ``baseline``, ``band_low``,
            ``band_high`` and ``flagged`` (null where there is no finding).
        x: The time column.
        flagged: The column that is set where a window has findings.
    """
    base = alt.Chart(series.select(x, "requests", "baseline", "band_low", "band_high", flagged)).encode(
        x=alt.X(f"{x}:T", **_UTC_AXIS)
    )
    when = alt.Tooltip(f"utcyearmonthdatehoursminutes({x}):T", title="window (UTC)")
    # symlog: an attack can be 50x the baseline, which would flatten the band on a linear axis
    band = base.mark_area(opacity=0.3, color="#9ecae1").encode(
        y=alt.Y("band_low:Q", title="requests per window", scale=alt.Scale(type="symlog")), y2="band_high:Q"
    )
    baseline = base.mark_line(strokeDash=[4, 3], color="#3182bd").encode(y="baseline:Q")
    observed = base.mark_line(color="#222222").encode(
        y="requests:Q",
        tooltip=[
            when,
            "requests:Q",
            alt.Tooltip("baseline:Q", format=".1f"),
            alt.Tooltip("band_high:Q", format=".1f"),
        ],
    )
    points = (
        base.transform_filter(f"datum.{flagged} != null")
        .mark_point(color=ANOMALY_COLOR, filled=True, size=60)
        .encode(
            y="requests:Q",
            tooltip=[when, "requests:Q", alt.Tooltip(f"{flagged}:Q", title="score", format=".2f")],
        )
    )
    return alt.layer(band, baseline, observed, points).properties(height=300)


def status_mix_chart(series: pl.DataFrame) -> alt.Chart:
    """Requests per minute stacked by status class."""
    columns = ["status_2xx", "status_3xx", "status_4xx", "status_5xx"]
    return (
        alt.Chart(series.select("minute", *columns))
        .transform_fold(columns, as_=["series", "value"])
        .mark_area()
        .encode(
            x=alt.X("minute:T", **_UTC_AXIS),
            y=alt.Y("value:Q", title="requests per minute", stack=True),
            color=alt.Color(
                "series:N",
                title=None,
                sort=columns,
                scale=alt.Scale(domain=columns, range=["#2ca02c", "#1f77b4", "#ff7f0e", ANOMALY_COLOR]),
                legend=alt.Legend(orient="bottom", labelExpr="replace(datum.label, 'status_', '')"),
            ),
            tooltip=[
                alt.Tooltip("utcyearmonthdatehoursminutes(minute):T", title="minute (UTC)"),
                "series:N",
                "value:Q",
            ],
        )
        .properties(height=240)
    )


def line_chart(series: pl.DataFrame, column: str, title: str) -> alt.Chart:
    """One column of ``series`` per minute."""
    return (
        alt.Chart(series.select("minute", column))
        .mark_line(point=alt.OverlayMarkDef(size=16))
        .encode(
            x=alt.X("minute:T", **_UTC_AXIS),
            y=alt.Y(f"{column}:Q", title=title),
            tooltip=[
                alt.Tooltip("utcyearmonthdatehoursminutes(minute):T", title="minute (UTC)"),
                f"{column}:Q",
            ],
        )
        .properties(height=240)
    )


def evidence_chart(evidence: pl.DataFrame) -> alt.Chart:
    """Observed value against baseline per feature, one small chart per feature.

    Points, not lines: several detectors can report the same feature for one window.
    """
    return (
        alt.Chart(evidence.select("window_start", "feature", "observed", "baseline"))
        .transform_fold(["observed", "baseline"], as_=["series", "value"])
        .mark_point(filled=True, size=40)
        .encode(
            x=alt.X("window_start:T", **_UTC_AXIS),
            y=alt.Y("value:Q", title=None),
            color=alt.Color(
                "series:N",
                title=None,
                scale=alt.Scale(domain=["observed", "baseline"], range=[ANOMALY_COLOR, "#3182bd"]),
            ),
            tooltip=["feature:N", "series:N", alt.Tooltip("value:Q", format=".3g")],
        )
        .properties(height=160, width=260)
        .facet(facet=alt.Facet("feature:N", title=None), columns=3)
        .resolve_scale(y="independent")
    )
