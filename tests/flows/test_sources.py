"""Tests for gatewatch.flows.sources: real files on disk, real pipes, a real dataflow."""

from __future__ import annotations

import gzip
import os
import pickle
import re
import threading
import time
from datetime import timedelta

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewatch.flows.events import Chunk
from gatewatch.flows.sources import LineReader, LogSource, expand_inputs
from tests.conftest import SAMPLE, gatewatch, rows, scalar


@pytest.fixture
def reader():
    """Make LineReaders (follow mode, rescan on every read) closed after the test."""
    made: list[LineReader] = []

    def make(spec, *, follow=True, **kw) -> LineReader:
        kw.setdefault("rescan_ms", 0)
        made.append(LineReader(str(spec), follow=follow, **kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


def read_all(r: LineReader) -> list[tuple[str, int, bytes]]:
    """Read until caught up; return (source, line_no, line) rows."""
    rows = []
    while (chunks := r.read()) or not r.caught_up:
        for c in chunks:
            rows.extend(line_rows(c))
    return rows


def line_rows(chunk: Chunk) -> list[tuple[str, int, bytes]]:
    return [(chunk.source, chunk.first_line_no + i, line) for i, line in enumerate(chunk.lines)]


def lines(rows) -> list[bytes]:
    return [row[2] for row in rows]


def append(path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_follow_emits_appends_with_numbers_and_offsets(tmp_path, reader):
    log = tmp_path / "a.log"
    log.write_bytes(b"one\ntwo\n")
    r = reader(log)
    assert lines(read_all(r)) == [b"one", b"two"]
    assert r.read() == []
    append(log, b"three\nfour\n")
    assert r.read() == [Chunk(str(log), 3, 8, [b"three", b"four"])]
    assert not r.done


def test_half_written_line_waits_for_its_newline(tmp_path, reader):
    log = tmp_path / "a.log"
    log.write_bytes(b"a\nhalf-wri")
    r = reader(log)
    assert lines(read_all(r)) == [b"a"]
    append(log, b"tten\nb\n")
    assert read_all(r) == [(str(log), 2, b"half-written"), (str(log), 3, b"b")]


def test_rename_rotation_drains_old_file_then_follows_new(tmp_path, reader):
    log = tmp_path / "a.log"
    log.write_bytes(b"1\n2\n")
    r = reader(log)
    got = read_all(r)
    append(log, b"3\n4-unterminated")
    log.rename(tmp_path / "a.log.1")
    log.write_bytes(b"5\n")
    got += read_all(r)
    append(log, b"6\n")
    got += read_all(r)
    assert lines(got) == [b"1", b"2", b"3", b"4-unterminated", b"5", b"6"]
    # line numbers restart for the new file instance
    assert [n for _, n, _ in got] == [1, 2, 3, 4, 1, 2]


def test_writes_to_renamed_file_are_read_until_it_goes_quiet(tmp_path, reader):
    log = tmp_path / "a.log"
    log.write_bytes(b"1\n")
    r = reader(log, rescan_ms=300)
    assert lines(read_all(r)) == [b"1"]
    log.rename(tmp_path / "a.log.1")
    log.write_bytes(b"new\n")
    time.sleep(0.35)
    assert lines(read_all(r)) == [b"new"]
    # the writer has not reopened its log yet
    append(tmp_path / "a.log.1", b"2\n")
    assert lines(read_all(r)) == [b"2"]
    time.sleep(0.35)
    assert read_all(r) == []
    assert r.snapshot()["files"] == [
        {"path": str(log), "dev": log.stat().st_dev, "ino": log.stat().st_ino, "offset": 4, "line_no": 2,
         "skip": False, "head": b"new\n"}
    ]


def test_copytruncate_restarts_at_zero(tmp_path, reader):
    log = tmp_path / "a.log"
    log.write_bytes(b"first\nsecond\n")
    r = reader(log)
    assert lines(read_all(r)) == [b"first", b"second"]
    (tmp_path / "a.log.1").write_bytes(log.read_bytes())
    with open(log, "r+b") as f:
        f.truncate(0)
    append(log, b"x\n")
    assert read_all(r) == [(str(log), 1, b"x")]


def test_glob_picks_up_later_files_and_reads_rotated_ones_once(tmp_path, reader):
    a = tmp_path / "a.log"
    a.write_bytes(b"a1\n")
    r = reader(tmp_path / "*.log*")
    assert read_all(r) == [(str(a), 1, b"a1")]
    b = tmp_path / "b.log"
    b.write_bytes(b"b1\n")
    assert read_all(r) == [(str(b), 1, b"b1")]
    # a.log.1 still matches: it is the same file, read on where we were
    append(a, b"a2\n")
    a.rename(tmp_path / "a.log.1")
    a.write_bytes(b"new1\n")
    got = read_all(r)
    assert sorted(got) == [(str(a), 1, b"new1"), (str(tmp_path / "a.log.1"), 2, b"a2")]
    # a vanished file is forgotten once drained
    append(b, b"b2\n")
    b.unlink()
    assert read_all(r) == [(str(b), 2, b"b2")]
    assert len(r.snapshot()["files"]) == 2


def test_resume_from_snapshot_mid_file(tmp_path, reader):
    log = tmp_path / "a.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(100)) + b"partial")
    r = reader(log, max_batch_bytes=200)
    first = [line for c in r.read() for line in c.lines]
    snap = pickle.loads(pickle.dumps(r.snapshot()))
    append(log, b" line\nlast\n")
    r2 = reader(log, resume_state=snap)
    rest = read_all(r2)
    assert first + lines(rest) == [b"line %d" % i for i in range(100)] + [b"partial line", b"last"]
    assert rest[0][1] == len(first) + 1


def test_resume_across_rotation_between_snapshot_and_restart(tmp_path, reader):
    log = tmp_path / "a.log"
    log.write_bytes(b"1\n2\n")
    r = reader(log)
    got = lines(read_all(r))
    snap = r.snapshot()
    append(log, b"3\n4\n")
    log.rename(tmp_path / "a.log.1")
    log.write_bytes(b"5\n6\n")
    r2 = reader(log, resume_state=snap)
    rest = read_all(r2)
    got += lines(rest)
    assert got == [b"1", b"2", b"3", b"4", b"5", b"6"]
    assert (str(tmp_path / "a.log.1"), 3, b"3") in rest
    # and once more from the new file's snapshot: nothing repeats
    snap2 = r2.snapshot()
    append(log, b"7\n")
    r3 = reader(log, resume_state=snap2)
    assert read_all(r3) == [(str(log), 3, b"7")]


def test_resume_after_truncation_starts_from_zero(tmp_path, reader):
    log = tmp_path / "a.log"
    log.write_bytes(b"aaaa\nbbbb\n")
    r = reader(log)
    read_all(r)
    snap = r.snapshot()
    log.write_bytes(b"c\n")  # same inode, now shorter than the saved offset
    assert read_all(reader(log, resume_state=snap)) == [(str(log), 1, b"c")]


def test_replay_emits_unterminated_last_line_and_is_done(tmp_path, reader):
    log = tmp_path / "a.log"
    log.write_bytes(b"a\nb\nlast")
    r = reader(log, follow=False)
    assert not r.done
    assert read_all(r) == [(str(log), 1, b"a"), (str(log), 2, b"b"), (str(log), 3, b"last")]
    assert r.done
    assert r.read() == []


def test_replay_resume_does_not_repeat_finished_files(tmp_path, reader):
    (tmp_path / "a.log").write_bytes(b"a\n")
    (tmp_path / "b.log").write_bytes(b"b\n")
    r = reader(tmp_path / "*.log", follow=False)
    assert sorted(lines(read_all(r))) == [b"a", b"b"]
    snap = r.snapshot()
    append(tmp_path / "b.log", b"b2\n")
    r2 = reader(tmp_path / "*.log", follow=False, resume_state=snap)
    assert lines(read_all(r2)) == [b"b2"]
    assert r2.done


def test_replay_missing_path_raises_follow_waits(tmp_path, reader):
    log = tmp_path / "missing.log"
    with pytest.raises(FileNotFoundError, match="missing.log"):
        reader(log, follow=False).read()
    r = reader(log)
    assert r.read() == []
    log.write_bytes(b"now\n")
    assert lines(read_all(r)) == [b"now"]


def test_overlong_line_is_cut_once_even_across_reads(tmp_path, reader):
    log = tmp_path / "a.log"
    long = b"x" * 50 + b"TAIL"
    log.write_bytes(b"ok\n" + long[:30])
    r = reader(log, max_line_bytes=10, max_batch_bytes=7)
    got = read_all(r)
    append(log, long[30:] + b"\nnext\n" + b"y" * 11 + b"\r\n" + b"z" * 10 + b"\r\n")
    got += read_all(r)
    assert lines(got) == [b"ok", b"x" * 11, b"next", b"y" * 11, b"z" * 10]
    assert [n for _, n, _ in got] == [1, 2, 3, 4, 5]


def test_snapshot_inside_overlong_line_keeps_skipping(tmp_path, reader):
    log = tmp_path / "a.log"
    log.write_bytes(b"a" * 40)
    r = reader(log, max_line_bytes=10)
    assert lines(read_all(r)) == [b"a" * 11]
    snap = r.snapshot()
    append(log, b"a" * 5 + b"\nb\n")
    assert read_all(reader(log, resume_state=snap)) == [(str(log), 2, b"b")]


def test_crlf_invalid_utf8_and_nul_are_kept_as_bytes(tmp_path, reader):
    log = tmp_path / "a.log"
    log.write_bytes(b"a\r\nb\r\r\n\xff\xfe\x00z\n")
    assert lines(read_all(reader(log, follow=False))) == [b"a", b"b\r", b"\xff\xfe\x00z"]


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"a", b"bc", b"\r", b"\n", b"\r\n", b"\xff", b"x" * 9]), max_size=40).map(
        b"".join
    ),
    batch=st.integers(1, 40),
    max_line=st.integers(1, 12),
)
def test_any_read_boundaries_give_the_lines_of_the_whole_file(tmp_path_factory, data, batch, max_line):
    """Lines, numbers and every line's offset do not depend on where reads cut the file."""
    log = tmp_path_factory.mktemp("feed") / "a.log"
    log.write_bytes(data)
    expected, offsets, at = [], {}, 0
    parts = data.split(b"\n")
    for n, line in enumerate(parts, start=1):
        if n < len(parts) or line:  # an unterminated last line counts too
            expected.append((n, (line[:-1] if line.endswith(b"\r") else line)[: max_line + 1]))
            offsets[n] = at
        at += len(line) + 1
    r = LineReader(str(log), follow=False, max_batch_bytes=batch, max_line_bytes=max_line)
    got, line_offsets = [], {}
    try:
        while not r.done:
            for c in r.read():
                got.extend(line_rows(c))
                assert len(c.line_offsets()) == len(c.lines)
                assert c.line_offsets()[0] == c.first_offset
                line_offsets.update(enumerate(c.line_offsets(), start=c.first_line_no))
    finally:
        r.close()
    assert [(n, line) for _, n, line in got] == expected
    assert line_offsets == offsets


