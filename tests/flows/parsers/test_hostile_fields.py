"""Lines built to break the pipeline are rejected with a reason, never raised.

JSON nested a thousand deep overflows a recursive decoder; a response size of
2^63 bytes or more overflows the store's 64-bit columns (and sums of smaller
ones overflow them too); ``1e999`` decodes to infinity, which is no integer.
Each such line must become a ``rejected`` row, in every format, and a replay
of a log holding them must write everything else.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gatewatch.flows.events import Chunk
from gatewatch.flows.parsers import ChunkParser
from tests.conftest import gatewatch, rows

CASES = Path(__file__).parent / "cases"
DEEP = b'{"a":' * 1200 + b"1" + b"}" * 1200


def _first_event_line(case_set: str, fmt: str) -> bytes:
    parser = ChunkParser(fmt)
    for line in (CASES / f"{case_set}.log").read_bytes().split(b"\n"):
        events, rejects = parser.parse(Chunk("case", 1, 0, [line]))
        if len(events) == 1 and not rejects:
            return line
    raise AssertionError(case_set)


def _with_size(fmt: str, line: bytes, size: bytes) -> bytes:
    """The line with its response size replaced by ``size`` (raw JSON number text)."""
    if fmt == "combined":
        return re.sub(rb'(" [0-9]{3}) [0-9]+', rb"\1 " + size, line, count=1)
    start = line.index(b"{")
    record = json.loads(line[start:])
    if fmt == "wso2":
        record.setdefault("properties", {})["responseSize"] = "__SIZE__"
    elif fmt == "kong":
        record["response"]["size"] = "__SIZE__"
    else:
        record["size"] = "__SIZE__"
    return line[:start] + json.dumps(record).encode().replace(b'"__SIZE__"', size)


def _hostile(fmt: str) -> dict[str, bytes]:
    line = _first_event_line(fmt, fmt)
    lines = {"huge_size": _with_size(fmt, line, b"9223372036854775808")}
    if fmt != "combined":
        lines["infinite_size"] = _with_size(fmt, line, b"1e999")
        prefix = line[: line.index(b"{")] if fmt == "wso2" else b""
        lines["deep_json"] = prefix + DEEP
    return lines


@pytest.mark.parametrize("fmt", ["wso2", "kong", "json", "combined"])
def test_each_hostile_line_is_a_reject_with_a_reason(fmt):
    for name, line in _hostile(fmt).items():
        events, rejects = ChunkParser(fmt).parse(Chunk("hostile", 1, 0, [line]))
        assert not events and len(rejects) == 1, name
        assert rejects[0].reason in {"bad_json", "bad_field"}, (name, rejects[0])
        assert rejects[0].detail, name


def test_a_replay_of_hostile_lines_stores_the_rest(tmp_path):
    good = _first_event_line("kong", "kong")
    log = tmp_path / "kong.log"
    log.write_bytes(b"\n".join([good, *_hostile("kong").values(), good]) + b"\n")
    store = tmp_path / "store"
    out = gatewatch("replay", str(log), "--format", "kong", "--store", str(store)).stdout
    assert " events=2 rejected=3 " in out
    assert len(rows(store, "SELECT * FROM rejected")) == 3
