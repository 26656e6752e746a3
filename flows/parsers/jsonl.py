"""Generic JSON lines: one object per line, fields found by the ``[input.json]`` mapping.

Each mapped field is a dotted path into the object (``request.headers.User-Agent``);
``""`` means the log does not carry it. ``time`` and ``status`` are required
in every line; a missing optional field (absent, ``null`` or ``"-"``) gives
the Event's empty value. The
default mapping fits Caddy's JSON access log.

In ``auto`` mode this format is chosen only for a JSON object line that holds
the mapping's time field and is not a Kong record (Kong is sniffed first).

Signals this format carries: whatever the mapping points at; the path is
taken as logged (concrete), without its query string, which becomes the
event's raw ``query`` (cut to ``MAX_QUERY_CHARS``). No request line is read:
``bad_request`` is set when the mapping has a method field and a line logs a
method there that is not made of ASCII letters, ``""`` and ``"-"`` included
(nginx writes one of them for the method of a request line it could not parse,
e.g. a TLS handshake); an absent or ``null`` method means not logged.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from gatewatch.flows.events import MAX_QUERY_CHARS, Chunk, Event, Reject
from gatewatch.flows.features import endpoint_of
from gatewatch.flows.parsers.base import MAX_EPOCH_S, MAX_RESPONSE_BYTES, raw_text
from gatewatch.flows.parsers.wso2 import parse_timestamp

_FIELDS = (
    "time", "status", "client_ip", "consumer", "consumer_name", "method", "path",
    "user_agent", "bytes_out", "latency_ms", "api",
)  # fmt: skip
_MISSING = object()


_JSON_PATH = r"^([^.\s]+(\.[^.\s]+)*)?$"


class JsonMapping(BaseModel):
    """``[input.json]``: where each field the pipeline uses sits in a JSON line (dotted paths)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    time: str = Field(
        "ts", min_length=1, pattern=_JSON_PATH,
        description="Dotted path of the event time in each JSON line (required). The defaults fit Caddy's JSON access log.",
    )  # fmt: skip
    time_format: Literal["iso8601", "epoch_s", "epoch_ms"] = Field(
        "epoch_s", description="iso8601 text (no zone: UTC), or seconds / milliseconds since the epoch (numbers)."
    )
    status: str = Field("status", min_length=1, pattern=_JSON_PATH, description="Path of the HTTP status sent (required).")
    client_ip: str = Field("request.client_ip", pattern=_JSON_PATH, description='Path of the client IP ("": not logged).')
    consumer: str = Field("user_id", pattern=_JSON_PATH, description='Path of the consumer id ("": every request anonymous).')
    consumer_name: str = Field("", pattern=_JSON_PATH, description='Path of the consumer display name ("": not logged).')
    method: str = Field("request.method", pattern=_JSON_PATH, description='Path of the HTTP method ("": not logged).')
    path: str = Field(
        "request.uri", pattern=_JSON_PATH, description='Path of the request target; its query string is kept apart, its first 512 characters ("": not logged).'
    )
    user_agent: str = Field(
        "request.headers.User-Agent", pattern=_JSON_PATH,
        description='Path of the raw User-Agent; a list of values is joined with ", " ("": not logged).',
    )  # fmt: skip
    bytes_out: str = Field("size", pattern=_JSON_PATH, description='Path of the response size in bytes ("": not logged).')
    latency_ms: str = Field("", pattern=_JSON_PATH, description='Path of the total latency in milliseconds ("": not logged).')
    api: str = Field("request.host", pattern=_JSON_PATH, description='Path of the API / virtual host name ("": not logged).')



class _Bad(ValueError):
    """A line that has the JSON shape but not the values the mapping needs."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class JsonParser:
    """Parse JSON object lines into events through a field mapping."""

    name: ClassVar[str] = "json"

    def __init__(
        self, *, max_line_bytes: int = 65536, raw_max_bytes: int = 4096, mapping: JsonMapping | None = None
    ) -> None:
        self.max_line_bytes = max_line_bytes
        self.raw_max_bytes = raw_max_bytes
        self.mapping = mapping if mapping is not None else JsonMapping()
        self._paths = {f: tuple(p.split(".")) if (p := getattr(self.mapping, f)) else () for f in _FIELDS}
        self._to_seconds = _TIME_PARSERS[self.mapping.time_format]

    def sniff(self, line: bytes) -> bool:
        """Tell whether the line is a JSON object holding the mapping's time field."""
        if line.lstrip()[:1] != b"{":
            return False
        try:
            obj = msgspec.json.decode(line)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return False
        return _get(obj, self._paths["time"]) is not _MISSING

    def parse_lines(self, chunk: Chunk, start: int, events: list[Event], rejects: list[Reject]) -> None:
        """Parse ``chunk.lines[start:]`` into ``events`` and ``rejects``."""
        lines = chunk.lines
        offsets: list[int] | None = None
        paths = self._paths
        to_seconds = self._to_seconds
        decode = msgspec.json.decode
        for i in range(start, len(lines)):
            line = lines[i]
            if len(line) > self.max_line_bytes:
                reason, detail = "line_too_long", f"{len(line)} bytes or more"
            elif not line.strip():
                reason, detail = "empty_line", ""
            else:
                try:
                    obj = decode(line)
                    if type(obj) is not dict:
                        raise _Bad("no_match", f"a JSON {type(obj).__name__}, not an object")
                    events.append(_event(obj, paths, to_seconds))
                    continue
                except _Bad as exc:
                    reason, detail = exc.reason, str(exc)
                except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
                    reason, detail = _why(exc, line)
            if offsets is None:
                offsets = chunk.line_offsets()
            rejects.append(
                Reject(chunk.source, chunk.first_line_no + i, offsets[i], reason, detail, raw_text(line, self.raw_max_bytes))
            )