def test_stdin_pipe():
    rfd, wfd = os.pipe()
    try:
        r = LineReader("-", follow=True, stdin_fd=rfd)
        assert r.read() == []
        os.write(wfd, b"one\ntw")
        assert r.read() == [Chunk("-", 1, 0, [b"one"])]
        os.write(wfd, b"o\nthree")
        assert r.read() == [Chunk("-", 2, 4, [b"two"])]
        assert not r.done
        os.close(wfd)
        wfd = -1
        assert r.read() == [Chunk("-", 3, 8, [b"three"])]
        assert r.done
        assert r.snapshot() is None
    finally:
        os.close(rfd)
        if wfd >= 0:
            os.close(wfd)


def test_expand_inputs(tmp_path):
    a = tmp_path / "a.log"
    a.write_bytes(b"")
    specs = [str(a), "-", os.path.join(tmp_path, ".", "a.log"), "-", str(tmp_path / "*.log")]
    assert expand_inputs(specs, follow=False) == [str(a), "-", str(tmp_path / "*.log")]
    with pytest.raises(ValueError, match="nope.log"):
        expand_inputs([str(tmp_path / "nope.log")], follow=False)
    with pytest.raises(ValueError, match=r"\*\.gz"):
        expand_inputs([str(tmp_path / "*.gz")], follow=False)
    later = [str(tmp_path / "later.log"), str(tmp_path / "*.gz")]
    assert expand_inputs(later, follow=True) == later
    with pytest.raises(ValueError, match="no-dir"):
        expand_inputs([str(tmp_path / "no-dir" / "a.log")], follow=True)
    for follow in (False, True):  # a directory is never followed as if it were a file
        with pytest.raises(ValueError, match=r"is a directory; give its files or a glob such as '.*/\*\.log'"):
            expand_inputs([str(tmp_path)], follow=follow)


