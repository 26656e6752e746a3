"""The one module that wires Bytewax operators.

::

    read (LogSource: chunks of lines)
      -> parse (ChunkParser; rejects branch off to the store)
      -> route (crc32 of the consumer -> shard key; every shard also gets the
                input's newest event time so its windows close in step)
      -> window_detect (one ShardProcessor per shard: windows, detectors, policy)
      -> store (StoreSink: one Parquet segment per table per batch; findings
                also go to the control database's inbox for the controller)

Items that cross Bytewax are batches, never single events
(notes/PERFORMANCE.md P4): the per-event work happens in plain loops.
"""

from __future__ import annotations

import pickle
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulLogic
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from flows.config import Config
from flows.events import Chunk, Event, Finding
from flows.parsers import ChunkParser
from flows.shard import Output, ShardProcessor
from flows.sources import LogSource
from sinks.control import ControlDB
from sinks.schema import TABLES
from sinks.store import StoreWriter

REJECTED_KEY = "rejected"


@dataclass
class RunStats:
    """Counters of one run, shared by the steps of this process."""

    lines: int = 0
    bytes: int = 0
    events: int = 0
    rows: dict[str, int] = field(default_factory=dict)
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

    def summary(self) -> str:
        seconds = time.perf_counter() - self.started
        r = self.rows
        return (
            f"lines={self.lines} events={self.events} rejected={r.get('rejected', 0)} "
            f"findings={r.get('findings', 0)} decisions={r.get('decisions', 0)} seconds={seconds:.2f}"
        )


class _ShardBatch:
    """Events for one shard plus the input's newest event time."""

    __slots__ = ("events", "max_ts")

    def __init__(self, events: list[Event], max_ts: float) -> None:
        self.events = events
        self.max_ts = max_ts

    def __reduce__(self):
        return (_ShardBatch, (self.events, self.max_ts))


def _rejected_rows(rejects, now: float) -> list[tuple]:
    return [(r.source, r.line_no, r.offset, r.reason, r.detail, r.raw, now) for r in rejects]


class _Router:
    """Parse chunks and split their events by shard."""

    def __init__(self, cfg: Config, stats: RunStats) -> None:
        inp = cfg.input
        self.parser = ChunkParser(inp.format, max_line_bytes=inp.max_line_bytes, raw_max_bytes=inp.raw_max_bytes)
        self.shards = cfg.pipeline.shards
        self.stats = stats
        self.max_ts = float("-inf")

    def __call__(self, chunk: Chunk) -> list[tuple[str, object]]:
        events, rejects = self.parser.parse(chunk)
        self.stats.add_events(len(events))
        out: list[tuple[str, object]] = []
        if rejects:
            out.append((REJECTED_KEY, ("rejected", _rejected_rows(rejects, time.time()))))
        for e in events:
            if e.ts > self.max_ts:
                self.max_ts = e.ts
        if self.shards == 1:
            out.append(("s0", _ShardBatch(events, self.max_ts)))
            return out
        buckets: list[list[Event]] = [[] for _ in range(self.shards)]
        for e in events:
            buckets[zlib.crc32(e.consumer.encode()) % self.shards].append(e)
        out.extend((f"s{i}", _ShardBatch(b, self.max_ts)) for i, b in enumerate(buckets))
        return out


class _ShardLogic(StatefulLogic):
    """Bytewax adapter around :class:`ShardProcessor`."""

    def __init__(self, proc: ShardProcessor, *, follow: bool, tick_s: float, snapshots: bool) -> None:
        self.proc = proc
        self.follow = follow
        self.tick_s = tick_s
        self.snapshots = snapshots

    def on_item(self, value: _ShardBatch) -> tuple[list[Output], bool]:
        return self.proc.ingest(value.events, value.max_ts), StatefulLogic.RETAIN

    def on_notify(self) -> tuple[list[Output], bool]:
        return self.proc.tick(time.time()), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[list[Output], bool]:
        return self.proc.flush(), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if self.follow and self.proc.has_open_windows():
            return datetime.now(timezone.utc) + timedelta(seconds=self.tick_s)
        return None

    def snapshot(self) -> bytes | None:
        # bytes are immutable, so later mutation of the live state cannot leak into the snapshot
        return pickle.dumps(self.proc, protocol=pickle.HIGHEST_PROTOCOL) if self.snapshots else None


