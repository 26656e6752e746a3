"""gatewatch dashboard: the pages an on-call engineer opens, refreshed live.

Run with ``streamlit run dashboards/app.py -- --store DIR``; without
``--store`` the store is ``$GATEWATCH_STORE``, else ``./gatewatch-data``.
``$GATEWATCH_REFRESH_S`` sets the refresh interval in seconds (default 5,
0 turns it off). Each page is a script in ``views/``; this one lays out the
navigation and the sidebar they share.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

# `streamlit run` puts only this file's folder on sys.path; when gatewatch is
# not installed, the repository root must be added for `dashboards` and `sinks`
_REPO_ROOT = str(Path(__file__).resolve().parents[1])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from gatewatch.dashboards import ui  # noqa: E402

PAGES_DIR = Path(__file__).resolve().with_name("views")
# file, title, url path, icon
PAGES = [
    ("overview.py", "Overview", "overview", ":material/monitoring:"),
    ("incidents.py", "Incidents & findings", "incidents", ":material/crisis_alert:"),
    ("subject.py", "Subject drill-down", "subject", ":material/person_search:"),
    ("decisions.py", "Decisions", "decisions", ":material/gavel:"),
    ("health.py", "Pipeline health", "health", ":material/health_and_safety:"),
]


def main() -> None:
    """Register the pages, draw the shared sidebar, run the chosen page."""
    st.set_page_config(page_title="gatewatch", layout="wide")
    nav = st.navigation(
        [
            st.Page(PAGES_DIR / file, title=title, url_path=path, icon=icon, default=i == 0)
            for i, (file, title, path, icon) in enumerate(PAGES)
        ]
    )
    ui.sidebar()
    nav.run()


if __name__ == "__main__":
    main()
