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
import hmac
import ipaddress
import json
import os
import sqlite3
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from hashlib import blake2b
from pathlib import Path
from urllib.parse import parse_qs

import msgspec

from gatewatch.detectors.base import subnet
from gatewatch.flows.config import ApiConfig, Config
from gatewatch.flows.control.policy import LIVE, RANK
from gatewatch.flows.credentials import CredentialsError, read_named
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


def caller_of(keys: dict[str, str], presented: str) -> str | None:
    """The caller whose key was presented, compared in constant time; None for no match."""
    found = None
    for key, name in keys.items():
        if hmac.compare_digest(key.encode(), presented.encode()):
            found = name
    return found


# -- live state --------------------------------------------------------------


@dataclass(frozen=True)
class Signal:
    """A subject's strongest recent finding."""

    score: float
    kind: str
    reasons: tuple[str, ...]
    window_end: float


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


class LiveState:
    """The control plane's decisions and recent findings, as the API serves them (no I/O)."""

    def __init__(self, restricted_type: str = "throttle", score_window_s: float = 3600.0) -> None:
        self.restricted_type = restricted_type
        self.score_window_s = score_window_s
        self.findings: dict[tuple[str, str], deque[tuple[float, Finding]]] = {}
        self.snapshot = Snapshot(0.0, {}, {}, [], {}, {}, {}, {})
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
        for i in old.keys() - served.keys():
            self._change("deleted", {**old[i], "duration": "0s"})
        for i in served.keys() - old.keys():
            self._change("new", served[i])
        by_ip: dict[str, list[dict]] = {}
        ranges = []
        for d in served.values():
            if d["scope"] == "Ip":
                by_ip.setdefault(d["value"], []).append(d)
            else:
                with contextlib.suppress(ValueError):  # a subject that is no network matches no IP
                    ranges.append((ipaddress.ip_network(d["value"], strict=False), d))
        self.snapshot = Snapshot(mark, served, by_ip, ranges, verdicts, pending, signals, subnets)

    def _change(self, kind: str, decision: dict) -> None:
        self.seq += 1
        self.changes.append((self.seq, kind, decision))

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
        snap = self.snapshot
        oldest = self.changes[0][0] if self.changes else self.seq + 1
        if since_seq is None or since_seq < oldest - 1:  # a new bouncer, or one further behind than the log
            new, deleted = list(snap.served.values()), []
        else:
            latest: dict[int, tuple[str, dict]] = {}
            for seq, kind, d in self.changes:
                if seq > since_seq:
                    latest[d["id"]] = (kind, d)
            new = [d for kind, d in latest.values() if kind == "new"]
            deleted = [d for kind, d in latest.values() if kind == "deleted"]
        new = [d for d in new if d["scope"].lower() in scopes]
        deleted = [d for d in deleted if d["scope"].lower() in scopes]
        return {"new": new or None, "deleted": deleted or None}, self.seq

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

    def score(self, request: ScoreRequest, thresholds: dict[str, float]) -> dict:
        """Score one request from its subjects' live state (see the module docstring)."""
        snap = self.snapshot
        ctx, cur = request.api_context, request.current_request
        parts: list[tuple[float, str]] = []  # (score, reason)
        subjects: list[tuple[str, str]] = []
        if cur.ip:
            subjects.append(("ip", cur.ip))
        if ctx.consumer:
            subjects.append(("consumer", ctx.consumer))
        for key in subjects:
            s = snap.signals.get(key)
            if s is not None:
                parts.append((s.score, f"{key[0]} {s.kind} {s.score:.2f}: " + "; ".join(s.reasons)))
        if cur.ip:
            net = subnet(cur.ip)
            others = {ip: s for ip, s in snap.subnets.get(net, {}).items() if ip != cur.ip}
            if others:
                parts.append(
                    (
                        max(others.values()) * SUBNET_WEIGHT,
                        f"{len(others)} other IP(s) of {_net_text(net)} flagged",
                    )
                )
        if ctx.api and ctx.resource:
            name = " ".join(p for p in (ctx.api, ctx.method.upper(), endpoint_of(ctx.resource)) if p)
            s = snap.signals.get(("api", name))
            if s is not None:
                parts.append(
                    (s.score * ENDPOINT_WEIGHT, f"endpoint {name} under {s.kind}: " + "; ".join(s.reasons))
                )
        hist = request.historical_metrics
        if hist is not None and hist.failed_logins >= CALLER_FAILED_LOGINS:
            span = f" in {hist.window_s} s" if hist.window_s else ""
            parts.append(
                (thresholds["elevated"], f"{hist.failed_logins} failed logins{span} reported by the caller")
            )
        decided = [v for key in subjects for v in snap.verdicts.get(key, [])]
        waiting = [v for key in subjects for v in snap.pending.get(key, [])]
        for v in decided:
            if v.tier != "elevated":
                parts.append((v.score, f"{v.subject_type} {v.tier}: {v.reason}"))
        score = max((p[0] for p in parts), default=0.0)
        tier = max((d.tier for d in decided), key=RANK.__getitem__, default="normal")
        if tier == "normal" and score >= thresholds["elevated"]:
            tier = "elevated"  # no decision on these subjects: at most a second factor, never a block
        limits = [d.limit_per_min for d in decided if d.tier == "restricted"]
        limit = 0 if tier == "blocked" else min(limits) if tier == "restricted" and limits else None
        reasons = [r for _, r in sorted(parts, key=lambda p: -p[0])]
        reasons += [f"{v.subject_type} {v.tier} waiting for review: {v.reason}" for v in waiting]
        return {
            "score": round(min(score, 1.0), 4),
            "tier": tier,
            "limit_per_min": limit,
            "reasons": reasons[:5],
            "decisions": sorted({d.decision_id for d in decided}),
            "as_of": _utc_text(snap.watermark),
        }


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
    if ip and not _is_ip(ip):
        msg = f"current_request.ip: not an IP address: {ip[:64]!r}"
        raise ValueError(msg)
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


