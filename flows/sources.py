"""Line input: follow log files like ``tail -F``, replay them, or read stdin.

:class:`LineReader` does the work in plain Python, one instance per input
spec. :class:`LogSource` wraps it as a Bytewax source with one partition per
spec, so that a partition's position survives in Bytewax recovery snapshots.
"""

from __future__ import annotations

import glob
import gzip
import os
import select
import stat
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import accumulate
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from gatewatch.flows.events import Chunk

STDIN = "-"
_GLOB_CHARS = frozenset("*?[")
_STDIN_READ = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b"  # a gzip stream starts with these bytes, whatever the file is called
# A file's first bytes, up to this many, tell its content: a copytruncate copy starts like its log
_HEAD_BYTES = 1024


@dataclass(frozen=True)
class KafkaInput:
    """Where ``gatewatch run --kafka BROKERS --topic T`` reads from (see flows/kafka.py)."""

    brokers: list[str]
    topic: str


def is_glob(spec: str) -> bool:
    """Tell whether an input spec is a glob pattern rather than a path."""
    return any(c in _GLOB_CHARS for c in spec)


def expand_inputs(specs: list[str], *, follow: bool) -> list[str]:
    """Validate input specs given on the command line.

    Args:
        specs: Paths, glob patterns or ``-`` for stdin.
        follow: Follow mode, where files may appear later.

    Returns:
        The specs in order without duplicates (paths compared after
        ``abspath``, so ``a.log`` and ``./a.log`` are one input).

    Raises:
        ValueError: In replay mode, a path that is not a file or a glob that
            matches no file; in follow mode, a missing parent directory.
    """
    out: list[str] = []
    seen: set[str] = set()
    for spec in specs:
        key = spec if spec == STDIN else os.path.abspath(spec)
        if key in seen:
            continue
        seen.add(key)
        if spec != STDIN:
            _check_spec(spec, follow=follow)
        out.append(spec)
    return out


def _check_spec(spec: str, *, follow: bool) -> None:
    if os.path.isdir(spec):
        msg = f"input {spec!r}: is a directory; give its files or a glob such as {os.path.join(spec, '*.log')!r}"
        raise ValueError(msg)
    if follow:
        parent = os.path.dirname(spec) or "."
        if not is_glob(parent) and not os.path.isdir(parent):
            msg = f"input {spec!r}: directory {parent!r} does not exist"
            raise ValueError(msg)
    elif is_glob(spec):
        if not any(os.path.isfile(p) for p in glob.glob(spec)):
            msg = f"input {spec!r}: no file matches"
            raise ValueError(msg)
    elif not os.path.isfile(spec):
        msg = f"input {spec!r}: no such file"
        raise ValueError(msg)


# what _Lines.feed returns: (line_no, offset, lines, offsets), the fields of a Chunk after its source
_Fed = tuple[int, int, list[bytes], list[int] | None]


