"""The store: Parquet segments per table, queried through DuckDB.

DuckDB lets only one process hold a database file, even for readers, so
the pipeline never opens one. It appends
Parquet *segments* (written under a temporary name, then renamed, so a reader
never sees half a file) and merges them into *compacted* files now and then.
Every reader, the dashboard, ``gatewatch sql`` and the tests, opens an
in-memory DuckDB whose views list the live files.

File names carry the writer and a sequence number::

    <root>/<table>/seg-<writer>-<seq>.parquet        one append
    <root>/<table>/cmp-<writer>-<lo>-<hi>.parquet    segments lo..hi merged

A compacted file appears atomically before the segments it covers are
deleted; a reader that lists both skips the covered segments, so no row is
ever counted twice, and a reader that listed a file just deleted retries.

Exactly once across crashes: a compacted file keeps one row group per
source segment (their numbers are in the file's metadata), so
:meth:`StoreWriter.rollback` can remove every segment written after a
recovery snapshot, even once merged, before Bytewax replays that output.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from gatewatch.sinks.schema import TABLES, TIMESTAMP_COLUMNS

if TYPE_CHECKING:
    import duckdb

_FILE = re.compile(r"^(?:seg-(?P<sw>[A-Za-z0-9]+)-(?P<seq>\d+)|cmp-(?P<cw>[A-Za-z0-9]+)-(?P<lo>\d+)-(?P<hi>\d+))\.parquet$")
_SEQ_WIDTH = 12


def _rows_to_table(table: str, rows: Sequence[tuple]) -> pa.Table:
    schema = TABLES[table]
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = []
    ts_cols = TIMESTAMP_COLUMNS[table]
    for field, values in zip(schema, columns, strict=True):
        if field.name in ts_cols:
            # rows carry epoch seconds as floats; Arrow wants integer microseconds
            arrays.append(pa.array([None if v is None else round(v * 1_000_000) for v in values], type=field.type))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def live_files(table_dir: Path) -> list[Path]:
    """Return the files of one table that hold its current rows, oldest first."""
    try:
        names = os.listdir(table_dir)
    except FileNotFoundError:
        return []
    segments: list[tuple[str, int, str]] = []
    compacted: list[tuple[str, int, int, str]] = []
    for name in names:
        m = _FILE.match(name)
        if not m:
            continue
        if m["sw"]:
            segments.append((m["sw"], int(m["seq"]), name))
        else:
            compacted.append((m["cw"], int(m["lo"]), int(m["hi"]), name))
    # a compacted file may itself be covered by a wider one (re-compaction)
    keep_cmp = [
        c
        for c in compacted
        if not any(o is not c and o[0] == c[0] and o[1] <= c[1] and c[2] <= o[2] for o in compacted)
    ]
    live = [name for _, _, _, name in sorted(keep_cmp, key=lambda c: (c[0], c[1]))]
    for writer, seq, name in sorted(segments):
        if not any(w == writer and lo <= seq <= hi for w, lo, hi, _ in keep_cmp):
            live.append(name)
    return [table_dir / n for n in live]


class StoreWriter:
    """Append rows to the store's tables as atomically published segments.

    Construction does no I/O; :meth:`open` creates the folders and finds the
    next sequence number, so a restarted writer never overwrites a segment.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        writer: str = "w0",
        compression: str = "zstd",
        segment_compression: str = "snappy",
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9]+", writer):
            msg = f"writer id must be alphanumeric, got {writer!r}"
            raise ValueError(msg)
        self.root = Path(root)
        self.writer = writer
        self.compression = compression  # compacted files: they stay
        # segments live until the next compaction; a small one takes 1.1 ms to write with
        # zstd (a compressor set up per column) and 0.46 ms with snappy
        self.segment_compression = segment_compression
        self._next_seq: int | None = None
        self._held: dict[str, list[tuple]] = {}  # rows held back until write_held()
        self._holding = False  # inside held(): every append holds its rows

    def open(self) -> StoreWriter:
        for table in TABLES:
            (self.root / table).mkdir(parents=True, exist_ok=True)
        top = 0
        for table in TABLES:
            for name in os.listdir(self.root / table):
                m = _FILE.match(name)
                if m and (m["sw"] or m["cw"]) == self.writer:
                    top = max(top, int(m["seq"] or m["hi"]))
        self._next_seq = top + 1
        return self

    def _take_seq(self) -> int:
        if self._next_seq is None:
            self.open()
        seq = self._next_seq
        self._next_seq = seq + 1
        return seq

    def _publish(self, table: str, data: pa.Table, name: str) -> Path:
        final = self.root / table / name
        tmp = final.with_name(f".{name}.{os.getpid()}.tmp")
        pq.write_table(data, tmp, compression=self.segment_compression)
        os.replace(tmp, final)
        return final

    def append(self, table: str, rows: Sequence[tuple], *, hold: bool = False) -> Path | None:
        """Write ``rows`` (tuples in the table's column order) as one segment.

        With ``hold`` (or inside :meth:`held`) they wait for :meth:`write_held` instead,
        which writes all the held rows of a table as one segment.
        """
        if not rows:
            return None
        if hold or self._holding:
            self._held.setdefault(table, []).extend(rows)
            return None
        data = _rows_to_table(table, rows)
        seq = self._take_seq()
        return self._publish(table, data, f"seg-{self.writer}-{seq:0{_SEQ_WIDTH}d}.parquet")

    @property
    def held_rows(self) -> int:
        return sum(map(len, self._held.values()))

    def write_held(self) -> None:
        """Write the rows held back: one segment per table."""
        held, self._held = self._held, {}
        for table, rows in held.items():
            self.append(table, rows)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold every row appended inside, then write them; if it raises, drop the held rows."""
        self._holding = True
        try:
            yield
        except BaseException:
            self._held.clear()
            raise
        finally:
            self._holding = False
        self.write_held()

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest segment this writer published."""
        if self._next_seq is None:
            self.open()
        return self._next_seq - 1

    def _mine(self, table: str, *, live_only: bool = True) -> list[tuple[int, int, Path]]:
        """This writer's files of ``table`` as (first seq, last seq, path)."""
        if live_only:
            paths = live_files(self.root / table)
        else:
            paths = [p for p in (self.root / table).iterdir() if _FILE.match(p.name)]
        out = []
        for path in paths:
            m = _FILE.match(path.name)
            if (m["sw"] or m["cw"]) == self.writer:
                out.append((int(m["seq"] or m["lo"]), int(m["seq"] or m["hi"]), path))
        return out

    def compact(self, table: str, min_files: int = 8) -> Path | None:
        """Merge this writer's live files of ``table`` into one, if there are enough."""
        mine = self._mine(table)
        if len(mine) < max(min_files, 2):
            return None
        lo = min(m[0] for m in mine)
        hi = max(m[1] for m in mine)
        groups: list[tuple[int, pa.Table]] = []
        for _, _, path in mine:
            groups.extend(_segments_of(path, table))
        return self._publish_groups(table, groups, lo, hi)

    def compact_all(self, min_files: int = 8) -> None:
        """Compact every table (see :meth:`compact`)."""
        for table in TABLES:
            self.compact(table, min_files)

    def _publish_groups(self, table: str, groups: list[tuple[int, pa.Table]], lo: int, hi: int) -> Path:
        name = f"cmp-{self.writer}-{lo:0{_SEQ_WIDTH}d}-{hi:0{_SEQ_WIDTH}d}.parquet"
        final = self.root / table / name
        tmp = final.with_name(f".{name}.{os.getpid()}.tmp")
        schema = TABLES[table].with_metadata({_SEGMENTS_KEY: ",".join(str(seq) for seq, _ in groups)})
        with pq.ParquetWriter(tmp, schema, compression=self.compression) as out:
            for _, data in groups:
                out.write_table(data.replace_schema_metadata(schema.metadata), row_group_size=max(1, data.num_rows))
        os.replace(tmp, final)
        for seq_lo, seq_hi, path in self._mine(table, live_only=False):
            if lo <= seq_lo and seq_hi <= hi and path != final:
                path.unlink(missing_ok=True)
        return final

    def rollback(self, to_seq: int) -> None:
        """Remove every row this writer published after segment ``to_seq``.

        Called when a recovered pipeline resumes from a snapshot taken when
        ``to_seq`` was the newest segment: the output after it is about to be
        produced again.
        """
        for table in TABLES:
            # every file, covered or not: a crash may have left covered segments behind
            for lo, hi, path in sorted(self._mine(table, live_only=False), key=lambda f: f[0] - f[1]):
                if not path.exists():  # deleted as covered by a file handled before
                    continue
                if hi <= to_seq:
                    continue
                if lo > to_seq:
                    path.unlink(missing_ok=True)
                    continue
                kept = [(seq, data) for seq, data in _segments_of(path, table) if seq <= to_seq]
                if kept:
                    self._publish_groups(table, kept, lo, to_seq)
                path.unlink(missing_ok=True)
        self._next_seq = to_seq + 1