def _why(exc: Exception, line: bytes) -> tuple[str, str]:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as ude:
        return "invalid_utf8", f"invalid byte at position {ude.start}"
    return "bad_json", str(exc)


def _get(obj: Any, path: tuple[str, ...]) -> Any:
    if not path:
        return _MISSING
    for key in path:
        if type(obj) is not dict:
            return _MISSING
        obj = obj.get(key, _MISSING)
        if obj is _MISSING:
            return _MISSING
    # "-" is the access-log convention for "no value"
    return _MISSING if obj is None or obj == "-" else obj


def _lookup(obj: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path`` as logged (``None`` and ``"-"`` included); ``_MISSING`` when absent."""
    if not path:
        return _MISSING
    for key in path:
        if type(obj) is not dict:
            return _MISSING
        obj = obj.get(key, _MISSING)
        if obj is _MISSING:
            return _MISSING
    return obj


def _method(obj: dict, path: tuple[str, ...]) -> tuple[str, bool]:
    """The method (``""`` when not logged) and whether it marks a malformed request (Event.bad_request).

    Absent or ``null``: not logged, not malformed. Logged but not ASCII letters, ``""`` and
    ``"-"`` included, malformed: nginx writes ``""`` (``escape=json``) or ``"-"`` (default
    escaping) for the method of a request line it could not parse (a TLS handshake, ``-``).
    """
    value = _lookup(obj, path)
    if value is _MISSING or value is None:
        return "", False
    if value == "-":
        return "", True
    if type(value) is not str:
        value = _text(obj, path, "method")
    return value, not (value.isalpha() and value.isascii())


def _text(obj: dict, path: tuple[str, ...], field: str) -> str:
    value = _get(obj, path)
    if value is _MISSING:
        return ""
    if type(value) is list and all(type(v) is str for v in value):
        return ", ".join(value)
    if type(value) is str:
        return value
    if type(value) in (int, float):
        return str(value)
    raise _Bad("bad_field", f"{field} ({'.'.join(path)}): expected text, got {type(value).__name__}")


def _number(obj: dict, path: tuple[str, ...], field: str, missing: float) -> float:
    value = _get(obj, path)
    if value is _MISSING:
        return missing
    if type(value) in (int, float):
        return value
    if type(value) is str:
        try:
            return float(value)
        except ValueError:
            pass
    raise _Bad("bad_field", f"{field} ({'.'.join(path)}): expected a number, got {value!r}")


def _bounded(obj: Any, path: tuple[str, ...], field: str, default: int) -> int:
    """A size or duration: a number below ``MAX_RESPONSE_BYTES`` (``1e999`` is infinite, no integer)."""
    value = _number(obj, path, field, default)
    if not -1 <= value < MAX_RESPONSE_BYTES:  # also NaN
        raise _Bad("bad_field", f"{field} ({'.'.join(path)}): {value!r} is out of range")
    return int(value)


def _epoch_s(value: Any) -> float:
    return float(value)


def _epoch_ms(value: Any) -> float:
    return float(value) / 1000


def _iso8601(value: Any) -> float:
    if type(value) is not str:
        msg = f"expected ISO-8601 text, got {value!r}"
        raise ValueError(msg)
    return parse_timestamp(value)


_TIME_PARSERS = {"epoch_s": _epoch_s, "epoch_ms": _epoch_ms, "iso8601": _iso8601}


def _event(obj: dict, paths: dict[str, tuple[str, ...]], to_seconds) -> Event:
    raw_time = _get(obj, paths["time"])
    if raw_time is _MISSING:
        raise _Bad("missing_field", f"time ({'.'.join(paths['time'])})")
    if type(raw_time) is bool:
        raise _Bad("bad_timestamp", f"not a time: {raw_time!r}")
    try:
        ts = to_seconds(raw_time)
    except (ValueError, TypeError, OverflowError) as exc:
        raise _Bad("bad_timestamp", str(exc)) from None
    if not 0 <= ts < MAX_EPOCH_S:  # also NaN
        raise _Bad("bad_timestamp", f"{raw_time!r} is not between 1970 and 9999")
    if _get(obj, paths["status"]) is _MISSING:
        raise _Bad("missing_field", f"status ({'.'.join(paths['status'])})")
    status = _number(obj, paths["status"], "status", 0)
    if status != int(status) or not 100 <= status <= 999:
        raise _Bad("bad_field", f"status: {status!r}")
    status = int(status)
    consumer = _text(obj, paths["consumer"], "consumer")
    resource, _, query = _text(obj, paths["path"], "path").partition("?")
    method, bad_request = _method(obj, paths["method"])
    # positional, in Event's field order: keywords cost 0.55 us an event
    return Event(
        ts,
        _text(obj, paths["api"], "api"),
        consumer,
        _text(obj, paths["consumer_name"], "consumer_name") or consumer,
        "",  # consumer_owner
        "",  # user
        _text(obj, paths["client_ip"], "client_ip"),
        method,
        resource,
        endpoint_of(resource),
        status,
        status == 401,  # auth_failure
        status == 429,  # throttled
        _bounded(obj, paths["bytes_out"], "bytes_out", 0),
        _bounded(obj, paths["latency_ms"], "latency_ms", -1),
        _text(obj, paths["user_agent"], "user_agent"),
        query[:MAX_QUERY_CHARS],
        bad_request,
    )