class _Lines:
    """Splits one byte stream into lines and tracks the committed position.

    ``offset`` is just past the last emitted line (or past the discarded rest
    of an overlong one): a reader resumed there loses and repeats nothing.
    Bytes after it that do not end a line yet wait in ``buf``.
    """

    __slots__ = ("buf", "line_no", "max_line", "offset", "skip")

    def __init__(self, max_line: int, offset: int = 0, line_no: int = 1, skip: bool = False) -> None:
        self.max_line = max_line
        self.offset = offset
        self.line_no = line_no
        self.skip = skip  # inside an overlong line already emitted: drop bytes up to its "\n"
        self.buf = b""

    @property
    def pos(self) -> int:
        """Where the next read continues."""
        return self.offset + len(self.buf)

    def feed(self, data: bytes) -> _Fed:
        """Take the next bytes of the stream.

        Returns:
            ``(line_no, offset, lines, offsets)``: the complete lines now
            available, the number and offset of the first one, and the
            offset of each if a line was made shorter (see :class:`Chunk`).
        """
        line_no = self.line_no
        size = len(self.buf) + len(data)
        parts = data.split(b"\n")
        if self.buf:  # to the partial line only: prepending it to the whole read copies a megabyte
            parts[0] = self.buf + parts[0]
        tail = parts.pop()
        first = self.offset
        if self.skip:
            if parts:
                first += len(parts[0]) + 1
                del parts[0]
                self.skip = False
            else:
                tail = b""
        # one memchr tells whether any line may end in "\r" (b"\r\n" in data took 90x as long: 0.9 ms a MB)
        lines, offsets = self._fit(parts, first, crlf=b"\r" in data or b"\r" in self.buf)
        if len(tail) > self.max_line + 1:
            # Too long whatever follows: emit it now rather than buffer it.
            lines.append(tail[: self.max_line + 1])
            if offsets is not None:
                offsets.append(self.offset + size - len(tail))
            self.skip = True
            tail = b""
        self.offset += size - len(tail)
        self.buf = tail
        self.line_no += len(lines)
        return line_no, first, lines, offsets

    def finish(self, fed: _Fed) -> _Fed:
        """End the stream after :meth:`feed` returned ``fed``: the unterminated last line, if any, joins its lines."""
        line_no, first, lines, offsets = fed
        last, at = self.buf, self.offset
        self.skip, self.buf = False, b""
        if not last:
            return fed
        if not lines:
            line_no, first = self.line_no, at
        elif offsets is not None:
            offsets.append(at)
        self.offset += len(last)
        self.line_no += 1
        return line_no, first, lines + self._fit([last], at, crlf=last.endswith(b"\r"))[0], offsets

    def _fit(self, lines: list[bytes], first: int, *, crlf: bool) -> tuple[list[bytes], list[int] | None]:
        """Take each line's "\r" off and cut it to ``max_line + 1`` bytes; give the offsets if any got shorter."""
        long = max(map(len, lines), default=0) > self.max_line
        if not lines or not (crlf or long):
            return lines, None
        offsets = list(accumulate((len(line) + 1 for line in lines[:-1]), initial=first))
        if crlf:
            lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
        if long:
            cap = self.max_line + 1
            lines = [line[:cap] for line in lines]
        return lines, offsets


class _File:
    """One open file instance, identified by ``(st_dev, st_ino)``.

    In follow mode, files that hold one log share one ``lines``: a log and its
    copytruncate copy are read as one stream, so no line is read twice.
    """

    __slots__ = ("earlier", "fh", "head", "key", "last_data", "lines", "orphan", "path", "pending", "size")

    def __init__(self, key: tuple[int, int], path: str, fh: Any, lines: _Lines, head: bytes, size: int) -> None:
        self.key = key
        self.path = path
        self.fh = fh  # None once a replayed file is finished
        self.lines = lines
        self.head = head  # the first _HEAD_BYTES or fewer, decompressed for gzip: what the file holds
        self.size = size  # when last looked at (plain files): a smaller size means it was truncated
        self.orphan = False  # no longer matched by the spec: drain, then forget
        self.pending = False  # may yet prove a copy of a log being read: not read until that is known
        self.earlier = False  # a copy with lines from before its log was truncated: read before the log
        self.last_data = time.monotonic()


def _reach(f: _File) -> float:
    """How far a file goes: of the files holding one log, the one that goes furthest is read."""
    return float("inf") if isinstance(f.fh, gzip.GzipFile) else f.size


