"""Kafka input: one Bytewax partition per Kafka partition, offsets in Bytewax recovery.

Log shippers (Filebeat, Fluent Bit, Vector) write one log line per message.
Each partition is read with ``assign()`` (no consumer group: Bytewax's
snapshots hold the offsets, as in Bytewax's own ``KafkaSource``) and emits
whole batches of lines as :class:`~gatewatch.flows.events.Chunk` s, like the file
source, so the rest of the dataflow does not care where lines come from.

``[input.kafka]`` (:class:`~gatewatch.flows.config.InputKafkaConfig`) adds TLS, SASL
and, for lag tools, commits to a consumer group: a partition commits the
offset of a snapshot once Bytewax has moved past that snapshot's epoch, so
only offsets whose lines are in the store and whose state is in the recovery
snapshot are ever committed. Gatewatch never reads them back.
"""

from __future__ import annotations

import os
import ssl
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from gatewatch.flows.config import InputKafkaConfig
from gatewatch.flows.events import Chunk
from gatewatch.sinks.targets.base import Secret

_KEY = "input.kafka"
_UNUSED_GROUP = "gatewatch"  # librdkafka wants a group.id; without commit_offsets nothing is sent to it
METADATA_TIMEOUT_S = 10.0  # how long the topic's partitions may take to arrive before the run gives up
_COMMIT_WAIT_S = 5.0  # how long closing a partition waits for its last commit's answer
_RECOMMIT_S = 3600.0  # an unchanged offset is committed again this often: brokers expire an idle group's offsets


class KafkaInputError(RuntimeError):
    """The broker reported an error that is not the end of a partition."""


