"""The one module that wires Bytewax operators.

::

    read (LogSource: chunks of lines)
      -> parse (ChunkParser; rejects branch off to the store)
      -> route (each event counted into a cell of each subject family, and
                each cell sent to its subject's shard: crc32 of the consumer
                -> c<n>, of the client IP -> i<n>, of the endpoint (resource
                with ids folded) -> a<n>; every shard also gets the input's
                newest event time so its windows close in step)
      -> detect_consumer / detect_ip / detect_api (one ShardProcessor per
                shard: windows, features, detectors)
      -> store (StoreSink: one Parquet segment per table per batch; findings
                also go to the control database's inbox for the controller)

Items that cross Bytewax are batches, never single events: the per-event
work happens in plain loops.
"""

from __future__ import annotations

import pickle
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import compress
from operator import itemgetter
from pathlib import Path

import bytewax.operators as op
import numpy as np
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulLogic
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from gatewatch.flows.config import Config
from gatewatch.flows.events import Chunk, Event, Finding
from gatewatch.flows.features import OVERFLOW_CONSUMER, pack_cells, unpack_cells
from gatewatch.flows.parsers import ChunkParser
from gatewatch.flows.shard import FAMILIES, SHARDS, Output, ShardProcessor
from gatewatch.flows.sources import KafkaInput, LogSource
from gatewatch.sinks.control import ControlDB
from gatewatch.sinks.store import StoreWriter

REJECTED_KEY = "rejected"
_FAMILY_KEYS = ("c", "i", "a")  # shard key prefixes: consumer, client IP, API endpoint