class LineReader:
    """Reads the complete lines of one input spec, in follow or replay mode.

    In follow mode, a file whose first bytes are the first bytes already read
    of a log (all of them, up to ``_HEAD_BYTES``) is a copy of that log, as
    ``copytruncate`` makes: it continues the log where the reading is, so a
    line is read once whichever of the two holds it. A copy of a log that was
    just truncated gives the lines written between the last read and the
    truncation, even compressed (``.gz``); any other compressed file is a
    rotated copy whose lines were read as the log grew, and is skipped.

    Args:
        spec: A file path, a glob pattern (contains ``*?[``) or ``-`` for stdin.
        follow: Follow files like ``tail -F`` instead of stopping at EOF.
        resume_state: A value from :meth:`snapshot` to continue from.
        max_batch_bytes: About how many input bytes one :meth:`read` takes.
        max_line_bytes: Longer lines are cut to ``max_line_bytes + 1`` bytes.
        rescan_ms: Least time between checks of the spec for new, rotated or
            vanished files in follow mode.
        stdin_fd: The file descriptor read for ``-``.
    """

    def __init__(
        self,
        spec: str,
        *,
        follow: bool,
        resume_state: Any = None,
        max_batch_bytes: int = 1 << 20,
        max_line_bytes: int = 65536,
        rescan_ms: int = 1000,
        stdin_fd: int = 0,
    ) -> None:
        self.spec = spec
        self.follow = follow
        self.consumed_bytes = 0  # input bytes behind emitted lines, terminators included
        self._resume = resume_state
        self._max_batch = max_batch_bytes
        self._max_line = max_line_bytes
        self._rescan_s = rescan_ms / 1000
        self._stdin_fd = stdin_fd
        self._stdin = _Lines(max_line_bytes)
        self._stdin_eof = False
        self._files: dict[tuple[int, int], _File] = {}
        self._compressed: set[tuple[int, int]] = set()  # gzip files a follow skips, or has read
        self._unreadable: list[Chunk] = []  # replay's gzip files that hold no line it can read
        # (head, lines) of logs truncated since the last scan: the next scan finds their copies
        self._truncated: list[tuple[bytes, _Lines]] = []
        self._started = False
        self._caught_up = False
        self._next_scan = 0.0
        self._turn = 0

    @property
    def done(self) -> bool:
        """Whether no line will ever come: stdin at EOF, or replay finished."""
        if self.spec == STDIN:
            return self._stdin_eof
        return not self.follow and self._started and all(f.fh is None for f in self._files.values())

    @property
    def caught_up(self) -> bool:
        """Whether the last :meth:`read` reached the end of everything available.

        A read may return nothing yet not be caught up, e.g. while it skips
        the rest of an overlong line.
        """
        return self._caught_up

    def read(self) -> list[Chunk]:
        """Return the complete lines available now, one Chunk per file run.

        Raises:
            FileNotFoundError: A missing explicit path in replay mode.
        """
        if self.spec == STDIN:
            return self._read_stdin()
        if not self._started:
            self._scan()
            self._started = True
        elif self.follow and time.monotonic() >= self._next_scan:
            self._scan()
        else:
            self._look()
        chunks, self._unreadable = self._unreadable, []
        budget = self._max_batch
        for f in self._readers():
            if budget <= 0:
                break
            budget -= self._read_file(f, budget, chunks)
        self._caught_up = budget > 0
        return chunks

    def snapshot(self) -> Any:
        """Return a picklable position just after the last emitted line.

        ``None`` for stdin, which cannot be resumed.
        """
        if self.spec == STDIN:
            return None
        if not self._started:
            return self._resume
        return {
            "files": [
                {
                    "path": f.path,
                    "dev": f.key[0],
                    "ino": f.key[1],
                    "offset": f.lines.offset,
                    "line_no": f.lines.line_no,
                    "skip": f.lines.skip,
                    "head": f.head,
                }
                for f in self._files.values()
            ]
        }

    def close(self) -> None:
        """Close all open files (stdin's descriptor is left open)."""
        for f in self._files.values():
            if f.fh is not None:
                _close(f.fh)
                f.fh = None
        self._files.clear()

    def _readers(self) -> list[_File]:
        """The files to read now, one per log.

        Orphans and copies of truncated logs come first, so a rotated file is
        drained before its successor is read; the rest take turns to go first,
        so one busy file cannot starve the others.
        """
        best: dict[int, _File] = {}
        for f in self._files.values():
            if f.fh is not None and not f.pending:
                other = best.get(id(f.lines))
                if other is None or _reach(f) > _reach(other):
                    best[id(f.lines)] = f
        for f in list(self._files.values()):
            # a vanished copy holds nothing that the longer one read in its place lacks
            if f.orphan and f.fh is not None and not f.pending and best[id(f.lines)] is not f:
                _close(f.fh)
                del self._files[f.key]
        live = [f for f in best.values() if not (f.orphan or f.earlier)]
        if live:
            k = self._turn % len(live)
            live = live[k:] + live[:k]
        self._turn += 1
        return [f for f in best.values() if f.orphan or f.earlier] + live

    def _read_file(self, f: _File, budget: int, chunks: list[Chunk]) -> int:
        """Read up to ``budget`` new bytes of one file; return how many were read."""
        problem = None
        if isinstance(f.fh, gzip.GzipFile):  # a stream, read to its end once
            data, problem = _read_gzip(f.fh, budget)
            finished = len(data) < budget or problem is not None
        else:
            data, finished = self._read_plain(f, budget)
        before = f.lines.offset
        fed = f.lines.feed(data)
        if finished:
            if problem is None:  # a line the damage cut off is lost with the rest, not parsed torn
                fed = f.lines.finish(fed)
            if isinstance(f.fh, gzip.GzipFile):
                self._compressed.add(f.key)
            _close(f.fh)
            f.fh = None
            if self.follow:
                del self._files[f.key]
        self.consumed_bytes += f.lines.offset - before
        if fed[2]:
            chunks.append(Chunk(f.path, *fed))
        if problem is not None:  # the lines before the damage were read; a reject row says where it is
            at = f.lines.offset
            chunks.append(Chunk(f.path, f.lines.line_no, at, [], unreadable=_gzip_problem(problem, at)))
        return len(data)

    def _read_plain(self, f: _File, budget: int) -> tuple[bytes, bool]:
        """The next bytes of an uncompressed file, and whether it is finished after them."""
        want = min(f.size - f.lines.pos, budget)
        data = os.pread(f.fh.fileno(), want, f.lines.pos) if want > 0 else b""
        now = time.monotonic()
        if data:
            f.last_data = now
        at_eof = f.lines.pos + len(data) >= f.size
        # An orphan stays open for one rescan interval after its last growth:
        # writers often append to a renamed log until they reopen it.
        return data, at_eof and (not self.follow or (f.orphan and now - f.last_data >= self._rescan_s))

    def _look(self) -> None:
        """Notice truncated or rewritten files; settle which pending files are copies."""
        for f in list(self._files.values()):
            if f.fh is not None and not isinstance(f.fh, gzip.GzipFile):
                self._check(f)
        for f in [f for f in self._files.values() if f.pending]:
            self._identify(f)

    def _check(self, f: _File) -> None:
        """Look at a plain file's size and first bytes; one truncated or rewritten is read anew."""
        fd = f.fh.fileno()
        size = os.fstat(fd).st_size
        if size == f.size:
            return
        head = os.pread(fd, _HEAD_BYTES, 0)
        # smaller: truncated (copytruncate); other first bytes: truncated and written again since
        rewritten = size < f.size or head[: len(f.head)] != f.head
        old_head, f.head, f.size = f.head, head, size
        if not rewritten:
            return
        old, f.lines = f.lines, _Lines(self._max_line)
        if self.follow:
            f.pending = True
            copies = [g for g in self._files.values() if g.lines is old]
            for g in copies:
                g.earlier = True
            if old.offset and not copies:
                self._truncated.append((old_head, old))

    def _identify(self, f: _File) -> None:
        """Decide whether pending ``f`` is a copy of a log being read; a copy goes on where that log is.

        While ``f`` agrees with a log's first bytes but is too short to tell,
        it may be a copy still being written: it waits, unread.
        """
        if len(f.head) < len(_GZIP_MAGIC) and _GZIP_MAGIC.startswith(f.head) and not f.orphan:
            return  # too short to tell a log from a gzip file that is being written
        packed = isinstance(f.fh, gzip.GzipFile)
        if not packed and f.head.startswith(_GZIP_MAGIC):  # was empty when opened
            f.fh, head, problem = _gunzip(f.fh, f.path)
            if problem is not None:
                self._drop(f)
                return
            f.head, packed = head, True
        best, maybe = None, False
        for head, lines in self._logs(f, truncated_only=packed):
            n = min(_HEAD_BYTES, max(lines.offset, f.lines.offset))
            if len(f.head) >= n and head[:n] == f.head[:n]:
                if best is None or lines.offset > best.offset:
                    best = lines
            elif len(f.head) < n and head.startswith(f.head):
                maybe = True
        if best is not None:
            mine, f.lines = f.lines, best
            if mine.offset > best.offset:  # resumed further on in this copy
                best.offset, best.line_no, best.skip, best.buf = mine.offset, mine.line_no, mine.skip, mine.buf
            f.earlier = any(t[1] is best for t in self._truncated)
            self._truncated = [t for t in self._truncated if t[1] is not best]
            if packed:
                f.fh.seek(best.pos)
            f.pending = False
        elif packed:  # a rotated copy of a log that was followed as it grew
            self._drop(f)
        elif not maybe or f.orphan:
            f.pending = False

    def _drop(self, f: _File) -> None:
        """Close a compressed file not to be read, and never open it again."""
        self._compressed.add(f.key)
        _close(f.fh)
        del self._files[f.key]

    def _logs(self, f: _File, *, truncated_only: bool) -> list[tuple[bytes, _Lines]]:
        """(head, lines) of each log with lines read, other than ``f``'s: those just truncated, then the rest."""
        logs = {id(lines): (head, lines) for head, lines in self._truncated}
        if not truncated_only:
            for g in self._files.values():
                if g is f or g.pending or g.lines is f.lines or not g.lines.offset:
                    continue
                head, _ = logs.get(id(g.lines), (b"", None))
                if len(g.head) > len(head):  # of copies, the longest head says the most
                    logs[id(g.lines)] = (g.head, g.lines)
        return list(logs.values())

    def _scan(self) -> None:
        """Match the spec against the disk and update the tracked files."""
        self._next_scan = time.monotonic() + self._rescan_s
        self._look()
        found = self._match()
        saved = self._take_resume()
        for key, f in self._files.items():
            if key in found:
                f.path = found[key]  # a glob may match a rotated file under its new name
                f.orphan = False
            elif self.follow and not f.orphan:
                f.orphan = True
                f.last_data = time.monotonic()
        opened = [self._open(path, saved.pop(key, None)) for key, path in found.items() if key not in self._files]
        # Saved files the spec no longer matches were rotated away between
        # snapshot and restart: find them by inode and drain their rest.
        for entry in saved.values():
            path = _find_inode(os.path.dirname(entry["path"]) or ".", entry["dev"], entry["ino"])
            if path is not None:
                f = self._open(path, entry)
                if f is not None and self.follow:
                    f.orphan = True
                opened.append(f)
        # plain files first: a copy is read rather than its compressed twin
        for f in sorted((f for f in opened if f is not None and f.pending), key=_reach):
            self._identify(f)
        self._truncated = []  # their copies were made before the truncation: this scan saw them

    def _match(self) -> dict[tuple[int, int], str]:
        paths = sorted(glob.glob(self.spec)) if is_glob(self.spec) else [self.spec]
        found: dict[tuple[int, int], str] = {}
        for path in paths:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                if not self.follow and not is_glob(self.spec):
                    raise
                continue
            if stat.S_ISREG(st.st_mode):
                found.setdefault((st.st_dev, st.st_ino), path)
        return found

    def _take_resume(self) -> dict[tuple[int, int], dict[str, Any]]:
        state, self._resume = self._resume, None
        if not state:
            return {}
        return {(e["dev"], e["ino"]): e for e in state["files"]}

    def _open(self, path: str, entry: dict[str, Any] | None) -> _File | None:
        try:
            fh = open(path, "rb", buffering=0)
        except FileNotFoundError:
            return None
        st = os.fstat(fh.fileno())
        # The path may have been replaced since it was matched: trust the open file.
        key = (st.st_dev, st.st_ino)
        if key in self._files or key in self._compressed:
            fh.close()
            return None
        head = os.pread(fh.fileno(), _HEAD_BYTES, 0)
        if head.startswith(_GZIP_MAGIC):
            fh, head, problem = _gunzip(fh, path)
            # run: cut short or no gzip after all, nothing to read in it (a copy may still be written);
            # replay reads up to the damage, and a reject row says where it is
            if problem is not None and (self.follow or not head):
                _close(fh)
                self._compressed.add(key)
                if not self.follow:
                    self._unreadable.append(Chunk(path, 1, 0, [], unreadable=_gzip_problem(problem, 0)))
                return None
        lines = _Lines(self._max_line)
        if entry is not None and (entry["dev"], entry["ino"]) == key:
            saved = _Lines(self._max_line, entry["offset"], entry["line_no"], entry["skip"])
            # a snapshot of an earlier version has no head: the size alone tells a truncation
            known = entry.get("head", b"")
            if entry["offset"] <= st.st_size and head[: len(known)] == known:
                lines = saved
            elif self.follow and saved.offset and known:  # truncated while we were down: find its copy
                self._truncated.append((known, saved))
        f = self._files[key] = _File(key, path, fh, lines, head, st.st_size)
        f.pending = self.follow
        return f

    def _read_stdin(self) -> list[Chunk]:
        if self._stdin_eof:
            self._caught_up = True
            return []
        parts: list[bytes] = []
        budget = self._max_batch
        self._caught_up = False
        while budget > 0:
            if not select.select([self._stdin_fd], [], [], 0)[0]:
                self._caught_up = True
                break
            data = os.read(self._stdin_fd, min(budget, _STDIN_READ))
            if not data:
                self._stdin_eof = self._caught_up = True
                break
            parts.append(data)
            budget -= len(data)
        before = self._stdin.offset
        fed = self._stdin.feed(b"".join(parts))
        if self._stdin_eof:
            fed = self._stdin.finish(fed)
        self.consumed_bytes += self._stdin.offset - before
        return [Chunk(STDIN, *fed)] if fed[2] else []


