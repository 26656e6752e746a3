"""The decision and risk API: what gatewatch knows, asked for at request or login time.

``gatewatch run`` serves it when ``[api] enabled = true``, in a process of its own, so its
callers never wait on the pipeline and the pipeline never waits on them. It reads the
control plane's SQLite file (WAL: a reader never blocks the writer) every ``refresh_ms``
into memory and answers from there:

- ``GET /v1/decisions`` and ``GET /v1/decisions/stream``: CrowdSec's Local API as its
  bouncers call it (nginx, Traefik, HAProxy, Caddy, firewall, custom). The IP decisions in
  force are served: ``ban`` for a block, ``[api] restricted_type`` for a restriction, for
  what is left of their TTL; a stream reports each bouncer the decisions added and deleted
  (expired, reverted) since its last poll.
- ``GET /v1/allow?ip=``: 200, or 403 for an IP that is banned, for nginx's ``auth_request``.
- ``POST /v1/score``: a risk score in [0, 1] for one request (consumer, client IP, endpoint),
  the tier gatewatch has decided for its subjects, their limit per minute and the reasons,
  for a gateway handler or an identity server's adaptive-authentication script.

Callers authenticate with ``X-Api-Key`` (as bouncers do) or ``Authorization: Bearer``;
keys come from ``[api] keys_env`` or ``keys_file`` (``NAME:KEY``), never from the config.
The API counts requests per caller and writes the counts to ``api-stats.json`` in the
store for the dashboard's health page; it never reveals a key or a consumer's owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import socket
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timezone
from hashlib import blake2b
from pathlib import Path
from urllib.parse import unquote, unquote_plus

import httptools
import msgspec

from gatewatch.detectors.base import subnet
from gatewatch.flows.config import ApiConfig, Config
from gatewatch.flows.control.policy import LIVE, RANK
from gatewatch.flows.credentials import CredentialsError, name_of, read_named
from gatewatch.flows.events import Decision, Finding
from gatewatch.flows.features import endpoint_of
from gatewatch.sinks.control import open_read_only

STATS_FILE = "api-stats.json"
ENFORCED = ("approved", "applied")  # decisions a gateway (or a bouncer) enforces
# decisions whose tier /v1/score reports: not those awaiting review
ADVISED = ("recorded", "approved", "applied")
SUBNET_WEIGHT = 0.5  # another IP of the same /24 (/64) flagged: half its score
ENDPOINT_WEIGHT = 0.75  # the endpoint itself under attack (distributed stuffing, scraping)
CALLER_FAILED_LOGINS = 5  # failed logins the caller reports that make a request worth a second factor
_STATS_EVERY_S = 5.0
_CHANGES_KEPT = 100_000  # stream changes remembered; a bouncer further behind gets a full resync
_ORIGIN = "gatewatch"
_ENCODE = msgspec.json.encode
_SCORED_KEPT = 4096  # /v1/score answers cached a snapshot
_ENDPOINTS_KEPT = 4096  # /v1/score endpoint reasons cached a snapshot (concrete paths are many)
Scored = tuple[tuple[float, str], ...]  # reasons for a /v1/score answer, each with its score
# what /v1/score takes from a subject the snapshot knows nothing of
_UNKNOWN: tuple[Scored, Scored, tuple, tuple] = ((), (), (), ())


def go_duration(seconds: float) -> str:
    """A duration as Go's ``time.Duration`` prints it, which CrowdSec bouncers parse.

    >>> go_duration(3599.5), go_duration(42), go_duration(0)
    ('59m59s', '42s', '0s')
    """
    s = max(int(seconds), 0)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{s}s"
    return f"{m}m{s}s" if m else f"{s}s"


def numeric_id(decision_id: str) -> int:
    """A stable positive 63-bit id for a decision (CrowdSec's ids are integers)."""
    return int.from_bytes(blake2b(decision_id.encode(), digest_size=8).digest(), "big") >> 1


# -- keys ------------------------------------------------------------------


class ApiKeysError(CredentialsError):
    """The API keys cannot be read or are malformed (the message names the key, never a value)."""


def read_keys(api: ApiConfig, environ: dict[str, str] | os._Environ = os.environ) -> dict[str, str]:
    """``{key: caller name}`` from ``keys_env`` or ``keys_file``; raise :class:`ApiKeysError` if unusable."""
    if api.keys_env and not environ.get(api.keys_env, ""):
        msg = f"api.keys_env: environment variable {api.keys_env} is not set"
        raise ApiKeysError(msg)
    try:
        keys = read_named("api.keys_env", api.keys_env, "api.keys_file", api.keys_file, environ)
    except CredentialsError as exc:
        raise ApiKeysError(str(exc)) from None
    if keys is None:
        msg = "api.keys_env: no environment variable or file is configured"
        raise ApiKeysError(msg)
    return keys


# -- live state --------------------------------------------------------------


@dataclass(frozen=True)
class Signal:
    """A subject's strongest recent finding."""

    score: float
    kind: str
    reasons: tuple[str, ...]
    window_end: float

    @property
    def because(self) -> str:
        return "; ".join(self.reasons)


@dataclass(frozen=True)
class Verdict:
    """A decision as /v1/score reports it."""

    decision_id: str
    subject_type: str
    tier: str
    limit_per_min: int
    score: float  # the finding's that caused it
    reason: str

    @classmethod
    def of(cls, d: Decision) -> Verdict:
        score = float(json.loads(d.inputs or "{}").get("score", 0.0))
        return cls(d.decision_id, d.subject_type, d.tier, d.limit_per_min, score, d.reason[:300])


@dataclass
class Snapshot:
    """What the API answers from, rebuilt on every refresh (never modified after)."""

    watermark: float  # event time the pipeline has reached
    served: dict[int, dict]  # CrowdSec decisions in force, by numeric id
    by_ip: dict[str, list[dict]]  # the "Ip"-scoped ones by their value: one lookup a request
    ranges: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, dict]]  # the "Range"-scoped ones
    verdicts: dict[tuple[str, str], list[Verdict]]  # advised decisions by (subject_type, subject)
    pending: dict[tuple[str, str], list[Verdict]]  # decisions waiting for a person
    signals: dict[tuple[str, str], Signal]
    subnets: dict[str, dict[str, float]]  # subnet -> {flagged IP: its score}
    # GET /v1/decisions?ip= answers, encoded once a snapshot: by IP for the "Ip"-scoped decisions
    # (with no range decision in force, an IP not in it is answered b"null")
    answers: dict[str, bytes] = field(default_factory=dict)
    as_of: str = ""  # the watermark as /v1/score reports it
    # what /v1/score takes from each subject asked about, worked out once a snapshot (only
    # subjects it knows are kept: at most as many as its signals, verdicts and pending ones)
    _subjects: dict[tuple[str, str], tuple] = field(default_factory=dict)
    # the reason a flagged subnet gives an IP of it that is not flagged itself, by subnet
    _neighbours: dict[str, Scored] = field(default_factory=dict)
    # the reason an endpoint under attack gives, by (api, method, resource) (at most _ENDPOINTS_KEPT)
    _endpoints: dict[tuple[str, str, str], Scored] = field(default_factory=dict)
    # /v1/score answers given from this snapshot, by what they depend on (at most _SCORED_KEPT):
    # a gateway asks about the same consumer and IP for request after request
    scored: dict[tuple, bytes] = field(default_factory=dict)

    def subject(self, key: tuple[str, str]) -> tuple[Scored, Scored, tuple[Verdict, ...], tuple[str, ...]]:
        """A subject's finding as a scored reason, its decisions' scored reasons, its decisions and the reasons of those awaiting review."""
        known = self._subjects.get(key)
        if known is not None:
            return known
        s = self.signals.get(key)
        decided, waiting = self.verdicts.get(key, ()), self.pending.get(key, ())
        if s is None and not decided and not waiting:
            return _UNKNOWN  # most IPs asked about: nothing to work out, nothing to keep
        said = () if s is None else ((s.score, f"{key[0]} {s.kind} {s.score:.2f}: {s.because}"),)
        judged = tuple(
            (v.score, f"{v.subject_type} {v.tier}: {v.reason}") for v in decided if v.tier != "elevated"
        )
        waits = tuple(f"{v.subject_type} {v.tier} waiting for review: {v.reason}" for v in waiting)
        known = self._subjects[key] = (said, judged, tuple(decided), waits)
        return known

    def neighbours(self, ip: str) -> Scored:
        """The scored reason the other flagged IPs of ``ip``'s /24 (/64) give it, if there are any."""
        net = subnet(ip)
        flagged = self.subnets.get(net)
        if not flagged:
            return ()
        if ip in flagged:  # rare: its own score is not its neighbours'
            others = [score for other, score in flagged.items() if other != ip]
            return _neighbours_reason(net, others) if others else ()
        known = self._neighbours.get(net)
        if known is None:  # every IP of the subnet not flagged itself gets the same reason
            known = self._neighbours[net] = _neighbours_reason(net, flagged.values())
        return known

    def endpoint(self, api: str, method: str, resource: str) -> Scored:
        """The scored reason the endpoint called gives if it is under attack (distributed stuffing, scraping)."""
        key = (api, method, resource)
        known = self._endpoints.get(key)
        if known is not None:
            return known
        name = " ".join(p for p in (api, method.upper(), endpoint_of(resource)) if p)
        s = self.signals.get(("api", name))
        known = ()
        if s is not None:
            known = ((s.score * ENDPOINT_WEIGHT, f"endpoint {name} under {s.kind}: {s.because}"),)
        if len(self._endpoints) < _ENDPOINTS_KEPT:
            self._endpoints[key] = known
        return known