class KafkaSettingsError(ValueError):
    """``[input.kafka]`` cannot be used as it is; ``problems`` name each key (never a secret's value)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _sasl_password(settings: InputKafkaConfig) -> Secret:
    return Secret(f"{_KEY}.sasl_password_env", settings.sasl_password_env, settings.sasl_password_file)


def _key_password(settings: InputKafkaConfig) -> Secret | None:
    if not settings.ssl_key_password_env:
        return None
    return Secret(f"{_KEY}.ssl_key_password_env", settings.ssl_key_password_env)


def _uses_sasl(settings: InputKafkaConfig) -> bool:
    return settings.security_protocol.startswith("SASL_")


def _uses_tls(settings: InputKafkaConfig) -> bool:
    return settings.security_protocol.endswith("SSL")


def _secret_problem(secret: Secret) -> str | None:
    if problem := secret.problem():
        return problem
    if not secret.get():  # a file holding nothing (an empty variable already counts as not set)
        return f"{secret.key.removesuffix('_env')}_file: {secret.file} is empty"
    return None


def kafka_problems(settings: InputKafkaConfig) -> list[str]:
    """What keeps ``[input.kafka]`` from working, found without the network, by config key.

    The secrets it names must be readable and not empty, and the TLS files must
    load (the CA as PEM certificates; the client certificate with its key and
    the key's password). A message names the key and the file or variable,
    never a secret's value. The defaults (PLAINTEXT, no group) give none.
    """
    problems = []
    if _uses_sasl(settings) and (p := _secret_problem(_sasl_password(settings))):
        problems.append(p)
    key_password = _key_password(settings)
    if key_password is not None and (p := _secret_problem(key_password)):
        problems.append(p)
    if not _uses_tls(settings):
        return problems
    if ca := settings.ssl_ca_file:
        try:
            ssl.create_default_context(**({"capath": ca} if os.path.isdir(ca) else {"cafile": ca}))
        except (OSError, ssl.SSLError, ValueError) as exc:
            problems.append(f"{_KEY}.ssl_ca_file: cannot load {ca} as PEM certificates ({_reason(exc)})")
    if settings.ssl_certificate_file and settings.ssl_key_file and not (key_password and key_password.problem()):
        unreadable = [
            f"{_KEY}.{key}: cannot read {path}"
            for key in ("ssl_certificate_file", "ssl_key_file")
            if not os.path.isfile(path := getattr(settings, key)) or not os.access(path, os.R_OK)
        ]
        if unreadable:
            return problems + unreadable
        password = key_password.get() if key_password is not None else ""
        try:
            # an empty password, never OpenSSL's prompt: an encrypted key without one fails here
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
                settings.ssl_certificate_file, settings.ssl_key_file, password=lambda: password
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            with open(settings.ssl_key_file, "rb") as f:
                encrypted = b"ENCRYPTED" in f.read(1 << 20)  # PKCS#8 or the older Proc-Type header
            hint = ""
            if encrypted:
                hint = "; the key is encrypted: " + (
                    "is ssl_key_password_env its password?" if key_password else "set ssl_key_password_env"
                )
            problems.append(
                f"{_KEY}.ssl_key_file: cannot load {settings.ssl_key_file} with ssl_certificate_file "
                f"{settings.ssl_certificate_file} ({_reason(exc)}{hint})"
            )
    return problems


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc) or type(exc).__name__


def kafka_properties(settings: InputKafkaConfig) -> dict[str, str]:
    """The librdkafka properties of ``[input.kafka]``, with its secrets read (never log the result).

    Raises:
        KafkaSettingsError: A secret cannot be read; the problems name its key.
    """
    props = {
        "security.protocol": settings.security_protocol,
        "group.id": settings.group_id or _UNUSED_GROUP,
        "enable.auto.commit": "false",  # commits, if any, are gatewatch's own (see _KafkaPartition)
        "enable.auto.offset.store": "false",
    }
    if _uses_sasl(settings):
        password = _sasl_password(settings)
        if problem := password.problem():
            raise KafkaSettingsError([problem])
        props |= {
            "sasl.mechanisms": settings.sasl_mechanism,
            "sasl.username": settings.sasl_username,
            "sasl.password": password.get(),
        }
    if _uses_tls(settings):
        props["ssl.endpoint.identification.algorithm"] = "https" if settings.ssl_check_hostname else "none"
        files = {
            "ssl.ca.location": settings.ssl_ca_file,
            "ssl.certificate.location": settings.ssl_certificate_file,
            "ssl.key.location": settings.ssl_key_file,
        }
        props |= {name: path for name, path in files.items() if path}
        key_password = _key_password(settings)
        if key_password is not None:
            if problem := key_password.problem():
                raise KafkaSettingsError([problem])
            props["ssl.key.password"] = key_password.get()
    return props


def _consumer(brokers: list[str], settings: InputKafkaConfig, extra: dict, **callbacks) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": ",".join(brokers),
            **kafka_properties(settings),
            "enable.partition.eof": True,
            **extra,
            **callbacks,
        }
    )


def topic_partitions(
    brokers: list[str],
    topic: str,
    settings: InputKafkaConfig | None = None,
    *,
    extra: dict | None = None,
    timeout_s: float = METADATA_TIMEOUT_S,
) -> list[int]:
    """The partitions of ``topic``, asked of the brokers; at most ``timeout_s`` (no hang on a wrong protocol).

    Raises:
        KafkaInputError: The brokers did not answer in time, or have no such topic; the
            message says which, with the security protocol and the brokers' last error.
        KafkaSettingsError: A secret of ``settings`` cannot be read.
    """
    settings = settings or InputKafkaConfig()
    errors: list[str] = []
    # librdkafka's own log lines stay quiet: the last error goes into the message instead
    consumer = _consumer(brokers, settings, extra or {}, error_cb=lambda err: errors.append(err.str()), log_level=0)
    where = f"{','.join(brokers)} ({_KEY}.security_protocol = {settings.security_protocol})"
    try:
        try:
            meta = consumer.list_topics(topic, timeout=timeout_s)
        except KafkaException as exc:
            consumer.poll(0)  # serves the error callbacks queued meanwhile: they say why
            last = (
                f"; last broker error: {errors[-1]}"
                if errors
                else f"; no error from the brokers: do they listen with {settings.security_protocol} at that address?"
            )
            msg = f"Kafka: no answer about topic {topic!r} from {where} within {timeout_s:g} s ({exc.args[0].str()}{last})"
            raise KafkaInputError(msg) from None
    finally:
        consumer.close()
    found = meta.topics.get(topic)
    if found is None or found.error is not None:
        why = f": {found.error.str()}" if found is not None and found.error is not None else ""
        msg = f"Kafka topic {topic!r} is not available on {where}{why}"
        raise KafkaInputError(msg)
    return sorted(found.partitions)


class _KafkaPartition(StatefulSourcePartition[Chunk, int]):
    """One Kafka partition; with a ``group``, it commits the offsets that are safe to it.

    Bytewax 0.21 takes a partition's snapshot as it ends an epoch, and calls
    ``next_batch`` for the next epoch only once every output of the earlier
    epochs is written and their recovery snapshots are stored (its input
    backpressure). So the offset of the last snapshot is safe at the next
    ``next_batch``: its lines are in the store and its state in recovery. It is
    committed then, asynchronously; the offset a run resumes from is safe too.
    A finite read (``follow=False``) waits for its last epoch to end so that
    its last offsets are committed; a stopped ``run`` leaves those of its last
    epoch to the next run, which commits them as it resumes.
    """

    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        partition: int,
        *,
        follow: bool,
        max_messages: int,
        poll: timedelta,
        stop: threading.Event | None,
        on_read: Callable[[int, int], None] | None,
        next_offset: int | None,
        group: str | None = None,
    ) -> None:
        self._consumer = consumer
        self._topic = topic
        self._partition = partition
        self._source = f"kafka:{topic}/{partition}"
        self._follow = follow
        self._max_messages = max_messages
        self._poll = poll
        self._stop = stop
        self._on_read = on_read
        self._next_offset = next_offset
        self._idle = False
        self._at_end = False  # the last answer was the end of the partition (reported once per arrival)
        self._group = group
        self._snapshotted = next_offset  # safe at the next next_batch (a resumed offset is safe already)
        self._safe: int | None = None  # newest offset whose lines are in the store and state in a snapshot
        self._committed: int | None = None  # newest offset handed to the broker (None after a failure)
        self._committed_at = 0.0
        self._in_flight = 0
        self._commit_error = ""

    def next_batch(self) -> list[Chunk]:
        if self._group is not None and self._snapshotted is not None:
            self._safe, self._snapshotted = self._snapshotted, None
            self._commit()
        if self._stop is not None and self._stop.is_set():
            raise StopIteration
        lines: list[bytes] = []
        offsets: list[int] = []  # each line's message offset: what a rejected line points back to
        first = None
        nbytes = 0
        for msg in self._consumer.consume(num_messages=self._max_messages, timeout=0.05):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._at_end = True
                    continue
                msg_text = f"{self._source}: {err.str()}"
                raise KafkaInputError(msg_text)
            self._at_end = False
            value = msg.value() or b""
            if first is None:
                first = msg.offset()
            # a shipper may batch several lines into one message
            before = len(lines)
            lines.extend(value.rstrip(b"\n").split(b"\n") if b"\n" in value else [value])
            offsets.extend([msg.offset()] * (len(lines) - before))
            nbytes += len(value)
            self._next_offset = msg.offset() + 1
        self._idle = not lines
        if not lines:
            if self._at_end and not self._follow and not self._committing_last():
                raise StopIteration
            return []
        if self._on_read is not None:
            self._on_read(len(lines), nbytes)
        return [Chunk(self._source, first, first, lines, offsets)]

    def _committing_last(self) -> bool:
        """At the end of a finite read: is its last offset still to become safe (and be committed)?"""
        return self._group is not None and self._next_offset is not None and self._safe != self._next_offset

    def _commit(self) -> None:
        stale = time.monotonic() - self._committed_at >= _RECOMMIT_S
        if self._safe is None or (self._safe == self._committed and not stale):
            return
        offsets = [TopicPartition(self._topic, self._partition, self._safe)]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:  # refused before it was sent: reported like a failed answer
            self._in_flight += 1
            self.on_commit(exc.args[0], offsets)
            return
        self._committed = self._safe
        self._committed_at = time.monotonic()
        self._in_flight += 1

    def on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's answer to a commit (called from ``consume``/``poll`` on this partition's thread)."""
        self._in_flight = max(self._in_flight - 1, 0)
        failed = err.str() if err is not None else next((p.error.str() for p in partitions if p.error), "")
        if failed:
            self._committed = None  # the next safe offset is committed again
            if failed != self._commit_error:
                sys.stderr.write(
                    f"warning: {_KEY}.commit_offsets: {self._source}: committing offsets to consumer group "
                    f"{self._group!r} failed ({failed}); gatewatch goes on (it resumes from its own snapshots)\n"
                )
        self._commit_error = failed

    def next_awake(self) -> datetime | None:
        return datetime.now(timezone.utc) + self._poll if self._idle else None

    def snapshot(self) -> int | None:
        self._snapshotted = self._next_offset
        return self._next_offset

    def close(self) -> None:
        if self._in_flight:
            self._consumer.unassign()  # no more fetching: polling now only serves the commits' answers
            deadline = time.monotonic() + _COMMIT_WAIT_S
            while self._in_flight and time.monotonic() < deadline:
                self._consumer.poll(0.1)
        self._consumer.close()


class KafkaLogSource(FixedPartitionedSource[Chunk, int]):
    """Read log lines from every partition of one Kafka topic.

    Args:
        brokers: ``host:port`` bootstrap servers.
        topic: The topic log shippers write to.
        follow: Keep waiting at the end of a partition (``run``); otherwise stop there.
        max_messages: Messages taken from a partition per batch.
        poll_ms: How long an idle partition waits before asking again.
        stop: Once set, every partition ends at its next batch.
        on_read: Called with ``(lines, bytes)`` after each non-empty batch.
        add_config: Extra librdkafka settings, after those of ``settings``.
        settings: ``[input.kafka]``: TLS, SASL (secrets read when a consumer is made)
            and the consumer group offsets are committed to.
    """

    def __init__(
        self,
        brokers: list[str],
        topic: str,
        *,
        follow: bool = True,
        max_messages: int = 5000,
        poll_ms: int = 200,
        stop: threading.Event | None = None,
        on_read: Callable[[int, int], None] | None = None,
        add_config: dict[str, str] | None = None,
        settings: InputKafkaConfig | None = None,
    ) -> None:
        self.brokers = brokers
        self.topic = topic
        self.follow = follow
        self.max_messages = max_messages
        self.poll = timedelta(milliseconds=poll_ms)
        self.stop = stop
        self.on_read = on_read
        self.add_config = dict(add_config or {})
        self.settings = settings or InputKafkaConfig()

    def list_parts(self) -> list[str]:
        partitions = topic_partitions(self.brokers, self.topic, self.settings, extra=self.add_config)
        return [f"{self.topic}/{p}" for p in partitions]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _KafkaPartition:
        partition = int(for_part.rsplit("/", 1)[1])
        committing = self.settings.commit_offsets
        callbacks = {}
        if committing:
            target: list[_KafkaPartition] = []  # the partition, once made: the consumer is made first
            callbacks["on_commit"] = lambda err, parts: target[0].on_commit(err, parts) if target else None
        consumer = _consumer(self.brokers, self.settings, self.add_config, **callbacks)
        start = OFFSET_BEGINNING if resume_state is None else resume_state
        consumer.assign([TopicPartition(self.topic, partition, start)])
        part = _KafkaPartition(
            consumer,
            self.topic,
            partition,
            follow=self.follow,
            max_messages=self.max_messages,
            poll=self.poll,
            stop=self.stop,
            on_read=self.on_read,
            next_offset=resume_state,
            group=self.settings.group_id if committing else None,
        )
        if committing:
            target.append(part)
        return part