def _gunzip(fh: Any, path: str) -> tuple[gzip.GzipFile, bytes, Exception | None]:
    """Read ``fh`` through gzip; return that, its first decompressed bytes, and what cut them short if anything."""
    packed = gzip.GzipFile(filename=path, fileobj=fh)
    head, problem = _read_gzip(packed, _HEAD_BYTES)
    packed.seek(0)
    return packed, head, problem


def _read_gzip(fh: gzip.GzipFile, budget: int) -> tuple[bytes, Exception | None]:
    """Up to ``budget`` decompressed bytes, and the error that stopped them short if the stream is damaged.

    Read a step at a time: a damaged stream keeps what the steps before the damage gave.
    """
    out = bytearray()
    try:
        while len(out) < budget and (piece := fh.read1(budget - len(out))):
            out += piece
    except (EOFError, OSError, zlib.error) as exc:
        return bytes(out), exc
    return bytes(out), None


def _gzip_problem(problem: Exception, at: int) -> str:
    """A reject row's detail for a gzip stream that cannot be read past ``at`` decompressed bytes."""
    why = str(problem) or type(problem).__name__
    return f"gzip stream unreadable after {at:,} bytes of lines ({why}); the rest of the file is lost"


def content_head(path: str, n: int) -> tuple[bytes, bool]:
    """The first ``n`` bytes of the lines a replay reads from a file, and whether it is gzip.

    A gzip file gives its decompressed bytes (up to a cut, for one cut short),
    so a log and its compressed copy start alike.

    Raises:
        OSError: The file cannot be read, or starts like gzip but is none (``gzip.BadGzipFile``).
        zlib.error: Its compressed data is damaged.
    """
    with open(path, "rb") as fh:
        head = fh.read(n)
        if not head.startswith(_GZIP_MAGIC):
            return head, False
        fh.seek(0)
        head, problem = _read_gzip(gzip.GzipFile(filename=path, fileobj=fh), n)
        if problem is not None and not isinstance(problem, EOFError):  # a cut keeps what came before it
            raise problem
        return head, True


