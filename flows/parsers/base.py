"""What every parser shares: the reject reasons, the parser protocol, the bounds on parsed values."""

from __future__ import annotations

from typing import ClassVar, Protocol

from gatewatch.flows.events import Chunk, Event, Reject

REJECT_REASONS: dict[str, str] = {
    "empty_line": "the line is blank",
    "unreadable_file": "the rest of the file cannot be read (a gzip stream cut short or corrupt)",
    "line_too_long": "the line is longer than input.max_line_bytes",
    "invalid_utf8": "the line is not valid UTF-8",
    "unknown_format": "no registered format recognises the line",
    "no_match": "the line does not have the format's shape",
    "unknown_metric": "a WSO2 metric other than apim:response / apim:faulty",
    "bad_json": "the JSON part is malformed",
    "missing_field": "a field the pipeline needs is absent",
    "bad_field": "a field has the wrong type or value",
    "bad_timestamp": "the event time cannot be parsed",
    "not_a_request": "an error-log line that records no client request (only basic-auth failures do)",
    "ambiguous_client": "an auth failure with two client fields: the client wrote one, so neither address is trusted",
}


class Parser(Protocol):
    """What every format module provides."""

    name: ClassVar[str]

    def sniff(self, line: bytes) -> bool:
        """Tell whether ``line`` looks like this format (cheap, no full parse)."""
        ...

    def parse_lines(self, chunk: Chunk, start: int, events: list[Event], rejects: list[Reject]) -> None:
        """Parse ``chunk.lines[start:]``, appending to ``events`` and ``rejects``."""
        ...


# 10000-01-01T00:00:00Z: no later time fits a datetime or the store's timestamps
MAX_EPOCH_S = 253_402_300_800
# 1 TiB: no response is larger, and 2^23 of them still sum inside the store's 64-bit columns
MAX_RESPONSE_BYTES = 1 << 40


def raw_text(line: bytes, max_bytes: int) -> str:
    """Decode a line for storage: never fails, capped at ``max_bytes`` bytes."""
    return line[:max_bytes].decode("utf-8", "backslashreplace")
