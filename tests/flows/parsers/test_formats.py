"""Behaviour of the Kong, combined and json parsers that one case line per outcome cannot show."""

from __future__ import annotations

import json

import pytest

from gatewatch.flows.config import ConfigError, load_config
from gatewatch.flows.events import MAX_QUERY_CHARS, Chunk, Event
from gatewatch.flows.parsers import PARSERS, ChunkParser
from gatewatch.flows.parsers.jsonl import JsonMapping
from tests.conftest import gatewatch, rows
from tests.flows.parsers.test_parsers import CASES, _read_lines

KONG = _read_lines(CASES / "kong.log")
COMBINED = _read_lines(CASES / "combined.log")
CADDY = _read_lines(CASES / "json.log")


def test_kong_array_elements_are_accounted_one_by_one_at_the_line_position():
    good, bad_batch = KONG[1], KONG[11]  # an object, and [good, record without started_at]
    chunk = Chunk("kong.log", 40, 1000, [good, bad_batch, b"[]"])
    events, rejects = ChunkParser("kong").parse(chunk)
    assert len(events) == 2
    assert [(r.line_no, r.offset, r.reason) for r in rejects] == [
        (41, 1000 + len(good) + 1, "missing_field"),
        (42, 1000 + len(good) + 1 + len(bad_batch) + 1, "bad_field"),
    ]
    assert rejects[0].detail.startswith("array element 2 of 2: ")
    assert rejects[0].raw.startswith('{"request"') and "started_at" not in rejects[0].raw  # the element, not the line


def test_kong_batch_of_three_gives_three_events_in_order():
    events, rejects = ChunkParser("kong").parse(Chunk("k", 1, 0, [KONG[10]]))
    assert rejects == []
    assert [(e.status, e.consumer != "") for e in events] == [(200, True), (401, False), (429, True)]


@pytest.mark.parametrize(("fmt", "line"), [("kong", KONG[0]), ("combined", COMBINED[0]), ("json", CADDY[0])])
def test_overlong_lines_are_rejected_with_capped_raw(fmt, line):
    events, rejects = ChunkParser(fmt, max_line_bytes=64, raw_max_bytes=32).parse(Chunk("f", 5, 10, [b"", line]))
    assert events == []
    assert [(r.line_no, r.offset, r.reason) for r in rejects] == [(5, 10, "empty_line"), (6, 11, "line_too_long")]
    assert rejects[1].raw == line[:32].decode()


def test_reject_offsets_are_byte_positions_within_the_chunk():
    lines = [COMBINED[0], b"garbage", COMBINED[1], "caf\u00e9 \u00fcber".encode(), COMBINED[2]]
    _, rejects = ChunkParser("combined").parse(Chunk("f", 1, 500, lines))
    assert [(r.line_no, r.offset) for r in rejects] == [
        (2, 500 + len(lines[0]) + 1),
        (4, 500 + len(lines[0]) + len(lines[1]) + len(lines[2]) + 3),
    ]


def _events(parser: ChunkParser, source: str, lines: list[bytes]):
    return parser.parse(Chunk(source, 1, 0, lines))[0]


def test_auto_never_gives_a_kong_record_to_the_generic_json_parser():
    # a mapping whose time field Kong records also have
    mapping = JsonMapping(time="started_at", time_format="epoch_ms", status="response.status")
    options = {"json": {"mapping": mapping}}
    assert PARSERS["json"](mapping=mapping).sniff(KONG[0])
    as_json = _events(ChunkParser("json", options=options), "k", [KONG[0]])
    as_kong = _events(ChunkParser("kong"), "k", [KONG[0]])
    assert as_json != as_kong
    assert _events(ChunkParser("auto", options=options), "k", [KONG[0]]) == as_kong


def test_auto_takes_json_only_when_the_mapping_time_field_is_there():
    events, rejects = ChunkParser("auto").parse(Chunk("j", 1, 0, [b'{"time": 1, "status": 200}', CADDY[0]]))
    assert [r.reason for r in rejects] == ["unknown_format"]
    assert events == _events(ChunkParser("json"), "j", [CADDY[0]])