@dataclass
class RunStats:
    """Counters of one run, shared by the steps of this process."""

    lines: int = 0
    bytes: int = 0
    events: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    # rows by table and label: rejected lines by reason, findings by kind (the metrics endpoint)
    labelled: dict[tuple[str, str], int] = field(default_factory=dict)
    newest_event_ts: float | None = None  # the newest event time read, of every input
    started: float = field(default_factory=time.perf_counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def on_read(self, lines: int, nbytes: int) -> None:
        with self._lock:
            self.lines += lines
            self.bytes += nbytes

    def add_events(self, n: int) -> None:
        with self._lock:
            self.events += n

    def add_rows(self, table: str, n: int) -> None:
        with self._lock:
            self.rows[table] = self.rows.get(table, 0) + n

    def add_labelled(self, table: str, labels: list[str]) -> None:
        with self._lock:
            for label in labels:
                key = (table, label)
                self.labelled[key] = self.labelled.get(key, 0) + 1

    def saw_event_time(self, ts: float) -> None:
        if self.newest_event_ts is None or ts > self.newest_event_ts:
            self.newest_event_ts = ts

    def mostly_rejected(self, fmt: str) -> str | None:
        """A warning when nearly every line was rejected: the wrong format, most likely."""
        rejected = self.rows.get("rejected", 0)
        if self.lines < 10 or rejected < 0.9 * self.lines:
            return None
        return (
            f"{rejected:,} of {self.lines:,} lines were rejected: is --format {fmt} the log's format? "
            "(gatewatch sql \"SELECT reason, count(*) FROM rejected GROUP BY 1\" says why)"
        )

    def summary(self) -> str:
        seconds = time.perf_counter() - self.started
        r = self.rows
        return (
            f"lines={self.lines} events={self.events} rejected={r.get('rejected', 0)} "
            f"findings={r.get('findings', 0)} decisions={r.get('decisions', 0)} seconds={seconds:.2f}"
        )


class _ShardBatch:
    """A batch of cells for one shard (``WindowTable.collect``) and its input's event-time progress."""

    __slots__ = ("_packed", "batch", "shard", "source", "source_ts")

    def __init__(self, batch: object, shard: str, source: str, source_ts: float) -> None:
        self.batch = batch
        self.shard = shard
        self.source = source
        self.source_ts = source_ts
        self._packed: bytes | None = None

    def __reduce__(self):
        # between processes. Timely serializes a message twice (its size first), so the pickle is kept.
        if self._packed is None:
            columns = {start: pack_cells(cells) for start, cells in self.batch.items() if cells}
            self._packed = pickle.dumps(columns, protocol=5)
        return (_unpack_batch, (self._packed, self.shard, self.source, self.source_ts))


def _unpack_batch(packed: bytes, shard: str, source: str, source_ts: float) -> _ShardBatch:
    columns = pickle.loads(packed)  # noqa: S301 - a peer's cells
    return _ShardBatch({start: unpack_cells(c) for start, c in columns.items()}, shard, source, source_ts)


_SPREAD = 12  # shard keys spread evenly over any worker count that divides it: 1, 2, 3, 4, 6, 12
_MASK64 = (1 << 64) - 1


def _sipround(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & _MASK64
    v1 = ((v1 << 13) | (v1 >> 51)) & _MASK64 ^ v0
    v0 = ((v0 << 32) | (v0 >> 32)) & _MASK64
    v2 = (v2 + v3) & _MASK64
    v3 = ((v3 << 16) | (v3 >> 48)) & _MASK64 ^ v2
    v0 = (v0 + v3) & _MASK64
    v3 = ((v3 << 21) | (v3 >> 43)) & _MASK64 ^ v0
    v2 = (v2 + v1) & _MASK64
    v1 = ((v1 << 17) | (v1 >> 47)) & _MASK64 ^ v2
    v2 = ((v2 << 32) | (v2 >> 32)) & _MASK64
    return v0, v1, v2, v3


def bytewax_worker_of(key: str, workers: int) -> int:
    """The worker Bytewax 0.21 runs a stateful step's ``key`` on.

    Bytewax hashes the key with Rust's ``DefaultHasher`` (SipHash-1-3, zero keys; a
    ``str`` hashes as its bytes then ``0xff``) modulo the worker count. A test checks
    this against the workers a real flow uses.
    """
    data = key.encode() + b"\xff"
    v0, v1, v2, v3 = 0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573
    end = len(data) - len(data) % 8
    for at in range(0, end, 8):
        m = int.from_bytes(data[at : at + 8], "little")
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3 ^ m)
        v0 ^= m
    m = (len(data) & 0xFF) << 56 | int.from_bytes(data[end:], "little")
    v0, v1, v2, v3 = _sipround(v0, v1, v2, v3 ^ m)
    v0, v2 = v0 ^ m, v2 ^ 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    return (v0 ^ v1 ^ v2 ^ v3) % workers


def shard_keys(shards: int) -> dict[str, list[str]]:
    """The keys of every family's shards, named so that Bytewax spreads them evenly over the workers.

    Bytewax places keys by their hash; plain names such as ``c0``..``c3`` put three of
    four consumer shards on one of two workers. Shard ``i`` of the ``k``-th family is
    ``{family}{i}``, suffixed ``~n`` with the smallest ``n`` that makes it the
    ``(k * shards + i) % _SPREAD``-th key modulo ``_SPREAD``: round robin over any
    worker count dividing ``_SPREAD``. The names depend on ``shards`` only, so a
    resume with another worker count finds its state.
    """
    keys: dict[str, list[str]] = {}
    for k, family in enumerate(_FAMILY_KEYS):
        names = keys[family] = []
        for i in range(shards):
            target, name, n = (k * shards + i) % _SPREAD, f"{family}{i}", 0
            while bytewax_worker_of(name, _SPREAD) != target:
                n += 1
                name = f"{family}{i}~{n}"
            names.append(name)
    return keys


_HELD_TABLES = ("traffic", "subject_windows")  # the bulk of the output: rows a replay holds back
_REPLAY_HOLD_ROWS = 10_000  # held rows a replay writes segments at
PROGRESS = "progress"  # pseudo-table: (shard key, event time every window before which is closed)


def _rejected_rows(rejects, now: float) -> list[tuple]:
    return [(r.source, r.line_no, r.offset, r.reason, r.detail, r.raw, now) for r in rejects]


class _Router:
    """Parse chunks and route what they hold to the shards."""

    def __init__(self, cfg: Config, stats: RunStats) -> None:
        inp = cfg.input
        self.parser = ChunkParser(
            inp.format,
            max_line_bytes=inp.max_line_bytes,
            raw_max_bytes=inp.raw_max_bytes,
            options={"json": {"mapping": inp.json_mapping}},
        )
        self.shards = cfg.pipeline.shards
        self.window_s = cfg.pipeline.window_s
        self.keys = shard_keys(self.shards)
        self.collect = [SHARDS[family].table_type.collect for family in FAMILIES]
        self.stats = stats
        self.source_ts: dict[str, float] = {}  # newest event time per input source

    def __call__(self, chunk: Chunk) -> list[tuple[str, object]]:
        events, rejects = self.parser.parse(chunk)
        self.stats.add_events(len(events))
        out: list[tuple[str, object]] = []
        if rejects:
            out.append((REJECTED_KEY, ("rejected", _rejected_rows(rejects, time.time()))))
        routed = self.route(events, chunk.source)
        if events:
            self.stats.saw_event_time(self.source_ts[chunk.source])
        return out + routed

    def route(self, events: list[Event], source: str) -> list[tuple[str, _ShardBatch]]:
        """A batch for every shard: each event reaches one shard of each family (see shard_keys).

        Every shard hears about every source, so all of them close windows on the same watermark.
        """
        newest = self.source_ts.get(source, float("-inf"))
        for e in events:
            if e.ts > newest:  # noqa: PLR1730 - max() here costs 100 against 13 ns an event
                newest = e.ts
        self.source_ts[source] = newest
        keys, window_s = self.keys, self.window_s
        if self.shards == 1:
            return [
                (keys[f][0], _ShardBatch(collect(events, window_s), keys[f][0], source, newest))
                for f, collect in zip(_FAMILY_KEYS, self.collect, strict=True)
            ]
        # each family's cells are counted here, once, and go to their subject's shard: far fewer
        # than events, and the counting is done where the events were parsed
        consumer_collect, ip_collect, api_collect = self.collect
        parts = (
            self._split_cells(consumer_collect(events, window_s), 1),
            self._split_cells(ip_collect(events, window_s), None),
            self._split_cells(api_collect(events, window_s), 2),
        )
        return [
            (key, _ShardBatch(b, key, source, newest))
            for family, batches in zip(_FAMILY_KEYS, parts, strict=True)
            for key, b in zip(keys[family], batches, strict=True)
        ]

    def _split_cells(self, windows: dict[float, dict], at: int | None) -> list[dict]:
        """Split ``{start: {key: cell}}`` by the shard of each key's subject (``key[at]``, or the key).

        The subject's shard is the crc32 of its UTF-8 modulo the shard count, computed for a
        window's cells at once in C: most IP cells are one-off addresses, seen once.
        """
        parts: list[dict[float, dict]] = [{} for _ in range(self.shards)]
        for start, cells in windows.items():
            keys = list(cells)
            subjects = keys if at is None else map(itemgetter(at), keys)
            shard = np.fromiter(map(zlib.crc32, map(str.encode, subjects)), np.int64, len(keys)) % self.shards
            values = list(cells.values())
            for i in np.unique(shard).tolist():
                mine = (shard == i).tolist()
                parts[i][start] = dict(zip(compress(keys, mine), compress(values, mine), strict=True))
        return parts


class _ShardLogic(StatefulLogic):
    """Bytewax adapter around :class:`ShardProcessor`.

    Besides store rows it reports, whenever it moves, the event time before
    which this shard has closed every window: the store sink turns the
    minimum over all shards into the control plane's watermark.
    """

    def __init__(self, proc: ShardProcessor, *, follow: bool, tick_s: float, snapshots: bool) -> None:
        self.proc = proc
        self.follow = follow
        self.tick_s = tick_s
        self.snapshots = snapshots
        self._shard = ""
        self._reported = float("-inf")

    def _with_progress(self, out: list[Output]) -> list[Output]:
        closed = self.proc.table.closed_until
        if closed > self._reported:
            self._reported = closed
            out.append((PROGRESS, [(self._shard, closed)]))
        return out

    def on_item(self, value: _ShardBatch) -> tuple[list[Output], bool]:
        self._shard = value.shard
        out = self.proc.take(value.batch, value.source, value.source_ts)
        return self._with_progress(out), StatefulLogic.RETAIN

    def on_notify(self) -> tuple[list[Output], bool]:
        return self._with_progress(self.proc.tick(time.time())), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[list[Output], bool]:
        if self.follow and self.snapshots:
            # a run that resumes was stopped: its open windows stay in the recovery snapshot,
            # so a stop and restart judge them whole, as an uninterrupted run would
            return self._with_progress([]), StatefulLogic.RETAIN
        return self._with_progress(self.proc.flush()), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if self.follow and self.proc.has_open_windows():
            return datetime.now(timezone.utc) + timedelta(seconds=self.tick_s)
        return None

    def snapshot(self) -> bytes | None:
        # bytes are immutable, so later mutation of the live state cannot leak into the snapshot
        return pickle.dumps(self.proc, protocol=pickle.HIGHEST_PROTOCOL) if self.snapshots else None


# the column counted by label for the metrics: a rejected line's reason, a finding's kind
_LABEL_COLUMN = {"rejected": 3, "findings": 5}


class _StorePartition(StatefulSinkPartition):
    def __init__(
        self,
        writer: StoreWriter,
        control: ControlDB,
        stats: RunStats,
        compact_every_s: float,
        compact_min_files: int,
        shard_count: int,
        hold_rows: int,
    ) -> None:
        self.writer = writer
        self.shard_count = shard_count
        self.closed_until: dict[str, float] = {}
        self.control = control
        self.stats = stats
        self.compact_every_s = compact_every_s
        self.compact_min_files = compact_min_files
        self._last_compact = time.monotonic()
        self.hold_rows = hold_rows

    def write_batch(self, items: list[Output]) -> None:
        by_table: dict[str, list[tuple]] = {}
        for table, rows in items:
            by_table.setdefault(table, []).extend(rows)
        progress = by_table.pop(PROGRESS, [])
        for table, rows in by_table.items():
            self.stats.add_rows(table, len(rows))
            if table in _LABEL_COLUMN:
                self.stats.add_labelled(table, [row[_LABEL_COLUMN[table]] for row in rows])
            self.writer.append(table, rows, hold=table in _HELD_TABLES)
        if self.writer.held_rows >= self.hold_rows:
            self.writer.write_held()
        # the findings are durable before the controller may act on them
        if "traffic" in by_table:  # the blast radius counts the consumers with traffic (one by one)
            traffic = by_table["traffic"]
            self.control.record_consumers({(row[1], row[3]) for row in traffic if row[3] != OVERFLOW_CONSUMER})
        if "findings" in by_table:
            self.control.record_findings(Finding(*row) for row in by_table["findings"])
        for shard, closed_until in progress:
            self.closed_until[shard] = max(self.closed_until.get(shard, float("-inf")), closed_until)
        # the controller may treat a window as over only when every shard of every family has closed it
        if progress and len(self.closed_until) == self.shard_count:
            self.control.advance_watermark(min(self.closed_until.values()))
        if time.monotonic() - self._last_compact >= self.compact_every_s:
            self.compact()

    def compact(self) -> None:
        self.writer.write_held()
        self.writer.compact_all(self.compact_min_files)
        self._last_compact = time.monotonic()

    def snapshot(self) -> int:
        # on resume, everything written after this segment is rolled back: Bytewax replays it
        self.writer.write_held()
        return self.writer.last_seq

    def close(self) -> None:
        self.compact()
        self.control.close()


class StoreSink(FixedPartitionedSink):
    """Write every (table, rows) item to the store.

    One partition: all rows go through one writer, which owns segment
    numbering and compaction. Exactly once with recovery: the partition's
    snapshot is its newest segment number, and a resumed partition first
    rolls back every segment written after it, since Bytewax replays the
    output of the epochs after the snapshot.

    ``traffic`` and ``subject_windows`` rows wait until ``hold_rows`` of them
    are held (0: every batch, for ``run``, whose store is read live), a
    snapshot or the end: a replay then writes a few large segments instead of
    one per table and closed window, each a file to write and later to
    compact. Findings get a segment at once (the controller acts on them),
    and so do rejected lines (each may keep up to ``input.raw_max_bytes``).
    """

    def __init__(
        self,
        root: Path,
        stats: RunStats,
        *,
        compact_every_s: float,
        compact_min_files: int,
        shard_count: int,
        hold_rows: int = 0,
        base_seq: int | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        self.root = root
        self.on_start = on_start  # called when a worker builds the dataflow: its cluster is connected
        self.hold_rows = hold_rows
        self.shard_count = shard_count  # shards of all families, each reporting its progress
        self.base_seq = base_seq  # where a recovery lineage started: the resume point before any snapshot
        self.stats = stats
        self.compact_every_s = compact_every_s
        self.compact_min_files = compact_min_files

    def list_parts(self) -> list[str]:
        if self.on_start is not None:
            self.on_start()
        return ["store"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _StorePartition:
        writer = StoreWriter(self.root).open()
        resume_seq = resume_state if resume_state is not None else self.base_seq
        if resume_seq is not None:
            writer.rollback(resume_seq)
        return _StorePartition(
            writer,
            ControlDB(self.root).open(),
            self.stats,
            self.compact_every_s,
            self.compact_min_files,
            self.shard_count,
            self.hold_rows,
        )


def build_flow(
    cfg: Config,
    inputs: list[str] | KafkaInput,
    *,
    follow: bool,
    stats: RunStats,
    stop: threading.Event | None = None,
    snapshots: bool = False,
    store_base_seq: int | None = None,
    on_start: Callable[[], None] | None = None,
    on_resume: Callable[[str, int], None] | None = None,
) -> Dataflow:
    """Build the gatewatch dataflow over ``inputs``: paths, globs or ``-``, or a Kafka topic.

    ``on_start`` is called once a worker builds the dataflow, which Bytewax does only
    after every process of a cluster has connected; ``on_resume`` with each file a
    restart continues and the line it continues at.
    """
    flow = Dataflow("gatewatch")
    if isinstance(inputs, KafkaInput):
        from gatewatch.flows.kafka import KafkaLogSource  # confluent-kafka is only needed for Kafka input

        source = KafkaLogSource(
            inputs.brokers, inputs.topic, follow=follow, poll_ms=cfg.input.poll_ms, stop=stop, on_read=stats.on_read,
            settings=cfg.input.kafka,
        )  # fmt: skip
    else:
        source = LogSource(
            inputs,
            follow=follow,
            poll_ms=cfg.input.poll_ms,
            max_batch_bytes=cfg.input.max_batch_bytes,
            max_line_bytes=cfg.input.max_line_bytes,
            stop=stop,
            on_read=stats.on_read,
            on_resume=on_resume,
        )
    chunks = op.input("read", flow, source)
    routed = op.flat_map("parse", chunks, _Router(cfg, stats))
    split = op.branch("split_rejected", routed, lambda kv: kv[0] == REJECTED_KEY)

    def shard_builder(family: str):
        def build_shard(resume: bytes | None) -> _ShardLogic:
            if resume:
                proc = pickle.loads(resume)
                proc.apply_caps(cfg)
            else:
                proc = SHARDS[family](cfg)
            return _ShardLogic(proc, follow=follow, tick_s=1.0, snapshots=snapshots)

        return build_shard

    # one stateful step per subject family: consumer (c*), client IP (i*), API endpoint (a*)
    by_family = op.branch("split_consumers", split.falses, lambda kv: kv[0][0] == "c")
    rest = op.branch("split_ips", by_family.falses, lambda kv: kv[0][0] == "i")
    streams = {"consumer": by_family.trues, "ip": rest.trues, "api": rest.falses}
    windows = [op.stateful(f"detect_{family}", stream, shard_builder(family)) for family, stream in streams.items()]
    to_store = op.merge("to_store", split.trues, *windows)
    op.output(
        "store",
        to_store,
        StoreSink(
            cfg.store.path,
            stats,
            compact_every_s=cfg.store.compact_every_s if follow else float("inf"),
            compact_min_files=cfg.store.compact_min_files,
            shard_count=len(_FAMILY_KEYS) * cfg.pipeline.shards,
            hold_rows=0 if follow else _REPLAY_HOLD_ROWS,
            base_seq=store_base_seq,
            on_start=on_start,
        ),
    )
    return flow