_JSON = [(b"content-type", b"application/json")]


class DecisionApi:
    """The ASGI application (one per process; it refreshes its state in the background)."""

    def __init__(self, cfg: Config, keys: dict[str, str]) -> None:
        api = cfg.api
        self.store = cfg.store.path
        self.keys = keys
        self.refresh_s = api.refresh_ms / 1000
        self.max_body = api.max_body_bytes
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

    async def _refresher(self) -> None:
        last_stats = 0.0
        while True:
            await asyncio.to_thread(self.refresh)
            now = time.monotonic()
            if now - last_stats >= _STATS_EVERY_S:
                last_stats = now
                with contextlib.suppress(OSError):
                    self.counters.write(self.store)
            await asyncio.sleep(self.refresh_s)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        status, body = await self._handle(scope, receive)
        await send({"type": "http.response.start", "status": status, "headers": _JSON})
        await send({"type": "http.response.body", "body": msgspec.json.encode(body)})

    async def _lifespan(self, receive, send) -> None:
        task = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.refresh()
                task = asyncio.create_task(self._refresher())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if task is not None:
                    task.cancel()
                with contextlib.suppress(OSError):
                    self.counters.write(self.store)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(self, scope, receive) -> tuple[int, object]:
        headers = dict(scope["headers"])
        presented = headers.get(b"x-api-key", b"").decode("latin-1")
        if not presented:
            auth = headers.get(b"authorization", b"").decode("latin-1")
            presented = auth[7:] if auth[:7].lower() == "bearer " else ""
        caller = caller_of(self.keys, presented) if presented else None
        if caller is None:
            self.counters.forbidden += 1
            return 403, {"message": "access forbidden: a valid X-Api-Key is required"}
        status, body = await self._route(scope, headers, receive, caller)
        self.counters.count(caller, status)
        if status == 400:
            self.counters.bad_requests += 1
        return status, body

    async def _route(self, scope, headers: dict[bytes, bytes], receive, caller: str) -> tuple[int, object]:
        path, method = scope["path"].rstrip("/"), scope["method"]
        params = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
        if path == "/v1/decisions/stream" and method in ("GET", "HEAD"):
            startup = params.get("startup", "false").lower() == "true"
            scopes = {s.strip().lower() for s in params.get("scopes", "ip,range").split(",") if s.strip()}
            body, self.cursors[caller] = self.state.stream(
                None if startup else self.cursors.get(caller), scopes
            )
            return 200, body
        if path == "/v1/decisions" and method in ("GET", "HEAD"):
            if "ip" in params and not _is_ip(params["ip"]):
                return 400, {"message": f"ip: not an IP address: {params['ip'][:64]!r}"}
            return 200, self.state.matching(params) or None
        if path == "/v1/allow" and method in ("GET", "HEAD"):
            # nginx auth_request: any 2xx lets the request through, 403 refuses it
            ip = params.get("ip", "")
            if not _is_ip(ip):
                return 400, {"message": f"ip: not an IP address: {ip[:64]!r}"}
            types = {d["type"] for d in self.state.matching({"ip": ip})}
            return (403, {"decision": "ban"}) if "ban" in types else (200, {"decision": next(iter(types), None)})
        if path == "/v1/score" and method == "POST":
            body = await _read_body(headers, receive, self.max_body)
            if body is None:
                return 413, {"message": f"the body is larger than {self.max_body} bytes"}
            try:
                request = parse_score_request(body)
            except ValueError as exc:
                return 400, {"message": str(exc)}
            return 200, self.state.score(request, self.thresholds)
        if path in ("/v1/decisions/stream", "/v1/decisions", "/v1/allow", "/v1/score"):
            return 405, {"message": f"{method} is not allowed here"}
        return 404, {"message": "no such endpoint"}


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


async def _read_body(headers: dict[bytes, bytes], receive, limit: int) -> bytes | None:
    """The request body, or None once it is larger than ``limit`` (what is left is not read)."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _serve(cfg: Config, keys: dict[str, str], ready) -> None:
    """The API process: bind, tell the parent (an error message, or ""), serve until SIGTERM."""
    import socket

    import uvicorn

    api = cfg.api
    family = socket.AF_INET6 if ":" in api.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it: without, a response's body waits for the client's
    # delayed ACK of its headers (40 ms a request)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((api.address, api.port))
    except OSError as exc:
        ready.send(f"api.port: cannot listen on {api.address}:{api.port} ({exc.strerror})")
        return
    ready.send("")
    config = uvicorn.Config(
        DecisionApi(cfg, keys), log_level="warning", access_log=False, lifespan="on",
        server_header=False, date_header=False,
    )  # fmt: skip
    uvicorn.Server(config).run(sockets=[sock])


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
