"""The dashboard in a real browser while ``gatewatch run`` follows a growing log.

Debian ``chromium`` is driven by PyPI ``playwright`` (``executable_path``; no
``playwright install``). The test writes the sample log in steps, watches the
Overview numbers grow by themselves, finds the sample's credential stuffing,
approves the decision it caused with clicks, and saves a full-page screenshot
of every page under ``test-artifacts/screenshots/``.
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
        env={**os.environ, "GATEWATCH_REFRESH_S": "1"},
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

            # approve the pending decision with clicks, after a confirmation
            page.get_by_role("link", name=NAV["decisions"]).click()
            page.get_by_role("textbox", name="Your name").fill("browser-test")
            page.get_by_role("textbox", name="Your name").press("Enter")
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
