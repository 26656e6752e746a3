"""kill -9 at random moments while logs grow, restart: the store ends exactly as after one clean run."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from datetime import datetime, timezone

from gatewatch.flows.lab.simulate import generate_wso2
from tests.conftest import gatewatch, rows, scalar, start_gatewatch, stop, wait_for

TRAFFIC = "SELECT epoch(window_start) ws, api, consumer, sum(requests) n FROM traffic GROUP BY ALL"


def test_kill_9_and_restart_gives_exactly_the_clean_result(tmp_path):
    source = tmp_path / "source.log"
    truth = generate_wso2(source, start=datetime(2026, 11, 2, 9, tzinfo=timezone.utc), minutes=60, seed=11, scale=8)
    clean = tmp_path / "clean"
    gatewatch("replay", str(source), "--store", str(clean))
    expected_traffic = {(r["ws"], r["api"], r["consumer"]): r["n"] for r in rows(clean, TRAFFIC)}
    expected_findings = {r["finding_id"] for r in rows(clean, "SELECT finding_id FROM findings")}
    assert sum(expected_traffic.values()) == truth.lines
    assert expected_findings

    cfg = tmp_path / "gatewatch.toml"
    cfg.write_text(
        "[input]\npoll_ms = 50\nmax_batch_bytes = 65536\n"
        "[pipeline]\nidle_close_s = 3\nsnapshot_interval_s = 1\n"
        "[store]\ncompact_every_s = 2\ncompact_min_files = 4\n"
    )
    log = tmp_path / "apim_metrics.log"
    log.write_bytes(b"")
    lines = source.read_bytes().splitlines(keepends=True)
    written = threading.Event()

    def gateway():  # the log grows for about 10 s, kills or not
        with open(log, "ab") as f:
            for i in range(0, len(lines), 600):
                f.write(b"".join(lines[i : i + 600]))
                f.flush()
                time.sleep(0.25)
        written.set()

    writer = threading.Thread(target=gateway)
    writer.start()
    store = tmp_path / "live"
    args = ("run", str(log), "--store", str(store), "--config", str(cfg))
    rng = random.Random(5)
    progress = []
    for _ in range(4):
        proc = start_gatewatch(*args)
        time.sleep(rng.uniform(1.5, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        progress.append(scalar(store, "SELECT coalesce(sum(requests), 0) FROM traffic"))
    proc = start_gatewatch(*args)
    writer.join()
    # once the log stops growing, the quiet input closes every window (idle_close_s): wait for all of it
    wait_for(
        lambda: scalar(store, "SELECT coalesce(sum(requests), 0) FROM traffic") >= truth.lines,
        timeout=180,
        what="the restarted pipeline to catch up",
    )
    stop(proc)

    print("traffic total in the store after each kill:", progress)
    assert 0 < max(progress) < truth.lines, f"the kills did not land mid-run: {progress}"
    got = Counter()
    for r in rows(store, TRAFFIC):
        got[(r["ws"], r["api"], r["consumer"])] += r["n"]
    assert dict(got) == expected_traffic
    findings = [r["finding_id"] for r in rows(store, "SELECT finding_id FROM findings")]
    assert len(findings) == len(set(findings)), "a finding was written twice"
    assert set(findings) == expected_findings
    # the decision history: every state once, none missing, none repeated
    history = "SELECT decision_id, status, tier, epoch(expires_at) e FROM decisions ORDER BY ALL"
    assert rows(store, history) == rows(clean, history)
    assert rows(store, history)
    assert scalar(store, "SELECT count(*) FROM rejected") == 0


def test_a_restart_with_another_shard_count_stops_before_dropping_the_saved_state(tmp_path):
    log = tmp_path / "apim_metrics.log"
    start = datetime(2026, 11, 2, 9, tzinfo=timezone.utc)
    truth = generate_wso2(log, start=start, minutes=45, seed=3, scale=1)
    store = tmp_path / "store"
    args = ("run", str(log), "--store", str(store))
    proc = start_gatewatch(*args)
    recorded = store / "_recovery" / "pipeline_shards"
    wait_for(recorded.exists, what="the recovery folder")
    stop(proc)
    before = scalar(store, "SELECT sum(requests) FROM traffic")
    four = tmp_path / "four.toml"
    four.write_text(f"[pipeline]\nshards = 4\n[store]\npath = '{store}'\n")

    refused = gatewatch(*args, "--config", str(four), check=False, timeout=120)

    assert refused.returncode == 2, refused.stderr
    assert "error: pipeline.shards: is 4, but the restart state in" in refused.stderr
    assert "Set pipeline.shards = 1" in refused.stderr
    assert scalar(store, "SELECT sum(requests) FROM traffic") == before  # stopped before reading anything
    checked = gatewatch("validate", "--config", str(four), check=False)
    assert checked.returncode == 2
    assert "error: pipeline.shards: is 4, but the restart state in" in checked.stderr
    # the count it was kept with resumes, and counts no line twice
    proc = start_gatewatch(*args)
    total = "SELECT coalesce(sum(requests), 0) FROM traffic"
    wait_for(lambda: scalar(store, total) == truth.lines, what="every line counted")
    stop(proc)
    assert scalar(store, total) == truth.lines
    # a folder from before the count was recorded takes the current one
    recorded.unlink()
    stop(start_gatewatch(*args))
    assert recorded.read_text() == "1"