def _close(fh: Any) -> None:
    raw = fh.fileobj if isinstance(fh, gzip.GzipFile) else None  # a GzipFile leaves the file it reads open
    fh.close()
    if raw is not None:
        raw.close()


def _find_inode(directory: str, dev: int, ino: int) -> str | None:
    """Return a path in ``directory`` to the regular file ``(dev, ino)``, if any."""
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.inode() != ino:
                    continue
                st = entry.stat(follow_symlinks=False)
                if st.st_dev == dev and stat.S_ISREG(st.st_mode):
                    return entry.path
    except FileNotFoundError:
        pass
    return None


class _LogPartition(StatefulSourcePartition[Chunk, Any]):
    def __init__(
        self,
        reader: LineReader,
        poll: timedelta,
        stop: threading.Event | None,
        on_read: Callable[[int, int], None] | None,
    ) -> None:
        self._reader = reader
        self._poll = poll
        self._stop = stop
        self._on_read = on_read
        self._idle = False

    def next_batch(self) -> list[Chunk]:
        if self._stop is not None and self._stop.is_set():
            raise StopIteration
        before = self._reader.consumed_bytes
        chunks = self._reader.read()
        if not chunks and self._reader.done:
            raise StopIteration
        self._idle = not chunks and self._reader.caught_up
        if chunks and self._on_read is not None:
            self._on_read(sum(len(c.lines) for c in chunks), self._reader.consumed_bytes - before)
        return chunks

    def next_awake(self) -> datetime | None:
        return datetime.now(timezone.utc) + self._poll if self._idle else None

    def snapshot(self) -> Any:
        return self._reader.snapshot()

    def close(self) -> None:
        self._reader.close()


