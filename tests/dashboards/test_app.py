"""Every dashboard page run by Streamlit's AppTest; the numbers shown must equal the store's.

Most tests read a store filled by a real ``gatewatch replay`` of the sample log
(``replay_store``) and compute what the page must show with their own SQL,
independent of ``gatewatch.dashboards.queries``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pyarrow as pa
import pytest
from store_rows import API_A, TRAFFIC, traffic_row, ts
from streamlit.testing.v1 import AppTest

from gatewatch import dashboards
from gatewatch.dashboards import ui
from gatewatch.flows.control.decisions import list_decisions
from gatewatch.sinks.control import ControlDB
from gatewatch.sinks.store import StoreWriter
from tests.conftest import gatewatch, rows, scalar

PAGES = ["overview", "incidents", "subject", "decisions", "health"]
# the start of a time range as the dashboard counts it: back from the newest window end
SINCE = {
    "Last 1 h": "(SELECT max(window_end) FROM traffic) - INTERVAL 1 HOUR",
    "Last 15 min": "(SELECT max(window_end) FROM traffic) - INTERVAL 15 MINUTE",
    "All": "TIMESTAMPTZ '1970-01-01 00:00:00+00'",
}
CURRENT_DECISIONS = "SELECT decision_id, arg_max(status, changed_at) AS status FROM decisions GROUP BY 1"
CURRENT_INCIDENTS = "SELECT incident_id, arg_max(state, changed_at) AS state FROM incidents GROUP BY 1"
ACTIVE = "('recorded', 'approved', 'applied')"


@pytest.fixture(autouse=True)
def _no_store_flag(monkeypatch):
    # the app reads --store from sys.argv, which holds pytest's arguments here
    monkeypatch.setattr(sys, "argv", ["app.py"])
    monkeypatch.delenv("GATEWATCH_REFRESH_S", raising=False)
    monkeypatch.delenv("GATEWATCH_OPERATORS", raising=False)  # read-only unless a test gives operators
    monkeypatch.setattr(ui, "SIGN_IN_LIMIT", ui.SignInLimit())  # no test's failed sign-ins count in another


# operators' tokens, as $GATEWATCH_OPERATORS holds them
TOKENS = {"carol": "carol-token-0123456789", "dave": "dave-token-9876543210"}
SIGN_IN = "FormSubmitter:sign_in-Sign in"


def with_operators(monkeypatch) -> None:
    monkeypatch.setenv("GATEWATCH_OPERATORS", ",".join(f"{name}:{token}" for name, token in TOKENS.items()))


def sign_in(app: AppTest, token: str) -> AppTest:
    """Type ``token`` in the sidebar's sign-in form and submit it."""
    app.text_input(key="operator_token").set_value(token)
    return app.button(key=SIGN_IN).click().run()


def open_page(
    monkeypatch, store: Path, page: str = "overview", time_range: str | None = None, **params
) -> AppTest:
    """Run the app on ``store`` and switch to ``page`` (with URL query ``params``), like a browser would."""
    monkeypatch.setenv("GATEWATCH_STORE", str(store))
    app = AppTest.from_file(dashboards.APP_PATH, default_timeout=90)
    app.query_params.update(params)
    app.run()
    if time_range:
        app.radio(key="time_range").set_value(time_range).run()
    if page != "overview":
        app.switch_page(f"views/{page}.py").run()
    assert not app.exception, app.exception
    assert [t.value for t in app.title] == [
        {"overview": "Overview", "incidents": "Incidents & findings", "subject": "Subject drill-down",
         "decisions": "Decisions", "health": "Pipeline health"}[page]
    ]  # fmt: skip
    return app


