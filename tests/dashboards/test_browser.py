"""The dashboard in a real browser while ``gatewatch run`` follows a growing log.

Debian ``chromium`` is driven by PyPI ``playwright`` (``executable_path``; no
``playwright install``). The test writes the sample log in steps, watches the
Overview numbers grow by themselves, finds the sample's credential stuffing,
signs in as an operator and approves the decision it caused with clicks, and
saves a full-page screenshot of every page under ``test-artifacts/screenshots/``.
Other tests check who may act: nobody without operators, nobody with a wrong
token, and an operator, recorded by name, with the right one.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from urllib.parse import urljoin

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from gatewatch.flows.control.decisions import list_decisions
from tests.conftest import GATEWATCH, ROOT, SAMPLE, free_ports, rows, scalar, start_gatewatch, stop, wait_for

SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ATTACK_STARTS = "10:00:"  # logged time of the first line of the sample's attack minutes
UNUSABLE = Path(__file__).with_name("cases") / "unusable_lines.log"
OPERATOR_TOKEN = "browser-test-token-5f1c0e"
NAV = {
    "overview": "Overview",
    "incidents": "Incidents & findings",
    "subject": "Subject drill-down",
    "decisions": "Decisions",
    "health": "Pipeline health",
}


def metric(page: Page, label: str) -> str:
    """The value of the metric labelled exactly ``label``."""
    box = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]').get_by_text(label, exact=True)
    )
    return box.locator('[data-testid="stMetricValue"]').inner_text()


def number(text: str) -> int:
    return int(text.replace(",", "")) if re.fullmatch(r"[\d,]+", text) else 0


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page (Streamlit scrolls inside its main block, so the viewport grows to fit it first).

    The page must show no exception and no store read error: it refreshes while the pipeline writes.
    """
    page.wait_for_timeout(1500)  # data grids paint on a canvas after they appear
    assert page.get_by_test_id("stException").count() == 0
    assert page.get_by_text("Could not read the store").count() == 0
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": 1440, "height": max(900, height + 40)})
    page.wait_for_timeout(800)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    page.set_viewport_size({"width": 1440, "height": 900})
    return path