def test_log_source_replays_two_files_in_a_dataflow(tmp_path):
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_bytes(b"".join(b"a%d\n" % i for i in range(500)))
    b.write_bytes(b"".join(b"b%d\n" % i for i in range(300)) + b"b-last")
    reads = []
    out: list = []
    flow = Dataflow("replay")
    chunks = op.input("inp", flow, LogSource(
        [str(a), str(b)], follow=False, max_batch_bytes=512, on_read=lambda n, nb: reads.append((n, nb))
    ))
    op.output("out", op.flat_map("lines", chunks, line_rows), TestingSink(out))
    run_main(flow)
    expected = [(str(a), i + 1, b"a%d" % i) for i in range(500)]
    expected += [(str(b), i + 1, b"b%d" % i) for i in range(300)] + [(str(b), 301, b"b-last")]
    assert sorted(out) == sorted(expected)
    assert sum(n for n, _ in reads) == 801
    assert sum(nb for _, nb in reads) == a.stat().st_size + b.stat().st_size


def test_stop_event_ends_a_follow_dataflow(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"1\n")
    stop = threading.Event()
    out: list = []
    errors: list = []
    flow = Dataflow("follow")
    chunks = op.input("inp", flow, LogSource([str(log)], follow=True, poll_ms=20, stop=stop))
    op.output("out", op.flat_map("lines", chunks, line_rows), TestingSink(out))

    def run():
        try:
            run_main(flow, epoch_interval=timedelta(milliseconds=100))
        except Exception as e:  # reported by the assertion below
            errors.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    append(log, b"2\n")
    while len(out) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [row[2] for row in out] == [b"1", b"2"]
    assert t.is_alive()  # following, not finished at EOF
    stop.set()
    t.join(timeout=10)
    assert not t.is_alive()
    assert errors == []


