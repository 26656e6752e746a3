"""Parser cases as data: ``cases/<format>.log`` line N -> ``cases/<format>.expected.jsonl`` line N.

Each expected line is ``{"event": {...}}`` (every Event field) or
``{"reject": "<reason>"}``. Regenerate after a deliberate change with
``GATEWATCH_UPDATE_GOLDEN=1 pytest tests/flows/parsers`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec
import pytest

from flows.events import Chunk
from flows.parsers import PARSERS, REJECT_REASONS, ChunkParser

CASES = Path(__file__).parent / "cases"


def _read_lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def _outcomes(fmt: str, lines: list[bytes]) -> list[dict]:
    parser = ChunkParser(fmt)
    out = []
    for i, line in enumerate(lines):
        events, rejects = parser.parse(Chunk("case", i + 1, 0, [line]))
        assert len(events) + len(rejects) == 1
        out.append({"event": msgspec.to_builtins(events[0])} if events else {"reject": rejects[0].reason})
    return out


@pytest.mark.parametrize("fmt", sorted(PARSERS))
def test_parser_cases_match_expected(fmt):
    lines = _read_lines(CASES / f"{fmt}.log")
    expected_path = CASES / f"{fmt}.expected.jsonl"
    got = _outcomes(fmt, lines)
    if os.environ.get("GATEWATCH_UPDATE_GOLDEN"):
        expected_path.write_text("".join(json.dumps(o, sort_keys=True) + "\n" for o in got))
    expected = [json.loads(x) for x in expected_path.read_text().splitlines()]
    assert len(expected) == len(lines)
    for n, (g, e) in enumerate(zip(got, expected, strict=True), start=1):
        assert g == e, f"{fmt}.log line {n}"
    assert {o["reject"] for o in got if "reject" in o} <= set(REJECT_REASONS)


@pytest.mark.parametrize("fmt", sorted(PARSERS))
def test_auto_detects_format_from_its_cases(fmt):
    lines = _read_lines(CASES / f"{fmt}.log")
    assert _outcomes("auto", lines) == _outcomes(fmt, lines)


def test_wso2_sniff_rejects_other_lines():
    p = PARSERS["wso2"]()
    assert not p.sniff(b'{"request": {"uri": "/"}}')
    assert not p.sniff(b"apimMetrics: apim:response, properties :{} without a prefix")


def test_overlong_line_is_rejected_with_reason_and_capped_raw():
    parser = ChunkParser("wso2", max_line_bytes=100, raw_max_bytes=50)
    line = b"08:23:34,898 [-] [t-1]  INFO ELKCounterMetric apimMetrics: apim:response, properties :{" + b"x" * 200
    events, rejects = parser.parse(Chunk("f", 7, 1000, [b"ok?", line]))
    assert events == []
    assert [r.reason for r in rejects] == ["no_match", "line_too_long"]
    assert rejects[1].line_no == 8 and rejects[1].offset == 1004
    assert len(rejects[1].raw) == 50


def test_auto_rejects_lines_before_the_format_is_known_then_parses():
    lines = _read_lines(CASES / "wso2.log")
    chunk = Chunk("mixed", 1, 0, [b"garbage", b"", lines[0], b"garbage again", lines[1]])
    events, rejects = ChunkParser("auto").parse(chunk)
    assert len(events) == 2
    assert [(r.line_no, r.reason) for r in rejects] == [(1, "unknown_format"), (2, "empty_line"), (4, "no_match")]