class _StorePartition(StatefulSinkPartition):
    def __init__(
        self, writer: StoreWriter, control: ControlDB, stats: RunStats, compact_every_s: float, compact_min_files: int
    ) -> None:
        self.writer = writer
        self.control = control
        self.stats = stats
        self.compact_every_s = compact_every_s
        self.compact_min_files = compact_min_files
        self._last_compact = time.monotonic()

    def write_batch(self, items: list[Output]) -> None:
        by_table: dict[str, list[tuple]] = {}
        for table, rows in items:
            by_table.setdefault(table, []).extend(rows)
        for table, rows in by_table.items():
            self.writer.append(table, rows)
            self.stats.add_rows(table, len(rows))
        # the segments are durable before the controller may act on them
        if "findings" in by_table:
            self.control.record_findings(Finding(*row) for row in by_table["findings"])
        if "traffic" in by_table:
            self.control.advance_watermark(max(row[1] for row in by_table["traffic"]))
        if time.monotonic() - self._last_compact >= self.compact_every_s:
            self.compact()

    def compact(self) -> None:
        for table in TABLES:
            self.writer.compact(table, self.compact_min_files)
        self._last_compact = time.monotonic()

    def snapshot(self) -> None:
        return None  # the writer finds its next sequence number on disk

    def close(self) -> None:
        self.compact()
        self.control.close()


class StoreSink(FixedPartitionedSink):
    """Write every (table, rows) item to the store.

    One partition: all rows go through one writer, which owns segment
    numbering and compaction. At-least-once: after a crash, rows produced
    since the last snapshot are written again.
    """

    def __init__(self, root: Path, stats: RunStats, *, compact_every_s: float, compact_min_files: int) -> None:
        self.root = root
        self.stats = stats
        self.compact_every_s = compact_every_s
        self.compact_min_files = compact_min_files

    def list_parts(self) -> list[str]:
        return ["store"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _StorePartition:
        return _StorePartition(
            StoreWriter(self.root).open(),
            ControlDB(self.root).open(),
            self.stats,
            self.compact_every_s,
            self.compact_min_files,
        )


def build_flow(
    cfg: Config,
    inputs: list[str],
    *,
    follow: bool,
    stats: RunStats,
    stop: threading.Event | None = None,
    snapshots: bool = False,
) -> Dataflow:
    """Build the gatewatch dataflow over ``inputs`` (paths, globs or ``-``)."""
    flow = Dataflow("gatewatch")
    source = LogSource(
        inputs,
        follow=follow,
        poll_ms=cfg.input.poll_ms,
        max_batch_bytes=cfg.input.max_batch_bytes,
        max_line_bytes=cfg.input.max_line_bytes,
        stop=stop,
        on_read=stats.on_read,
    )
    chunks = op.input("read", flow, source)
    routed = op.flat_map("parse", chunks, _Router(cfg, stats))
    split = op.branch("split_rejected", routed, lambda kv: kv[0] == REJECTED_KEY)

    def build_shard(resume: bytes | None) -> _ShardLogic:
        proc = pickle.loads(resume) if resume else ShardProcessor(cfg)
        return _ShardLogic(proc, follow=follow, tick_s=1.0, snapshots=snapshots)

    windows = op.stateful("window_detect", split.falses, build_shard)
    to_store = op.merge("to_store", split.trues, windows)
    op.output(
        "store",
        to_store,
        StoreSink(
            cfg.store.path,
            stats,
            compact_every_s=cfg.store.compact_every_s if follow else float("inf"),
            compact_min_files=cfg.store.compact_min_files,
        ),
    )
    return flow
