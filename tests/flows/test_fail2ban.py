"""fail2ban's own filter test logs (``tests/data/fail2ban/``, GPL-2+) replayed through gatewatch.

Each file is the sample log fail2ban tests one HTTP filter with (nginx / Apache
access and error logs). ``expected.json`` lists per file the hosts fail2ban
bans with its default jail settings; those gatewatch flags today are under
``flagged``, the others under ``missed`` with the reason. The test checks that
every line is accounted for and that the ``flagged`` hosts stay flagged.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import ROOT, gatewatch, rows

FAIL2BAN = ROOT / "tests" / "data" / "fail2ban"
EXPECTED = {
    k: v for k, v in json.loads((FAIL2BAN / "expected.json").read_text()).items() if k.endswith(".log")
}
SUMMARY = re.compile(r"^replay: lines=(\d+) events=(\d+) rejected=(\d+) ", re.MULTILINE)


def physical_lines(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def test_every_file_has_an_entry():
    assert set(EXPECTED) == {p.name for p in FAIL2BAN.glob("*.log")}
    for name, entry in EXPECTED.items():
        assert set(entry["flagged"]) | set(entry["missed"]) == set(entry["banned"]), name
        assert not set(entry["flagged"]) & set(entry["missed"]), name


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED), ids=[n.removesuffix(".log") for n in sorted(EXPECTED)])
def test_replay_of_fail2ban_test_log(tmp_path, name):
    path = FAIL2BAN / name
    entry = EXPECTED[name]
    store = tmp_path / "store"
    proc = gatewatch("replay", str(path), "--store", str(store))
    m = SUMMARY.search(proc.stdout)
    assert m is not None, proc.stdout + proc.stderr
    lines, events, rejected = map(int, m.groups())
    # every line is accounted for: read as an event or stored as a rejected line
    assert lines == physical_lines(path.read_bytes()) == entry["lines"]
    assert events + rejected == lines
    assert rows(store, "SELECT count(*) n FROM rejected")[0]["n"] == rejected
    flagged = {
        r["subject"] for r in rows(store, "SELECT DISTINCT subject FROM findings WHERE subject_type = 'ip'")
    }
    assert set(entry["flagged"]) <= flagged
