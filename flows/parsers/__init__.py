"""Log-format parsers, registered by name.

A parser turns raw lines into :class:`~gatewatch.flows.events.Event` records and every
line it cannot use into a :class:`~gatewatch.flows.events.Reject` with a reason code, so
each line read is accounted for exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping

from gatewatch.flows.events import Chunk, Event, Reject
from gatewatch.flows.parsers.base import MAX_EPOCH_S, MAX_RESPONSE_BYTES, REJECT_REASONS, Parser, raw_text

__all__ = ["FORMATS", "MAX_EPOCH_S", "MAX_RESPONSE_BYTES", "PARSERS", "REJECT_REASONS", "ChunkParser", "Parser", "raw_text"]

def _registry() -> dict[str, type]:
    from gatewatch.flows.parsers.jsonl import JsonParser
    from gatewatch.flows.parsers.kong import KongParser
    from gatewatch.flows.parsers.nginx import CombinedParser
    from gatewatch.flows.parsers.wso2 import Wso2Parser

    # auto-detection tries them in this order: generic json last, so it never takes Kong records
    return {cls.name: cls for cls in (Wso2Parser, KongParser, CombinedParser, JsonParser)}


PARSERS: dict[str, type] = _registry()
FORMATS: tuple[str, ...] = ("auto", *PARSERS)


class ChunkParser:
    """Parse chunks with a fixed format, or detect it per source (``auto``).

    With ``auto``, the first line of a source that some registered parser
    recognises fixes that source's format; earlier unrecognised lines are
    rejected as ``unknown_format``. ``options`` holds extra constructor
    arguments per format, e.g. ``{"json": {"mapping": cfg.input.json_mapping}}``.
    """

    def __init__(
        self,
        fmt: str = "auto",
        *,
        max_line_bytes: int = 65536,
        raw_max_bytes: int = 4096,
        options: Mapping[str, Mapping[str, object]] | None = None,
    ) -> None:
        if fmt not in FORMATS:
            msg = f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}"
            raise ValueError(msg)
        self.fmt = fmt
        self.max_line_bytes = max_line_bytes
        self.raw_max_bytes = raw_max_bytes
        self.options = dict(options or {})
        self._instances: dict[str, Parser] = {}
        self._by_source: dict[str, Parser] = {}

    def _parser(self, name: str) -> Parser:
        p = self._instances.get(name)
        if p is None:
            p = self._instances[name] = PARSERS[name](
                max_line_bytes=self.max_line_bytes, raw_max_bytes=self.raw_max_bytes, **self.options.get(name, {})
            )
        return p

    def parse(self, chunk: Chunk) -> tuple[list[Event], list[Reject]]:
        """Return the events and rejects of one chunk; their counts sum to its lines.

        A chunk saying its file cannot be read past a point has no lines and gives one reject.
        """
        events: list[Event] = []
        rejects: list[Reject] = []
        if chunk.unreadable:
            return events, [Reject(chunk.source, chunk.first_line_no, chunk.first_offset, "unreadable_file", chunk.unreadable, "")]
        parser = self._by_source.get(chunk.source)
        start = 0
        if parser is None and self.fmt != "auto":
            parser = self._by_source[chunk.source] = self._parser(self.fmt)
        if parser is None:
            offsets = chunk.line_offsets()
            for i, line in enumerate(chunk.lines):
                too_long = len(line) > self.max_line_bytes  # never sniffed: costly, and proves nothing
                for name in () if too_long else PARSERS:
                    if self._parser(name).sniff(line):
                        parser = self._by_source[chunk.source] = self._parser(name)
                        break
                if parser is not None:
                    start = i
                    break
                reason = "line_too_long" if too_long else "empty_line" if not line.strip() else "unknown_format"
                detail = f"{len(line)} bytes or more" if too_long else ""
                rejects.append(
                    Reject(chunk.source, chunk.first_line_no + i, offsets[i], reason, detail, raw_text(line, self.raw_max_bytes))
                )
            else:
                return events, rejects
        parser.parse_lines(chunk, start, events, rejects)
        return events, rejects
