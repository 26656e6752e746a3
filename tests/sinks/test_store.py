import os
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gatewatch.flows.events import Decision, Finding
from gatewatch.sinks.schema import TABLES
from gatewatch.sinks.store import StoreWriter, live_files, query


def _reject(i: int) -> tuple:
    return ("src", i, i * 10, "no_match", "", f"line {i}", 1_790_000_000.0 + i)


def test_record_structs_match_table_columns():
    assert list(Finding.__struct_fields__) == TABLES["findings"].names
    assert list(Decision.__struct_fields__) == TABLES["decisions"].names


def test_empty_store_has_every_table_with_its_columns(tmp_path):
    for table, schema in TABLES.items():
        result = query(tmp_path, f"SELECT * FROM {table}")
        assert result.num_rows == 0
        assert result.column_names == schema.names


def test_segments_are_published_atomically_and_numbered_after_a_restart(tmp_path):
    w = StoreWriter(tmp_path).open()
    w.append("rejected", [_reject(1)])
    w.append("rejected", [_reject(2), _reject(3)])
    again = StoreWriter(tmp_path).open()
    again.append("rejected", [_reject(4)])
    names = sorted(os.listdir(tmp_path / "rejected"))
    assert names == [f"seg-w0-{n:012d}.parquet" for n in (1, 2, 3)]
    assert query(tmp_path, "SELECT count(*) n FROM rejected").to_pylist() == [{"n": 4}]


def test_compaction_keeps_every_row_once(tmp_path):
    w = StoreWriter(tmp_path).open()
    for i in range(10):
        w.append("rejected", [_reject(i)])
    segment = live_files(tmp_path / "rejected")[0]
    assert pq.ParquetFile(segment).metadata.row_group(0).column(0).compression == "SNAPPY"  # cheap to write
    out = w.compact("rejected", min_files=4)
    assert pq.ParquetFile(out).metadata.row_group(0).column(0).compression == "ZSTD"  # small to keep
    assert out is not None and out.name == "cmp-w0-000000000001-000000000010.parquet"
    assert [p.name for p in live_files(tmp_path / "rejected")] == [out.name]
    w.append("rejected", [_reject(10)])
    assert w.compact("rejected", min_files=4) is None  # 2 live files: below the threshold
    assert query(tmp_path, "SELECT count(DISTINCT line_no) d, count(*) n FROM rejected").to_pylist() == [{"d": 11, "n": 11}]
    assert pq.read_table(out).schema.equals(TABLES["rejected"])


def test_compaction_keeps_segments_written_before_a_column_was_added(tmp_path):
    w = StoreWriter(tmp_path).open()
    w.append("rejected", [_reject(1)])
    schema = TABLES["rejected"]
    older = schema.remove(schema.get_field_index("detail"))
    row = dict(zip(schema.names, _reject(2), strict=True))
    del row["detail"]
    segment = tmp_path / "rejected" / "seg-w0-000000000002.parquet"
    pq.write_table(pa.Table.from_pylist([row], schema=older), segment)
    w = StoreWriter(tmp_path).open()
    w.append("rejected", [_reject(3)])
    assert w.compact("rejected", min_files=2) is not None
    got = query(tmp_path, "SELECT line_no, detail FROM rejected ORDER BY line_no").to_pylist()
    assert got == [{"line_no": 1, "detail": ""}, {"line_no": 2, "detail": None}, {"line_no": 3, "detail": ""}]


def test_a_compacted_file_hides_the_segments_it_covers_until_they_are_deleted(tmp_path):
    w = StoreWriter(tmp_path).open()
    for i in range(3):
        w.append("rejected", [_reject(i)])
    # the moment between publishing the merged file and deleting the segments
    segments = list((tmp_path / "rejected").iterdir())
    merged = pq.read_table(segments[0])
    for p in segments[1:]:
        merged = pa.concat_tables([merged, pq.read_table(p)])
    pq.write_table(merged, tmp_path / "rejected" / "cmp-w0-000000000001-000000000003.parquet")
    assert query(tmp_path, "SELECT count(*) n FROM rejected").to_pylist() == [{"n": 3}]


def test_a_query_opens_only_the_files_of_the_tables_it_names(tmp_path):
    w = StoreWriter(tmp_path).open()
    w.append("rejected", [_reject(1)])
    (tmp_path / "findings" / "seg-w0-000000000099.parquet").write_bytes(b"not parquet")
    assert query(tmp_path, "SELECT count(*) n FROM rejected").to_pylist() == [{"n": 1}]
    with pytest.raises(Exception, match="seg-w0-000000000099"):
        query(tmp_path, "SELECT count(*) n FROM findings")


def test_params_are_bound_not_interpolated(tmp_path):
    StoreWriter(tmp_path).open().append("rejected", [_reject(1)])
    sneaky = "x' OR '1'='1"
    assert query(tmp_path, "SELECT count(*) n FROM rejected WHERE reason = ?", [sneaky]).to_pylist() == [{"n": 0}]


def test_readers_never_fail_or_go_backwards_while_the_writer_compacts(tmp_path):
    w = StoreWriter(tmp_path).open()
    done = threading.Event()

    def write():
        for i in range(300):
            w.append("rejected", [_reject(i)])
            w.compact("rejected", min_files=3)
            time.sleep(0.005)
        done.set()

    t = threading.Thread(target=write)
    t.start()
    seen = []
    while not done.is_set():
        seen.append(query(tmp_path, "SELECT count(*) n FROM rejected").to_pylist()[0]["n"])
        time.sleep(0.001)
    t.join()
    assert len(seen) > 10
    assert seen == sorted(seen)
    assert query(tmp_path, "SELECT count(*) n, count(DISTINCT line_no) d FROM rejected").to_pylist() == [{"n": 300, "d": 300}]


def test_writer_id_must_be_safe_for_file_names(tmp_path):
    with pytest.raises(ValueError, match="alphanumeric"):
        StoreWriter(tmp_path, writer="../x")


def _lines(root) -> list[int]:
    return sorted(r["line_no"] for r in query(root, "SELECT line_no FROM rejected").to_pylist())


def test_rollback_removes_segments_after_the_snapshot_even_when_compacted(tmp_path):
    w = StoreWriter(tmp_path).open()
    for i in range(1, 7):
        w.append("rejected", [_reject(i)])  # segments 1..6
    w.compact("rejected", min_files=2)  # cmp 1-6, one row group per segment
    w.append("rejected", [_reject(7)])  # segment 7
    assert _lines(tmp_path) == [1, 2, 3, 4, 5, 6, 7]

    resumed = StoreWriter(tmp_path).open()
    resumed.rollback(4)
    assert _lines(tmp_path) == [1, 2, 3, 4]
    assert [p.name for p in live_files(tmp_path / "rejected")] == ["cmp-w0-000000000001-000000000004.parquet"]
    resumed.append("rejected", [_reject(50)])
    assert resumed.last_seq == 5
    assert _lines(tmp_path) == [1, 2, 3, 4, 50]
    # a second compaction keeps the per-segment row groups, so a later rollback still works
    resumed.compact("rejected", min_files=2)
    StoreWriter(tmp_path).open().rollback(2)
    assert _lines(tmp_path) == [1, 2]


def test_rollback_leaves_other_writers_alone(tmp_path):
    StoreWriter(tmp_path, writer="c0").open().append("rejected", [_reject(100)])
    w = StoreWriter(tmp_path).open()
    w.append("rejected", [_reject(1)])
    w.append("rejected", [_reject(2)])
    w.rollback(0)
    assert _lines(tmp_path) == [100]