_SEGMENTS_KEY = b"gatewatch.segments"


def _segments_of(path: Path, table: str) -> list[tuple[int, pa.Table]]:
    """The (segment number, rows) pairs a file holds: one for a segment, one per row group when compacted."""
    m = _FILE.match(path.name)
    if m["sw"]:
        data = pq.ParquetFile(path).read()  # half the time of read_table, which sets up a dataset
        if not data.schema.equals(TABLES[table]):  # written before a column was added
            data = pq.read_table(path, schema=TABLES[table])
        return [(int(m["seq"]), data)]
    f = pq.ParquetFile(path)
    seqs = [int(x) for x in f.schema_arrow.metadata[_SEGMENTS_KEY].decode().split(",") if x]
    return [(seq, f.read_row_group(i).cast(TABLES[table])) for i, seq in enumerate(seqs)]


def _empty_view_sql(table: str) -> str:
    cols = ", ".join(
        f"CAST(NULL AS {_duck_type(f.type)}) AS {f.name}" for f in TABLES[table]
    )
    return f"SELECT {cols} WHERE false"


def _duck_type(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ"
    if pa.types.is_string(t):
        return "VARCHAR"
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_float64(t):
        return "DOUBLE"
    if pa.types.is_list(t):
        return f"{_duck_type(t.value_type)}[]"
    msg = f"no DuckDB type for {t}"
    raise TypeError(msg)


def connect(root: str | os.PathLike[str]) -> duckdb.DuckDBPyConnection:
    """Open an in-memory DuckDB with one view per table over the live files."""
    import duckdb  # noqa: PLC0415 - only readers need it: 0.06 s of every pipeline process's start

    con = duckdb.connect()
    refresh_views(con, root)
    return con


def refresh_views(
    con: duckdb.DuckDBPyConnection, root: str | os.PathLike[str], tables: Iterable[str] = TABLES
) -> None:
    """(Re)point the views of ``tables`` (default: all) at the files that are live right now."""
    root = Path(root)
    for table in tables:
        files = live_files(root / table)
        if files:
            listing = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
            body = f"SELECT * FROM read_parquet([{listing}], union_by_name = true)"
        else:
            body = _empty_view_sql(table)
        con.execute(f"CREATE OR REPLACE VIEW {table} AS {body}")


def query(
    root: str | os.PathLike[str],
    sql: str,
    params: Sequence | dict | None = None,
    *,
    con: duckdb.DuckDBPyConnection | None = None,
    attempts: int = 10,
) -> pa.Table:
    """Run ``sql`` against the store and return an Arrow table.

    Only the views of the tables ``sql`` names are re-listed: binding a view
    opens every one of its files. A file can vanish between listing and
    reading when the writer compacts; the views are then re-listed and the
    query retried.
    """
    import duckdb  # noqa: PLC0415 - see connect

    tables = [t for t in TABLES if re.search(rf"\b{t}\b", sql)]
    own = con is None
    con = con or duckdb.connect()
    try:
        attempt = 1
        while True:
            try:
                # binding the views opens the files too, so it belongs inside the retry
                refresh_views(con, root, tables)
                return con.sql(sql, params=params).to_arrow_table()
            except duckdb.IOException as exc:
                if attempt >= attempts or not _vanished(exc):
                    raise
                time.sleep(0.05 * attempt)
                attempt += 1
    finally:
        if own:
            con.close()


def _vanished(exc: duckdb.IOException) -> bool:
    """Tell whether a DuckDB I/O error means a listed file was compacted away."""
    text = str(exc)
    return any(s in text for s in ("No such file", "Cannot open file", "No files found"))
