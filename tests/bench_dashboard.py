"""Benchmark the dashboard on a large store: each query, and each page as Streamlit renders it.

Usage::

    python tests/bench_dashboard.py --rows 1000000 --workdir bench-data

Builds (or reuses) ``<workdir>/dashboard-store-<rows>``: ``rows`` traffic rows
(500 consumers x 4 APIs x one-minute windows), a ``subject_windows`` row per
consumer and window, and findings, decisions, incidents, deliveries and
rejected lines in proportion, written with :class:`gatewatch.sinks.store.StoreWriter`
and compacted as a long-running pipeline leaves them. Then it prints:

- every query of ``dashboards/queries.py`` with the arguments a page uses,
  over the default range (last hour) and over everything, median of ``--runs``;
- every page run by ``streamlit.testing.v1.AppTest`` (script, queries, charts
  and tables, without a browser), median of ``--runs``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from datetime import timedelta
from pathlib import Path

# run as a plain script: make the repository importable without installing it
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamlit.testing.v1 import AppTest  # noqa: E402

from gatewatch.dashboards import APP_PATH, queries  # noqa: E402
from gatewatch.sinks.store import StoreWriter, query  # noqa: E402
from tests.conftest import median_s  # noqa: E402

CONSUMERS = 500
APIS = ["PizzaShackAPI:1.0.0", "AccountsAPI:1.0.0", "InventoryAPI:2.1.0", "ShipmentsAPI:1.0.0"]
START = 1_793_610_000.0  # 2026-11-02 08:20 UTC
BATCH = 100_000
PAGES = ["overview", "incidents", "subject", "decisions", "health"]
EVIDENCE = '{"reasons": {"auth_failure_ratio": {"observed": 0.7, "baseline": 0.01, "spread": 0.05}}}'
REJECT_REASONS = ("bad_json", "bad_timestamp", "no_match")


def build_store(root: Path, rows: int, seed: int = 1) -> None:
    """Write ``rows`` traffic rows and the other tables in proportion, then compact them."""
    rng = random.Random(seed)
    per_minute = CONSUMERS * len(APIS)
    minutes = -(-rows // per_minute)
    attackers = set(rng.sample(range(CONSUMERS), 5))
    writer = StoreWriter(root).open()
    traffic, windows, findings, decisions, incidents = [], [], [], [], []
    written = 0
    for minute in range(minutes):
        start = START + minute * 60
        attack = minutes // 2 <= minute < minutes // 2 + 10
        for c in range(CONSUMERS):
            consumer, name = f"app-{c:04d}", f"App {c}"
            total = 0
            for api in APIS:
                if written == rows:
                    break
                req = rng.randint(5, 60)
                bad = rng.randint(0, 2)
                auth = 0
                if attack and c in attackers and api == "AccountsAPI:1.0.0":
                    req, bad, auth = req + 150, 140, 135
                traffic.append((
                    start, start + 60, api, consumer, name, f"owner-{c % 50}",
                    req, req - bad, 0, bad, 0, auth,
                    0, req * 700, 20.0, 90.0, rng.randint(1, 4) + (30 if auth else 0), 0,
                ))  # fmt: skip
                written += 1
                total += req
            windows.append((
                start, start + 60, "consumer", consumer, name, total, 120.0, 60.0, 240.0, 3, 2.5,
                0.0, 0.01, 0.0, 0.99 if attack and c in attackers else 0.1, "{}",
            ))  # fmt: skip
            if attack and c in attackers:
                fid = f"f-{minute}-{c}"
                findings.append((
                    fid, "consumer", consumer, name, f"owner-{c % 50}", "credential_stuffing",
                    "credential_stuffing", 0.97, start, start + 60, start + 61,
                    ["auth failures 135 vs baseline 0", "failing client IPs 33 vs baseline 0"],
                    EVIDENCE,
                ))  # fmt: skip
                decisions.append((
                    f"d-{minute}-{c}", fid, "consumer", consumer, name, "block", "blocked", "normal", 0,
                    "enforce", "pending_review", "credential stuffing", "{}", "policy", start + 60,
                    start + 3660, time.time(), time.time(),
                ))  # fmt: skip
                incidents.append((
                    f"i-{c}", "consumer", consumer, name, "credential_stuffing", "open", 0.97, "blocked", 1,
                    start, start + 60, ["auth failures 135 vs baseline 0"], time.time(),
                ))  # fmt: skip
        if len(traffic) >= BATCH or written == rows:
            writer.append("traffic", traffic)
            writer.append("subject_windows", windows)
            traffic, windows = [], []
        if written == rows:
            break
    for table, data in (("findings", findings), ("decisions", decisions), ("incidents", incidents)):
        writer.append(table, data)
    now = time.time()
    writer.append("deliveries", [
        (f"e-{i}", "webhook", "hooks", f"d-{i}", 1 + i % 3, "POST /gatewatch",
         ("sent", "retry", "dead_letter")[i % 3], 503, "HTTP 503", 40.0, now - i)
        for i in range(2_000)
    ])  # fmt: skip
    writer.append("rejected", [
        ("apim_metrics.log", i, i * 1100, REJECT_REASONS[i % 3], "", "{bad", now - i)
        for i in range(1_000)
    ])  # fmt: skip
    for table in ("traffic", "subject_windows"):
        writer.compact(table, min_files=2)


def ensure_store(workdir: Path, rows: int) -> Path:
    """Return a store with ``rows`` traffic rows in ``workdir``, building it if needed."""
    root = workdir / f"dashboard-store-{rows}"
    if root.exists():
        have = query(root, "SELECT count(*) AS n FROM traffic").column("n")[0].as_py()
        if have == rows:
            print(f"Reusing {root}.")
            return root
        msg = f"{root} holds {have} traffic rows, not {rows}: remove it first"
        raise SystemExit(msg)
    t0 = time.perf_counter()
    build_store(root, rows)
    print(f"Built {root} ({rows:,} traffic rows) in {time.perf_counter() - t0:.1f} s.")
    return root


def time_queries(root: Path, runs: int) -> list[tuple[str, float, float]]:
    """(query, seconds over the last hour, seconds over everything) for every dashboard query."""
    end = queries.data_range(root).end
    consumer = queries.top_consumers(root, end - timedelta(hours=1), limit=1)["consumer"][0]
    finding = queries.findings(root, limit=1)["finding_id"][0]
    calls = {
        "data_range": lambda since: queries.data_range(root),
        "overview_totals": lambda since: queries.overview_totals(root, since),
        "control_state": lambda since: queries.control_state(root),
        "requests_per_minute": lambda since: queries.requests_per_minute(root, since),
        "anomalous_windows": lambda since: queries.anomalous_windows(root, since),
        "top_consumers": lambda since: queries.top_consumers(root, since),
        "riskiest_subjects": lambda since: queries.riskiest_subjects(root, since),
        "incidents": lambda since: queries.incidents(root, since),
        "finding_facets": lambda since: queries.finding_facets(root),
        "findings": lambda since: queries.findings(root, since),
        "finding_evidence": lambda since: queries.finding_evidence(root, finding_ids=[finding]),
        "current_decisions": lambda since: queries.current_decisions(root, since),
        "decision_counts": lambda since: queries.decision_counts(root),
        "decision_log": lambda since: queries.decision_log(root),
        "subject_options": lambda since: queries.subject_options(root, "consumer", since),
        "subject_traffic": lambda since: queries.subject_traffic(root, "consumer", consumer, since),
        "subject_baseline": lambda since: queries.subject_baseline(root, "consumer", consumer, since),
        "subject_breakdown": lambda since: queries.subject_breakdown(root, "consumer", consumer, since),
        "freshness": lambda since: queries.freshness(root),
        "rejected_by_reason": lambda since: queries.rejected_by_reason(root),
        "rejected_samples": lambda since: queries.rejected_samples(root),
        "deliveries_by_outcome": lambda since: queries.deliveries_by_outcome(root),
        "dead_letters": lambda since: queries.dead_letters(root),
        "outbox_backlog": lambda since: queries.outbox_backlog(root),
    }
    hour = end - timedelta(hours=1)
    return [
        (
            name,
            median_s(lambda c=call: c(hour), runs, warm_up=True),
            median_s(lambda c=call: c(None), runs, warm_up=True),
        )
        for name, call in calls.items()
    ]


def time_pages(root: Path, runs: int) -> list[tuple[str, float, float]]:
    """(page, seconds with the default range, seconds with "All") as AppTest renders each page."""
    os.environ["GATEWATCH_STORE"] = str(root)
    os.environ["GATEWATCH_REFRESH_S"] = "0"
    sys.argv = [sys.argv[0]]  # the app reads --store from argv
    out = []
    for page in PAGES:
        timings = []
        for time_range in ("Last 1 h", "All"):
            app = AppTest.from_file(APP_PATH, default_timeout=600)
            app.run()
            app.radio(key="time_range").set_value(time_range).run()
            if page != "overview":
                app.switch_page(f"views/{page}.py")

            def render(app=app) -> None:
                app.run()
                if app.exception:
                    raise RuntimeError(app.exception[0].message)

            timings.append(median_s(render, runs, warm_up=True))
        out.append((page, *timings))
    return out


def print_table(title: str, header: tuple[str, ...], rows: list[tuple]) -> None:
    cells = [header, *[(name, *(f"{s * 1000:,.0f}" for s in secs)) for name, *secs in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for row in cells:
        padded = (
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        print("  ".join(padded))


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, build the store, print query and page timings."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="traffic rows in the store")
    parser.add_argument("--workdir", type=Path, default=Path("bench-data"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)

    root = ensure_store(args.workdir, args.rows)
    print_table(
        f"Queries on {args.rows:,} traffic rows, median of {args.runs} (ms)",
        ("query", "last 1 h", "all"),
        time_queries(root, args.runs),
    )
    print_table(
        f"Pages rendered by AppTest on {args.rows:,} traffic rows, median of {args.runs} (ms)",
        ("page", "last 1 h", "all"),
        time_pages(root, args.runs),
    )


if __name__ == "__main__":
    main()
