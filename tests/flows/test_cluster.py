"""More Bytewax workers give the same store as one: routing is by stable hash over a fixed shard count."""

from __future__ import annotations

import socket
import subprocess

from tests.conftest import GATEWATCH, SAMPLE, gatewatch, rows

TRAFFIC = "SELECT epoch(window_start) ws, api, consumer, sum(requests) n FROM traffic GROUP BY ALL ORDER BY ALL"
FINDINGS = "SELECT finding_id, subject_type, subject, kind, score, reasons FROM findings ORDER BY finding_id"
DECISIONS = "SELECT decision_id, status, tier, epoch(expires_at) e FROM decisions ORDER BY ALL"


def test_two_workers_give_the_same_traffic_findings_and_decisions_as_one(tmp_path):
    stores = {}
    for workers in (1, 2):
        cfg = tmp_path / f"w{workers}.toml"
        cfg.write_text(f"[pipeline]\nworkers = {workers}\nshards = 4\n")
        stores[workers] = tmp_path / f"store{workers}"
        gatewatch("replay", str(SAMPLE), "--store", str(stores[workers]), "--config", str(cfg))
    for sql in (TRAFFIC, FINDINGS, DECISIONS):
        one, two = rows(stores[1], sql), rows(stores[2], sql)
        assert one, sql
        assert one == two, sql


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_processes_give_the_same_store_as_one(tmp_path):
    cfg = tmp_path / "gatewatch.toml"
    cfg.write_text("[pipeline]\nshards = 4\n")
    single = tmp_path / "single"
    gatewatch("replay", str(SAMPLE), "--store", str(single), "--config", str(cfg))
    cluster = tmp_path / "cluster"
    addresses = ";".join(f"127.0.0.1:{p}" for p in _free_ports(2))
    procs = [
        subprocess.Popen(
            [GATEWATCH, "replay", str(SAMPLE), "--store", str(cluster), "--config", str(cfg),
             "-i", str(i), "-a", addresses],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    for sql in (TRAFFIC, FINDINGS, DECISIONS):
        assert rows(single, sql) == rows(cluster, sql), sql
