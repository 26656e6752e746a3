"""Behaviours the per-minute thresholds miss, end to end through ``gatewatch replay``.

``behaviours/combined.log`` holds, among ordinary readers with ordinary query strings:
SQL injection and XSS bursts, TLS handshakes sent to a plain-HTTP port, a cache-busting
flood from never-seen IPs, a login failing every 20 s for an hour, 150 IPs failing
twice each over 40 minutes, and bots posting a form back within a second of loading it
(2 or 3 times, up to 35 minutes apart), among people filling the same form in. ``behaviours/expected.json`` says which subject each must
flag, with which kind; the ordinary readers must stay clean.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import gatewatch, rows

HERE = Path(__file__).parent / "behaviours"


@pytest.mark.slow
def test_every_behaviour_is_flagged_and_ordinary_readers_are_not(tmp_path):
    expected = json.loads((HERE / "expected.json").read_text())
    store = tmp_path / "store"
    gatewatch("replay", str(HERE / "combined.log"), "--store", str(store))
    found = {(r["subject_type"], r["subject"], r["kind"]) for r in rows(store, "SELECT * FROM findings")}
    missed = [e for e in expected["flagged"] if (e["subject_type"], e["subject"], e["kind"]) not in found]
    assert not missed
    flagged_ips = {subject for kind, subject, _ in found if kind == "ip"}
    assert flagged_ips.isdisjoint(expected["clean_ips"])
    reasons = rows(store, "SELECT reasons FROM findings WHERE subject = '203.0.113.30'")
    assert any(" in 10 min vs baseline " in text for r in reasons for text in r["reasons"])
