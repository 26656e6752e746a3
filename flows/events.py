"""Record types that cross module boundaries.

Everything here is a msgspec ``Struct``: cheap to build, small in memory and
picklable, so it can cross Bytewax exchanges and live in recovery snapshots.
The per-line records are ``gc=False``: they hold only scalars and so cannot
form reference cycles, and untracked they cost the cyclic collector nothing
(collections over a million tracked events were a third of a replay's time).
This module imports nothing else from the project.
"""

from __future__ import annotations

import hashlib
from itertools import accumulate

import msgspec

# Event.query keeps this many characters of a longer query string (its start)
MAX_QUERY_CHARS = 512
# the protocol versions a well-formed request line may end with (Event.bad_request)
HTTP_VERSIONS = frozenset(("HTTP/0.9", "HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/2.0", "HTTP/3", "HTTP/3.0"))


def stable_id(*parts: object) -> str:
    """Deterministic id from parts, so a replayed output is recognisably the same."""
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:20]


class Chunk(msgspec.Struct, frozen=True, gc=False):
    """A run of complete lines read from one source, in order.

    ``lines`` hold the raw bytes of each line without its line terminator.
    ``first_line_no`` is the 1-based line number of ``lines[0]`` in the file
    instance it came from (it restarts at 1 after truncation or rotation) and
    ``first_offset`` is that line's byte offset. ``offsets`` holds every line's
    offset when a line is shorter than in the file (a ``"\r"`` before its
    ``"\n"`` taken off, an overlong line cut) or the lines were not one
    stream of bytes (from Kafka: each line's message offset); ``None`` when
    each line is followed by one ``"\n"`` in the file.
    """

    source: str
    first_line_no: int
    first_offset: int
    lines: list[bytes]
    offsets: list[int] | None = None
    # why the source could read no further in this file (a gzip stream cut short or corrupt);
    # such a chunk has no lines and starts where reading stopped
    unreadable: str = ""

    def line_offsets(self) -> list[int]:
        """The byte offset of each line in its file."""
        if self.offsets is not None:
            return self.offsets
        return list(accumulate((len(x) + 1 for x in self.lines[:-1]), initial=self.first_offset))


class Event(msgspec.Struct, frozen=True, gc=False):
    """One gateway request, normalised across log formats.

    Fields a format does not carry are empty strings (or -1 for numbers),
    never guessed: e.g. WSO2 ``apim:faulty`` events carry no client IP.

    ``query`` is the raw query string of the request target: what follows
    its first ``?``, without the ``?``, as logged (still percent-encoded),
    cut to its first :data:`MAX_QUERY_CHARS` characters. ``""`` when the
    target has none, or the format does not log it. Carried by ``combined``
    (access lines, and nginx error-log lines with a ``request: "..."``),
    ``kong`` (``request.uri``) and ``json`` (the mapping's ``path``);
    ``wso2`` logs the resource template, never a concrete URI, so its
    events have none.

    ``bad_request`` is True when the request was malformed. For
    ``combined`` access lines and nginx error-log ``request: "..."``: the
    request line is not ``METHOD TARGET VERSION`` with a method made of
    ASCII letters, a target with a path, and a version of
    :data:`HTTP_VERSIONS` (a TLS handshake
    sent to a plain-HTTP port, logged as ``"\\x16\\x03\\x01..."``; a bare
    ``"-"``; an empty request; ``"GET /"`` without a version;
    ``HTTP/9.9``; garbage). ``kong`` and ``json`` log no request line, only
    its method and target: True there when a method is logged that is not
    made of ASCII letters (for ``json``, ``""`` and ``"-"`` included, as
    nginx logs an unparsable request's method). False for every other
    event, and always for ``wso2`` and Apache error-log lines, which log no
    request line.
    """

    ts: float  # event time, seconds since the epoch (UTC)
    api: str  # display key of the API, e.g. "PizzaShackAPI:1.0.0"
    consumer: str  # stable consumer id (WSO2 applicationId, Kong consumer id)
    consumer_name: str
    consumer_owner: str
    user: str
    client_ip: str
    method: str
    resource: str  # URI template (WSO2) or concrete path
    endpoint: str  # the resource with concrete ids folded into {id} (gatewatch.flows.features.endpoint_of)
    status: int  # status returned to the client
    auth_failure: bool
    throttled: bool
    bytes_out: int
    latency_ms: int
    user_agent: str
    # trailing and defaulted, so every positional construction above stays valid
    query: str = ""  # raw query string, percent-encoded as logged, at most MAX_QUERY_CHARS
    bad_request: bool = False  # malformed request line (see above)


class Reject(msgspec.Struct, frozen=True, gc=False):
    """A line that could not become an :class:`Event`, and why."""

    source: str
    line_no: int
    offset: int
    reason: str  # a code from gatewatch.flows.parsers.REJECT_REASONS
    detail: str
    raw: str  # the line, decoded with backslash escapes and capped in size


class Finding(msgspec.Struct, frozen=True):
    """A detector's verdict on one subject for one window."""

    finding_id: str
    subject_type: str  # "consumer" | "ip" | "api"
    subject: str
    subject_name: str
    subject_owner: str
    kind: str
    detector: str
    score: float  # calibrated to [0, 1]
    window_start: float
    window_end: float
    detected_at: float  # wall clock
    reasons: list[str]
    evidence: str  # JSON: {feature: {"observed": x, "baseline": m, "spread": s}}


class Decision(msgspec.Struct, frozen=True):
    """One state of a policy decision about a subject (the store keeps every state)."""

    decision_id: str
    finding_id: str
    subject_type: str
    subject: str
    subject_name: str
    action: str  # "restrict" | "block" | "revert"
    tier: str  # "normal" | "elevated" | "restricted" | "blocked"
    previous_tier: str
    limit_per_min: int  # absolute limit pushed to the gateway (0 = block)
    mode: str  # "dry-run" | "enforce"
    status: str  # see sinks/schema.py
    reason: str
    inputs: str  # JSON: score, evidence, policy settings used
    actor: str  # "policy" or a person
    effective_from: float  # event time of the window that caused it
    expires_at: float  # event time after which it is reverted by itself
    created_at: float  # wall clock
    changed_at: float  # wall clock of this state
