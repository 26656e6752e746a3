"""Property-based tests over every registered parser: nothing escapes, every line is accounted for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gatewatch.flows.events import HTTP_VERSIONS, MAX_QUERY_CHARS, Chunk
from gatewatch.flows.parsers import PARSERS, REJECT_REASONS, ChunkParser, nginx

CASES = Path(__file__).parent / "cases"
FORMATS = ["auto", *sorted(PARSERS)]
MAX_LINE = 2048


def _case_lines() -> list[bytes]:
    lines = []
    for path in sorted(CASES.glob("*.log")):
        lines.extend(x for x in path.read_bytes().split(b"\n") if x)
    return lines


REAL = _case_lines()
NESTING = 1000  # levels: msgspec refuses this deep, its recursion limit is lower


def deeply_nested(line: bytes) -> bytes:
    """``line`` with its JSON (from its first ``{``; all of it without one) replaced by arrays nested ``NESTING`` deep.

    Cut at ``MAX_LINE``: after a prefix (WSO2's) not all the arrays are closed again.
    """
    prefix = line[: max(0, line.find(b"{"))]
    return (prefix + b'{"a":' + b"[" * NESTING + b"]" * NESTING + b"}")[:MAX_LINE]


@st.composite
def mutated_line(draw) -> bytes:
    """A real line from the case files, damaged in one of the ways real logs get damaged."""
    line = draw(st.sampled_from(REAL))
    how = draw(
        st.sampled_from(
            ["cut", "splice", "flip", "nul", "repeat", "invalid_utf8", "digits", "sizes", "deep", "as_is"]
        )
    )
    at = draw(st.integers(0, max(0, len(line) - 1)))
    if how == "cut":
        return line[:at]
    if how == "splice":
        return line[:at] + draw(st.binary(max_size=40)) + line[at:]
    if how == "flip":
        return line[:at] + bytes([line[at] ^ draw(st.integers(1, 255))]) + line[at + 1 :] if line else line
    if how == "nul":
        return line[:at] + b"\x00" + line[at:]
    if how == "repeat":
        return line * draw(st.integers(2, 40))  # often longer than max_line_bytes
    if how == "invalid_utf8":
        return line[:at] + b"\xc3\x28\xff" + line[at:]
    if how == "digits":  # clock jumps, huge numbers, negative sizes
        big = draw(st.sampled_from([b"99999999999999999999", b"-1", b"1e308", b"0", b"2038", b"1900"]))
        return line.replace(b"2022", big, 1).replace(b"200", big, 1)
    if how == "sizes":  # every number in the line: sizes past 2^63, infinities
        big = draw(st.sampled_from([b"9223372036854775808", b"1e999", b"18446744073709551616"]))
        return re.sub(rb"(?<=[ :])[0-9]{2,}(?=[ ,}])", big, line)
    if how == "deep":
        return deeply_nested(line)
    return line


LINES = st.one_of(mutated_line(), st.binary(max_size=300), st.text(max_size=200).map(str.encode))


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(LINES, min_size=1, max_size=30))
def test_every_line_is_an_event_or_a_reject_with_a_known_reason(fmt, lines):
    parser = ChunkParser(fmt, max_line_bytes=MAX_LINE, raw_max_bytes=256)
    events, rejects = parser.parse(Chunk("fuzz", 1, 0, lines))
    # a Kong http-log array line holds several requests, each one an event or a reject
    assert len(events) + len(rejects) >= len(lines)
    if fmt not in ("kong", "auto"):
        assert len(events) + len(rejects) == len(lines)
    assert {r.reason for r in rejects} <= set(REJECT_REASONS)
    assert all(len(r.raw.encode("utf-8", "surrogateescape")) <= 256 * 4 for r in rejects)
    assert sorted(r.line_no for r in rejects) == [r.line_no for r in rejects]
    for e in events:
        assert e.ts == e.ts and abs(e.ts) < 1e11  # finite, and a plausible epoch
        assert isinstance(e.status, int)
        assert len(e.query) <= MAX_QUERY_CHARS
        assert type(e.bad_request) is bool


@pytest.mark.parametrize("fmt", FORMATS)
def test_huge_json_and_very_long_lines_are_rejected_not_crashed(fmt):
    parser = ChunkParser(fmt, max_line_bytes=MAX_LINE, raw_max_bytes=256)
    huge = b'{"a": [' + b"1," * 100_000 + b"1]}"
    deep = b"[" * 50_000 + b"]" * 50_000
    events, rejects = parser.parse(Chunk("fuzz", 1, 0, [huge, deep, REAL[0] * 200]))
    assert events == []
    assert [r.reason for r in rejects] == ["line_too_long"] * 3


@pytest.mark.parametrize("fmt", FORMATS)
def test_json_nested_a_thousand_deep_is_a_reject_with_a_reason(fmt):
    # one line of each case file, so every JSON-based parser (json, kong, wso2's properties) meets it
    firsts = [next(x for x in path.read_bytes().split(b"\n") if x) for path in sorted(CASES.glob("*.log"))]
    lines = [deeply_nested(line) for line in firsts]
    events, rejects = ChunkParser(fmt, max_line_bytes=MAX_LINE, raw_max_bytes=256).parse(Chunk("fuzz", 1, 0, lines))
    assert events == []
    assert [r.line_no for r in rejects] == list(range(1, len(lines) + 1))
    assert all(r.reason in REJECT_REASONS for r in rejects)
    # where the format's JSON starts, the nesting is refused for its depth, not raised as a RecursionError
    json_at = {"json": b"{", "kong": b"{", "wso2": b"08:"}.get(fmt)
    if json_at:
        depth_rejects = [r for line, r in zip(lines, rejects, strict=True) if line.startswith(json_at)]
        assert depth_rejects and all(r.reason == "bad_json" and "depth" in r.detail for r in depth_rejects)


# access-line pieces, quotes and brackets included, so the two regexes meet every alternative
_ACCESS_PIECES = st.sampled_from(
    ['"', '""', " ", "-", "[", "]", "GET", "/a?b=1", "?", "HTTP/1.1", "HTTP/2", "200", "15", "1.2.3.4", "host:80", "x y", "\r"]
)


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(REAL), st.lists(st.tuples(st.integers(0, 400), _ACCESS_PIECES), max_size=4))
@example(b'1.2.3.4 - - [05/Mar/2021:09:01:38 +0100] "" 400 0 "-" "-"', [])  # an empty request
def test_the_plain_access_regex_matches_as_the_full_one_without_backslashes(line, edits):
    text = line.decode("utf-8", "replace")
    for at, piece in edits:  # real lines with pieces cut in: near-misses of every shape
        text = text[:at] + piece + text[at + len(piece) // 2 :]
    text = text.replace("\\", "")
    full, plain = nginx._ACCESS.match(text), nginx._ACCESS_PLAIN.match(text)
    assert (full and full.groups()) == (plain and plain.groups())


# request-line pieces: every version the parser accepts, near misses, and none at all
_VERSIONS = st.sampled_from([*sorted(HTTP_VERSIONS), "HTTP/9.9", "HTTP/1.1 x", "http/1.1", "HTTP/1.", ""])
_TARGET_CHARS = st.characters(blacklist_characters='" \\\r\n', blacklist_categories=("Cs",))


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(["GET", "POST", "M-SEARCH", "PROPFIND", "Get"]),
    st.text(alphabet=_TARGET_CHARS, max_size=1200),
    _VERSIONS,
    st.booleans(),
)
@example("GET", "/?" + "q" * 600, "HTTP/1.1", False)  # a query longer than MAX_QUERY_CHARS
@example("GET", "", "HTTP/1.1", True)  # no target
@example("GET", "?a=1", "HTTP/1.1", False)  # a query without a path
@example("GET", "/?" + "q" * 2000, "HTTP/9.9", True)
def test_combined_query_and_bad_request_follow_the_request_line(method, target, version, escaped):
    request = f"{method} {target}" + (f" {version}" if version else "")
    ua = 'a \\"b\\" c' if escaped else "ua"  # a backslash on the line: the escaped regex
    line = f'1.2.3.4 - - [05/Mar/2021:09:01:38 +0100] "{request}" 200 15 "-" "{ua}"'.encode()
    events, rejects = ChunkParser("combined").parse(Chunk("f", 1, 0, [line]))
    assert rejects == [] and len(events) == 1
    e = events[0]
    resource, _, query = target.partition("?")
    assert (e.method, e.resource, e.query) == (method, resource, query[:MAX_QUERY_CHARS])
    assert e.bad_request == (version not in HTTP_VERSIONS or not method.isalpha() or not resource)


def test_the_version_pattern_accepts_exactly_the_http_versions():
    near = ["HTTP/1.2", "HTTP/2.1", "HTTP/3.1", "HTTP/0.8", "HTTP/1", "HTTP/4", "HTTP/11", "http/1.1", "HTTP/1.1 "]
    candidates = [*HTTP_VERSIONS, *near, *(v + "0" for v in HTTP_VERSIONS), *(v[:-1] for v in HTTP_VERSIONS)]
    assert {v for v in candidates if re.fullmatch(nginx._VERSION, v)} == HTTP_VERSIONS