def _neighbours_reason(net: str, scores: Collection[float]) -> Scored:
    return ((max(scores) * SUBNET_WEIGHT, f"{len(scores)} other IP(s) of {_net_text(net)} flagged"),)


class LiveState:
    """The control plane's decisions and recent findings, as the API serves them (no I/O)."""

    def __init__(self, restricted_type: str = "throttle", score_window_s: float = 3600.0) -> None:
        self.restricted_type = restricted_type
        self.score_window_s = score_window_s
        self.findings: dict[tuple[str, str], deque[tuple[float, Finding]]] = {}
        self.snapshot = Snapshot(0.0, {}, {}, [], {}, {}, {}, {}, {}, _utc_text(0.0))
        self._changes_lock = threading.Lock()  # update() runs in a thread while stream() reads the changes
        # (seq, "new" | "deleted", decision): what each bouncer's next poll is told
        self.changes: deque[tuple[int, str, dict]] = deque(maxlen=_CHANGES_KEPT)
        self.seq = 0

    def update(
        self, decisions: list[Decision], findings: list[Finding], watermark: float | None, now: float
    ) -> None:
        """Take the live decisions (current states) and the findings recorded since the last update.

        Time is the pipeline's event time (``watermark``); before it has one, the newest
        decision's, else the wall clock.
        """
        if watermark is not None:
            mark = watermark
        else:
            mark = max((d.effective_from for d in decisions), default=now)
        for f in findings:
            self.findings.setdefault((f.subject_type, f.subject), deque()).append((f.window_end, f))
        since = mark - self.score_window_s
        signals: dict[tuple[str, str], Signal] = {}
        subnets: dict[str, dict[str, float]] = {}
        for key in list(self.findings):
            recent = self.findings[key]
            while recent and recent[0][0] <= since:
                recent.popleft()
            if not recent:
                del self.findings[key]
                continue
            best = max((f for _, f in recent), key=lambda f: f.score)
            signals[key] = Signal(best.score, best.kind, tuple(best.reasons[:3]), best.window_end)
            if key[0] == "ip":
                subnets.setdefault(subnet(key[1]), {})[key[1]] = best.score
        verdicts: dict[tuple[str, str], list[Verdict]] = {}
        pending: dict[tuple[str, str], list[Verdict]] = {}
        served: dict[int, dict] = {}
        for d in decisions:
            key = (d.subject_type, d.subject)
            if d.status in ADVISED:
                verdicts.setdefault(key, []).append(Verdict.of(d))
            elif d.status == "pending_review":
                pending.setdefault(key, []).append(Verdict.of(d))
            if (
                d.subject_type == "ip"
                and d.mode == "enforce"
                and d.status in ENFORCED
                and d.tier in ("restricted", "blocked")
                and d.expires_at > mark
            ):
                served[numeric_id(d.decision_id)] = self._crowdsec(d, mark, now)
        old = self.snapshot.served
        changes = [("deleted", {**old[i], "duration": "0s"}) for i in old.keys() - served.keys()]
        changes += [("new", served[i]) for i in served.keys() - old.keys()]
        by_ip: dict[str, list[dict]] = {}
        ranges = []
        for d in served.values():
            if d["scope"] == "Ip":
                by_ip.setdefault(d["value"], []).append(d)
            else:
                with contextlib.suppress(ValueError):  # a subject that is no network matches no IP
                    ranges.append((ipaddress.ip_network(d["value"], strict=False), d))
        answers = {ip: _ENCODE(ds) for ip, ds in by_ip.items()}
        snapshot = Snapshot(
            mark, served, by_ip, ranges, verdicts, pending, signals, subnets, answers, _utc_text(mark)
        )
        with self._changes_lock:  # the changes and the snapshot they lead to, together
            for kind, d in changes:
                self.seq += 1
                self.changes.append((self.seq, kind, d))
            self.snapshot = snapshot

    def _crowdsec(self, d: Decision, mark: float, now: float) -> dict:
        left = max(d.expires_at - mark, 0.0)
        scope = "Range" if "/" in d.subject else "Ip"
        return {
            "id": numeric_id(d.decision_id),
            "uuid": d.decision_id,
            "origin": _ORIGIN,
            "type": "ban" if d.tier == "blocked" else self.restricted_type,
            "scope": scope,
            "value": d.subject,
            "duration": go_duration(left),
            "until": _utc_text(now + left),
            "scenario": f"{_ORIGIN}/{_kind(d)}",
            "simulated": False,
        }

    # -- CrowdSec ----------------------------------------------------------

    def stream(self, since_seq: int | None, scopes: set[str]) -> tuple[dict, int]:
        """``{"new": [...], "deleted": [...]}`` since ``since_seq`` (None: everything in force), and the new cursor."""
        with self._changes_lock:  # the changes and the snapshot they lead to, as of one moment
            snap, seq_now, changes = self.snapshot, self.seq, list(self.changes)
        oldest = changes[0][0] if changes else seq_now + 1
        if since_seq is None or since_seq < oldest - 1:  # a new bouncer, or one further behind than the log
            new, deleted = list(snap.served.values()), []
        else:
            latest: dict[int, tuple[str, dict]] = {}
            for seq, kind, d in changes:
                if seq > since_seq:
                    latest[d["id"]] = (kind, d)
            new = [d for kind, d in latest.values() if kind == "new"]
            deleted = [d for kind, d in latest.values() if kind == "deleted"]
        new = [d for d in new if d["scope"].lower() in scopes]
        deleted = [d for d in deleted if d["scope"].lower() in scopes]
        return {"new": new or None, "deleted": deleted or None}, seq_now

    def decisions_for(self, ip: str) -> bytes:
        """The encoded ``GET /v1/decisions?ip=`` answer for a canonical IP (see :func:`canonical_ip`)."""
        snap = self.snapshot
        if not snap.ranges:  # the usual case: one lookup, the answer encoded once a snapshot
            return snap.answers.get(ip, b"null")
        return _ENCODE(self.matching({"ip": ip}) or None)

    def matching(self, params: dict[str, str]) -> list[dict]:
        """The decisions in force matching a ``GET /v1/decisions`` query (``ip``, ``range``, ``scope``, ``value``, ``type``)."""
        snap = self.snapshot
        if "ip" in params:  # the query bouncers in live mode make for every request
            ip = ipaddress.ip_address(params["ip"])
            out = snap.by_ip.get(str(ip), []) + [d for net, d in snap.ranges if ip in net]
        else:
            out = list(snap.served.values())
        if "range" in params:
            out = [d for d in out if _covers(params["range"], d["value"])]
        if "scope" in params:
            out = [d for d in out if d["scope"].lower() == params["scope"].lower()]
        if "value" in params:
            out = [d for d in out if d["value"] == params["value"]]
        if "type" in params:
            out = [d for d in out if d["type"] == params["type"]]
        return out

    # -- risk --------------------------------------------------------------

    def score(
        self, request: ScoreRequest, thresholds: dict[str, float], snap: Snapshot | None = None
    ) -> dict:
        """Score one request from its subjects' live state (see the module docstring)."""
        snap = snap or self.snapshot
        ctx, cur = request.api_context, request.current_request
        parts: list[tuple[float, str]] = []  # (score, reason)
        decided: list[Verdict] = []
        waiting: list[str] = []  # reasons of the decisions awaiting review
        judged: list[tuple[float, str]] = []  # what the decisions on the subjects say
        for key in (("ip", cur.ip), ("consumer", ctx.consumer)):
            if key[1]:
                said, its_judged, its_decided, its_waiting = snap.subject(key)
                parts += said
                judged += its_judged
                decided += its_decided
                waiting += its_waiting
        if cur.ip:
            parts += snap.neighbours(cur.ip)
        if ctx.api and ctx.resource:
            parts += snap.endpoint(ctx.api, ctx.method, ctx.resource)
        hist = request.historical_metrics
        if hist is not None and hist.failed_logins >= CALLER_FAILED_LOGINS:
            span = f" in {hist.window_s} s" if hist.window_s else ""
            parts.append(
                (thresholds["elevated"], f"{hist.failed_logins} failed logins{span} reported by the caller")
            )
        tier, limit = "normal", None
        if decided:
            parts += judged
            tier = max((d.tier for d in decided), key=RANK.__getitem__)
            if tier == "blocked":
                limit = 0
            elif tier == "restricted":
                limit = min(d.limit_per_min for d in decided if d.tier == "restricted")
        parts.sort(key=_first, reverse=True)  # stable: equal scores keep their order
        score = parts[0][0] if parts else 0.0  # the highest
        if tier == "normal" and score >= thresholds["elevated"]:
            tier = "elevated"  # no decision on these subjects: at most a second factor, never a block
        reasons = [r for _, r in parts]
        reasons += waiting
        return {
            "score": round(min(score, 1.0), 4),
            "tier": tier,
            "limit_per_min": limit,
            "reasons": reasons[:5],
            "decisions": sorted({d.decision_id for d in decided}),
            "as_of": snap.as_of,
        }