def test_replay_reads_gzip_files_as_their_lines(tmp_path, reader):
    import gzip

    plain, packed = tmp_path / "a.log.1", tmp_path / "a.log.2.gz"
    plain.write_bytes(b"p1\np2\n")
    packed.write_bytes(gzip.compress(b"z1\nz2\n" * 5000 + b"last"))
    r = reader(tmp_path / "a.log*", follow=False)
    got = read_all(r)
    assert sorted(lines(got)) == sorted([b"p1", b"p2", *[b"z1", b"z2"] * 5000, b"last"])
    assert [n for source, n, _ in got if source == str(packed)] == list(range(1, 10_002))
    assert r.done


def _read_damaged(r: LineReader) -> tuple[list[tuple[str, int, bytes]], list[Chunk]]:
    rows, unreadable = [], []
    while (chunks := r.read()) or not r.caught_up:
        for c in chunks:
            rows.extend(line_rows(c))
            unreadable += [c] if c.unreadable else []
    return rows, unreadable


@pytest.mark.parametrize("damage", ["cut", "corrupt"])
def test_replay_reads_a_damaged_gzip_file_up_to_the_damage_and_says_where_it_is(tmp_path, reader, damage):
    original = b"".join(b"line %06d\n" % i for i in range(200_000))
    packed = bytearray(gzip.compress(original))
    if damage == "cut":
        del packed[len(packed) // 2 :]
    else:  # a run of bytes overwritten mid-stream: a bad block, or a bad checksum at its end
        packed[len(packed) // 2 : len(packed) // 2 + 64] = bytes(64)
    path = tmp_path / "app.log.gz"
    path.write_bytes(packed)
    r = reader(path, follow=False)
    got, unreadable = _read_damaged(r)
    assert r.done
    read = lines(got)
    if damage == "cut":  # whole lines only, none torn at the cut (a corrupt block may decode to garbage
        # before the stream's checksum says so, as with zcat: those lines reach the parser)
        assert read == original.split(b"\n")[: len(read)]
        assert len(read) > 50_000  # everything before the cut, not just the first batch
    (where,) = unreadable
    assert where.lines == [] and where.source == str(path)
    assert where.first_line_no == len(read) + 1
    assert where.first_offset == sum(len(line) + 1 for line in read)
    assert where.unreadable.startswith(f"gzip stream unreadable after {where.first_offset:,} bytes of lines (")


def test_replay_reports_a_gzip_file_cut_inside_its_header_and_reads_the_others(tmp_path, reader):
    (tmp_path / "a.log.1").write_bytes(b"p1\np2\n")
    (tmp_path / "a.log.2.gz").write_bytes(gzip.compress(b"z1\n")[:6])
    r = reader(tmp_path / "a.log*", follow=False)
    got, unreadable = _read_damaged(r)
    assert r.done
    assert lines(got) == [b"p1", b"p2"]
    assert [(c.source, c.first_line_no, c.first_offset) for c in unreadable] == [(str(tmp_path / "a.log.2.gz"), 1, 0)]


def test_a_replay_of_a_damaged_gzip_file_stores_its_lines_and_a_reject_row_for_the_rest(tmp_path):
    log = SAMPLE.read_bytes()
    packed = tmp_path / "wso2.log.gz"
    packed.write_bytes(gzip.compress(log)[: len(gzip.compress(log)) * 2 // 3])
    store = tmp_path / "store"
    out = gatewatch("replay", str(packed), "--store", str(store)).stdout
    read = int(re.search(r"lines=(\d+)", out).group(1))
    assert 0 < read < log.count(b"\n")
    assert f"events={read} rejected=1 " in out
    (row,) = rows(store, "SELECT line_no, reason, detail FROM rejected")
    assert row["line_no"] == read + 1 and row["reason"] == "unreadable_file"
    assert "the rest of the file is lost" in row["detail"]
    assert scalar(store, "SELECT sum(requests) FROM traffic") == read


def test_follow_skips_compressed_rotated_copies_under_a_glob(tmp_path, reader):
    import gzip

    log = tmp_path / "app.log"
    log.write_bytes(b"a1\na2\n")
    r = reader(tmp_path / "app.log*")
    assert lines(read_all(r)) == [b"a1", b"a2"]
    (tmp_path / "app.log.1.gz").write_bytes(gzip.compress(b"a1\na2\n"))  # logrotate's compress of a copy
    append(log, b"a3\n")
    assert lines(read_all(r)) == [b"a3"]


def copytruncate(log, copy) -> None:
    """What logrotate's ``copytruncate`` does: copy the log, then empty it in place."""
    copy.write_bytes(log.read_bytes())
    with open(log, "r+b") as f:
        f.truncate(0)


def numbered(first: int, last: int) -> bytes:
    return b"".join(b"2026-11-02T09:00:%02d line %d\n" % (i % 60, i) for i in range(first, last + 1))


def test_copytruncate_under_a_glob_reads_the_copy_from_where_the_log_was(tmp_path, reader):
    log = tmp_path / "app.log"
    log.write_bytes(numbered(1, 3))
    r = reader(tmp_path / "app.log*")
    got = read_all(r)
    append(log, numbered(4, 5))  # written after the last read, before the rotation
    copytruncate(log, tmp_path / "app.log.1")
    append(log, numbered(6, 6))
    got += read_all(r)
    assert lines(got) == numbered(1, 6).splitlines()
    # the copy goes on with the log's line numbers; the log starts again
    assert [(os.path.basename(s), n) for s, n, _ in got] == [
        ("app.log", 1), ("app.log", 2), ("app.log", 3), ("app.log.1", 4), ("app.log.1", 5), ("app.log", 1)
    ]
    append(log, numbered(7, 7))
    assert lines(read_all(r)) == [numbered(7, 7).strip()]


def test_a_copy_found_before_the_truncation_is_read_once(tmp_path, reader):
    log = tmp_path / "app.log"
    log.write_bytes(numbered(1, 3))
    r = reader(tmp_path / "app.log*")
    got = read_all(r)
    (tmp_path / "app.log.1").write_bytes(log.read_bytes())  # copied: the scan sees it, not yet truncated
    append(log, numbered(4, 4))
    got += read_all(r)
    append(log, numbered(5, 5))
    with open(log, "r+b") as f:
        f.truncate(0)  # line 5 was never copied: logrotate loses it
    append(log, numbered(6, 6))
    got += read_all(r)
    assert lines(got) == [line for line in numbered(1, 6).splitlines() if not line.endswith(b" 5")]


def test_a_compressed_copy_gives_the_lines_written_before_the_truncation(tmp_path, reader):
    log = tmp_path / "app.log"
    log.write_bytes(numbered(1, 3))
    r = reader(tmp_path / "app.log*")
    got = read_all(r)
    append(log, numbered(4, 5) + b"unterminated")
    # copytruncate with compress: the plain copy is gone by the next scan
    (tmp_path / "app.log.1.gz").write_bytes(gzip.compress(log.read_bytes()))
    with open(log, "r+b") as f:
        f.truncate(0)
    append(log, numbered(6, 6))
    got += read_all(r)
    assert lines(got) == [*numbered(1, 5).splitlines(), b"unterminated", numbered(6, 6).strip()]
    # read once: it is not opened again, and older compressed copies stay unread
    (tmp_path / "app.log.2.gz").write_bytes(gzip.compress(numbered(1, 3)))
    assert read_all(r) == []


def test_a_file_that_becomes_gzip_after_it_was_found_is_never_read_as_lines(tmp_path, reader):
    log = tmp_path / "app.log"
    log.write_bytes(numbered(1, 2))
    r = reader(tmp_path / "app.log*")
    assert len(read_all(r)) == 2
    packed = tmp_path / "app.log.2.gz"
    packed.write_bytes(b"")  # gzip has created its output and not written to it yet
    assert read_all(r) == []
    packed.write_bytes(gzip.compress(numbered(1, 2) * 50))
    append(log, numbered(3, 3))
    assert lines(read_all(r)) == [numbered(3, 3).strip()]


def test_a_log_truncated_and_written_past_its_old_size_between_reads_starts_again(tmp_path, reader):
    log = tmp_path / "app.log"
    log.write_bytes(numbered(1, 2))
    r = reader(log)
    assert len(read_all(r)) == 2
    with open(log, "r+b") as f:
        f.truncate(0)
    append(log, numbered(10, 14))  # longer than what was read: the size alone does not tell
    assert lines(read_all(r)) == numbered(10, 14).splitlines()


def test_resume_after_copytruncate_while_stopped_reads_the_copy_from_the_saved_offset(tmp_path, reader):
    log = tmp_path / "app.log"
    log.write_bytes(numbered(1, 3))
    r = reader(tmp_path / "app.log*")
    got = read_all(r)
    snap = pickle.loads(pickle.dumps(r.snapshot()))
    r.close()
    append(log, numbered(4, 4))
    copytruncate(log, tmp_path / "app.log.1")
    append(log, numbered(5, 5))
    got += read_all(reader(tmp_path / "app.log*", resume_state=snap))
    assert lines(got) == numbered(1, 5).splitlines()
