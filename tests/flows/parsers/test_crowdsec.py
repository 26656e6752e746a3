"""The combined / json parsers against CrowdSec's own hub test data (``tests/data/crowdsec/``, MIT).

Field agreement: for every line CrowdSec's parser test lists as parsed, our
event carries the same client IP, verb, path, status, user agent, virtual
host, user and time. Accounting: ``gatewatch replay --format auto`` on each
hub log accounts for every line, with the outcome counts in
``crowdsec_replay.expected.json``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gatewatch.flows.events import Chunk
from gatewatch.flows.parsers import ChunkParser
from tests.conftest import ROOT, gatewatch, rows, scalar

DATA = ROOT / "tests" / "data" / "crowdsec"
REPLAY = json.loads((Path(__file__).parent / "crowdsec_replay.expected.json").read_text())


def _crowdsec_time(meta: dict, parsed: dict) -> float:
    if "timestamp" in meta:  # RFC 3339, UTC
        return datetime.fromisoformat(meta["timestamp"]).timestamp()
    if "timestamp" in parsed and "/" in parsed["timestamp"]:  # access log: 08/Jun/2020:06:49:01 +0000
        return datetime.strptime(parsed["timestamp"], "%d/%b/%Y:%H:%M:%S %z").timestamp()
    # Apache error log, local time without a zone, read as UTC: Thu Oct 13 12:24:49.880562 2022
    return datetime.strptime(parsed["timestamp"], "%a %b %d %H:%M:%S.%f %Y").replace(tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("test_dir", ["parsers/nginx_http-logs", "parsers/apache2-logs"])
def test_fields_agree_with_crowdsec_for_every_line_it_parses(test_dir):
    folder = DATA / test_dir
    log = next(folder.glob("*.log"))
    lines = log.read_bytes().split(b"\n")
    parser = ChunkParser("combined")
    kinds = []
    for case in map(json.loads, (folder / "expected_fields.jsonl").read_text().splitlines()):
        assert any(p.startswith("s01-parse/") for p in case["parsers_succeeded"]), case["line_no"]
        line = lines[case["line_no"] - 1]
        assert line.decode() == case["raw"]
        events, rejects = parser.parse(Chunk(log.name, case["line_no"], 0, [line]))
        meta, parsed = case["meta"], case["parsed"]
        where = f"{log.name} line {case['line_no']}"
        if meta["log_type"] == "http_error-log" and meta.get("sub_type") != "auth_fail":
            # an error-log line that is not a login failure records no request of its own
            assert [r.reason for r in rejects] == ["not_a_request"], where
            kinds.append("not_a_request")
            continue
        assert len(events) == 1 and not rejects, where
        e = events[0]
        assert e.client_ip == meta["source_ip"], where
        assert e.resource == meta["http_path"].partition("?")[0], where
        assert e.query == meta["http_path"].partition("?")[2], where
        assert e.api == meta.get("target_fqdn", ""), where
        assert e.ts == _crowdsec_time(meta, parsed), where
        if meta["log_type"] == "http_error-log":
            assert (e.auth_failure, e.status, e.consumer) == (True, 401, meta["username"]), where
            kinds.append("auth_failure")
            continue
        assert e.method == meta["http_verb"], where
        assert e.bad_request is False, where  # every hub access line is a well-formed METHOD PATH HTTP/1.x
        assert e.status == int(meta["http_status"]), where
        assert e.user_agent == ("" if meta.get("http_user_agent", "-") == "-" else meta["http_user_agent"]), where
        user = parsed.get("remote_user", parsed.get("auth", "-"))
        assert e.consumer == e.user == ("" if user == "-" else user), where
        assert e.bytes_out == int(parsed.get("body_bytes_sent", parsed.get("bytes", 0))), where
        kinds.append("access")
    assert kinds.count("access") >= 7
    assert len(kinds) == len([x for x in lines if x])


def _replay_cases() -> list[str]:
    logs = sorted(str(p.relative_to(DATA)) for p in DATA.rglob("*.log"))
    # the Envoy original is JSON inside containerd framing: no gatewatch format (its nginx copy is replayed)
    return [p for p in logs if not p.endswith("envoy-http-crawl-non_statics.log")]


def test_every_hub_log_but_the_envoy_original_has_expected_replay_counts():
    assert sorted(REPLAY) == _replay_cases()


@pytest.mark.parametrize("rel", _replay_cases())
def test_replay_auto_accounts_for_every_line_of_each_hub_log(rel, tmp_path):
    expected = REPLAY[rel]
    log = DATA / rel
    store = tmp_path / "store"
    out = gatewatch("replay", str(log), "--format", "auto", "--store", str(store)).stdout
    data = log.read_bytes()
    n_lines = data.count(b"\n") + (not data.endswith(b"\n"))
    summary = re.search(r"lines=(\d+) events=(\d+) rejected=(\d+)", out)
    assert summary is not None, out
    lines, events, rejected = map(int, summary.groups())
    assert lines == n_lines == expected["lines"]
    assert events + rejected == lines
    assert events == expected["events"]
    assert scalar(store, "SELECT coalesce(sum(requests), 0) FROM traffic") == events
    assert scalar(store, "SELECT coalesce(sum(auth_failures), 0) FROM traffic") == expected["auth_failures"]
    got = {r["reason"]: r["n"] for r in rows(store, "SELECT reason, count(*) n FROM rejected GROUP BY reason")}
    assert got == expected["rejected"]
