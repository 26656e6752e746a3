"""Parser cases as data: ``cases/<set>.log`` line N -> ``cases/<set>.expected.jsonl`` line N.

A case set is named after its format, optionally with a suffix
(``json-nginx``); a ``cases/<set>.toml`` beside it is a gatewatch config
whose ``[input]`` settings (e.g. the ``[input.json]`` mapping) the parser gets.

Each expected line is ``{"event": {...}}`` (every Event field),
``{"reject": "<reason>"}``, or, for a line holding several requests (a Kong
array), ``{"requests": [...]}`` with the events first, then the rejects.
Regenerate after a deliberate change with
``GATEWATCH_UPDATE_GOLDEN=1 pytest tests/flows/parsers`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec
import pytest

from gatewatch.flows.config import load_config
from gatewatch.flows.events import Chunk
from gatewatch.flows.parsers import PARSERS, REJECT_REASONS, ChunkParser
from gatewatch.flows.sources import LineReader

CASES = Path(__file__).parent / "cases"
CASE_SETS = sorted(p.name.removesuffix(".log") for p in CASES.glob("*.log"))


def _read_lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def _parser(case_set: str, fmt: str) -> ChunkParser:
    toml = CASES / f"{case_set}.toml"
    inp = load_config(toml if toml.exists() else None).input
    return ChunkParser(fmt, options={"json": {"mapping": inp.json_mapping}})


def _outcomes(case_set: str, fmt: str, lines: list[bytes]) -> list[dict]:
    parser = _parser(case_set, fmt)
    out = []
    for i, line in enumerate(lines):
        events, rejects = parser.parse(Chunk("case", i + 1, 0, [line]))
        assert len(events) + len(rejects) >= 1
        assert all(r.line_no == i + 1 for r in rejects)
        got = [{"event": msgspec.structs.asdict(e)} for e in events] + [{"reject": r.reason} for r in rejects]
        out.append(got[0] if len(got) == 1 else {"requests": got})
    return out


def _format(case_set: str) -> str:
    return case_set.partition("-")[0]


def test_every_format_has_cases():
    assert {_format(c) for c in CASE_SETS} == set(PARSERS)


@pytest.mark.parametrize("case_set", CASE_SETS)
def test_parser_cases_match_expected(case_set):
    fmt = _format(case_set)
    lines = _read_lines(CASES / f"{case_set}.log")
    expected_path = CASES / f"{case_set}.expected.jsonl"
    got = _outcomes(case_set, fmt, lines)
    if os.environ.get("GATEWATCH_UPDATE_GOLDEN"):
        expected_path.write_text("".join(json.dumps(o, sort_keys=True) + "\n" for o in got))
    expected = [json.loads(x) for x in expected_path.read_text().splitlines()]
    assert len(expected) == len(lines)
    for n, (g, e) in enumerate(zip(got, expected, strict=True), start=1):
        assert g == e, f"{case_set}.log line {n}"
    outcomes = [o for g in got for o in g.get("requests", [g])]
    assert {o["reject"] for o in outcomes if "reject" in o} <= set(REJECT_REASONS)


@pytest.mark.parametrize("case_set", CASE_SETS)
def test_auto_detects_format_from_its_cases(case_set):
    lines = _read_lines(CASES / f"{case_set}.log")
    assert _outcomes(case_set, "auto", lines) == _outcomes(case_set, _format(case_set), lines)


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


@pytest.mark.parametrize("fmt", ["auto", *sorted(PARSERS)])
def test_rejects_give_the_offset_of_their_line_in_a_crlf_file_with_an_overlong_line(tmp_path, fmt):
    log = tmp_path / "crlf.log"
    lines = [b"garbage one", b"x" * 300, b"", b"garbage three"]
    log.write_bytes(b"".join(line + b"\r\n" for line in lines))
    reader = LineReader(str(log), follow=False, max_line_bytes=100)
    rejects = [r for chunk in reader.read() for r in ChunkParser(fmt, max_line_bytes=100).parse(chunk)[1]]
    reader.close()
    assert [(r.line_no, r.offset) for r in rejects] == [(1, 0), (2, 13), (3, 315), (4, 317)]
    assert rejects[1].reason == "line_too_long"


def test_auto_rejects_lines_before_the_format_is_known_then_parses():
    lines = _read_lines(CASES / "wso2.log")
    chunk = Chunk("mixed", 1, 0, [b"garbage", b"", lines[0], b"garbage again", lines[1]])
    events, rejects = ChunkParser("auto").parse(chunk)
    assert len(events) == 2
    assert [(r.line_no, r.reason) for r in rejects] == [(1, "unknown_format"), (2, "empty_line"), (4, "no_match")]