def metrics(app: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


def table(app: AppTest, column: str, without: str | None = None):
    """The one table (pandas) with ``column`` and without ``without``; AppTest shows no table keys."""
    (found,) = [
        df.value for df in app.dataframe if column in df.value.columns and without not in df.value.columns
    ]
    return found


def captions(app: AppTest) -> list[str]:
    return [c.value for c in app.caption]


def count(n) -> str:
    return f"{n or 0:,}"


def percent(part, whole) -> str:
    return f"{part / whole:.1%}" if whole else "–"


# -- Overview ---------------------------------------------------------------------------------


@pytest.mark.parametrize("time_range", ["Last 1 h", "All"])
def test_overview_numbers_equal_the_store(monkeypatch, replay_store, time_range):
    app = open_page(monkeypatch, replay_store, time_range=time_range)

    since = SINCE[time_range]
    (t,) = rows(
        replay_store,
        f"""SELECT sum(requests) AS r, sum(status_4xx + status_5xx) AS e, sum(auth_failures) AS a,
                   sum(throttled) AS th, max(date_trunc('minute', window_start)) AS newest
            FROM traffic WHERE window_start >= {since}""",
    )
    newest = scalar(
        replay_store,
        f"""SELECT sum(requests) FROM traffic
            WHERE window_start >= {since} AND date_trunc('minute', window_start) = $m""",
        {"m": t["newest"]},
    )
    expected = {
        "Requests": count(t["r"]),
        "Requests/min": count(newest),
        "Error rate": percent(t["e"], t["r"]),
        "Auth-failure rate": percent(t["a"], t["r"]),
        "Throttled share": percent(t["th"], t["r"]),
        "Findings": count(
            scalar(replay_store, f"SELECT count(*) FROM findings WHERE window_start >= {since}")
        ),
        "Open incidents": count(
            scalar(
                replay_store,
                f"SELECT count(*) FROM ({CURRENT_INCIDENTS}) WHERE state IN ('open', 'escalated')",
            )
        ),
        "Pending review": count(
            scalar(
                replay_store, f"SELECT count(*) FROM ({CURRENT_DECISIONS}) WHERE status = 'pending_review'"
            )
        ),
        "Active decisions": count(
            scalar(
                replay_store,
                f"SELECT count(*) FROM ({CURRENT_DECISIONS}) WHERE status IN {ACTIVE}",
            )
        ),
        "Dead letters": count(
            scalar(
                replay_store,
                "SELECT count(DISTINCT delivery_id) FROM deliveries WHERE outcome = 'dead_letter'",
            )
        ),
    }
    assert metrics(app) == expected
    assert t["r"] > 0 and expected["Findings"] != "0"  # the sample holds an attack: the test must see it


def test_overview_charts_mark_the_flagged_windows(monkeypatch, replay_store):
    app = open_page(monkeypatch, replay_store)

    charts = app.get("vega_lite_chart")
    assert len(charts) == 2
    flagged = rows(
        replay_store,
        f"""SELECT DISTINCT window_start, window_end FROM findings WHERE window_start >= {SINCE["Last 1 h"]}
            ORDER BY 1, 2""",
    )
    assert flagged
    for chart in charts:
        spec = json.loads(chart.proto.spec)
        assert [layer["mark"]["type"] for layer in spec["layer"]] == ["rect", "line"]
        data = {d.name: pa.ipc.open_stream(d.data.data).read_all() for d in chart.proto.datasets}
        marks = data[spec["layer"][0]["data"]["name"]]
        assert list(zip(marks["window_start"].to_pylist(), marks["window_end"].to_pylist(), strict=True)) == [
            (r["window_start"], r["window_end"]) for r in flagged
        ]


def test_overview_tables_equal_the_store(monkeypatch, replay_store):
    app = open_page(monkeypatch, replay_store, time_range="All")

    by_volume = rows(
        replay_store,
        "SELECT consumer, sum(requests) AS requests FROM traffic GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10",
    )
    consumers = table(app, "consumer_owner")
    assert consumers[["consumer", "requests"]].values.tolist() == [
        [r["consumer"], r["requests"]] for r in by_volume
    ]

    by_risk = rows(
        replay_store,
        """SELECT subject_type, subject, max(score) AS s FROM findings GROUP BY ALL
           ORDER BY s DESC, count(*) DESC LIMIT 10""",
    )
    risky = table(app, "kinds")
    assert risky["max_score"].tolist() == pytest.approx([r["s"] for r in by_risk])
    assert risky["subject_type"].tolist() == [r["subject_type"] for r in by_risk]
    assert "PartnerPortal" in risky["subject_name"].tolist()  # the sample's credential stuffing

    recent = table(app, "reasons")
    assert len(recent) == min(20, scalar(replay_store, "SELECT count(*) FROM findings"))
    assert recent["window_start"].is_monotonic_decreasing


def test_overview_picks_up_new_rows_on_rerun(monkeypatch, replay_copy):
    app = open_page(monkeypatch, replay_copy, time_range="All")
    before = scalar(replay_copy, "SELECT sum(requests) FROM traffic")
    assert metrics(app)["Requests"] == count(before)

    newest = scalar(replay_copy, "SELECT max(window_start) FROM traffic")
    row = traffic_row(0, API_A, "c1", 400)
    start = newest.timestamp() + 60
    StoreWriter(replay_copy, writer="t1").open().append("traffic", [(start, start + 60, *row[2:])])
    control = ControlDB(replay_copy).open()  # as the pipeline does once every shard has written the window
    control.advance_watermark(start + 60)
    control.close()
    app.run()

    assert not app.exception
    assert metrics(app)["Requests"] == count(before + 400)
    assert metrics(app)["Requests/min"] == "400"


# -- Incidents & findings ---------------------------------------------------------------------


def test_incidents_page_lists_incidents_and_findings_of_the_store(monkeypatch, replay_store):
    app = open_page(monkeypatch, replay_store, "incidents", time_range="All")

    incidents = rows(replay_store, f"SELECT state FROM ({CURRENT_INCIDENTS}) ORDER BY state")
    shown = table(app, "first_seen")
    assert sorted(shown["state"].tolist()) == [r["state"] for r in incidents]
    findings = scalar(replay_store, "SELECT count(*) FROM findings")
    assert f"Findings ({findings:,})" in [s.value for s in app.subheader]
    assert len(table(app, "detector")) == findings


def test_incidents_page_filters_by_kind_type_and_score(monkeypatch, replay_store):
    app = open_page(monkeypatch, replay_store, "incidents", time_range="All")
    kinds = rows(replay_store, "SELECT DISTINCT kind FROM findings ORDER BY 1")
    assert app.multiselect(key="kinds").options == [r["kind"] for r in kinds]

    app.multiselect(key="kinds").set_value(["credential_stuffing"])
    app.multiselect(key="subject_types").set_value(["consumer"])
    app.slider(key="min_score").set_value(0.9).run()

    expected = scalar(
        replay_store,
        """SELECT count(*) FROM findings
           WHERE kind = 'credential_stuffing' AND subject_type = 'consumer' AND score >= 0.9""",
    )
    assert expected > 0
    assert f"Findings ({expected:,})" in [s.value for s in app.subheader]
    shown = table(app, "detector")
    assert set(shown["kind"]) == {"credential_stuffing"}
    assert set(shown["subject_type"]) == {"consumer"}


def test_finding_detail_shows_evidence_and_the_decisions_it_caused(monkeypatch, replay_store):
    (caused,) = rows(
        replay_store,
        """SELECT f.finding_id, f.evidence FROM findings f JOIN decisions d USING (finding_id)
           ORDER BY f.score DESC, f.finding_id LIMIT 1""",
    )
    app = open_page(monkeypatch, replay_store, "incidents", time_range="All")
    app.selectbox(key="finding").set_value(caused["finding_id"]).run()

    evidence = json.loads(caused["evidence"])
    reasons = evidence.get("reasons", evidence)
    shown = table(app, "observed")
    assert sorted(shown["feature"]) == sorted(
        k for k, v in reasons.items() if isinstance(v, dict) and "observed" in v
    )
    for _, r in shown.iterrows():
        assert r["observed"] == pytest.approx(reasons[r["feature"]]["observed"])
        assert r["baseline"] == pytest.approx(reasons[r["feature"]]["baseline"])
    decided = rows(
        replay_store,
        "SELECT DISTINCT decision_id FROM decisions WHERE finding_id = $f ORDER BY 1",
        {"f": caused["finding_id"]},
    )
    assert sorted(table(app, "expires_at")["decision_id"]) == [r["decision_id"] for r in decided]


# -- Subject drill-down -----------------------------------------------------------------------


def test_subject_page_opens_on_the_riskiest_consumer_with_its_numbers(monkeypatch, replay_store):
    app = open_page(monkeypatch, replay_store, "subject")

    since = SINCE["Last 1 h"]
    riskiest = scalar(
        replay_store,
        f"""SELECT subject FROM findings WHERE subject_type = 'consumer' AND window_start >= {since}
            GROUP BY subject ORDER BY max(score) DESC LIMIT 1""",
    )
    assert app.selectbox(key="subject_consumer").value == riskiest
    (t,) = rows(
        replay_store,
        f"""SELECT sum(requests) AS r, sum(status_4xx + status_5xx) AS e, sum(auth_failures) AS a,
                   sum(throttled) AS th, max(distinct_ips) AS ips
            FROM traffic WHERE consumer = $c AND window_start >= {since}""",
        {"c": riskiest},
    )
    assert metrics(app) == {
        "Requests": count(t["r"]),
        "Error rate": percent(t["e"], t["r"]),
        "Auth failures": count(t["a"]),
        "Throttled": count(t["th"]),
        "Client IPs (max/window)": count(t["ips"]),
    }
    apis = rows(
        replay_store,
        f"""SELECT api, sum(requests) AS r FROM traffic WHERE consumer = $c AND window_start >= {since}
            GROUP BY api ORDER BY 2 DESC""",
        {"c": riskiest},
    )
    assert table(app, "bytes_out")[["key", "requests"]].values.tolist() == [[r["api"], r["r"]] for r in apis]
    findings = scalar(
        replay_store,
        f"""SELECT count(*) FROM findings
            WHERE subject_type = 'consumer' AND subject = $c AND window_start >= {since}""",
        {"c": riskiest},
    )
    assert len(table(app, "detector")) == findings


def test_subject_band_is_the_detectors_baseline(monkeypatch, replay_store):
    app = open_page(monkeypatch, replay_store, "subject", time_range="All")
    subject = app.selectbox(key="subject_consumer").value

    band = next(c for c in app.get("vega_lite_chart") if "band_high" in c.proto.spec)
    spec = json.loads(band.proto.spec)
    data = {d.name: pa.ipc.open_stream(d.data.data).read_all() for d in band.proto.datasets}
    shown = next(iter(data.values()))
    windows = rows(
        replay_store,
        """SELECT window_start, sum(requests) AS r, max(requests_high) AS hi FROM subject_windows
           WHERE subject_type = 'consumer' AND subject = $s GROUP BY 1 ORDER BY 1""",
        {"s": subject},
    )
    assert shown["requests"].to_pylist() == [w["r"] for w in windows]
    assert shown["band_high"].to_pylist() == pytest.approx([w["hi"] for w in windows], nan_ok=True)
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["area", "line", "line", "point"]


def test_subject_page_for_an_api_and_an_ip(monkeypatch, replay_store):
    app = open_page(monkeypatch, replay_store, "subject", time_range="All")
    app.radio(key="subject_type").set_value("api").run()
    app.selectbox(key="subject_api").set_value("AccountsAPI:1.0.0").run()
    assert not app.exception

    total = scalar(replay_store, "SELECT sum(requests) FROM traffic WHERE api = 'AccountsAPI:1.0.0'")
    assert metrics(app)["Requests"] == count(total)
    consumers = rows(
        replay_store,
        """SELECT consumer, sum(requests) AS r FROM traffic WHERE api = 'AccountsAPI:1.0.0'
           GROUP BY 1 ORDER BY 2 DESC, 1""",
    )
    assert table(app, "bytes_out")[["key", "requests"]].values.tolist() == [
        [r["consumer"], r["r"]] for r in consumers
    ]

    ip = scalar(
        replay_store, "SELECT subject FROM findings WHERE subject_type = 'ip' ORDER BY score DESC LIMIT 1"
    )
    app.radio(key="subject_type").set_value("ip").run()
    app.selectbox(key="subject_ip").set_value(ip).run()
    assert not app.exception
    requests = scalar(
        replay_store,
        "SELECT sum(requests) FROM subject_windows WHERE subject_type = 'ip' AND subject = $s",
        {"s": ip},
    )
    assert metrics(app)["Requests"] == count(requests)
    assert set(table(app, "detector")["subject_type"]) == {"ip"}


def test_subject_page_opens_the_subject_in_the_url(monkeypatch, replay_store):
    quiet = scalar(replay_store, "SELECT consumer FROM traffic GROUP BY 1 ORDER BY sum(requests) LIMIT 1")

    app = open_page(monkeypatch, replay_store, "subject", time_range="All", type="consumer", id=quiet)

    assert app.selectbox(key="subject_consumer").value == quiet
    assert metrics(app)["Requests"] == count(
        scalar(replay_store, "SELECT sum(requests) FROM traffic WHERE consumer = $c", {"c": quiet})
    )


# -- Decisions --------------------------------------------------------------------------------


def test_decisions_page_counts_current_states(monkeypatch, replay_store):
    app = open_page(monkeypatch, replay_store, "decisions", time_range="All")

    by_status = {
        r["status"]: r["n"]
        for r in rows(replay_store, f"SELECT status, count(*) AS n FROM ({CURRENT_DECISIONS}) GROUP BY 1")
    }
    assert sum(by_status.values()) > 0

    def total(*statuses: str) -> str:
        return count(sum(by_status.get(s, 0) for s in statuses))

    assert metrics(app) == {
        "Pending review": total("pending_review"),
        "Active": total("recorded", "approved", "applied"),
        "Expired": total("expired"),
        "Reverted": total("reverted"),
        "Other": total("suppressed", "rejected", "failed"),
    }
    active = rows(
        replay_store,
        f"SELECT decision_id FROM ({CURRENT_DECISIONS}) WHERE status IN {ACTIVE} ORDER BY 1",
    )
    (shown,) = [
        df.value
        for df in app.dataframe
        if "expires_at" in df.value.columns and set(df.value["status"]) <= {"recorded", "approved", "applied"}
    ]
    assert sorted(shown["decision_id"]) == [r["decision_id"] for r in active]
    changes = scalar(
        replay_store,
        """SELECT count(*) FROM (
               SELECT DISTINCT changed_at, decision_id, subject_type, subject_name, status, tier,
                   limit_per_min, actor, reason
               FROM decisions)""",
    )
    assert len(table(app, "changed_at", without="expires_at")) == min(200, changes)


def test_approve_and_revert_with_a_confirmation_through_the_cli_path(monkeypatch, review_copy):
    store = review_copy
    (pending, *_) = list_decisions(store, "pending_review")

    with_operators(monkeypatch)
    app = open_page(monkeypatch, store, "decisions")
    assert metrics(app)["Pending review"] == count(len(list_decisions(store, "pending_review")))
    sign_in(app, TOKENS["carol"])
    assert app.sidebar.success[0].value == "Signed in as **carol**"
    app.selectbox(key="approve_pick").set_value(pending.decision_id).run()
    app.button(key="approve").click().run()
    assert "Approve **PartnerPortal" in app.warning[0].value and "carol" in app.warning[0].value
    assert {d.decision_id: d.status for d in list_decisions(store)}[pending.decision_id] == "pending_review"

    app.button(key="confirm_yes").click().run()
    assert not app.exception
    assert app.success[0].value == f"Decision {pending.decision_id} is now approved, by carol."
    approved = {d.decision_id: d for d in list_decisions(store)}[pending.decision_id]
    assert (approved.status, approved.actor) == ("approved", "carol")
    log = table(app, "changed_at", without="expires_at")
    assert log.iloc[0][["decision_id", "status", "actor"]].tolist() == [
        pending.decision_id,
        "approved",
        "carol",
    ]

    app.selectbox(key="revert_pick").set_value(pending.decision_id).run()
    app.button(key="revert").click().run()
    app.button(key="confirm_no").click().run()  # cancelled: nothing happens
    assert not app.warning
    assert {d.decision_id: d.status for d in list_decisions(store)}[pending.decision_id] == "approved"

    app.button(key="revert").click().run()
    app.button(key="confirm_yes").click().run()
    assert app.success[0].value == f"Decision {pending.decision_id} is now reverted, by carol."
    assert {d.decision_id: d.status for d in list_decisions(store)}[pending.decision_id] == "reverted"


def test_a_refused_change_is_shown_not_raised(monkeypatch, replay_copy):
    (active, *_) = list_decisions(replay_copy, "recorded")
    with_operators(monkeypatch)
    app = open_page(monkeypatch, replay_copy, "decisions")
    sign_in(app, TOKENS["dave"])
    app.selectbox(key="revert_pick").set_value(active.decision_id).run()
    app.button(key="revert").click().run()
    # meanwhile someone else reverts it from the command line
    gatewatch("decisions", "revert", active.decision_id, "--store", str(replay_copy), "--actor", "erin")
    app.button(key="confirm_yes").click().run()

    assert not app.exception
    assert app.error[0].value.startswith(f"Revert {active.decision_id} failed: ")
    assert {d.decision_id: d.actor for d in list_decisions(replay_copy)}[active.decision_id] == "erin"


def test_without_the_enforcement_path_the_page_offers_no_buttons(monkeypatch, replay_store):
    monkeypatch.setitem(sys.modules, "gatewatch.flows.control.decisions", None)  # as if it were not installed

    app = open_page(monkeypatch, replay_store, "decisions")

    assert not app.button
    assert any("needs the enforcement path" in c for c in captions(app))
    assert metrics(app)["Active"] != "0"


# -- Pipeline health --------------------------------------------------------------------------


def test_health_page_numbers_equal_the_store(monkeypatch, replay_store):
    app = open_page(monkeypatch, replay_store, "health")

    newest = scalar(
        replay_store,
        """SELECT sum(requests) FROM traffic
           WHERE date_trunc('minute', window_start)
               = (SELECT max(date_trunc('minute', window_start)) FROM traffic)""",
    )
    shown = metrics(app)
    assert shown["Events/s"] == f"{newest / 60:,.1f}"
    assert shown["Rejected lines"] == count(scalar(replay_store, "SELECT count(*) FROM rejected"))
    assert shown["Rejected lines"] == "10"  # every line of cases/unusable_lines.log
    assert shown["Late requests"] == count(
        scalar(replay_store, f"SELECT sum(late_requests) FROM traffic WHERE window_start >= {SINCE['Last 1 h']}")
    )
    assert shown["End-to-end lag"].endswith(" d")  # a replayed log from weeks ago: the lag is its age
    assert shown["Dead letters"] == "0"

    reasons = rows(replay_store, "SELECT reason, count(*) AS n FROM rejected GROUP BY 1 ORDER BY 2 DESC, 1")
    assert table(app, "sample_raw")[["reason", "lines"]].values.tolist() == [
        [r["reason"], r["n"]] for r in reasons
    ]

    app.selectbox(key="reject_reason").set_value("bad_timestamp").run()
    samples = rows(
        replay_store, "SELECT line_no FROM rejected WHERE reason = 'bad_timestamp' ORDER BY line_no DESC"
    )
    assert table(app, "ingested_at")["line_no"].tolist() == [r["line_no"] for r in samples]
    assert "No deliveries yet" in " ".join(captions(app))


def test_health_page_shows_deliveries_dead_letters_and_the_outbox(monkeypatch, store_root):
    control = ControlDB(store_root).open()
    control.enqueue("o1", "webhook", "hooks", "d3", {"a": 1})
    control.advance_watermark(time.time() - 30)
    control.close()

    app = open_page(monkeypatch, store_root, "health")

    shown = metrics(app)
    assert (
        shown["Dead letters"],
        shown["Outbox pending"],
        shown["Rejected lines"],
        shown["Late requests"],
    ) == ("1", "1", "3", "4")
    deliveries = table(app, "outcome")
    assert deliveries[["outcome", "attempts", "deliveries"]].values.tolist() == [
        ["dead_letter", 1, 1],
        ["retry", 3, 2],
        ["sent", 1, 1],
    ]
    dead = table(app, "ref_id")
    assert dead[["ref_id", "error"]].values.tolist() == [["d1", "timed out"]]
    assert table(app, "entries")[["channel", "state", "entries"]].values.tolist() == [
        ["webhook", "pending", 1]
    ]


@pytest.mark.parametrize("page", ["overview", "health"])
def test_rates_read_the_newest_complete_minute_not_one_still_being_written(monkeypatch, store_root, page):
    control = ControlDB(store_root).open()
    control.advance_watermark(ts(4))  # minute 4 is past the watermark: some shards' rows may be missing
    control.close()

    shown = metrics(open_page(monkeypatch, store_root, page))

    minute_3 = sum(r[6] for r in TRAFFIC if r[0] == ts(3))  # its 360 requests, not minute 4's 90
    assert minute_3 == 360
    if page == "overview":
        assert shown["Requests/min"] == count(minute_3)
    else:
        assert shown["Events/s"] == f"{minute_3 / 60:,.1f}"


def _dead_letters(store: Path, *entry_ids: str) -> None:
    """Queue a webhook delivery per id, each given up after 8 attempts."""
    control = ControlDB(store).open()
    for n, entry_id in enumerate(entry_ids):
        control.enqueue(entry_id, "webhook", "hooks", f"d{n}", {"n": n})
        control.settle(entry_id, state="dead_letter", attempts=8, next_at=0.0, last_error="HTTP 503")
    control.close()


def _outbox_states(store: Path) -> dict[str, str]:
    control = ControlDB(store).open()
    try:
        return {e.id: e.state for e in control.outbox()}
    finally:
        control.close()


def test_dead_letters_are_retried_from_the_health_page_by_a_signed_in_operator(monkeypatch, store_root):
    _dead_letters(store_root, "o1", "o2", "o3")
    control = ControlDB(store_root).open()
    time.sleep(0.01)  # o3 is superseded: a newer delivery to the same destination for the same decision
    control.enqueue("o4", "webhook", "hooks", "d2", {"n": 4})
    control.close()
    with_operators(monkeypatch)
    app = open_page(monkeypatch, store_root, "health")
    assert app.multiselect(key="retry_pick").value == ["o1", "o2", "o3"]  # every dead letter, at first
    button = app.button(key="retry_dead_letters")
    assert button.disabled and button.help == "Disabled: " + ui.SIGN_IN_FIRST

    sign_in(app, TOKENS["carol"])
    assert not app.button(key="retry_dead_letters").disabled
    app.multiselect(key="retry_pick").set_value(["o1", "o3"]).run()
    app.button(key="retry_dead_letters").click().run()
    assert not app.exception
    assert _outbox_states(store_root) == {"o1": "pending", "o2": "dead_letter", "o3": "dead_letter", "o4": "pending"}
    assert app.warning == [] and app.success[0].value == (
        "Retried by carol, pending again: o1. "
        "Not retried, a newer delivery to the same destination supersedes it: o3."
    )
    assert app.multiselect(key="retry_pick").options == [
        "hooks · d1 · 8 attempts · HTTP 503 · o2",
        "hooks · d2 · 8 attempts · HTTP 503 · o3",
    ]
    assert app.multiselect(key="retry_pick").value == ["o3"]  # o1 is gone: nothing else was picked

    app.multiselect(key="retry_pick").set_value(["o2"]).run()
    app.button(key="retry_dead_letters").click().run()
    assert _outbox_states(store_root)["o2"] == "pending"
    assert app.success[0].value == "Retried by carol, pending again: o2."
    retried = app.dataframe[-1].value  # who retried what stays on the page, and in the control database
    assert list(retried["actor"]) == ["carol", "carol"] and list(retried["entry_id"]) == ["o2", "o1"]


def test_without_an_operator_dead_letters_cannot_be_retried_and_it_says_why(monkeypatch, store_root):
    _dead_letters(store_root, "o1")
    app = open_page(monkeypatch, store_root, "health")
    button = app.button(key="retry_dead_letters")
    assert button.disabled and button.help.startswith("Disabled: read-only: no operators are configured")
    assert _outbox_states(store_root) == {"o1": "dead_letter"}


def test_a_retry_is_made_as_whoever_is_signed_in_when_it_is_pressed(monkeypatch, tmp_path, store_root):
    _dead_letters(store_root, "o1")
    tokens = tmp_path / "operators"
    tokens.write_text(f"carol:{TOKENS['carol']}\n")
    monkeypatch.setattr(sys, "argv", ["app.py", "--operators-env", "", "--operators-file", str(tokens)])
    app = open_page(monkeypatch, store_root, "health")
    sign_in(app, TOKENS["carol"])
    assert not app.button(key="retry_dead_letters").disabled

    tokens.write_text(f"dave:{TOKENS['dave']}\n")  # carol's token is taken away before she presses it
    app.button(key="retry_dead_letters").click().run()
    assert app.error[0].value == "Retry refused: no operator is signed in. Nothing changed."
    assert _outbox_states(store_root) == {"o1": "dead_letter"}
    assert app.button(key="retry_dead_letters").disabled


def test_no_retry_is_offered_without_dead_letters(monkeypatch, store_root):
    _dead_letters(store_root)  # a control database, but nothing in it given up
    app = open_page(monkeypatch, store_root, "health")
    assert not [b for b in app.button if b.key == "retry_dead_letters"]


def test_health_page_shows_the_decision_api_callers(monkeypatch, store_root):
    now = time.time()
    stats = {
        "started_at": now - 100, "updated_at": now, "requests": 250, "forbidden": 7, "bad_requests": 3,
        "refused_connections": 4, "callers": {
            "nginx-bouncer": {"requests": 200, "errors": 0, "last_seen": now - 1},
            "wso2-is": {"requests": 50, "errors": 3, "last_seen": now - 2},
        },
    }  # fmt: skip
    (store_root / "api-stats.json").write_text(json.dumps(stats))

    app = open_page(monkeypatch, store_root, "health")

    callers = table(app, "per_s")
    assert callers[["caller", "requests", "errors"]].values.tolist() == [["nginx-bouncer", 200, 0], ["wso2-is", 50, 3]]
    assert callers["per_s"].tolist() == [2.0, 0.5]
    assert any(
        "250 requests" in c and "7 refused" in c and "3 malformed" in c and "4 connections refused" in c
        for c in captions(app)
    )


def test_health_page_has_no_api_section_when_the_api_never_ran(monkeypatch, store_root):
    app = open_page(monkeypatch, store_root, "health")
    assert not any(h.value == "Decision API" for h in app.subheader)


# -- every page -------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["empty", "missing"])
@pytest.mark.parametrize("page", PAGES)
def test_every_page_without_data_shows_first_run_help(monkeypatch, tmp_path, page, state):
    store = tmp_path / "store"
    if state == "empty":
        StoreWriter(store).open()

    app = open_page(monkeypatch, store, page)

    (info,) = app.main.info  # the sidebar says the dashboard is read-only
    assert "gatewatch replay sample_logs/*.log" in info.value
    assert "gatewatch run FILE" in info.value
    assert str(store) in info.value
    assert not app.error


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs_on_the_replayed_store_in_every_time_range(monkeypatch, replay_store, page):
    for time_range in ui.TIME_RANGES:
        app = open_page(monkeypatch, replay_store, page, time_range=time_range)
        assert not app.error
        assert "Traffic from 2026-11-02 09:00 to 2026-11-02 10:30 UTC (event time)" in captions(app)


def test_time_range_counts_back_from_the_newest_data(monkeypatch, replay_store):
    app = open_page(monkeypatch, replay_store)
    assert app.radio(key="time_range").value == "Last 1 h"

    for time_range in ("Last 15 min", "All", "Last 1 h"):
        app.radio(key="time_range").set_value(time_range).run()
        expected = scalar(
            replay_store, f"SELECT sum(requests) FROM traffic WHERE window_start >= {SINCE[time_range]}"
        )
        assert metrics(app)["Requests"] == count(expected)
    # the choice is shared: another page keeps it
    app.radio(key="time_range").set_value("Last 15 min").run()
    app.switch_page("views/subject.py").run()
    assert app.radio(key="time_range").value == "Last 15 min"


def test_store_flag_wins_over_the_environment(monkeypatch, tmp_path, store_root):
    monkeypatch.setattr(sys, "argv", ["app.py", "--store", str(store_root)])

    app = open_page(monkeypatch, tmp_path / "elsewhere", time_range="All")

    assert metrics(app)["Requests"] == "1,100"
    assert f"Store `{store_root}` · refreshes every 5 s" in [c.value for c in app.sidebar.caption]


def test_a_bad_refresh_interval_is_warned_about(monkeypatch, store_root):
    monkeypatch.setenv("GATEWATCH_REFRESH_S", "soon")

    app = open_page(monkeypatch, store_root, time_range="All")

    assert "GATEWATCH_REFRESH_S" in app.sidebar.warning[0].value
    assert metrics(app)["Requests"] == "1,100"


def test_an_unreadable_store_is_an_error_message_not_a_stack_trace(monkeypatch, store_root):
    (segment,) = (store_root / "findings").glob("*.parquet")
    segment.write_bytes(b"not parquet")

    app = open_page(monkeypatch, store_root)

    assert "Could not read the store" in app.error[0].value


def test_gatewatch_dashboard_serves_the_app_and_stops_on_ctrl_c(store_root, serve_dashboard):
    proc, _ = serve_dashboard(store_root)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    proc.communicate(timeout=30)
    assert proc.returncode == 0


HOSTILE_NAME = "[pwned](https://evil.example/) ![x](https://evil.example/p.png) :red[alarm] **loud** `tick` <b>b</b>"


def test_a_name_from_the_logs_is_shown_as_text_never_as_markdown(monkeypatch, store_root):
    from store_rows import F1_EVIDENCE, finding_row

    StoreWriter(store_root).open().append("findings", [finding_row(
        "f-hostile", "consumer", "c9", HOSTILE_NAME, "", "credential_stuffing", "credential_stuffing", 0.95, 4,
        ["auth failures 30 vs baseline 0", "see [here](https://evil.example/)"], F1_EVIDENCE,
    )])  # fmt: skip
    app = open_page(monkeypatch, store_root, "incidents", time_range="All")
    app.selectbox(key="finding").set_value("f-hostile").run()
    shown = "\n".join(m.value for m in app.markdown)
    assert ui.escape_md(f"consumer {HOSTILE_NAME}") in shown
    assert ui.escape_md("see [here](https://evil.example/)") in shown
    # no link, image, colour, emphasis or code opens anywhere outside an escape
    for raw in ("[pwned](", "![x](", ":red[", "**loud", "`tick", "<b>", "[here]("):
        assert re.search(r"(?<!\\)" + re.escape(raw), shown) is None, raw


def test_sigterm_to_gatewatch_dashboard_stops_its_streamlit_server_too(store_root, serve_dashboard):
    proc, port = serve_dashboard(store_root)
    try:
        proc.send_signal(signal.SIGTERM)  # to gatewatch alone, as systemd's stop does with KillMode=mixed
        proc.communicate(timeout=30)
        assert proc.returncode == 0
        with pytest.raises(httpx.TransportError):  # nothing listens any more
            httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group, if the test failed


# -- Links to the subject page ----------------------------------------------------------------


def link_params(url: str) -> dict[str, str]:
    """The query of a relative subject-page link, which must lead to the subject page."""
    path, _, query = url.partition("?")
    assert path == "subject"
    return dict(parse_qsl(query, strict_parsing=True))


def column_configs(app: AppTest, column: str) -> list[dict]:
    """The column config Streamlit sends for ``column``, of each table that has it."""
    return [
        json.loads(df.proto.columns)[column] for df in app.dataframe if column in json.loads(df.proto.columns)
    ]


def test_incidents_and_findings_link_to_their_subject_page(monkeypatch, store_root):
    app = open_page(monkeypatch, store_root, "incidents", time_range="All")

    incidents = table(app, "first_seen")
    assert incidents[["state", "subject_link"]].values.tolist() == [
        ["escalated", "subject?type=consumer&id=c3"],  # i1
        ["resolved", "subject?type=ip&id=203.0.113.7"],  # i2
    ]
    findings = table(app, "detector")
    assert dict(findings[["detector", "subject_link"]].values.tolist()) == {
        "auth_rate": "subject?type=consumer&id=c3",  # f1
        "ip_fanout": "subject?type=ip&id=203.0.113.7",  # f2
    }
    configs = column_configs(app, "subject_link")
    assert len(configs) == 2
    assert all(c["type_config"]["type"] == "link" for c in configs)

    # an id with characters a URL must escape survives the round trip
    assert link_params(ui.subject_url("api", f"{API_A} POST /login?x=1&y")) == {
        "type": "api",
        "id": f"{API_A} POST /login?x=1&y",
    }


def test_the_overview_links_its_incidents_findings_and_riskiest_subjects(monkeypatch, store_root):
    app = open_page(monkeypatch, store_root, time_range="All")

    assert table(app, "kinds")[["subject_name", "subject_link"]].values.tolist() == [
        ["203.0.113.7", "subject?type=ip&id=203.0.113.7"],
        ["mallory-app", "subject?type=consumer&id=c3"],
    ]
    assert table(app, "first_seen")["subject_link"].tolist() == ["subject?type=consumer&id=c3"]  # open: i1
    assert set(table(app, "detector")["subject_link"]) == {
        "subject?type=consumer&id=c3",
        "subject?type=ip&id=203.0.113.7",
    }


def test_a_link_opens_the_subject_page_on_its_subject(monkeypatch, store_root):
    app = open_page(monkeypatch, store_root, "incidents", time_range="All")
    scanner = table(app, "first_seen").set_index("state").loc["resolved", "subject_link"]  # i2

    opened = open_page(monkeypatch, store_root, "subject", time_range="All", **link_params(scanner))

    assert opened.radio(key="subject_type").value == "ip"
    assert opened.selectbox(key="subject_ip").value == "203.0.113.7"
    assert metrics(opened)["Requests"] == "310"  # its subject_windows row
    assert set(table(opened, "detector")["detector"]) == {"ip_fanout"}  # f2

    # another link opened in the same session: the page follows it
    opened.query_params.update(link_params(ui.subject_url("consumer", "c2")))
    opened.run()
    assert (opened.radio(key="subject_type").value, opened.selectbox(key="subject_consumer").value) == (
        "consumer",
        "c2",
    )
    assert metrics(opened)["Requests"] == "150"  # 50 + 40 + 60


# -- Decision history -------------------------------------------------------------------------


def test_the_decision_history_says_what_changed_between_state_rows(monkeypatch, store_root):
    from store_rows import decision_row

    from gatewatch.sinks.schema import TABLES

    names = [field.name for field in TABLES["decisions"]]
    applied = dict(zip(names, decision_row("d3", "f1", "consumer", "c3", "mallory-app", "restricted",
                                           "applied", "policy", 4, 4.5), strict=True))  # fmt: skip
    extended = {**applied, "actor": "bob", "expires_at": applied["expires_at"] + 3600, "changed_at": ts(6)}
    blocked = {**extended, "tier": "blocked", "limit_per_min": 0, "changed_at": ts(7)}
    StoreWriter(store_root).open().append(
        "decisions", [tuple(r[n] for n in names) for r in (extended, blocked)]
    )

    app = open_page(monkeypatch, store_root, "decisions", time_range="All")

    log = table(app, "changed_at", without="expires_at")
    assert log[["decision_id", "status", "changed"]].values.tolist() == [
        ["d1", "reverted", "status approved → reverted; actor policy → alice"],
        ["d3", "applied", "tier restricted → blocked; limit per min 10 → 0"],
        ["d3", "applied", "actor policy → bob; expires at +1 h"],
        ["d3", "applied", "status approved → applied"],
        ["d3", "approved", "created"],
        ["d2", "pending_review", "created"],
        ["d1", "approved", "created"],
        ["d4", "recorded", "created"],
    ]

    # the subject page shows the same history for its subject
    subject = open_page(monkeypatch, store_root, "subject", time_range="All", type="consumer", id="c3")
    history = table(subject, "changed_at", without="expires_at")
    assert history["changed"].tolist() == log[log["decision_id"].isin(["d1", "d3"])]["changed"].tolist()


# -- Disabled buttons say why -----------------------------------------------------------------


def test_a_disabled_button_says_why(monkeypatch, store_root):
    with_operators(monkeypatch)
    app = open_page(monkeypatch, store_root, "decisions", time_range="All")
    for action in ("approve", "revert"):  # not signed in yet
        button = app.button(key=action)
        assert button.disabled
        assert button.help == "Disabled: " + ui.SIGN_IN_FIRST

    sign_in(app, TOKENS["carol"])
    assert not app.button(key="approve").disabled
    assert app.button(key="approve").help == "Its gateway changes are queued for delivery."
    app.button(key="approve").click().run()
    assert "as **carol**?" in app.warning[0].value
    app.button(key="sign_out").click().run()  # signed out before confirming: the question goes
    assert not app.warning and not app.button(key="approve").help.startswith("Its")
    assert not [b for b in app.button if b.key == "confirm_yes"]

    # d2, the only decision waiting for review, is rejected meanwhile: nothing is left to approve
    from store_rows import decision_row

    rejected = decision_row("d2", "f2", "ip", "203.0.113.7", "", "blocked", "rejected", "erin", 4, 11)
    StoreWriter(store_root).open().append("decisions", [rejected])
    sign_in(app, TOKENS["carol"])
    assert app.button(key="approve").disabled
    assert app.button(key="approve").help.startswith("Disabled: no decision is waiting for review")
    assert not app.button(key="revert").disabled


# -- Operators: who may act -------------------------------------------------------------------


def _current(store: Path) -> dict[str, tuple[str, str]]:
    return {d.decision_id: (d.status, d.actor) for d in list_decisions(store)}


def pending_of(store: Path) -> str:
    return list_decisions(store, "pending_review")[0].decision_id


def test_without_operators_the_decisions_page_is_read_only_and_says_why(monkeypatch, review_copy):
    before = _current(review_copy)
    app = open_page(monkeypatch, review_copy, "decisions")

    (reason,) = [i.value for i in app.main.info]
    assert reason.startswith("Read-only: no operators are configured (`$GATEWATCH_OPERATORS` is not set")
    assert "GATEWATCH_OPERATORS=alice:TOKEN" in reason and "operators_file" in reason
    assert "Read-only" in app.sidebar.info[0].value
    assert not [t for t in app.text_input if t.key == "operator_token"]  # nothing to sign in to
    for action in ("approve", "revert"):
        assert app.button(key=action).disabled
        assert app.button(key=action).help.startswith("Disabled: read-only: no operators are configured")
    # Streamlit discards a forged press of a disabled button server-side (and AppTest refuses one);
    # the confirmation checks the operator again anyway (test_the_confirmation_acts_as_whoever...)
    app.selectbox(key="approve_pick").set_value(pending_of(review_copy)).run()
    assert app.button(key="approve").disabled
    assert _current(review_copy) == before


def test_a_wrong_token_signs_nobody_in_and_changes_nothing(monkeypatch, review_copy):
    with_operators(monkeypatch)
    before = _current(review_copy)
    app = open_page(monkeypatch, review_copy, "decisions")
    sign_in(app, "carol-token-0123456780")  # one character off

    assert app.sidebar.error[0].value.startswith("That token is no operator's: not signed in")
    assert not app.sidebar.success
    assert app.button(key="approve").disabled and app.button(key="revert").disabled
    assert app.text_input(key="operator_token").value == ""
    assert TOKENS["carol"][:-1] not in str(app)  # the page never shows what was typed
    assert _current(review_copy) == before


def test_failed_sign_ins_from_one_address_are_limited_and_the_limit_passes(monkeypatch, review_copy):
    clock = [1000.0]
    monkeypatch.setattr(ui, "SIGN_IN_LIMIT", ui.SignInLimit(max_failures=3, window_s=60, clock=lambda: clock[0]))
    with_operators(monkeypatch)
    app = open_page(monkeypatch, review_copy, "decisions")
    for i in range(3):
        clock[0] += 1
        sign_in(app, f"guess-{i}-0123456789abc")
        assert app.sidebar.error[0].value.startswith("That token is no operator's")
    sign_in(app, TOKENS["carol"])  # the right token, while the address waits: refused all the same
    assert app.sidebar.error[0].value == "Too many failed sign-ins from your address: not signed in. Try again in 58 s."
    assert not app.sidebar.success and app.button(key="approve").disabled
    clock[0] += 58  # the first failure is a window old
    sign_in(app, TOKENS["carol"])
    assert app.sidebar.success[0].value == "Signed in as **carol**"


def test_the_sign_in_limit_counts_failures_per_address_within_its_window():
    clock = [0.0]
    limit = ui.SignInLimit(max_failures=2, window_s=10, clock=lambda: clock[0])
    limit.failed("10.0.0.1")
    clock[0] = 4
    limit.failed("10.0.0.1")
    assert limit.wait_s("10.0.0.1") == 6 and limit.wait_s("10.0.0.2") == 0
    clock[0] = 10  # the first failure has left the window
    assert limit.wait_s("10.0.0.1") == 0
    limit.failed("10.0.0.1")
    assert limit.wait_s("10.0.0.1") == 4
    limit.succeeded("10.0.0.1")
    assert limit.wait_s("10.0.0.1") == 0
    monkeypatch = pytest.MonkeyPatch()
    with monkeypatch.context() as m:
        m.setattr(ui.SignInLimit, "MAX_CLIENTS", 3)
        for i in range(5):
            limit.failed(f"10.0.1.{i}")
        assert list(limit._failures) == ["10.0.1.2", "10.0.1.3", "10.0.1.4"]  # the oldest forgotten


def test_the_confirmation_acts_as_whoever_is_signed_in_when_it_is_pressed(monkeypatch, tmp_path, review_copy):
    """The actor is checked when the change is made: a token taken away meanwhile changes nothing."""
    tokens = tmp_path / "operators"
    tokens.write_text(f"# name:token\ncarol:{TOKENS['carol']}\n")
    monkeypatch.setattr(sys, "argv", ["app.py", "--operators-env", "", "--operators-file", str(tokens)])
    pending = pending_of(review_copy)
    app = open_page(monkeypatch, review_copy, "decisions")
    sign_in(app, TOKENS["carol"])
    app.selectbox(key="approve_pick").set_value(pending).run()
    app.button(key="approve").click().run()

    tokens.write_text(f"dave:{TOKENS['dave']}\n")  # carol's token is taken away before she confirms
    app.button(key="confirm_yes").click().run()
    assert app.error[0].value == f"Approve {pending} refused: no operator is signed in. Nothing changed."
    assert _current(review_copy)[pending] == ("pending_review", "policy")
    assert app.sidebar.error[0].value == "Your token is no longer an operator's: you are signed out."

    tokens.write_text("carol:short\n")  # the file is broken now: read-only, and it says which entry
    app.run()
    assert app.sidebar.error[0].value.startswith(
        f"Read-only: the operators' tokens cannot be used: dashboard.operators_file: {tokens}: entry 1 is not NAME:TOKEN"
    )
    assert app.button(key="approve").disabled


# -- Counters follow the time range -----------------------------------------------------------


def test_health_counters_follow_the_time_range_or_say_they_are_all_time(monkeypatch, store_root):
    # two hours before the rest: outside "Last 1 h"
    StoreWriter(store_root).open().append("traffic", [traffic_row(-120, API_A, "c2", 10, late=7)])

    app = open_page(monkeypatch, store_root, "health")
    assert metrics(app)["Late requests"] == "4"  # minute 4's only
    app.radio(key="time_range").set_value("All").run()
    assert metrics(app)["Late requests"] == "11"

    helps = {m.label: m.help for m in app.metric}
    assert "in this time range" in helps["Late requests"]
    for label in ("Rejected lines", "Dead letters"):  # wall-clock only: all of them, and the help says so
        assert "over all time whatever the time range" in helps[label]
    overview = {m.label: m.help for m in open_page(monkeypatch, store_root).metric}
    assert "over all time whatever the time range" in overview["Dead letters"]


def test_decision_counters_follow_the_time_range_like_their_sections(monkeypatch, store_root):
    from store_rows import decision_row

    # a decision that took effect two hours before the rest and has expired since
    old = decision_row("d0", "f1", "consumer", "c2", "bob-app", "restricted", "expired", "policy", -120, 5)
    StoreWriter(store_root).open().append("decisions", [old])
    StoreWriter(store_root).open().append("traffic", [traffic_row(-120, API_A, "c2", 10)])

    app = open_page(monkeypatch, store_root, "decisions", time_range="All")
    assert (metrics(app)["Expired"], metrics(app)["Reverted"]) == ("1", "1")
    app.radio(key="time_range").set_value("Last 1 h").run()
    shown = metrics(app)
    assert (shown["Expired"], shown["Reverted"]) == ("0", "1")  # d0 took effect before the range, d1 in it
    assert (shown["Pending review"], shown["Active"]) == ("1", "2")  # d2; d3 and d4
    helps = {m.label: m.help for m in app.metric}
    assert "whatever the time range" in helps["Active"]
    assert "in this time range" in helps["Expired"]
    assert "No expired decisions in this time range." in captions(app)