def _first(part: tuple[float, str]) -> float:
    return part[0]


def _utc_text(ts: float) -> str:
    """Epoch seconds as RFC 3339 UTC, to the second: ``2026-12-05T10:00:00Z``."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _kind(d: Decision) -> str:
    """The finding kind behind a decision (its reason starts with it)."""
    return d.reason.split(" ", 1)[0] if d.reason else d.action


def _net_text(net: str) -> str:
    return net if "/" in net else f"{net}.0/24"


def _covers(outer: str, inner: str) -> bool:
    """Whether ``inner`` (an IP or range) lies in ``outer`` (an IP or range)."""
    try:
        o = ipaddress.ip_network(outer, strict=False)
        i = ipaddress.ip_network(inner, strict=False)
    except ValueError:
        return False
    return o.version == i.version and i.subnet_of(o)


# -- request bodies ------------------------------------------------------------


class ApiContext(msgspec.Struct):
    api: str = ""  # as gatewatch names it: "PizzaShackAPI:1.0.0", a Kong service, an nginx host
    consumer: str = ""  # WSO2 application id, Kong consumer id, basic-auth user
    method: str = ""
    resource: str = ""  # the path or resource template called


class CurrentRequest(msgspec.Struct):
    ip: str = ""
    user_agent: str = ""
    timestamp: float | str | None = None


class HistoricalMetrics(msgspec.Struct):
    failed_logins: int = 0
    requests: int = 0
    window_s: int = 0


class ScoreRequest(msgspec.Struct):
    api_context: ApiContext = msgspec.field(default_factory=ApiContext)
    current_request: CurrentRequest = msgspec.field(default_factory=CurrentRequest)
    historical_metrics: HistoricalMetrics | None = None


_SCORE_DECODER = msgspec.json.Decoder(ScoreRequest)
_DECISION_DECODER = msgspec.json.Decoder(Decision)
_FINDING_DECODER = msgspec.json.Decoder(Finding)


def parse_score_request(body: bytes) -> ScoreRequest:
    """Decode and check a ``POST /v1/score`` body; raise ``ValueError`` with a message for the caller."""
    try:
        req = _SCORE_DECODER.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ValueError(str(exc)) from None
    ip = req.current_request.ip
    if ip:
        canonical = canonical_ip(ip)
        if canonical is None:
            msg = f"current_request.ip: not an IP address: {ip[:64]!r}"
            raise ValueError(msg)
        req.current_request.ip = canonical  # as findings name it: "2001:DB8::5" is "2001:db8::5"
    if not (ip or req.api_context.consumer):
        msg = "give current_request.ip or api_context.consumer (or both)"
        raise ValueError(msg)
    return req


# -- reading the control plane -------------------------------------------------


class ControlReader:
    """Reads the control plane's file read-only: live decisions, new findings, the watermark."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.con: sqlite3.Connection | None = None
        self.inbox_seq = 0
        self.data_version = -1

    def read(self) -> tuple[list[Decision], list[Finding], float | None] | None:
        """The live decisions, the findings since the last read and the watermark; None if unchanged."""
        if self.con is None:
            self.con = open_read_only(self.store)
            if self.con is None:
                return [], [], None
        con = self.con
        version = con.execute("PRAGMA data_version").fetchone()[0]
        if version == self.data_version:
            return None
        marks = ",".join("?" * len(LIVE))
        dec = _DECISION_DECODER.decode
        decisions = [
            dec(b) for (b,) in con.execute(f"SELECT body FROM decisions WHERE status IN ({marks})", LIVE)
        ]
        fdec = _FINDING_DECODER.decode
        rows = con.execute(
            "SELECT seq, body FROM inbox WHERE seq > ? ORDER BY seq", (self.inbox_seq,)
        ).fetchall()
        findings = [fdec(b) for _, b in rows]
        if rows:
            self.inbox_seq = rows[-1][0]
        mark = con.execute("SELECT value FROM meta WHERE key = 'watermark'").fetchone()
        self.data_version = version
        return decisions, findings, float(mark[0]) if mark else None


