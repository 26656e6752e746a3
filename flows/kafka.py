"""Kafka input: one Bytewax partition per Kafka partition, offsets in Bytewax recovery.

Log shippers (Filebeat, Fluent Bit, Vector) write one log line per message.
Each partition is read with ``assign()`` (no consumer group: Bytewax's
snapshots hold the offsets, as in Bytewax's own ``KafkaSource``) and emits
whole batches of lines as :class:`~flows.events.Chunk` s, like the file
source, so the rest of the dataflow does not care where lines come from.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from flows.events import Chunk


class KafkaInputError(RuntimeError):
    """The broker reported an error that is not the end of a partition."""


def _consumer(brokers: list[str], extra: dict[str, str]) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": ",".join(brokers),
            "group.id": "gatewatch",  # required by librdkafka; unused: offsets live in Bytewax snapshots
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            **extra,
        }
    )


class _KafkaPartition(StatefulSourcePartition[Chunk, int]):
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

    def next_batch(self) -> list[Chunk]:
        if self._stop is not None and self._stop.is_set():
            raise StopIteration
        lines: list[bytes] = []
        offsets: list[int] = []  # each line's message offset: what a rejected line points back to
        first = None
        nbytes = 0
        at_end = False
        for msg in self._consumer.consume(num_messages=self._max_messages, timeout=0.05):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end = True
                    continue
                msg_text = f"{self._source}: {err.str()}"
                raise KafkaInputError(msg_text)
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
            if at_end and not self._follow:
                raise StopIteration
            return []
        if self._on_read is not None:
            self._on_read(len(lines), nbytes)
        return [Chunk(self._source, first, first, lines, offsets)]

    def next_awake(self) -> datetime | None:
        return datetime.now(timezone.utc) + self._poll if self._idle else None

    def snapshot(self) -> int | None:
        return self._next_offset

    def close(self) -> None:
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
        add_config: Extra librdkafka settings (e.g. TLS); no secrets in the config file.
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
    ) -> None:
        self.brokers = brokers
        self.topic = topic
        self.follow = follow
        self.max_messages = max_messages
        self.poll = timedelta(milliseconds=poll_ms)
        self.stop = stop
        self.on_read = on_read
        self.add_config = dict(add_config or {})

    def list_parts(self) -> list[str]:
        consumer = _consumer(self.brokers, self.add_config)
        try:
            meta = consumer.list_topics(self.topic, timeout=10)
        finally:
            consumer.close()
        topic = meta.topics.get(self.topic)
        if topic is None or topic.error is not None:
            msg = f"Kafka topic {self.topic!r} is not available on {','.join(self.brokers)}"
            raise KafkaInputError(msg)
        return [f"{self.topic}/{p}" for p in sorted(topic.partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _KafkaPartition:
        partition = int(for_part.rsplit("/", 1)[1])
        consumer = _consumer(self.brokers, self.add_config)
        start = OFFSET_BEGINNING if resume_state is None else resume_state
        consumer.assign([TopicPartition(self.topic, partition, start)])
        return _KafkaPartition(
            consumer,
            self.topic,
            partition,
            follow=self.follow,
            max_messages=self.max_messages,
            poll=self.poll,
            stop=self.stop,
            on_read=self.on_read,
            next_offset=resume_state,
        )
