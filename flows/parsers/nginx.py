"""nginx and Apache access logs (combined / common) and their auth-failure error-log lines.

Access line shape, after an optional syslog prefix::

    [vhost[:port] ]IP IDENT [USER ][TIME] "REQUEST" STATUS BYTES ["REFERER" "UA" [more fields]]

- the vhost prefix is nginx's ``$host`` / Apache's ``%v`` (the port is dropped);
- USER may be missing altogether (some nginx formats log ``IP - [TIME]``);
- the syslog prefix is ``[<PRI>]Sep 15 16:13:46 host tag[pid]: `` or its
  RFC 3339 form, as written by rsyslog / ``access_log syslog:``;
- common format (no referer/UA) and trailing extra fields are fine.

Error-log lines are requests only when they record a failed basic-auth login:
nginx ``user "x" was not found in "…"`` / ``user "x": password mismatch`` and
Apache ``AH01618: user x not found: /path`` / ``AH01617: user x:
authentication failure for "/path": …``. They become events with status 401
and ``auth_failure`` set; the API is nginx's ``server:`` name. Every other
error-log line is rejected as ``not_a_request``: it records no request of its
own (a 404 there is already a line in the access log). nginx writes the user
name and the request line as the client sent them, so a line with a second
``, client: …, server:`` field is rejected as ``ambiguous_client`` rather
than blame an address the client wrote. Error-log timestamps
carry no time zone; they are the server's local time and are read as UTC.

Signals this format carries: the concrete path (``resource``, without the
query string), the raw query string (``query``, cut to ``MAX_QUERY_CHARS``),
malformed request lines (``bad_request``: a TLS handshake or other binary sent
to a plain-HTTP port, ``"-"``, an empty request, a missing or unknown HTTP
version), the raw user agent, the client IP on every line, failures included.
Error-log lines carry the query and ``bad_request`` only when nginx logged the
``request: "..."`` (Apache logs just the path, without its query).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import ClassVar

from gatewatch.flows.events import MAX_QUERY_CHARS, Chunk, Event, Reject
from gatewatch.flows.features import endpoint_of
from gatewatch.flows.parsers.base import raw_text

_SYSLOG = r"(?:<\d{1,3}>)?(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\S+) \S+ [^\s:\[]+(?:\[\d+\])?: "
_QUOTED = r'[^"\\]*(?:\\.[^"\\]*)*'
_SYSLOG_PREFIX = re.compile(_SYSLOG)
# HTTP_VERSIONS as a pattern (a test checks they agree)
_VERSION = r"HTTP/(?:1\.[01]|[23](?:\.0)?|0\.9)"
# a request starting with a method: METHOD PATH[?QUERY][ VERSION], split by the regex, not in
# Python (a partition and a set lookup cost more): the path (Event.resource), the query's first
# MAX_QUERY_CHARS characters, and the version only when it is one of HTTP_VERSIONS closing the
# request. A request not starting with a method (TLS handshake, "-", "") takes the other
# alternative and sets none of these groups. Optional parts are written (?:X|), not (?:X)?:
# sre runs the latter through its general repeat, 0.3 us a line slower here.
_REQUEST = (
    rf'([A-Z][A-Za-z_-]*) ([^" ?]*)(?:\?([^" ]{{0,{MAX_QUERY_CHARS}}})[^" ]*|)(?: ({_VERSION})(?=")| [^"]*|)'
)
# no optional syslog group here: it would make every plain line slower to match
_ACCESS = re.compile(
    rf"(?:(\S+) )?([0-9A-Fa-f.:]+) \S+ (?:(\S+) )?\[([^\]]+)\] "
    rf'"(?:{_REQUEST}|{_QUOTED})" (\S+) (\S+)'
    rf'(?:\r?$| "{_QUOTED}" "({_QUOTED})"(?:\r?$| ))'
)
# the same match for a line without a backslash, where no quoted field can hold an escape: a
# quoted field is then [^"]* (with any "\\" in the line, _ACCESS is used); 15 % faster
_ACCESS_PLAIN = re.compile(
    r"(?:(\S+) )?([0-9A-Fa-f.:]+) \S+ (?:(\S+) )?\[([^\]]+)\] "
    rf'"(?:{_REQUEST}|[^"]*)" (\S+) (\S+)'
    r'(?:\r?$| "[^"]*" "([^"]*)"(?:\r?$| ))'
)
_NGINX_ERROR = re.compile(rf"(?:{_SYSLOG})?(\d{{4}}/\d\d/\d\d \d\d:\d\d:\d\d) \[[a-z]+\] \d+#\d+: (?:\*\d+ )?")
_NGINX_AUTH = re.compile(
    r'user "(.*?)"(?: was not found in ".*?"|: password mismatch), client: ([^,\s]+), server: ([^,]*)'
    rf'(?:, request: "(?:{_REQUEST}|([^"]*))")?'
)
# nginx logs the user name and the request line as the client sent them: a second client field
# means one was written by the client, and no address on the line is trusted
_CLIENT_FIELD = re.compile(r", client: [^,\s]+, server: ")
_APACHE_ERROR = re.compile(r"\[[A-Z][a-z]{2} ([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)(\.\d+)? (\d{4})\] \[([^\]]*)\]")
_APACHE_AUTH = re.compile(
    r"(?: \[pid [^\]]*\])?(?: [^[]*)? ?\[client ([^\]]+)\] (?:AH\d+: )?"
    r'user (\S+?)(?: not found: (\S+)|: authentication failure for "([^"]*)")'
)
_MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), start=1)}
_CLF_TIME = re.compile(r"(\d\d)/([A-Z][a-z]{2})/(\d{4}):(\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")
_EPOCH_BY_TEXT: dict[str, float] = {}


def parse_clf_time(text: str) -> float:
    """Parse an access-log time (``10/Oct/2000:13:55:36 -0700``) to epoch seconds.

    >>> parse_clf_time("05/Mar/2021:09:01:38 +0100")
    1614931298.0
    """
    ts = _EPOCH_BY_TEXT.get(text)
    if ts is None:
        m = _CLF_TIME.fullmatch(text)
        if m is None or m.group(2) not in _MONTHS:
            msg = f"not a day/Mon/year:hh:mm:ss +zone time: {text!r}"
            raise ValueError(msg)
        day, mon, year, hh, mm, ss, sign, zh, zm = m.groups()
        offset = timedelta(hours=int(zh), minutes=int(zm)) * (-1 if sign == "-" else 1)
        dt = datetime(int(year), _MONTHS[mon], int(day), int(hh), int(mm), int(ss), tzinfo=timezone(offset))
        if len(_EPOCH_BY_TEXT) > 65536:
            _EPOCH_BY_TEXT.clear()
        ts = _EPOCH_BY_TEXT[text] = dt.timestamp()
    return ts


def _local_as_utc(dt: datetime) -> float:
    # error logs write local time with no offset; it is taken as UTC, as the server's clock usually is
    return dt.replace(tzinfo=timezone.utc).timestamp()


class CombinedParser:
    """Parse nginx / Apache access lines and basic-auth failures from their error logs."""

    name: ClassVar[str] = "combined"

    def __init__(self, *, max_line_bytes: int = 65536, raw_max_bytes: int = 4096) -> None:
        self.max_line_bytes = max_line_bytes
        self.raw_max_bytes = raw_max_bytes

    def sniff(self, line: bytes) -> bool:
        """Tell whether the line is an access line or an nginx / Apache error-log line.

        >>> CombinedParser().sniff(b'1.2.3.4 - - [05/Mar/2021:09:01:38 +0100] "GET / HTTP/1.0" 200 15')
        True
        >>> CombinedParser().sniff(b'{"request": {"uri": "/"}}')
        False
        """
        text = line.decode("utf-8", "replace")
        m = _SYSLOG_PREFIX.match(text)
        pos = 0 if m is None else m.end()
        return any(p.match(text, pos) is not None for p in (_ACCESS, _NGINX_ERROR, _APACHE_ERROR))

    def parse_lines(self, chunk: Chunk, start: int, events: list[Event], rejects: list[Reject]) -> None:
        """Parse ``chunk.lines[start:]`` into ``events`` and ``rejects``."""
        lines = chunk.lines
        offsets: list[int] | None = None
        plain, escaped = _ACCESS_PLAIN.match, _ACCESS.match
        epoch_of = _EPOCH_BY_TEXT.get
        max_bytes = self.max_line_bytes
        append = events.append
        for i in range(start, len(lines)):
            line = lines[i]
            if len(line) > max_bytes:
                reason, detail = "line_too_long", f"{len(line)} bytes or more"
            else:
                try:
                    text = line.decode()
                except UnicodeDecodeError as exc:
                    reason, detail = "invalid_utf8", f"invalid byte at position {exc.start}"
                else:
                    access = escaped if "\\" in text else plain
                    m = access(text)
                    if m is None and (prefix := _SYSLOG_PREFIX.match(text)) is not None:
                        m = access(text, prefix.end())
                    if m is not None:
                        vhost, ip, user, when, method, resource, query, version, status, size, ua = m.groups()
                        reason = detail = ""
                        if not (len(status) == 3 and status.isascii() and status.isdigit()):
                            reason, detail = "bad_field", f"status {status!r}"
                        elif not (size == "-" or (size.isascii() and size.isdigit() and len(size) <= 12)):
                            reason, detail = "bad_field", f"bytes {size!r}"  # 12 digits: under 1 TiB
                        elif (ts := epoch_of(when)) is None:
                            try:
                                ts = parse_clf_time(when)
                            except ValueError as exc:
                                reason, detail = "bad_timestamp", str(exc)
                        if not reason:
                            code = int(status)
                            user = "" if user is None or user == "-" else user
                            if method is None:  # a request line that does not start with a method
                                resource = query = ""
                                bad_request = True
                            else:
                                if query is None:
                                    query = ""
                                # version: None unless one of HTTP_VERSIONS ends the request
                                bad_request = version is None or not resource or not method.isalpha()
                            # positional, in Event's field order: keywords cost 0.55 us an event
                            append(
                                Event(
                                    ts,
                                    "" if vhost is None else vhost.rpartition(":")[0] or vhost,  # api
                                    user,  # consumer
                                    user,  # consumer_name
                                    "",  # consumer_owner
                                    user,
                                    ip,
                                    method or "",
                                    resource,
                                    endpoint_of(resource),
                                    code,
                                    code == 401,  # auth_failure
                                    code == 429,  # throttled
                                    0 if size == "-" else int(size),  # bytes_out
                                    -1,  # latency_ms
                                    "" if ua is None or ua == "-" else ua,
                                    query,
                                    bad_request,
                                )
                            )
                            continue
                    else:
                        reason, detail, event = _error_line(text)
                        if event is not None:
                            append(event)
                            continue
            if offsets is None:
                offsets = chunk.line_offsets()
            rejects.append(
                Reject(chunk.source, chunk.first_line_no + i, offsets[i], reason, detail, raw_text(line, self.raw_max_bytes))
            )


def _error_line(text: str) -> tuple[str, str, Event | None]:
    """Turn an error-log auth failure into an event; say why any other line is not one."""
    m = _NGINX_ERROR.match(text)
    if m is not None:
        auth = _NGINX_AUTH.match(text, m.end())
        if auth is None:
            return "not_a_request", "nginx error-log line without a basic-auth failure", None
        try:
            ts = _local_as_utc(datetime.strptime(m.group(1), "%Y/%m/%d %H:%M:%S"))  # noqa: DTZ007 - see _local_as_utc
        except ValueError as exc:
            return "bad_timestamp", str(exc), None
        user, ip, server, method, resource, query, version, other = auth.groups()
        if _CLIENT_FIELD.search(text, auth.end(2)) is not None:
            return "ambiguous_client", "two client fields: the user name or the request holds one", None
        api = "" if server == "_" else server
        # no request: "..." at all: nothing to judge; one not starting with a method: malformed
        bad = other is not None or (
            method is not None and (version is None or not resource or not method.isalpha())
        )
        return "", "", _auth_failure(ts, api, user, ip, method or "", resource or "", query or "", bad)
    m = _APACHE_ERROR.match(text)
    if m is not None:
        auth = _APACHE_AUTH.match(text, m.end())
        if auth is None:
            return "not_a_request", "Apache error-log line without a basic-auth failure", None
        when, fraction, year, module = m.groups()
        try:
            dt = datetime.strptime(f"{when} {year}", "%b %d %H:%M:%S %Y")  # noqa: DTZ007 - see _local_as_utc
        except ValueError as exc:
            return "bad_timestamp", str(exc), None
        ts = _local_as_utc(dt.replace(microsecond=int(fraction[1:7].ljust(6, "0")) if fraction else 0))
        client, user, path, failed_path = auth.groups()
        if ":" in module:  # 2.4 style ([auth_basic:error]) always logs the client as ip:port
            client = client.rpartition(":")[0]
        # Apache logs the path only (r->uri, no query string, no request line): bad_request stays False
        resource, _, query = (path or failed_path).partition("?")
        return "", "", _auth_failure(ts, "", user, client, "", resource, query[:MAX_QUERY_CHARS], False)
    if not text.strip():
        return "empty_line", "", None
    return "no_match", "", None


def _auth_failure(
    ts: float, api: str, user: str, ip: str, method: str, resource: str, query: str, bad_request: bool
) -> Event:
    return Event(
        ts=ts,
        api=api,
        consumer=user,
        consumer_name=user,
        consumer_owner="",
        user=user,
        client_ip=ip,
        method=method,
        resource=resource,
        endpoint=endpoint_of(resource),
        status=401,
        auth_failure=True,
        throttled=False,
        bytes_out=0,
        latency_ms=-1,
        user_agent="",
        query=query,
        bad_request=bad_request,
    )