# -- HTTP ----------------------------------------------------------------------


@dataclass
class Counters:
    """Requests per caller, for the dashboard's health page."""

    started_at: float = field(default_factory=time.time)
    callers: dict[str, dict[str, float]] = field(default_factory=dict)
    forbidden: int = 0
    bad_requests: int = 0
    refused_connections: int = 0  # past api.max_connections
    requests: int = 0

    def count(self, caller: str, status: int) -> None:
        self.requests += 1
        c = self.callers.setdefault(caller, {"requests": 0, "errors": 0, "last_seen": 0.0})
        c["requests"] += 1
        if status >= 400:
            c["errors"] += 1
        c["last_seen"] = time.time()

    def write(self, store: Path) -> None:
        body = {
            "started_at": self.started_at,
            "updated_at": time.time(),
            "requests": self.requests,
            "forbidden": self.forbidden,
            "bad_requests": self.bad_requests,
            "refused_connections": self.refused_connections,
            "callers": self.callers,
        }
        tmp = store / (STATS_FILE + ".tmp")
        tmp.write_text(json.dumps(body), encoding="utf-8")
        tmp.replace(store / STATS_FILE)


def read_stats(store: str | os.PathLike[str]) -> dict | None:
    """The counters the API process last wrote to the store (:meth:`Counters.write`); None if it never ran."""
    try:
        return json.loads((Path(store) / STATS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class DecisionApi:
    """The API's requests, answered from the live state it refreshes in the background (one per process).

    :meth:`respond` is the whole of it, HTTP aside: :class:`_Connection` parses requests and
    writes the answers.
    """

    def __init__(self, cfg: Config, keys: dict[str, str]) -> None:
        api = cfg.api
        self.store = cfg.store.path
        self.keys = keys
        self.refresh_s = api.refresh_ms / 1000
        self.max_body = api.max_body_bytes
        self.max_connections = api.max_connections
        p = cfg.policy
        self.thresholds = {
            "elevated": p.elevate_score,
            "restricted": p.restrict_score,
            "blocked": p.block_score,
        }
        self.state = LiveState(api.restricted_type, api.score_window_s)
        self.reader = ControlReader(self.store)
        self.counters = Counters()
        self.cursors: dict[str, int] = {}  # caller -> stream position

    def refresh(self) -> None:
        try:
            read = self.reader.read()
        except sqlite3.Error:
            # a control file being created (no tables yet) or replaced: read it afresh next time
            self.reader.con = None
            return
        if read is not None:
            self.state.update(*read, now=time.time())

    async def refresher(self) -> None:
        """Refresh the state every ``refresh_ms`` (in a thread: SQLite), write the counters every few seconds."""
        last_stats = 0.0
        while True:
            await asyncio.to_thread(self.refresh)
            now = time.monotonic()
            if now - last_stats >= _STATS_EVERY_S:
                last_stats = now
                with contextlib.suppress(OSError):
                    self.counters.write(self.store)
            await asyncio.sleep(self.refresh_s)

    def respond(
        self, method: str, path: str, query: str, presented: str, body: bytes | None
    ) -> tuple[int, bytes]:
        """The status and JSON body for one request; ``presented`` is the key sent, ``body`` None if it was too large."""
        caller = name_of(self.keys, presented) if presented else None
        if caller is None:
            self.counters.forbidden += 1
            return 403, _FORBIDDEN
        status, answer = self._route(method, path.rstrip("/"), query, caller, body)
        self.counters.count(caller, status)
        if status == 400:
            self.counters.bad_requests += 1
        return status, answer if type(answer) is bytes else _ENCODE(answer)

    def _score(self, request: ScoreRequest) -> bytes:
        """The encoded /v1/score answer, from the snapshot's cache when a question with the same answer was asked of it."""
        snap = self.state.snapshot
        ctx, cur, hist = request.api_context, request.current_request, request.historical_metrics
        # what the answer depends on: the subjects, the endpoint, the caller's count if it counts
        reported = (
            (hist.failed_logins, hist.window_s)
            if hist and hist.failed_logins >= CALLER_FAILED_LOGINS
            else None
        )
        # an IP the snapshot knows nothing of counts only by its flagged neighbours: a new client IP
        # shares its answer with every other such IP of its subnet, and of every subnet flagged nowhere
        ip: str | Scored = cur.ip
        if ip and snap.subject(("ip", ip)) is _UNKNOWN:
            ip = snap.neighbours(ip)
        key = (ip, ctx.consumer, ctx.api, ctx.method, ctx.resource, reported)
        answer = snap.scored.get(key)
        if answer is None:
            answer = _ENCODE(self.state.score(request, self.thresholds, snap))
            if len(snap.scored) < _SCORED_KEPT:
                snap.scored[key] = answer
        return answer

    def _route(
        self, method: str, path: str, query: str, caller: str, body: bytes | None
    ) -> tuple[int, object]:
        params = query_params(query)
        if path == "/v1/decisions" and method in ("GET", "HEAD"):
            if "ip" in params:
                ip = canonical_ip(params["ip"])
                if ip is None:
                    return 400, {"message": f"ip: not an IP address: {params['ip'][:64]!r}"}
                if len(params) == 1:  # the query bouncers in live mode make for every request
                    return 200, self.state.decisions_for(ip)
            return 200, self.state.matching(params) or None
        if path == "/v1/score" and method == "POST":
            if body is None:
                return 413, {"message": f"the body is larger than {self.max_body} bytes"}
            try:
                request = parse_score_request(body)
            except ValueError as exc:
                return 400, {"message": str(exc)}
            return 200, self._score(request)
        if path == "/v1/allow" and method in ("GET", "HEAD"):
            # nginx auth_request: any 2xx lets the request through, 403 refuses it
            ip = canonical_ip(params.get("ip", ""))
            if ip is None:
                return 400, {"message": f"ip: not an IP address: {params.get('ip', '')[:64]!r}"}
            types = {d["type"] for d in self.state.matching({"ip": ip})}
            return (
                (403, {"decision": "ban"}) if "ban" in types else (200, {"decision": next(iter(types), None)})
            )
        if path == "/v1/decisions/stream" and method in ("GET", "HEAD"):
            startup = params.get("startup", "false").lower() == "true"
            scopes = {s.strip().lower() for s in params.get("scopes", "ip,range").split(",") if s.strip()}
            answer, self.cursors[caller] = self.state.stream(
                None if startup else self.cursors.get(caller), scopes
            )
            return 200, answer
        if path in ("/v1/decisions/stream", "/v1/decisions", "/v1/allow", "/v1/score"):
            return 405, {"message": f"{method} is not allowed here"}
        return 404, {"message": "no such endpoint"}


_FORBIDDEN = _ENCODE({"message": "access forbidden: a valid X-Api-Key is required"})


def query_params(query: str) -> dict[str, str]:
    """A query string's parameters, the last of each name, as ``urllib.parse.parse_qs`` reads them.

    >>> query_params("ip=192.0.2.1&scopes=ip%2Crange&type=&x&ip=192.0.2.2")
    {'ip': '192.0.2.2', 'scopes': 'ip,range'}
    """
    params = {}
    for part in query.split("&"):
        name, sep, value = part.partition("=")
        if not value:  # parse_qs drops blank values and parts without "="
            continue
        if "%" in part or "+" in part:
            name, value = unquote_plus(name), unquote_plus(value)
        params[name] = value
    return params


def canonical_ip(text: str) -> str | None:
    """``text`` as ``ipaddress`` writes the IP address it is, or None if it is none.

    A dotted quad is its own canonical form once ``inet_pton`` takes it (no leading zeros,
    4 parts, each below 256): 0.2 us against 1.5 us through ``ipaddress``.

    >>> canonical_ip("192.0.2.1"), canonical_ip("2001:DB8::0:1"), canonical_ip("192.0.2.01")
    ('192.0.2.1', '2001:db8::1', None)
    """
    try:
        socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError):  # not a dotted quad (ValueError: an embedded NUL)
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            return None
    return text


# -- the HTTP server -------------------------------------------------------------------
#
# A small HTTP/1.1 server on an asyncio Protocol (uvloop), with httptools (llhttp, the
# parser of Node.js) parsing: keep-alive and pipelining, Content-Length and chunked bodies,
# limits on the request head and body, timeouts. One request costs it a fraction of what
# uvicorn's ASGI path costs (no task, no ASGI messages per request); see docs/benchmarks.md.

_MAX_HEAD_BYTES = 16_384  # request line and headers; more gets 431
_REQUEST_TIMEOUT_S = 10.0  # from a request's first byte to its last
_KEEP_ALIVE_S = 30.0  # an idle connection is closed after this
_SWEEP_S = 1.0
_LINGER_S = 5.0  # a connection answered with an error is closed this long after, at most
_REASONS = {
    200: b"OK", 400: b"Bad Request", 403: b"Forbidden", 404: b"Not Found", 405: b"Method Not Allowed",
    408: b"Request Timeout", 413: b"Content Too Large", 431: b"Request Header Fields Too Large",
    500: b"Internal Server Error", 503: b"Service Unavailable",
}  # fmt: skip


def _response(status: int, body: bytes, *, head: bool = False, close: bool = False) -> bytes:
    return b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        status, _REASONS.get(status, b"Error"), len(body), b"connection: close\r\n" if close else b"",
        b"" if head else body,
    )  # fmt: skip