class LogSource(FixedPartitionedSource[Chunk, Any]):
    """Bytewax source of :class:`Chunk` s, one partition per input spec.

    Args:
        specs: Paths, glob patterns or ``-``; see :func:`expand_inputs`.
        follow: Follow files like ``tail -F`` instead of ending at EOF.
        poll_ms: How long an idle partition waits before reading again.
        max_batch_bytes: About how many input bytes one batch takes.
        max_line_bytes: Longer lines are cut to ``max_line_bytes + 1`` bytes.
        stop: Once set, every partition ends at its next batch.
        on_read: Called with ``(lines, input bytes)`` after each non-empty batch.
        on_resume: Called with ``(path, line number)`` for each file a restart continues.
    """

    def __init__(
        self,
        specs: list[str],
        *,
        follow: bool,
        poll_ms: int = 200,
        max_batch_bytes: int = 1 << 20,
        max_line_bytes: int = 65536,
        stop: threading.Event | None = None,
        on_read: Callable[[int, int], None] | None = None,
        on_resume: Callable[[str, int], None] | None = None,
    ) -> None:
        self._specs = list(dict.fromkeys(specs))
        self._follow = follow
        self._poll = timedelta(milliseconds=poll_ms)
        self._max_batch = max_batch_bytes
        self._max_line = max_line_bytes
        self._stop = stop
        self._on_read = on_read
        self._on_resume = on_resume

    def list_parts(self) -> list[str]:
        return list(self._specs)

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _LogPartition:
        if resume_state and self._on_resume is not None:
            for entry in resume_state["files"]:
                self._on_resume(entry["path"], entry["line_no"])
        reader = LineReader(
            for_part,
            follow=self._follow,
            resume_state=resume_state,
            max_batch_bytes=self._max_batch,
            max_line_bytes=self._max_line,
        )
        return _LogPartition(reader, self._poll, self._stop, self._on_read)
