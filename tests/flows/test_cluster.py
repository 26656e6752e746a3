"""More Bytewax workers give the same store as one: routing is by stable hash over a fixed shard count."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import threading

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulLogic
from bytewax.run import cli_main
from bytewax.testing import TestingSource

from gatewatch.flows.cli.ingest import listening_ports, wait_for_local_peers
from gatewatch.flows.dataflow import bytewax_worker_of, shard_keys
from tests.conftest import GATEWATCH, SAMPLE, free_ports, gatewatch, rows, scalar, start_gatewatch, wait_for
from tests.flows.test_run import LINES, _oracle_of

TRAFFIC = "SELECT epoch(window_start) ws, api, consumer, sum(requests) n FROM traffic GROUP BY ALL ORDER BY ALL"
FINDINGS = "SELECT finding_id, subject_type, subject, kind, score, reasons FROM findings ORDER BY finding_id"
DECISIONS = "SELECT decision_id, status, tier, epoch(expires_at) e FROM decisions ORDER BY ALL"


class _WhereRun(StatefulLogic):
    def __init__(self, seen: dict[str, int]) -> None:
        self.seen = seen

    def on_item(self, value: str) -> tuple[list, bool]:
        self.seen[value] = threading.get_ident()
        return [], StatefulLogic.RETAIN

    def snapshot(self) -> None:
        return None


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_bytewax_runs_each_key_on_the_worker_we_predict(workers):
    keys = [k for names in shard_keys(4).values() for k in names] + [f"subject-{i}" for i in range(40)]
    seen: dict[str, int] = {}
    flow = Dataflow("placement")
    placed = op.stateful("place", op.input("in", flow, TestingSource([(k, k) for k in keys])), lambda _: _WhereRun(seen))
    op.inspect("out", placed)
    cli_main(flow, workers_per_process=workers)
    predicted_by_thread: dict[int, set[int]] = {}
    for key, thread in seen.items():
        predicted_by_thread.setdefault(thread, set()).add(bytewax_worker_of(key, workers))
    assert sorted(seen) == sorted(keys)
    # every worker thread ran exactly the keys predicted for one worker index, and each index once
    assert sorted(predicted_by_thread.values(), key=min) == [{w} for w in range(workers)]


@pytest.mark.parametrize("workers", [2, 3, 4, 6])
def test_shard_keys_spread_evenly_over_the_workers(workers):
    for shards in (1, 4, 12):
        keys = shard_keys(shards)
        load = [0] * workers
        for names in keys.values():
            assert len(set(names)) == shards
            for name in names:
                load[bytewax_worker_of(name, workers)] += 1
        assert max(load) - min(load) <= 1, (shards, load)
        if shards % workers == 0:  # and within each family
            for names in keys.values():
                assert sorted(bytewax_worker_of(n, workers) for n in names) == sorted(list(range(workers)) * (shards // workers))


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


def test_two_processes_give_the_same_store_as_one(tmp_path):
    cfg = tmp_path / "gatewatch.toml"
    cfg.write_text("[pipeline]\nshards = 4\n")
    single = tmp_path / "single"
    gatewatch("replay", str(SAMPLE), "--store", str(single), "--config", str(cfg))
    cluster = tmp_path / "cluster"
    addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(2))
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


def test_a_process_connects_once_its_lower_peers_on_this_host_listen():
    """Timely sleeps a whole second after a refused connect, so gatewatch waits for the listener first."""
    port, elsewhere = free_ports(2)
    with socket.socket() as peer:
        peer.bind(("127.0.0.1", port))  # bound, not yet listening: a connect would be refused
        assert port not in listening_ports()
        waiting = threading.Thread(target=wait_for_local_peers, args=([f"127.0.0.1:{port}", f"192.0.2.1:{elsewhere}"],))
        waiting.start()
        waiting.join(0.3)
        assert waiting.is_alive()
        peer.listen()
        waiting.join(30)  # a peer on another host is left to Timely's retry, not waited for
        assert not waiting.is_alive()
        assert port in listening_ports()


_PEERS = ": are they running, with the same --addresses?"


@pytest.mark.parametrize(
    ("command", "process_id", "message"),
    [
        ("replay", 0, "process 0 was not connected to the other processes (127.0.0.1:{1}) after 2 s" + _PEERS),
        ("replay", 1, "process 1 was not connected to the other processes (127.0.0.1:{0}) after 2 s" + _PEERS),
        ("run", 0, "process 0 was not connected to the other processes (127.0.0.1:{1}) after 2 s" + _PEERS),
        ("run", 1, "no recovery folder at {store}/_recovery after 2 s: is process 0 running?"),
    ],
)
def test_a_cluster_process_whose_peers_never_come_stops_with_an_error(tmp_path, command, process_id, message):
    """Bytewax retries connecting for ever; gatewatch gives up after pipeline.connect_timeout_s."""
    cfg = tmp_path / "gatewatch.toml"
    cfg.write_text("[pipeline]\nconnect_timeout_s = 2\n")
    store = tmp_path / "store"
    ports = free_ports(2)
    addresses = ";".join(f"127.0.0.1:{p}" for p in ports)
    args = (command, str(SAMPLE), "--store", str(store), "--config", str(cfg), "-i", str(process_id), "-a", addresses)
    proc = gatewatch(*args, check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr
    expected = "error: pipeline.connect_timeout_s: " + message.format(*ports, store=store)
    assert expected in proc.stderr.splitlines()
    assert not list(store.glob("traffic/*.parquet"))  # nothing was read


def test_a_two_process_run_follows_stops_and_resumes_exactly_once(tmp_path, small_windows_config):
    # two gateway nodes, one log each; each process of the cluster follows with recovery
    cfg = tmp_path / "cluster.toml"
    cfg.write_text(small_windows_config.read_text().replace("[pipeline]\n", "[pipeline]\nshards = 4\n"))
    logs = [tmp_path / "node-a.log", tmp_path / "node-b.log"]
    store = tmp_path / "store"
    addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(2))
    read: list[int] = []  # lines each process read, per start

    def follow(written: list[bytes]) -> None:
        args = ("run", *map(str, logs), "--store", str(store), "--config", str(cfg), "-a", addresses)
        procs = [start_gatewatch(*args, "-i", str(i)) for i in range(2)]
        try:
            # all of it, the last windows idle-closed: a stop keeps open windows for the next run
            target = len(written)
            wait_for(lambda: scalar(store, "SELECT coalesce(sum(requests), 0) FROM traffic") >= target,
                     timeout=120, what=f"{target} requests")  # fmt: skip
            for proc in procs:  # every process must stop: the dataflow ends when all its inputs do
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                out, err = proc.communicate(timeout=60)
                assert proc.returncode == 0, err
                read.append(int(re.search(r"lines=(\d+)", out).group(1)))
        finally:
            for proc in procs:  # a failed check must not leave a cluster running
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    first, second = LINES[:2000], LINES[2000:4000]
    for i, log in enumerate(logs):
        log.write_bytes(b"".join(first[i::2]))
    follow(first)
    for i, log in enumerate(logs):  # written while the cluster is down: read after the resume
        with open(log, "ab") as f:
            f.write(b"".join(second[i::2]))
    follow(first + second)

    assert sum(read) == len(first + second)  # the resume read each line once, in one of the processes
    assert scalar(store, "SELECT count(*) FROM rejected") == 0
    got = {(r["ws"], r["api"], r["consumer"]): r["n"] for r in rows(
        store, "SELECT epoch(window_start) ws, api, consumer, sum(requests) n FROM traffic GROUP BY ALL")}
    assert got == dict(_oracle_of(first + second))
    # one control plane (process 0's): every finding once
    assert scalar(store, "SELECT count(*) - count(DISTINCT finding_id) FROM findings") == 0