@pytest.mark.slow
def test_live_dashboard_in_a_browser(tmp_path, httpserver):
    chromium = shutil.which("chromium")
    assert chromium, "Debian chromium is needed: apt-get install -y chromium (make test does it)"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    store, log, cfg = tmp_path / "store", tmp_path / "apim_metrics.log", tmp_path / "gatewatch.toml"
    (port,) = free_ports(1)
    cfg.write_text(
        "[input]\npoll_ms = 50\n"
        "[pipeline]\nidle_close_s = 1\nsnapshot_interval_s = 1\n"
        "[store]\ncompact_every_s = 1\ncompact_min_files = 2\n"
        '[policy]\nmode = "enforce"\nreview_tiers = ["restricted", "blocked"]\n'
        f'[targets.webhook]\nenabled = true\nurl = "{httpserver.url_for("/gatewatch")}"\n'
        "[delivery]\nbackoff_base_s = 0.2\n"
        f"[dashboard]\nport = {port}\n"
    )
    # the gateway's webhook fails once, then takes the approved decision
    httpserver.expect_oneshot_request("/gatewatch", method="POST").respond_with_data("busy", status=503)
    httpserver.expect_request("/gatewatch", method="POST").respond_with_data("ok")
    secret = {"GATEWATCH_TARGET_WEBHOOK_SECRET": "whsec_" + base64.b64encode(os.urandom(32)).decode()}
    lines = SAMPLE.read_text().splitlines(keepends=True)
    attack = next(i for i, line in enumerate(lines) if line.startswith(ATTACK_STARTS))
    unusable = UNUSABLE.read_text()
    log.write_text("".join(lines[: attack // 2]))

    run = start_gatewatch(
        "run", str(log), "--store", str(store), "--config", str(cfg), env={**os.environ, **secret}
    )
    dashboard = subprocess.Popen(
        [GATEWATCH, "dashboard", "--store", str(store), "--config", str(cfg)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "GATEWATCH_REFRESH_S": "1", "GATEWATCH_OPERATORS": f"browser-test:{OPERATOR_TOKEN}"},
    )  # fmt: skip
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.set_default_timeout(60_000)
            wait_for(lambda: _reachable(page, f"http://127.0.0.1:{port}/"), timeout=90, what="the dashboard")
            page.get_by_test_id("stSidebar").get_by_text("All", exact=True).click()

            # the numbers appear and then grow while the log grows, with nobody reloading the page
            first = wait_for(lambda: number(metric(page, "Requests")), timeout=120, what="first requests")
            append(log, "".join(lines[attack // 2 : attack]))
            grown = wait_for(lambda: grew(page, first), timeout=120, what="growth")
            append(log, "".join(lines[attack:]) + unusable)
            wait_for(lambda: number(metric(page, "Requests")) == len(lines), timeout=180, what="every event")
            assert first < grown < len(lines)

            # the sample's attack: findings, and a decision waiting for a person
            wait_for(lambda: number(metric(page, "Pending review")), timeout=120, what="a decision to review")
            assert number(metric(page, "Findings")) > 0
            shots = [screenshot(page, "overview")]

            page.get_by_role("link", name=NAV["incidents"]).click()
            expect(page.get_by_role("heading", name=re.compile(r"^Findings \(\d"))).to_be_visible()
            expect(cell(page, "PartnerPortal")).to_be_attached()
            shots.append(screenshot(page, "incidents"))

            page.get_by_role("link", name=NAV["subject"]).click()
            consumer = page.get_by_role("combobox", name="Consumer")
            expect(consumer).to_have_value(re.compile(r"^PartnerPortal · "))
            expect(page.get_by_text("Requests against its own baseline")).to_be_visible()
            shots.append(screenshot(page, "subject"))

            # sign in as an operator, approve the pending decision with clicks, after a confirmation
            page.get_by_role("link", name=NAV["decisions"]).click()
            sign_in(page, OPERATOR_TOKEN)
            expect(page.get_by_test_id("stSidebar").get_by_text("Signed in as browser-test")).to_be_visible()
            page.get_by_role("button", name="Approve…").click()
            expect(page.get_by_text("as browser-test?")).to_be_visible()
            page.get_by_role("button", name="Confirm approve").click()
            expect(page.get_by_text(re.compile(r"is now approved, by browser-test"))).to_be_visible()
            page.mouse.move(0, 0)  # no tooltip in the picture
            shots.append(screenshot(page, "decisions"))

            # its delivery (a 503, then sent) and the unusable lines show on the health page
            sent = "SELECT count(*) FROM deliveries WHERE outcome = 'sent'"
            wait_for(lambda: scalar(store, sent), timeout=90, what="the approved decision delivered")
            page.get_by_role("link", name=NAV["health"]).click()
            rejected = str(len(unusable.splitlines()))
            wait_for(
                lambda: metric(page, "Rejected lines") == rejected, timeout=60, what="the rejected lines"
            )
            for outcome in ("retry", "sent"):
                expect(cell(page, outcome)).to_be_attached()
            expect(cell(page, "bad_json")).to_be_attached()
            shots.append(screenshot(page, "health"))
            browser.close()
    finally:
        os.killpg(dashboard.pid, signal.SIGINT)
        dashboard.communicate(timeout=30)
        stop(run, timeout=120)

    # approved by the click, then applied once the webhook took it
    changes = rows(
        store, "SELECT decision_id, status FROM decisions WHERE actor = 'browser-test' ORDER BY changed_at"
    )
    assert [c["status"] for c in changes] == ["approved", "applied"]
    assert {d.decision_id: d.status for d in list_decisions(store)}[changes[0]["decision_id"]] == "applied"
    for shot in shots:
        assert shot.stat().st_size > 20_000, shot  # a rendered page, not a blank one


def sign_in(page: Page, token: str) -> None:
    """Type ``token`` in the sidebar's sign-in form and submit it."""
    field = page.get_by_label("Operator token", exact=True)
    field.fill(token)
    page.get_by_role("button", name="Sign in").click()


def append(log: Path, text: str) -> None:
    with log.open("a") as out:
        out.write(text)


def grew(page: Page, before: int) -> int:
    """The Requests metric once it is above ``before``, else 0."""
    now = number(metric(page, "Requests"))
    return now if now > before else 0


def cell(page: Page, text: str):
    """A data-grid cell holding exactly ``text`` (grids paint on a canvas, with DOM copies for a11y)."""
    return page.locator('td[role="gridcell"]').filter(has_text=re.compile(f"^{re.escape(text)}$")).first


def _reachable(page: Page, url: str) -> bool:
    try:
        page.goto(url)
        # metrics, or the first-run help while the pipeline has not written traffic yet
        page.locator('[data-testid="stMetric"], [data-testid="stAlert"]').first.wait_for(timeout=10_000)
    except Exception:  # noqa: BLE001 - not up yet: any failure means try again
        return False
    return True


def _incidents_page(p, port: int):
    """Chromium on the dashboard's incidents page, all time, once its finding detail shows."""
    browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(60_000)
    wait_for(lambda: _reachable(page, f"http://127.0.0.1:{port}/"), timeout=90, what="the dashboard")
    page.get_by_test_id("stSidebar").get_by_text("All", exact=True).click()
    page.get_by_role("link", name=NAV["incidents"]).click()
    expect(page.get_by_role("heading", name="Finding detail")).to_be_visible()
    return browser, page


def test_a_hostile_name_renders_as_text_in_a_browser(store_root, serve_dashboard):
    """A subject name written as Markdown by an attacker shows as its characters: no link, image or colour."""
    from store_rows import F1_EVIDENCE, finding_row

    from gatewatch.sinks.store import StoreWriter

    hostile = "[pwned](https://evil.example/) ![x](https://evil.example/p.png) :red[alarm] **loud**"
    StoreWriter(store_root).open().append("findings", [finding_row(
        "f-hostile", "consumer", "c9", hostile, "", "credential_stuffing", "credential_stuffing", 0.95, 9,
        ["auth failures 30 vs baseline 0"], F1_EVIDENCE,
    )])  # fmt: skip
    dashboard, port = serve_dashboard(store_root)
    try:
        with sync_playwright() as p:
            browser, page = _incidents_page(p, port)
            # the newest finding is the one shown: its name, character for character (word joiners aside)
            detail = page.get_by_test_id("stMarkdown").filter(has_text="pwned").first
            assert f"consumer {hostile}" in detail.inner_text().replace("\u2060", "")
            bad = page.locator('a[href*="evil.example"], img[src*="evil.example"]')
            assert bad.count() == 0, [bad.nth(i).evaluate("e => e.outerHTML") for i in range(bad.count())]
            assert page.get_by_test_id("stMarkdown").locator('span[style*="color"]').count() == 0
            browser.close()
    finally:
        os.killpg(dashboard.pid, signal.SIGINT)
        dashboard.communicate(timeout=30)


def test_a_subject_link_opens_its_subject_page_in_a_browser(store_root, serve_dashboard):
    """The incidents table's drill-down link, followed from the incidents page, opens that subject's page.

    The grid paints on a canvas; its accessible copy holds the link's relative URL, which the browser
    resolves against the page it is on, as it does when the cell is clicked.
    """
    dashboard, port = serve_dashboard(store_root)
    try:
        with sync_playwright() as p:
            browser, page = _incidents_page(p, port)
            link = cell(page, "subject?type=ip&id=203.0.113.7")  # i2, the scanning IP
            expect(link).to_be_attached()
            url = urljoin(page.url, link.inner_text())
            assert url == f"http://127.0.0.1:{port}/subject?type=ip&id=203.0.113.7"

            page.goto(url)
            expect(page.get_by_role("heading", name="Subject drill-down")).to_be_visible()
            expect(page.get_by_role("combobox", name="Client IP")).to_have_value(re.compile(r"^203\.0\.113\.7"))
            assert metric(page, "Requests") == "310"  # its subject_windows row (the time range is Last 1 h)
            browser.close()
    finally:
        os.killpg(dashboard.pid, signal.SIGINT)
        dashboard.communicate(timeout=30)


# -- operators: who may act ------------------------------------------------------------

WAIT = 30_000  # ms an expectation waits: the page renders slowly on a loaded machine


def _decisions_page(p, port: int):
    """Chromium on the dashboard's Decisions page once its review panel shows."""
    browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(60_000)
    wait_for(lambda: _reachable(page, f"http://127.0.0.1:{port}/decisions"), timeout=90, what="the dashboard")
    expect(page.get_by_text("approve or revert through the same code path")).to_be_visible(timeout=WAIT)
    page.get_by_role("button", name="Approve…").wait_for(timeout=WAIT)  # the panel is drawn in full
    return browser, page


def _current(store: Path) -> dict[str, tuple[str, str]]:
    """Every decision's (status, actor), from the control database."""
    return {d.decision_id: (d.status, d.actor) for d in list_decisions(store)}


def test_without_operators_a_browser_can_only_read_and_is_told_why(review_copy, serve_dashboard):
    before = _current(review_copy)
    assert "pending_review" in {status for status, _ in before.values()}
    dashboard, port = serve_dashboard(review_copy)
    try:
        with sync_playwright() as p:
            browser, page = _decisions_page(p, port)
            main = page.get_by_test_id("stMain")
            expect(main.get_by_text("Read-only: no operators are configured")).to_be_visible(timeout=WAIT)
            expect(main.get_by_text("GATEWATCH_OPERATORS=alice:TOKEN,bob:TOKEN")).to_be_visible(timeout=WAIT)
            expect(page.get_by_test_id("stSidebar").get_by_text("Read-only: no operators are configured")).to_be_visible(timeout=WAIT)
            for verb in ("Approve…", "Revert…"):
                expect(page.get_by_role("button", name=verb)).to_be_disabled(timeout=WAIT)
            assert page.get_by_label("Operator token", exact=True).count() == 0  # nothing to sign in to
            page.get_by_role("button", name="Approve…").click(force=True)  # a click on it does nothing
            page.wait_for_timeout(1000)
            assert page.get_by_role("button", name="Confirm approve").count() == 0
            browser.close()
    finally:
        os.killpg(dashboard.pid, signal.SIGINT)
        _, err = dashboard.communicate(timeout=30)
    assert "read-only, nobody can approve or revert decisions in it" in err
    assert _current(review_copy) == before


def test_an_operator_signs_in_with_a_token_and_is_recorded_as_the_actor(review_copy, serve_dashboard, tmp_path):
    tokens = {"alice": "alice-" + os.urandom(12).hex(), "bob": "bob-" + os.urandom(12).hex()}
    operators = tmp_path / "operators"
    operators.write_text("".join(f"{name}:{token}\n" for name, token in tokens.items()))
    before = _current(review_copy)
    pending = next(d for d, (status, _) in before.items() if status == "pending_review")
    dashboard, port = serve_dashboard(review_copy, f'operators_env = ""\noperators_file = "{operators}"\n')
    try:
        with sync_playwright() as p:
            browser, page = _decisions_page(p, port)
            approve = page.get_by_role("button", name="Approve…")
            expect(approve).to_be_disabled(timeout=WAIT)  # not signed in yet

            # a wrong token: told so, still disabled, nothing changed
            wrong = tokens["alice"][:-1] + ("1" if tokens["alice"].endswith("0") else "0")  # never alice's own
            sign_in(page, wrong)
            expect(page.get_by_text("That token is no operator's: not signed in")).to_be_visible(timeout=WAIT)
            expect(approve).to_be_disabled(timeout=WAIT)
            expect(page.get_by_label("Operator token", exact=True)).to_have_value("", timeout=WAIT)
            assert _current(review_copy) == before

            # alice's token: she approves, and the change is hers
            sign_in(page, tokens["alice"])
            expect(page.get_by_test_id("stSidebar").get_by_text("Signed in as alice")).to_be_visible(timeout=WAIT)
            expect(approve).to_be_enabled(timeout=WAIT)
            page.get_by_role("combobox", name="Decision to approve").click()
            page.get_by_role("option", name=re.compile(re.escape(pending))).click()
            approve.click()
            expect(page.get_by_text("as alice?")).to_be_visible(timeout=WAIT)
            page.get_by_role("button", name="Confirm approve").click()
            expect(page.get_by_text(f"Decision {pending} is now approved, by alice.")).to_be_visible(timeout=WAIT)
            assert tokens["alice"] not in page.content()  # the token is nowhere on the page

            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_label("Operator token", exact=True)).to_be_visible(timeout=WAIT)
            expect(page.get_by_role("button", name="Revert…")).to_be_disabled(timeout=WAIT)
            browser.close()
    finally:
        os.killpg(dashboard.pid, signal.SIGINT)
        _, err = dashboard.communicate(timeout=30)
    after = _current(review_copy)
    assert after[pending] == ("approved", "alice")
    assert {d: v for d, v in after.items() if d != pending} == {d: v for d, v in before.items() if d != pending}
    assert rows(review_copy, "SELECT actor FROM decisions WHERE decision_id = $d AND status = 'approved'", {"d": pending}) == [
        {"actor": "alice"}
    ]  # the store's history too
    assert not any(token in err for token in tokens.values())
