"""End to end through the real CLI, the real Bytewax dataflow and the real store."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from datetime import datetime
from pathlib import Path

from gatewatch.flows.config import Config
from gatewatch.flows.dataflow import RunStats, StoreSink
from gatewatch.flows.events import Event
from gatewatch.flows.shard import ConsumerShard
from gatewatch.sinks.control import ControlDB
from tests.conftest import SAMPLE, gatewatch, rows, scalar

LINE = re.compile(r"^\d{2}:\d{2}:\d{2},\d{3} \[[^\]]*\] \[[^\]]*\]\s+\w+ \S+ apimMetrics: (apim:\w+), properties ?: ?(\{.*\})\s*$")
TRUTH = json.loads(SAMPLE.with_name("wso2_apim_metrics.truth.json").read_text())


def _oracle(path: Path, window_s: int = 60) -> Counter:
    """Requests per (window start, api, consumer), computed with the standard library only."""
    counts: Counter = Counter()
    for line in path.read_text().splitlines():
        m = LINE.match(line)
        if not m:
            continue
        rec = json.loads(m.group(2))
        ts = datetime.fromisoformat(rec["requestTimestamp"]).timestamp()
        counts[(ts - ts % window_s, f"{rec['apiName']}:{rec['apiVersion']}", rec["applicationId"])] += 1
    return counts


def test_replay_of_sample_gives_exact_traffic_and_the_attack_finding(tmp_path):
    store = tmp_path / "store"
    out = gatewatch("replay", str(SAMPLE), "--store", str(store)).stdout
    lines = len(SAMPLE.read_text().splitlines())
    assert f"lines={lines} events={lines} rejected=0" in out

    got = Counter()
    for r in rows(store, "SELECT epoch(window_start) ws, api, consumer, sum(requests) n FROM traffic GROUP BY ALL"):
        got[(r["ws"], r["api"], r["consumer"])] = r["n"]
    assert got == _oracle(SAMPLE)

    attack = TRUTH["attack"]
    attack_ips = _attack_ips(attack)
    endpoint = f"{attack['api']} {attack['method']} {attack['resource']}"
    findings = rows(
        store, "SELECT subject_type, subject, score, epoch(window_start) ws, epoch(window_end) we, reasons FROM findings"
    )
    assert findings, "the sample attack raised no finding"
    by_type = {t: {f["subject"] for f in findings if f["subject_type"] == t} for t in ("consumer", "ip", "api")}
    # the attacked consumer, its login endpoint and attacking IPs: nothing else
    assert by_type["consumer"] == {attack["application_id"]}
    assert by_type["api"] <= {endpoint}
    assert by_type["ip"] <= attack_ips
    consumer = [f for f in findings if f["subject_type"] == "consumer"]
    first = min(f["ws"] for f in consumer)
    # detected in the first or second window of the attack, and every finding overlaps the attack
    assert attack["start"] - 60 <= first <= attack["start"] + 60
    assert all(f["ws"] < attack["end"] and f["we"] > attack["start"] for f in findings)
    assert all(0.5 <= f["score"] <= 1 for f in findings)
    assert any(r.startswith("auth failures") for f in consumer for r in f["reasons"])

    decisions = rows(store, "SELECT DISTINCT subject_type, subject, mode FROM decisions")
    assert {"subject_type": "consumer", "subject": attack["application_id"], "mode": "dry-run"} in decisions
    assert all(d["mode"] == "dry-run" for d in decisions)
    assert {d["subject"] for d in decisions} <= {attack["application_id"], endpoint} | attack_ips
    assert scalar(store, "SELECT count(*) FROM deliveries") == 0

    # the blast radius counts the active consumers the sink recorded: the store's resolved consumers
    control, active_s = ControlDB(store).open(), Config().policy.active_window_s
    last = scalar(store, "SELECT max(epoch(window_end)) FROM traffic")
    assert last >= control.watermark()  # findings to come: the windows they count are still kept
    expected = scalar(
        store,
        f"SELECT count(DISTINCT consumer) FROM traffic WHERE epoch(window_end) > {last - active_s} "
        "AND consumer NOT IN ('', 'UNKNOWN', 'anonymous')",
    )
    assert control.active_consumers(last - active_s, last) == expected > 1


def _attack_ips(attack: dict) -> set[str]:
    """Client IPs the attacked consumer used during the attack, read from the log with the standard library."""
    ips = set()
    for line in SAMPLE.read_text().splitlines():
        m = LINE.match(line)
        rec = json.loads(m.group(2))
        ts = datetime.fromisoformat(rec["requestTimestamp"]).timestamp()
        if rec.get("applicationId") == attack["application_id"] and attack["start"] <= ts < attack["end"]:
            ips.add(rec.get("userIp", ""))
    return ips - {""}


def test_every_line_is_accounted_for_with_garbage_mixed_in(tmp_path):
    good = SAMPLE.read_bytes().splitlines(keepends=True)[:1500]
    garbage = [
        b"\n",
        b"not a log line at all\n",
        b"\xff\xfe\x00binary\x00junk\n",
        good[3][:200] + b"\n",  # truncated mid-JSON
        good[5].replace(b"requestTimestamp", b"requestTimeStamp"),
        good[7].replace(b"apim:response", b"apim:latency"),
        b"x" * 70_000 + b"\n",  # longer than input.max_line_bytes
    ]
    mixed = []
    for i, line in enumerate(good):
        mixed.append(line)
        if i % 200 == 0:
            mixed.append(garbage[(i // 200) % len(garbage)])
    log = tmp_path / "mixed.log"
    log.write_bytes(b"".join(mixed) + b"11:00:00,000 [-] [t]  INFO no newline at the end")
    store = tmp_path / "store"
    out = gatewatch("replay", str(log), "--store", str(store), "--format", "wso2").stdout
    total = len(mixed) + 1
    requests = scalar(store, "SELECT sum(requests) FROM traffic")
    rejected = rows(store, "SELECT reason, line_no, length(raw) len FROM rejected ORDER BY line_no")
    assert requests + len(rejected) == total
    assert requests == 1500
    assert f"lines={total} events=1500 rejected={len(rejected)}" in out
    # binary junk has no WSO2 prefix, so it is no_match like the plain garbage and the unterminated last line
    assert Counter(r["reason"] for r in rejected) == {
        "empty_line": 2, "no_match": 3, "bad_json": 1, "missing_field": 1, "unknown_metric": 1, "line_too_long": 1,
    }
    assert all(r["len"] <= 4096 for r in rejected)
    # line numbers point at the garbage lines themselves
    for r in rejected[:-1]:
        assert mixed[r["line_no"] - 1] in garbage


def test_replay_rejects_a_missing_file_before_starting(tmp_path):
    proc = gatewatch("replay", str(tmp_path / "nope.log"), "--store", str(tmp_path / "s"), check=False)
    assert proc.returncode == 2
    assert "nope.log" in proc.stderr
    assert not (tmp_path / "s").exists()


def test_sql_formats(tmp_path):
    store = tmp_path / "store"
    gatewatch("replay", str(SAMPLE), "--store", str(store))
    q = "SELECT consumer_name, sum(requests) AS n FROM traffic GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 3"
    as_json = json.loads(gatewatch("sql", "--store", str(store), "--format", "json", q).stdout)
    assert [set(r) for r in as_json] == [{"consumer_name", "n"}] * 3
    assert as_json == rows(store, q)
    csv_lines = gatewatch("sql", "--store", str(store), "--format", "csv", q).stdout.splitlines()
    assert csv_lines[0] == "consumer_name,n"
    assert csv_lines[1] == f"{as_json[0]['consumer_name']},{as_json[0]['n']}"
    table = gatewatch("sql", "--store", str(store), q).stdout
    assert as_json[0]["consumer_name"] in table
    bad = gatewatch("sql", "--store", str(store), "SELECT nope FROM traffic", check=False)
    assert bad.returncode == 1 and "nope" in bad.stderr


def test_a_replay_sink_holds_bulk_rows_back_but_writes_findings_at_once(tmp_path):
    t0 = 1_700_000_040.0
    events = [
        Event(t0 + i, "shop", f"c{i % 3}", f"C{i % 3}", "", "", "10.0.0.1", "GET", "/x", "/x", 200,
              False, False, 10, 5, "curl/8")
        for i in range(120)
    ]  # fmt: skip
    shard = ConsumerShard(Config())
    out = dict(shard.ingest(events, "a.log", events[-1].ts) + shard.flush())
    traffic = out["traffic"]  # 2 windows x 3 consumers
    finding = ("f1", "consumer", "c1", "C1", "", "credential_stuffing", "credential_stuffing", 0.9,
               t0, t0 + 60, t0 + 61, ["auth failures 9 vs baseline 0"], "{}")  # fmt: skip
    sink = StoreSink(
        tmp_path, RunStats(), compact_every_s=math.inf, compact_min_files=8, shard_count=3,
        hold_rows=len(traffic),
    )
    part = sink.build_part("store", "store", None)

    def segments(table: str) -> int:
        return len(list((tmp_path / table).glob("seg-*.parquet")))

    part.write_batch([("traffic", traffic[:2])])
    assert segments("traffic") == 0  # held
    part.write_batch([("findings", [finding])])
    assert segments("findings") == 1  # the controller may act on it: written at once
    part.write_batch([("rejected", [("a.log", 7, 512, "no_match", "", "garbage", t0)])])
    assert segments("rejected") == 1  # up to raw_max_bytes each: not held
    part.write_batch([("traffic", traffic[2:]), ("subject_windows", out["subject_windows"])])
    assert segments("traffic") == segments("subject_windows") == 1  # hold_rows reached
    part.write_batch([("traffic", traffic[:1])])
    assert part.snapshot() == 5  # a snapshot writes what is held first: Bytewax resumes after it
    assert segments("traffic") == 2
    assert scalar(tmp_path, "SELECT sum(requests) FROM traffic") == 120 + traffic[0][6]