def test_each_source_keeps_its_own_detected_format():
    auto = ChunkParser("auto")
    for source, line, fmt in [("a", KONG[0], "kong"), ("b", COMBINED[0], "combined"), ("c", CADDY[0], "json")]:
        assert _events(auto, source, [line]) == _events(ChunkParser(fmt), source, [line])
    # later lines of a source go to its format's parser: here a Kong line in the combined source is no_match
    events, rejects = auto.parse(Chunk("b", 2, 0, [KONG[0]]))
    assert events == [] and [r.reason for r in rejects] == ["no_match"]


def test_json_mapping_loads_from_the_config_file(tmp_path):
    cfg = tmp_path / "g.toml"
    cfg.write_text(
        '[input]\nformat = "json"\n[input.json]\ntime = "@timestamp"\ntime_format = "iso8601"\nstatus = "http.code"\n'
    )
    mapping = load_config(cfg).input.json_mapping
    assert (mapping.time, mapping.time_format, mapping.status) == ("@timestamp", "iso8601", "http.code")
    assert mapping.client_ip == "request.client_ip"  # the rest keep their defaults


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('time = ""', "input.json.time"),
        ('status = ""', "input.json.status"),
        ('path = "request..uri"', "input.json.path"),
        ('time_format = "rfc2822"', "input.json.time_format"),
        ('latency = "duration"', "input.json.latency: unknown key"),
    ],
)
def test_json_mapping_is_strict(tmp_path, body, problem):
    cfg = tmp_path / "g.toml"
    cfg.write_text(f"[input.json]\n{body}\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems


def test_the_attribute_name_is_not_a_config_key(tmp_path):
    cfg = tmp_path / "g.toml"
    cfg.write_text('[input.json_mapping]\ntime = "t"\n')
    with pytest.raises(ConfigError, match="input.json_mapping: unknown key"):
        load_config(cfg)


def test_replay_reads_json_lines_through_the_configured_mapping(tmp_path):
    expected = [json.loads(x) for x in (CASES / "json-nginx.expected.jsonl").read_text().splitlines()]
    events = [o["event"] for o in expected if "event" in o]
    store = tmp_path / "store"
    out = gatewatch(
        "replay", str(CASES / "json-nginx.log"), "--config", str(CASES / "json-nginx.toml"), "--store", str(store)
    ).stdout
    assert f"lines={len(expected)} events={len(events)} rejected={len(expected) - len(events)}" in out
    got = rows(store, "SELECT consumer, sum(requests) n, sum(auth_failures) a, sum(throttled) t FROM traffic GROUP BY ALL")
    want: dict[str, list[int]] = {}
    for e in events:
        n, a, t = want.setdefault(e["consumer"], [0, 0, 0])
        want[e["consumer"]] = [n + 1, a + e["auth_failure"], t + e["throttled"]]
    assert {r["consumer"]: [r["n"], r["a"], r["t"]] for r in got} == want
    assert len(want) == 3  # c-17, c-18 and anonymous


def test_the_new_event_fields_are_trailing_defaults():
    # every positional construction of the 16 older fields keeps working
    e = Event(0.0, "api", "c", "C", "o", "", "1.2.3.4", "GET", "/", "/", 200, False, False, 0, -1, "ua")
    assert (e.query, e.bad_request) == ("", False)
    assert list(Event.__struct_fields__)[-2:] == ["query", "bad_request"]


LONG_QUERY = "\u00e9=" + "\u00e9" * 1000  # 1002 characters, 2004 bytes in UTF-8


@pytest.mark.parametrize(
    ("fmt", "line"),
    [
        ("combined", f'1.2.3.4 - - [05/Mar/2021:09:01:38 +0100] "GET /s?{LONG_QUERY} HTTP/1.1" 200 15'.encode()),
        ("kong", KONG[1].replace(b"?expand=items", f"?{LONG_QUERY}".encode(), 1)),
        ("json", CADDY[1].replace(b"?dl=1", f"?{LONG_QUERY}".encode())),
    ],
)
def test_a_long_query_keeps_its_first_max_query_chars_characters(fmt, line):
    events, rejects = ChunkParser(fmt).parse(Chunk("f", 1, 0, [line]))
    assert rejects == []
    assert events[0].query == LONG_QUERY[:MAX_QUERY_CHARS]  # characters, not bytes
    assert len(events[0].query) == MAX_QUERY_CHARS