class _Connection(asyncio.Protocol):
    """One client connection: requests parsed by httptools, answered by :meth:`DecisionApi.respond` in order."""

    def __init__(self, api: DecisionApi, connections: set[_Connection]) -> None:
        self.api = api
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.loop = asyncio.get_running_loop()
        self.url = b""
        self.key = b""
        self.auth = b""
        self.head_bytes = 0
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.refused = False  # answered before the request was read to its end: the connection closes
        self.expect = False  # Expect: 100-continue
        self.length = 0  # Content-Length
        self.started: float | None = None  # when the request being received began
        self.idle_since = self.loop.time()

    # -- asyncio -------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        if len(self.connections) >= self.api.max_connections:
            # each connection holds a descriptor: past the cap, a flood of idle ones would take the
            # last of them from the callers already served; this one is told why and closed at once
            # (not left to linger as an answered one is: the sweeper does not know it)
            self.api.counters.refused_connections += 1
            message = f"too many connections (api.max_connections = {self.api.max_connections}); retry later"
            transport.write(_response(503, _ENCODE({"message": message}), close=True))
            transport.close()
            self.transport, self.refused = None, True
            return
        self.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.connections.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # answered as a plain request; the rest is not HTTP
            self._write(b"", close=True)
        except httptools.HttpParserError as exc:
            if not self.refused:
                self._refuse(400, f"malformed HTTP request: {exc}")

    def pause_writing(self) -> None:  # a client that sends without reading: stop reading it too
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def expired(self, now: float) -> bool:
        """Whether the request being received is late, or the connection idle too long."""
        if self.started is not None:
            return now - self.started > _REQUEST_TIMEOUT_S
        return now - self.idle_since > _KEEP_ALIVE_S

    # -- httptools -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.started = self.loop.time()
        self.url, self.key, self.auth, self.expect, self.length = b"", b"", b"", False, 0
        self.head_bytes, self.body, self.body_bytes = 0, [], 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        if len(name) == 9 and name.lower() == b"x-api-key":
            self.key = value
        elif len(name) == 13 and name.lower() == b"authorization":
            self.auth = value
        elif len(name) == 14 and name.lower() == b"content-length":
            self.length = int(value) if value.strip().isdigit() else 0  # llhttp refuses a bad one
        elif len(name) == 6 and name.lower() == b"expect":
            self.expect = value.lower() == b"100-continue"

    def on_headers_complete(self) -> None:
        if self.refused:
            return
        if self.length > self.api.max_body:  # refused without reading it
            self._answer(None, close=True)
        elif self.expect and self.transport is not None:  # the client waits for this before the body
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, chunk: bytes) -> None:
        if self.refused:
            return
        self.body_bytes += len(chunk)
        if self.body_bytes > self.api.max_body:  # a chunked body grown too large
            self._answer(None, close=True)
        else:
            self.body.append(chunk)

    def on_message_complete(self) -> None:
        if self.refused:
            return
        self._answer(b"".join(self.body), close=not self.parser.should_keep_alive())
        self.started = None
        self.idle_since = self.loop.time()

    # -- answers -------------------------------------------------------------------

    def _count_head(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > _MAX_HEAD_BYTES and not self.refused:
            self._refuse(431, f"the request head is larger than {_MAX_HEAD_BYTES} bytes")

    def _answer(self, body: bytes | None, *, close: bool) -> None:
        method = self.parser.get_method().decode("latin-1")
        presented = self.key.decode("latin-1")
        if not presented and self.auth[:7].lower() == b"bearer ":
            presented = self.auth[7:].decode("latin-1")
        try:
            url = httptools.parse_url(self.url)
            path = url.path.decode("latin-1")
            if "%" in path:
                path = unquote(path)
            query = url.query.decode("latin-1") if url.query else ""
        except httptools.HttpParserInvalidURLError:
            self._refuse(400, "malformed request target")
            return
        try:
            status, answer = self.api.respond(method, path, query, presented, body)
        except Exception:  # a bug: answer 500 and say where, the server goes on
            import traceback

            traceback.print_exc()
            status, answer, close = 500, _ENCODE({"message": "internal error"}), True
        self._write(_response(status, answer, head=method == "HEAD", close=close), close=close)

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` without reading on, and close the connection."""
        self._write(_response(status, _ENCODE({"message": message}), close=True), close=True)

    def _write(self, data: bytes, *, close: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or self.refused:
            return
        transport.write(data)
        if close:
            # no more answers; what the client still sends is read and dropped until it closes
            # (or the keep-alive timeout): closing with unread data would reset the connection,
            # and the client could lose the answer
            self.refused = True
            self.started, self.idle_since = None, self.loop.time() - _KEEP_ALIVE_S + _LINGER_S
            if transport.can_write_eof():
                transport.write_eof()
            else:
                transport.close()

    def eof_received(self) -> bool:
        return False  # the client is done sending: close (once what is written has gone)


async def _serve_forever(api: DecisionApi, sock: socket.socket) -> None:
    """Serve on ``sock`` until SIGTERM or SIGINT; then write the counters."""
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    connections: set[_Connection] = set()
    server = await loop.create_server(lambda: _Connection(api, connections), sock=sock, backlog=1024)
    api.refresh()
    refresher = asyncio.create_task(api.refresher())

    async def sweep() -> None:  # one timer for every connection's timeouts, not one a request
        while True:
            await asyncio.sleep(_SWEEP_S)
            now = loop.time()
            for conn in [c for c in connections if c.expired(now)]:
                if conn.started is not None:
                    conn._refuse(408, f"the request took longer than {_REQUEST_TIMEOUT_S:g} s to arrive")
                elif conn.transport is not None:
                    conn.transport.close()

    sweeper = asyncio.create_task(sweep())
    try:
        await stop.wait()
    finally:
        server.close()
        for task in (refresher, sweeper):
            task.cancel()
        for conn in list(connections):
            if conn.transport is not None:
                conn.transport.close()
        with contextlib.suppress(OSError):
            api.counters.write(api.store)


def _serve(cfg: Config, keys: dict[str, str], ready) -> None:
    """The API process: bind, tell the parent (an error message, or ""), serve until SIGTERM."""
    api = cfg.api
    family = socket.AF_INET6 if ":" in api.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it: without, a response waits for the client's delayed ACK
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((api.address, api.port))
        sock.listen(1024)
    except OSError as exc:
        ready.send(f"api.port: cannot listen on {api.address}:{api.port} ({exc.strerror})")
        return
    ready.send("")
    try:
        import uvloop
    except ImportError:  # Windows: the standard loop
        asyncio.run(_serve_forever(DecisionApi(cfg, keys), sock))
    else:
        uvloop.run(_serve_forever(DecisionApi(cfg, keys), sock))


def start(cfg: Config, keys: dict[str, str], timeout_s: float = 30.0):
    """Start the API in a process of its own; return it once it listens, or raise ``RuntimeError``."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # not fork: the pipeline's threads are running
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_serve, args=(cfg, keys, child), name="gatewatch-api", daemon=True)
    process.start()
    child.close()
    if not parent.poll(timeout_s):
        process.kill()
        msg = f"api: the API process did not start within {timeout_s:.0f} s"
        raise RuntimeError(msg)
    try:
        problem = parent.recv()
    except EOFError:
        problem = f"api: the API process exited at start (code {process.exitcode})"
    if problem:
        process.join(5)
        raise RuntimeError(problem)
    return process
