"""Seeded WSO2 API-M 4.x ``apim_metrics.log`` traffic with an injected attack.

The lines follow the format of API-M's log reporter (docs/formats.md, "WSO2 API-M"): the log4j
prefix ``HH:mm:ss,SSS [-] [thread]  INFO ELKCounterMetric``, then
``apimMetrics: apim:response|apim:faulty, properties :{json}`` with the
API-M 4.3+ field sets of a response and of a fault. Key order is one fixed
Gson-HashMap-like order, taken from a real log line.

Traffic: eight applications with stable client IPs, user agents and
endpoint mixes over four APIs, Poisson arrivals whose rate follows a gentle
hourly sinusoid, a realistic status and latency mix, occasional
application-level throttle-outs and invalid-token faults. With
``attack=True`` the ``PartnerPortal`` application (owner ``partner1``)
suffers credential stuffing on ``POST /login`` of ``AccountsAPI`` for
8-10 minutes, starting about two thirds into the run.

Lines are ordered by the time they are logged (request time plus response
latency), as the gateway writes them, so ``requestTimestamp`` runs slightly
out of order between threads.

Regenerate the committed sample with::

    python -m gatewatch.flows.lab.simulate sample_logs/wso2_apim_metrics.log --start 2026-11-02T09:00:00Z \\
        --minutes 90 --seed 7 --scale 0.4 --truth sample_logs/wso2_apim_metrics.truth.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import lru_cache
from itertools import accumulate
from operator import itemgetter
from pathlib import Path

import msgspec

from gatewatch.flows.features import SENSITIVE, classify, endpoint

__all__ = [
    "SCENARIOS",
    "SIM_FORMATS",
    "Attack",
    "GroundTruth",
    "Incident",
    "SubjectRef",
    "Truth",
    "format_request_timestamp",
    "generate_wso2",
    "main",
    "scale_for",
    "simulate",
]


class Attack(msgspec.Struct, frozen=True):
    """Ground truth for one injected attack.

    ``start`` and ``end`` are epoch seconds (UTC); requests of the attack
    have ``start <= requestTimestamp < end``.
    """

    kind: str
    application_id: str
    application_name: str
    application_owner: str
    api: str  # "<apiName>:<apiVersion>"
    method: str
    resource: str
    start: float
    end: float
    client_ips: int  # distinct source IPs the attack uses


class Truth(msgspec.Struct, frozen=True):
    """What :func:`generate_wso2` wrote: the run's span, its line count and the attack."""

    start: float
    end: float
    lines: int
    attack: Attack | None


@dataclass(frozen=True)
class _Api:
    api_id: str
    name: str
    version: str
    context: str
    destination: str


@dataclass(frozen=True)
class _Endpoint:
    api: _Api
    method: str
    template: str
    # cumulative probabilities -> status code, for one rng.random() draw
    statuses: tuple[tuple[float, int], ...]
    body_bytes: int  # typical size of a successful response body
    backend_ms: int  # median backend latency
    cacheable: bool = False


@dataclass(frozen=True)
class _Consumer:
    app_id: str
    name: str
    owner: str
    user: str
    key_type: str
    user_agent: str
    platform: str
    ips: Sequence[str]  # drawn uniformly
    per_min: float  # mean request rate at scale 1
    amplitude: float  # of the hourly sinusoid, relative to per_min
    phase: float
    endpoints: tuple[tuple[_Endpoint, float], ...]  # endpoint, weight
    over_quota: float  # probability that a minute hits the app-level throttle limit
    scaled: bool = True  # False: the rate ignores ``scale``


_LIST = ((0.997, 200), (0.999, 500), (1.0, 503))
_ITEM = ((0.93, 200), (0.996, 404), (0.998, 500), (1.0, 503))
_CREATE = ((0.95, 201), (0.996, 400), (0.998, 500), (1.0, 503))
_UPDATE = ((0.96, 200), (0.985, 400), (0.997, 404), (0.999, 500), (1.0, 503))
_LOGIN = ((0.96, 200), (0.996, 401), (0.998, 500), (1.0, 503))
_STUFFING = ((0.04, 200), (0.99, 401), (1.0, 503))

_PIZZA = _Api(
    "af88b5f8-594a-4f57-a729-7eb86b6a63ab",
    "PizzaShackAPI",
    "1.0.0",
    "/pizzashack/1.0.0",
    "https://localhost:9443/am/sample/pizzashack/v1/api/",
)
_ACCOUNTS = _Api(
    "0b7e3d52-6a1f-4f0e-9d7c-3c2a8e5b9f10",
    "AccountsAPI",
    "1.0.0",
    "/accounts/1.0.0",
    "http://accounts-backend:8080/v1",
)
_INVENTORY = _Api(
    "5c1d9e47-3b2a-4f86-a0d4-e8f7b6c5a312",
    "InventoryAPI",
    "2.1.0",
    "/inventory/2.1.0",
    "http://inventory-svc.internal:8080/api/v2",
)
_SHIPMENTS = _Api(
    "9a4f2c61-7d8e-4b3a-b5c6-1e2f3a4b5c6d",
    "ShipmentsAPI",
    "1.0.0",
    "/shipments/1.0.0",
    "https://shipping.example.net/api/v1",
)
_APIS = (_PIZZA, _ACCOUNTS, _INVENTORY, _SHIPMENTS)

_MENU = _Endpoint(_PIZZA, "GET", "/menu", _LIST, 2900, 22, cacheable=True)
_ORDER = _Endpoint(_PIZZA, "POST", "/order", _CREATE, 410, 65)
_ORDER_GET = _Endpoint(_PIZZA, "GET", "/order/{orderId}", _ITEM, 380, 28)
_ORDER_PUT = _Endpoint(_PIZZA, "PUT", "/order/{orderId}", _UPDATE, 380, 55)
_LOGIN_EP = _Endpoint(_ACCOUNTS, "POST", "/login", _LOGIN, 860, 140)
_PROFILE = _Endpoint(_ACCOUNTS, "GET", "/profile", _ITEM, 640, 35)
_ACCOUNT = _Endpoint(_ACCOUNTS, "GET", "/accounts/{accountId}", _ITEM, 1150, 48)
_ITEMS = _Endpoint(_INVENTORY, "GET", "/items", _LIST, 14500, 90, cacheable=True)
_ITEM_GET = _Endpoint(_INVENTORY, "GET", "/items/{sku}", _ITEM, 720, 25)
_STOCK = _Endpoint(_INVENTORY, "PATCH", "/items/{sku}/stock", _UPDATE, 160, 40)
_SHIP_LIST = _Endpoint(_SHIPMENTS, "GET", "/shipments", _LIST, 8200, 120)
_SHIP_GET = _Endpoint(_SHIPMENTS, "GET", "/shipments/{trackingId}", _ITEM, 930, 75)
_SHIP_NEW = _Endpoint(_SHIPMENTS, "POST", "/shipments", _CREATE, 520, 180)

_PARTNER_PORTAL = _Consumer(
    app_id="3f8a1c2e-7b4d-4e9a-8c6f-2d1e0b9a7c54",
    name="PartnerPortal",
    owner="partner1",
    user="partner1@carbon.super",
    key_type="PRODUCTION",
    user_agent="Chrome",
    platform="Windows",
    ips=("198.51.100.23", "198.51.100.24"),
    per_min=3.5,
    amplitude=0.3,
    phase=2.0,
    endpoints=((_LOGIN_EP, 3), (_PROFILE, 3), (_ACCOUNT, 4)),
    over_quota=0.0,
    scaled=False,
)

_CONSUMERS = (
    _Consumer(
        app_id="6b1e4c2a-9d3f-4a7b-8e5c-0f1a2b3c4d5e",
        name="OrderProcessing",
        owner="internal_svc",
        user="svc_orders@carbon.super",
        key_type="PRODUCTION",
        user_agent="Other",
        platform="Other",
        ips=("10.20.1.11", "10.20.1.12", "10.20.1.13", "10.20.1.14"),
        per_min=40.0,
        amplitude=0.1,
        phase=0.0,
        endpoints=(
            (_ORDER, 5), (_ORDER_GET, 6), (_ORDER_PUT, 2), (_ITEM_GET, 5), (_STOCK, 3), (_SHIP_NEW, 2),
        ),  # fmt: skip
        over_quota=0.02,
    ),
    _Consumer(
        app_id="87c8da4c-aa3f-43d3-89ac-dc3dc3b19d3e",
        name="StorefrontWeb",
        owner="webteam",
        user="storefront@carbon.super",
        key_type="PRODUCTION",
        user_agent="Chrome",
        platform="Mac OS X",
        ips=("203.0.113.10", "203.0.113.11", "203.0.113.12", "203.0.113.13", "203.0.113.14"),
        per_min=15.0,
        amplitude=0.35,
        phase=0.7,
        endpoints=((_MENU, 8), (_ORDER, 2), (_ORDER_GET, 3), (_LOGIN_EP, 2), (_PROFILE, 3)),
        over_quota=0.0,
    ),
    _Consumer(
        app_id="d2f6b1c4-8e3a-4b7d-9c21-6a5e0f4b8d33",
        name="MobileApp",
        owner="partner1",
        user="partner1@carbon.super",
        key_type="PRODUCTION",
        user_agent="okhttp",
        platform="Other",
        ips=("100.64.12.7", "100.64.12.8", "100.64.40.3"),
        per_min=12.0,
        amplitude=0.4,
        phase=1.4,
        endpoints=((_MENU, 4), (_ORDER, 2), (_ORDER_GET, 3), (_LOGIN_EP, 2), (_PROFILE, 2), (_ACCOUNT, 2)),
        over_quota=0.04,
    ),
    _PARTNER_PORTAL,
    _Consumer(
        app_id="b7c3e9d1-2f4a-4c8b-9e6d-5a1b3c7d9e2f",
        name="PartnerMobile",
        owner="partner2",
        user="partner2@carbon.super",
        key_type="PRODUCTION",
        user_agent="okhttp",
        platform="Other",
        ips=("192.0.2.44", "192.0.2.45"),
        per_min=6.0,
        amplitude=0.3,
        phase=3.1,
        endpoints=((_MENU, 3), (_ORDER, 1), (_ORDER_GET, 2), (_SHIP_GET, 2)),
        over_quota=0.03,
    ),
    _Consumer(
        app_id="e4a2b8c6-1d3f-4e5a-b7c9-8d0e2f4a6b1c",
        name="LogisticsPartner",
        owner="acme_logistics",
        user="acme_logistics@carbon.super",
        key_type="PRODUCTION",
        user_agent="Python Requests",
        platform="Other",
        ips=("198.18.7.20", "198.18.7.21", "198.18.9.5"),
        per_min=5.0,
        amplitude=0.2,
        phase=4.2,
        endpoints=((_SHIP_LIST, 2), (_SHIP_GET, 5), (_SHIP_NEW, 2), (_ITEMS, 1)),
        over_quota=0.02,
    ),
    _Consumer(
        app_id="2c9e7f5a-3b1d-4a6e-8f0c-7d5b3a1e9c4f",
        name="ReportingBot",
        owner="analytics",
        user="analytics@carbon.super",
        key_type="PRODUCTION",
        user_agent="curl",
        platform="Other",
        ips=("10.20.5.30",),
        per_min=2.0,
        amplitude=0.2,
        phase=5.0,
        endpoints=((_ACCOUNT, 3), (_ITEMS, 1), (_SHIP_LIST, 1)),
        over_quota=0.0,
    ),
    _Consumer(
        app_id="a1f3c5e7-9b2d-4f6a-8c0e-1b3d5f7a9c2e",
        name="DevSandbox",
        owner="dev1",
        user="dev1@carbon.super",
        key_type="SANDBOX",
        user_agent="curl",
        platform="Mac OS X",
        ips=("172.16.40.8",),
        per_min=0.6,
        amplitude=0.5,
        phase=0.3,
        endpoints=((_MENU, 2), (_ORDER, 1), (_LOGIN_EP, 1), (_ITEM_GET, 1)),
        over_quota=0.0,
    ),
)

# invalid-token faults (900901, application UNKNOWN) per minute at scale 1
_AUTH_FAULTS_PER_MIN = 0.3
_MAX_LATENCY_MS = 3000
_ATTACK_KIND = "credential_stuffing"
_ATTACK_PER_MIN = (160.0, 210.0)
_ATTACK_SECS = (8 * 60, 10 * 60)
_PREFIX = "%s [-] [%s]  INFO ELKCounterMetric apimMetrics: "


class _Slot:
    """A placeholder in a line template: a ``%`` conversion filled per line."""

    def __init__(self, conversion: str) -> None:
        self.conversion = conversion


_INT = _Slot("%d")
_STR = _Slot('"%s"')
_RAW = _Slot("%s")


def _render(value: object) -> str:
    if isinstance(value, _Slot):
        return value.conversion
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_render(v)}" for k, v in value.items()) + "}"
    return json.dumps(value).replace("%", "%%")


def _response_template(c: _Consumer, ep: _Endpoint) -> str:
    """Return the response line with ``%`` slots.

    Filling a template costs about 1.3 µs a line, against 8 µs for ``json.dumps``
    of the event dict.

    Slot order: time, thread, proxyResponseCode, responseCacheHit, backendLatency,
    correlationId, requestMediationLatency, targetResponseCode, requestTimestamp,
    responseLatency, responseMediationLatency, userIp, responseSize.
    """
    api = ep.api
    fields = {
        "apiName": api.name,
        "proxyResponseCode": _INT,
        "destination": api.destination,
        "apiCreatorTenantDomain": "carbon.super",
        "platform": c.platform,
        "apiMethod": ep.method,
        "apiVersion": api.version,
        "gatewayType": "SYNAPSE",
        "apiCreator": "admin",
        "responseCacheHit": _RAW,
        "backendLatency": _INT,
        "correlationId": _STR,
        "requestMediationLatency": _INT,
        "keyType": c.key_type,
        "apiId": api.api_id,
        "applicationName": c.name,
        "targetResponseCode": _INT,
        "requestTimestamp": _STR,
        "applicationOwner": c.owner,
        "userAgent": c.user_agent,
        "userName": c.user,
        "apiResourceTemplate": ep.template,
        "responseLatency": _INT,
        "regionId": "default",
        "responseMediationLatency": _INT,
        "userIp": _STR,
        "apiContext": api.context,
        "applicationId": c.app_id,
        "apiType": "HTTP",
        "properties": {
            "userName": c.user,
            "apiContext": api.context,
            "responseSize": _INT,
            "responseContentType": "application/json",
        },
    }
    return _PREFIX + "apim:response, properties :" + _render(fields) + "\n"


def _fault_template(api: _Api, c: _Consumer | None) -> str:
    """Return a fault line with slots time, thread, correlationId, requestTimestamp.

    With a consumer it is an application-level throttle-out; without one it is
    an invalid-token AUTH fault, whose application fields are ``UNKNOWN``.
    """
    if c is None:
        code, kind, message, error, key_type = 401, "AUTH", "AUTHENTICATION_FAILURE", 900901, "UNKNOWN"
        app_id = app_name = owner = "UNKNOWN"
        properties: dict[str, object] = {}
    else:
        code, kind, message, error = 429, "THROTTLED", "APPLICATION_LEVEL_LIMIT_EXCEEDED", 900803
        key_type, app_id, app_name, owner = c.key_type, c.app_id, c.name, c.owner
        properties = {"userName": c.user}
    properties |= {"apiContext": api.context, "responseSize": 0, "responseContentType": "application/json"}
    fields = {
        "apiName": api.name,
        "proxyResponseCode": code,
        "apiCreatorTenantDomain": "carbon.super",
        "errorType": kind,
        "apiVersion": api.version,
        "gatewayType": "SYNAPSE",
        "apiCreator": "admin",
        "correlationId": _STR,
        "errorMessage": message,
        "errorCode": error,
        "keyType": key_type,
        "apiId": api.api_id,
        "applicationName": app_name,
        "targetResponseCode": -1,
        "requestTimestamp": _STR,
        "applicationOwner": owner,
        "regionId": "default",
        "applicationId": app_id,
        "apiType": "HTTP",
        "properties": properties,
    }
    return _PREFIX + "apim:faulty, properties :" + _render(fields) + "\n"


@lru_cache(maxsize=4)
def _minute_text(epoch_minute: int) -> str:
    return datetime.fromtimestamp(epoch_minute * 60, timezone.utc).strftime("%Y-%m-%dT%H:%M")


def format_request_timestamp(epoch_ms: int) -> str:
    """Format epoch milliseconds like WSO2's ``requestTimestamp`` (Java ``OffsetDateTime.toString()``).

    Args:
        epoch_ms: Milliseconds since the epoch.

    Returns:
        UTC ISO-8601 with millis; Java drops zero millis, and zero seconds too
        when both are zero: ``2026-11-02T09:00:05.120Z``, ``2026-11-02T09:00:05Z``,
        ``2026-11-02T09:00Z``.
    """
    minute, ms_in_minute = divmod(epoch_ms, 60_000)
    sec, ms = divmod(ms_in_minute, 1000)
    if ms:
        return f"{_minute_text(minute)}:{sec:02d}.{ms:03d}Z"
    if sec:
        return f"{_minute_text(minute)}:{sec:02d}Z"
    return _minute_text(minute) + "Z"


def _time_of_day(epoch_ms: int) -> str:
    sec, ms = divmod(epoch_ms, 1000)
    hour, rest = divmod(sec % 86_400, 3600)
    return f"{hour:02d}:{rest // 60:02d}:{rest % 60:02d},{ms:03d}"


def _uuid4(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _attack_ips(rng: random.Random) -> tuple[str, ...]:
    """Return about 135 addresses, 2-4 per /24, in ~45 public-looking subnets."""
    first_octets = (31, 37, 45, 46, 77, 78, 80, 85, 89, 91, 94, 103, 104, 109, 176, 178, 185, 188, 193, 212)
    subnets: set[str] = set()
    while len(subnets) < 45:
        subnets.add(f"{rng.choice(first_octets)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}")
    ips: list[str] = []
    for net in sorted(subnets):
        ips.extend(f"{net}.{host}" for host in sorted(rng.sample(range(2, 254), rng.randint(2, 4))))
    return tuple(ips)


class _Source:
    """One consumer's traffic: its random generator, line templates and endpoint picker."""

    def __init__(self, rng: random.Random, c: _Consumer, start_ms: int, end_ms: int, per_min: float) -> None:
        self.rng = rng
        self.consumer = c
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.per_min = per_min
        self.endpoints = [ep for ep, _ in c.endpoints]
        self.templates = [_response_template(c, ep) for ep in self.endpoints]
        self.cum_weights = list(accumulate(w for _, w in c.endpoints))
        self.throttle = {ep.api: _fault_template(ep.api, c) for ep in self.endpoints}

    def rate(self, minute: int) -> float:
        """Return the mean request rate in requests/min during ``minute`` of the run."""
        c = self.consumer
        return self.per_min * (1.0 + c.amplitude * math.sin(2 * math.pi * (minute + 0.5) / 60 + c.phase))


def _emit_minute(
    src: _Source, m0: int, per_min: float, throttle_from: int, threads: list[str], out: list[tuple[int, str]]
) -> None:
    """Append ``(log_ms, line)`` for the source's requests in the minute starting at ``m0``.

    Requests at or after ``throttle_from`` (epoch ms) become throttle-out faults.
    """
    lo, hi = max(m0, src.start_ms), min(m0 + 60_000, src.end_ms)
    if lo >= hi or per_min <= 0:
        return
    rng, c = src.rng, src.consumer
    ips, n_ips = c.ips, len(c.ips)
    endpoints, templates, cum, total = src.endpoints, src.templates, src.cum_weights, src.cum_weights[-1]
    n_threads = len(threads)
    rnd, gauss, bits, expo = rng.random, rng.gauss, rng.getrandbits, rng.expovariate
    rate_per_ms = per_min / 60_000
    append = out.append
    t = lo + expo(rate_per_ms)
    while t < hi:
        req = int(t)
        t += expo(rate_per_ms)
        i = bisect_right(cum, rnd() * total)
        ep = endpoints[i]
        thread = threads[int(rnd() * n_threads)]
        ts = format_request_timestamp(req)
        if req >= throttle_from:
            log = req + 1 + bits(2)
            append((log, src.throttle[ep.api] % (_time_of_day(log), thread, _uuid4(rng), ts)))
            continue
        r = rnd()
        for p, status in ep.statuses:  # noqa: B007 - status: the one drawn
            if r < p:
                break
        b = bits(4)
        req_med, resp_med = b & 3, (b >> 2) & 1
        cache_hit = "false"
        if status == 503:
            size, backend = 60 + int(rnd() * 140), 1 + int(rnd() * 12)
        elif status < 400 and ep.cacheable and rnd() < 0.2:
            cache_hit, backend, size = "true", 0, ep.body_bytes
        else:
            size = int(ep.body_bytes * (0.8 + 0.4 * rnd())) if status < 400 else 60 + int(rnd() * 140)
            backend = min(_MAX_LATENCY_MS, 1 + int(ep.backend_ms * math.exp(0.5 * gauss())))
        latency = backend + req_med + resp_med + (b >> 3)
        log = req + latency + 1
        append(
            (
                log,
                templates[i]
                % (
                    _time_of_day(log),
                    thread,
                    status,
                    cache_hit,
                    backend,
                    _uuid4(rng),
                    req_med,
                    status,
                    ts,
                    latency,
                    resp_med,
                    ips[int(rnd() * n_ips)],
                    size,
                ),
            )
        )


def _emit_auth_faults(
    rng: random.Random,
    m0: int,
    per_min: float,
    templates: list[str],
    threads: list[str],
    out: list[tuple[int, str]],
) -> None:
    rate_per_ms = per_min / 60_000
    t = m0 + rng.expovariate(rate_per_ms)
    while t < m0 + 60_000:
        req = int(t)
        t += rng.expovariate(rate_per_ms)
        log = req + 2 + rng.getrandbits(2)
        line = rng.choice(templates) % (
            _time_of_day(log),
            rng.choice(threads),
            _uuid4(rng),
            format_request_timestamp(req),
        )
        out.append((log, line))


def scale_for(lines: int, minutes: int) -> float:
    """Return the ``scale`` that makes a run of ``minutes`` about ``lines`` long.

    Args:
        lines: Wanted number of lines.
        minutes: Length of the run.

    Returns:
        The scale, counting the attack's and the unscaled consumer's lines as fixed.
    """
    scaled = sum(c.per_min for c in _CONSUMERS if c.scaled) + _AUTH_FAULTS_PER_MIN
    attack = sum(_ATTACK_PER_MIN) / 2 * sum(_ATTACK_SECS) / 2 / 60
    fixed = sum(c.per_min for c in _CONSUMERS if not c.scaled) * minutes + attack
    return max(lines - fixed, 0) / (scaled * minutes)


class _CarrierIps(Sequence[str]):
    """The 4,194,304 addresses of carrier-grade NAT space (100.64.0.0/10), drawn by index."""

    def __len__(self) -> int:
        return 1 << 22

    def __getitem__(self, i: int) -> str:  # indexes only, no slices
        if not 0 <= i < 1 << 22:
            raise IndexError(i)
        return f"100.{64 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"


def generate_wso2(
    out_path: str | Path,
    *,
    start: datetime,
    minutes: int,
    seed: int,
    attack: bool = True,
    scale: float = 1.0,
    max_lines: int | None = None,
    mobile_ips: bool = False,
) -> Truth:
    """Write a synthetic WSO2 ``apim_metrics.log`` and return its ground truth.

    The output depends only on the arguments: same arguments, same bytes.

    Args:
        out_path: File to write (overwritten).
        start: Start of the run, timezone-aware.
        minutes: Length of the run; request times fall in ``[start, start + minutes)``.
        seed: Seeds the generators (the attack has its own, so the other lines
            do not depend on ``attack``).
        attack: Inject credential stuffing against ``PartnerPortal``. It needs
            ``minutes >= 45`` so that the app has 30 minutes of clean baseline first.
        scale: Multiplier on the request rates of every consumer except
            ``PartnerPortal``, whose few requests/min baseline is kept so the
            attack's contrast is the same at every scale; the attack is not scaled either.
        max_lines: Stop after this many lines.
        mobile_ips: Every scaled consumer's requests come from ever-changing client IPs
            (one of carrier NAT's four million addresses each, as mobile apps' do): a
            window holds about one IP per request.

    Returns:
        The run's span (epoch seconds), the number of lines written and the attack, if any.

    Raises:
        ValueError: ``start`` is naive, or the run is too short for the attack.
    """
    if start.tzinfo is None:
        msg = "start must be timezone-aware"
        raise ValueError(msg)
    if attack and minutes < 45:
        msg = f"an attack needs at least 45 minutes of traffic, got {minutes}"
        raise ValueError(msg)
    rng = random.Random(seed)
    start_ms = round(start.timestamp() * 1000)
    end_ms = start_ms + minutes * 60_000
    threads = [f"PassThroughMessageProcessor-{n}" for n in sorted(rng.sample(range(1, 400), 48))]
    consumers = [replace(c, ips=_CarrierIps()) if mobile_ips and c.scaled else c for c in _CONSUMERS]
    sources = [
        _Source(rng, c, start_ms, end_ms, c.per_min * (scale if c.scaled else 1.0)) for c in consumers
    ]
    auth_templates = [_fault_template(api, None) for api in _APIS]
    truth_attack = None
    if attack:
        # its own generator, so that the other lines are the same with and without the attack
        a_rng = random.Random(f"attack-{seed}")
        a_start = start_ms + (minutes * 2 // 3) * 60_000 + a_rng.randint(0, 59) * 1000
        a_end = a_start + a_rng.randint(*_ATTACK_SECS) * 1000
        ips = _attack_ips(a_rng)
        stuffing = replace(
            _PARTNER_PORTAL,
            user_agent="Python Requests",
            platform="Other",
            ips=ips,
            amplitude=0.0,
            endpoints=((replace(_LOGIN_EP, statuses=_STUFFING), 1.0),),
        )
        sources.append(_Source(a_rng, stuffing, a_start, a_end, a_rng.uniform(*_ATTACK_PER_MIN)))
        truth_attack = Attack(
            kind=_ATTACK_KIND,
            application_id=stuffing.app_id,
            application_name=stuffing.name,
            application_owner=stuffing.owner,
            api=f"{_ACCOUNTS.name}:{_ACCOUNTS.version}",
            method=_LOGIN_EP.method,
            resource=_LOGIN_EP.template,
            start=a_start / 1000,
            end=a_end / 1000,
            client_ips=len(ips),
        )
    limit = max_lines if max_lines is not None else math.inf
    written = 0
    pending: list[tuple[int, str]] = []
    with open(out_path, "w", encoding="utf-8", newline="\n") as f:
        for minute in range(minutes):
            m0 = start_ms + minute * 60_000
            for src in sources:
                throttle_from = m0 + 60_000  # i.e. not throttled
                if src.consumer.over_quota and rng.random() < src.consumer.over_quota:
                    throttle_from = m0 + rng.randint(30_000, 55_000)
                _emit_minute(src, m0, src.rate(minute), throttle_from, threads, pending)
            _emit_auth_faults(rng, m0, _AUTH_FAULTS_PER_MIN * scale, auth_templates, threads, pending)
            pending.sort(key=itemgetter(0))
            # later minutes only add lines logged at or after their own start
            last = minute == minutes - 1
            cut = len(pending) if last else bisect_left(pending, m0 + 60_000, key=itemgetter(0))
            take = min(cut, limit - written)
            f.writelines(line for _, line in pending[:take])
            written += take
            del pending[:cut]
            if written >= limit:
                break
    return Truth(start=start_ms / 1000, end=end_ms / 1000, lines=written, attack=truth_attack)


# -- labelled scenarios (``gatewatch simulate``) ---------------------------------------------------------

SIM_FORMATS = ("wso2", "kong", "combined")
_MIN_SCENARIO_MINUTES = 60


class SubjectRef(msgspec.Struct, frozen=True):
    """A subject as gatewatch names it in this log format.

    ``type`` is ``consumer``, ``ip`` or ``api``. ``id`` is what lands in
    ``findings.subject``: the WSO2 ``applicationId``, the Kong consumer id or
    the basic-auth user (combined); the client IP; or the endpoint
    (``"AccountsAPI:1.0.0 POST /login"``, ``"accounts POST /accounts/login"``).
    ``name`` is the consumer's display name.
    """

    type: str
    id: str
    name: str = ""


class Incident(msgspec.Struct, frozen=True):
    """One labelled episode: an attack, or a benign look-alike that must stay clean.

    An attack is caught when any of ``subjects`` gets a finding in
    ``[start, end)`` (plus a grace window); findings on ``participants`` in that
    span are correct too, but not required (e.g. the 150 IPs of a credential
    stuffing run, each too quiet to flag).

    The wide scenario's attacks also carry ``horizon_s``, the shortest horizon
    (60, 600 or 3600 s) on which their rate is meant to be visible, and the
    ``params`` they were drawn with; both are left out of the standard
    scenario's truth (its attacks are all meant for one window).
    """

    kind: str
    description: str
    start: float  # epoch seconds
    end: float
    subjects: list[SubjectRef]
    participants: list[SubjectRef] = msgspec.field(default_factory=list)
    horizon_s: int | msgspec.UnsetType = msgspec.UNSET
    params: dict[str, object] | msgspec.UnsetType = msgspec.UNSET


class GroundTruth(msgspec.Struct, frozen=True):
    """What :func:`simulate` wrote: the log, its span and every labelled incident."""

    format: str
    seed: int
    start: float
    end: float
    window_s: int
    lines: int
    log: str  # file name of the log, beside the truth file
    attacks: list[Incident]
    lookalikes: list[Incident]
    scenario: str | msgspec.UnsetType = msgspec.UNSET  # "wide"; left out for the standard scenario


# raw header, WSO2 userAgent family, WSO2 platform
_UAS: dict[str, tuple[str, str, str]] = {
    "chrome": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
        "Chrome",
        "Windows",
    ),
    "chrome_mac": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Safari/537.36",
        "Chrome",
        "Mac OS X",
    ),
    "firefox": ("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", "Firefox", "Linux"),
    "okhttp": ("okhttp/4.12.0", "okhttp", "Other"),
    "httpclient": ("Apache-HttpClient/4.5.14 (Java/17.0.9)", "Apache-HttpClient", "Other"),
    "go": ("Go-http-client/1.1", "Go-http-client", "Other"),
    "requests": ("python-requests/2.31.0", "Python Requests", "Other"),
    "curl": ("curl/8.4.0", "curl", "Other"),
    "axios": ("axios/1.6.2", "axios", "Other"),
    "nikto": ("Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000003)", "Other", "Other"),
    # used by the wide scenario only
    "googlebot": ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot", "Other"),
    "sqlmap": ("sqlmap/1.7.11#stable (https://sqlmap.org)", "Other", "Other"),
    "nuclei": (
        "Mozilla/5.0 (compatible; Nuclei - Open-source project (github.com/projectdiscovery/nuclei))",
        "Other",
        "Other",
    ),
    "ios": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.1 Mobile/15E148 Safari/604.1",
        "Mobile Safari",
        "iOS",
    ),
    "dalvik": ("Dalvik/2.1.0 (Linux; U; Android 14; Pixel 7 Build/UQ1A.240105.004)", "Android", "Android"),
    "none": ("-", "Other", "Other"),  # no User-Agent header (a TLS handshake on a plain-HTTP port)
}
# the public web shop in front of the APIs (wide scenario only): no key, concrete pages; WSO2 never logs it
_WEB = _Api(
    "4d2c8b1e-6f3a-4e7b-9c5d-2a1b0c9d8e7f",
    "StorefrontSite",
    "1.0.0",
    "/",
    "http://storefront-site:8080",
)
# per API: Kong service name, route name and path prefix (the concrete path is prefix + filled template)
_KONG = {
    _PIZZA: ("pizzashack-svc", "pizzashack", "/pizzashack"),
    _ACCOUNTS: ("accounts-svc", "accounts", "/accounts"),
    _INVENTORY: ("inventory-svc", "inventory", "/inventory"),
    _SHIPMENTS: ("shipments-svc", "shipments", "/shipments"),
    _WEB: ("storefront-site-svc", "site", ""),
}
_BIG_EXPORT = _Endpoint(_SHIPMENTS, "GET", "/shipments", ((0.7, 200), (1.0, 500)), 3_500_000, 2400)
_PROBE_WSO2 = tuple(
    ep for ep in (_ORDER_GET, _ACCOUNT, _ITEM_GET, _SHIP_GET, _PROFILE, _MENU, _ITEMS, _SHIP_LIST)
)
_PROBE_PATHS = (
    "/.env",
    "/.git/HEAD",
    "/.git/config",
    "/.aws/credentials",
    "/.htpasswd",
    "/.DS_Store",
    "/wp-config.php.bak",
    "/.ssh/id_rsa",
    "/backup.sql",
    "/config.php.bak",
    "/server-status",
    "/phpinfo.php",
    "/.svn/entries",
    "/admin/",
    "/administrator/",
    "/phpmyadmin/",
    "/wp-admin/",
    "/wp-login.php",
    "/cgi-bin/test.cgi",
    "/solr/admin/",
    "/manager/html",
    "/actuator/env",
    "/actuator/heapdump",
    "/api/v1/debug",
    "/console/",
    "/jenkins/script",
    "/.vscode/sftp.json",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
    "/owa/auth/logon.aspx",
    "/remote/login",
    "/boaform/admin/formLogin",
    "/HNAP1/",
    "/sdk",
    "/evox/about",
)


@dataclass(frozen=True)
class _App:
    """A consumer of the simulated gateway (one application / API key / basic-auth user)."""

    app_id: str  # WSO2 applicationId
    name: str  # WSO2 applicationName, Kong consumer username
    user: str  # basic-auth user in combined logs
    owner: str
    ua: str  # key of _UAS
    ips: tuple[str, ...]
    per_min: float  # mean rate at scale 1
    amplitude: float  # of the daily rhythm
    peak_hour: float  # UTC hour of the daily peak
    endpoints: tuple[tuple[_Endpoint, float], ...]
    limit_per_min: int  # tier limit: requests beyond it in a minute are throttled
    flash: bool = True  # takes part in the flash crowd
    scaled: bool = True
    first_seen: float = 0.0  # share of the run before the consumer appears
    key_type: str = "PRODUCTION"  # WSO2 keyType

    @property
    def kong_id(self) -> str:
        h = stable_hex("kong-consumer", self.name)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def stable_hex(*parts: str) -> str:
    """32 hex digits derived from ``parts`` (deterministic ids for simulated entities)."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _pool(rng: random.Random, prefixes: tuple[str, ...], subnets: int, per_subnet: int) -> tuple[str, ...]:
    nets: set[str] = set()
    while len(nets) < subnets:
        nets.add(f"{rng.choice(prefixes)}.{rng.randint(0, 255)}")
    return tuple(
        f"{net}.{host}" for net in sorted(nets) for host in sorted(rng.sample(range(2, 254), per_subnet))
    )


def _apps(rng: random.Random) -> dict[str, _App]:
    mobile_pool = _pool(rng, tuple(f"100.{b}" for b in range(64, 128)), 150, 20)
    apps = (
        _App(
            "6b1e4c2a-9d3f-4a7b-8e5c-0f1a2b3c4d5e",
            "OrderProcessing",
            "svc-orders",
            "internal_svc",
            "httpclient",
            ("10.20.1.11", "10.20.1.12", "10.20.1.13", "10.20.1.14"),
            40,
            0.3,
            14,
            ((_ORDER, 5), (_ORDER_GET, 6), (_ORDER_PUT, 2), (_ITEM_GET, 5), (_STOCK, 3), (_SHIP_NEW, 2)),
            400,
        ),
        _App(
            "c41d8e2f-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
            "InternalBilling",
            "svc-billing",
            "internal_svc",
            "go",
            tuple(f"10.30.0.{h}" for h in range(21, 27)),
            400,
            0.02,
            12,
            ((_ACCOUNT, 10), (_SHIP_GET, 4), (_SHIP_NEW, 2), (_STOCK, 4)),
            4000,
            flash=False,
        ),
        _App(
            "87c8da4c-aa3f-43d3-89ac-dc3dc3b19d3e",
            "StorefrontWeb",
            "storefront",
            "webteam",
            "chrome_mac",
            ("203.0.113.10", "203.0.113.11", "203.0.113.12", "203.0.113.13", "203.0.113.14"),
            15,
            0.35,
            19,
            ((_MENU, 8), (_ORDER, 2), (_ORDER_GET, 3), (_LOGIN_EP, 2), (_PROFILE, 3)),
            200,
        ),
        _App(
            "d2f6b1c4-8e3a-4b7d-9c21-6a5e0f4b8d33",
            "MobileApp",
            "mobile-app",
            "partner1",
            "okhttp",
            mobile_pool,
            60,
            0.4,
            20,
            ((_LOGIN_EP, 8), (_PROFILE, 4), (_MENU, 4), (_ORDER, 2), (_ORDER_GET, 2)),
            1200,
        ),
        _App(
            _PARTNER_PORTAL.app_id,
            "PartnerPortal",
            "partner-portal",
            "partner1",
            "chrome",
            _PARTNER_PORTAL.ips,
            3.5,
            0.3,
            10,
            ((_LOGIN_EP, 3), (_PROFILE, 3), (_ACCOUNT, 4)),
            1000,
            scaled=False,
        ),
        _App(
            "b7c3e9d1-2f4a-4c8b-9e6d-5a1b3c7d9e2f",
            "PartnerMobile",
            "partner-mobile",
            "partner2",
            "okhttp",
            ("192.0.2.44", "192.0.2.45"),
            6,
            0.3,
            18,
            ((_MENU, 3), (_ORDER, 1), (_ORDER_GET, 2), (_SHIP_GET, 2)),
            120,
        ),
        _App(
            "e4a2b8c6-1d3f-4e5a-b7c9-8d0e2f4a6b1c",
            "LogisticsPartner",
            "logistics",
            "acme_logistics",
            "requests",
            ("198.18.7.20", "198.18.7.21", "198.18.9.5"),
            5,
            0.2,
            9,
            ((_SHIP_LIST, 2), (_SHIP_GET, 5), (_SHIP_NEW, 2), (_ITEMS, 1)),
            50,
        ),
        _App(
            "2c9e7f5a-3b1d-4a6e-8f0c-7d5b3a1e9c4f",
            "ReportingBot",
            "reporting",
            "analytics",
            "curl",
            ("10.20.5.30",),
            2,
            0.2,
            6,
            ((_ACCOUNT, 3), (_ITEMS, 1), (_SHIP_LIST, 1)),
            100,
            flash=False,
        ),
        _App(
            "a1f3c5e7-9b2d-4f6a-8c0e-1b3d5f7a9c2e",
            "DevSandbox",
            "dev1",
            "dev1",
            "curl",
            ("172.16.40.8",),
            0.6,
            0.5,
            15,
            ((_MENU, 2), (_ORDER, 1), (_LOGIN_EP, 1), (_ITEM_GET, 1)),
            60,
            key_type="SANDBOX",
        ),
        _App(
            "f0e1d2c3-b4a5-4697-8877-665544332211",
            "PriceCompare",
            "pricecompare",
            "pricecompare_ltd",
            "requests",
            ("198.51.100.77",),
            1,
            0.1,
            12,
            ((_ITEMS, 1),),
            120,
            flash=False,
            scaled=False,
        ),
        _App(
            "0a9b8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d",
            "NewPartnerApp",
            "new-partner",
            "partner3",
            "axios",
            ("192.0.2.130", "192.0.2.131", "192.0.2.132"),
            8,
            0.2,
            16,
            ((_ITEMS, 2), (_ITEM_GET, 5), (_ORDER, 2), (_ORDER_GET, 3)),
            200,
            flash=False,
            first_seen=0.4,
        ),
    )
    return {a.name: a for a in apps}


class _Req(msgspec.Struct, array_like=True):
    """One simulated request, before it is written in a format."""

    ts: int  # request time, epoch ms
    app: _App | None  # None: no valid credentials (invalid key, unauthenticated scanner)
    ip: str
    ua: str  # key of _UAS
    ep: _Endpoint
    path: str  # concrete path without the API prefix ("" for an unrouted probe: see ``raw_path``)
    status: int
    size: int
    backend: int  # backend latency ms
    latency: int  # total latency ms
    cache_hit: bool = False
    fault: str = ""  # "AUTH" | "THROTTLED": the gateway answered, not the backend
    raw_path: str = ""  # a path outside every API (probes); WSO2 cannot log these
    raw_request: str = ""  # a request line that is not HTTP (combined only; Kong and WSO2 never log one)


def _fill(template: str, rng: random.Random) -> str:
    """The template with concrete ids: ``/order/{orderId}`` -> ``/order/482913``."""
    if "{" not in template:
        return template
    out = []
    for seg in template.split("/"):
        if seg == "{accountId}":
            out.append(f"ACC-{rng.randint(100000, 999999)}")
        elif seg == "{trackingId}":
            out.append(f"TRK{rng.randint(100000000, 999999999)}")
        elif seg.startswith("{"):
            out.append(str(rng.randint(100000, 999999)))
        else:
            out.append(seg)
    return "/".join(out)


def _request(
    rng: random.Random, ts: int, app: _App | None, ip: str, ua: str, ep: _Endpoint, path: str = ""
) -> _Req:
    r = rng.random()
    status = next(s for p, s in ep.statuses if r < p)
    cache_hit = False
    if status == 503:
        size, backend = 60 + int(rng.random() * 140), 1 + int(rng.random() * 12)
    elif status < 400 and ep.cacheable and rng.random() < 0.2:
        cache_hit, backend, size = True, 0, ep.body_bytes
    else:
        size = (
            int(ep.body_bytes * (0.8 + 0.4 * rng.random())) if status < 400 else 60 + int(rng.random() * 140)
        )
        backend = min(_MAX_LATENCY_MS, 1 + int(ep.backend_ms * math.exp(0.5 * rng.gauss(0, 1))))
    return _Req(
        ts,
        app,
        ip,
        ua,
        ep,
        path or _fill(ep.template, rng),
        status,
        size,
        backend,
        backend + rng.randint(1, 6),
        cache_hit,
    )


class _Scenario:
    """The labelled run: normal traffic, attacks and look-alikes, format-neutral."""

    def __init__(self, start_ms: int, minutes: int, seed: int, scale: float) -> None:
        self.rng = random.Random(f"scenario-{seed}")
        self.start_ms = start_ms
        self.minutes = minutes
        self.scale = scale
        self.apps = _apps(self.rng)
        m = minutes
        at = self._at
        self.flash = (at(0.22), at(0.22) + 8 * 60_000)
        self.reqs: list[_Req] = []
        self.attacks: list[tuple[str, str, int, int, dict]] = []  # kind, description, start, end, refs
        self.plan = {
            "credential_stuffing": (at(0.62), self.rng.randint(8, 10) * 60_000),
            "brute_force": (at(0.45), 6 * 60_000),
            "probing": (at(0.50), 3 * 60_000),
            "scraping": (at(0.55), min(20, int(m * 0.3)) * 60_000),
            "flooding": (at(0.70), 6 * 60_000),
            "key_compromise": (at(0.78), 8 * 60_000),
            "anomaly": (at(0.86), 6 * 60_000),
        }

    def _at(self, share: float) -> int:
        """Epoch ms of a whole second about ``share`` into the run."""
        return self.start_ms + int(self.minutes * share) * 60_000 + self.rng.randint(0, 59) * 1000

    def _rate(self, app: _App, minute_ms: int) -> float:
        hour = (minute_ms / 3_600_000) % 24
        rate = app.per_min * (self.scale if app.scaled else 1.0)
        rate *= 1.0 + app.amplitude * math.cos(2 * math.pi * (hour - app.peak_hour) / 24)
        if app.flash and self.flash[0] <= minute_ms < self.flash[1]:
            rate *= 3.0
        return rate

    def normal(self) -> None:
        """Every consumer's own traffic, throttled at its tier limit, and invalid-key noise."""
        rng = self.rng
        end_ms = self.start_ms + self.minutes * 60_000
        for app in self.apps.values():
            endpoints = [ep for ep, _ in app.endpoints]
            cum = list(accumulate(w for _, w in app.endpoints))
            begin = self.start_ms + int(self.minutes * app.first_seen) * 60_000
            for m0 in range(begin, end_ms, 60_000):
                rate = self._rate(app, m0)
                t = m0 + rng.expovariate(rate / 60_000)
                while t < m0 + 60_000:
                    ep = endpoints[bisect_right(cum, rng.random() * cum[-1])]
                    self.reqs.append(_request(rng, int(t), app, rng.choice(app.ips), app.ua, ep))
                    t += rng.expovariate(rate / 60_000)
        noise_ips = tuple(f"203.0.113.{h}" for h in range(200, 210))
        for m0 in range(self.start_ms, end_ms, 60_000):
            t = m0 + rng.expovariate(0.3 * self.scale / 60_000)
            while t < m0 + 60_000:
                ep = rng.choice((_MENU, _ORDER_GET, _ITEMS, _SHIP_GET))
                req = _request(rng, int(t), None, rng.choice(noise_ips), "curl", ep)
                self.reqs.append(
                    msgspec.structs.replace(req, status=401, size=0, backend=0, latency=2, fault="AUTH")
                )
                t += rng.expovariate(0.3 * self.scale / 60_000)

    def _stream(self, start: int, end: int, per_min: float, make) -> None:
        t = start + self.rng.expovariate(per_min / 60_000)
        while t < end:
            self.reqs.append(make(int(t)))
            t += self.rng.expovariate(per_min / 60_000)

    def inject(self) -> None:
        """Every attack kind once."""
        rng, apps = self.rng, self.apps
        a, n = self.plan["credential_stuffing"]
        ips = _attack_ips(rng)
        stuffing = replace(_LOGIN_EP, statuses=_STUFFING)
        portal = apps["PartnerPortal"]
        self._stream(
            a,
            a + n,
            rng.uniform(160, 210),
            lambda t: _request(rng, t, portal, rng.choice(ips), "requests", stuffing),
        )
        self.attacks.append(
            (
                "credential_stuffing",
                f"{len(ips)} IPs in 45 /24s try leaked passwords on POST /login "
                "with PartnerPortal's key, 1-2 tries each per minute, 95% answered 401",
                a,
                a + n,
                {"consumers": ["PartnerPortal"], "endpoints": [_LOGIN_EP], "ips": ips},
            )
        )

        a, n = self.plan["brute_force"]
        attacker = "185.220.101.45"
        guess = replace(_LOGIN_EP, statuses=((0.02, 200), (1.0, 401)))
        store = apps["StorefrontWeb"]
        self._stream(a, a + n, 30, lambda t: _request(rng, t, store, attacker, "firefox", guess))
        self.attacks.append(
            (
                "brute_force",
                "one IP guesses passwords on POST /login with the storefront's public key, "
                "30 tries a minute, 98% answered 401",
                a,
                a + n,
                {"ips": [attacker], "consumers": ["StorefrontWeb"], "endpoints": [_LOGIN_EP]},
            )
        )

        a, n = self.plan["probing"]
        prober, sandbox = "45.155.205.233", apps["DevSandbox"]

        wordlist = iter(_PROBE_PATHS)

        def probe(t: int) -> _Req:
            if rng.random() < 0.5:  # a known API with made-up ids, through a leaked sandbox key
                ep = replace(rng.choice(_PROBE_WSO2), statuses=((0.05, 200), (0.75, 404), (1.0, 403)))
                return _request(rng, t, sandbox, prober, "nikto", ep)
            # the scanner's word list first, then made-up script names
            path = next(wordlist, None) or f"/{stable_hex(str(t))[:8]}.php"
            return _Req(t, None, prober, "nikto", _MENU, "", 404, 150, 0, 2, raw_path=path)

        self._stream(a, a + n, 80, probe)
        self.attacks.append(
            (
                "probing",
                "a Nikto scan: sensitive files, admin pages and made-up ids, mostly 404/403, "
                "80 requests a minute from one IP",
                a,
                a + n,
                {
                    "ips": [prober],
                    "consumers": ["DevSandbox"],
                    "endpoints": list(_PROBE_WSO2),
                    "anonymous": True,
                },
            )
        )

        a, n = self.plan["scraping"]
        scraper, pricer = "198.51.100.77", apps["PriceCompare"]
        first_sku = rng.randint(100000, 200000)
        scrape = replace(_ITEM_GET, statuses=((0.96, 200), (1.0, 404)))
        t, i = a, 0
        while t < a + n:
            req = _request(rng, int(t), pricer, scraper, "requests", scrape, f"/items/{first_sku + i}")
            self.reqs.append(req)
            t, i = t + rng.uniform(850, 1150), i + 1
        self.attacks.append(
            (
                "scraping",
                f"one IP reads every item in id order, one request a second for {n // 60_000} "
                "minutes, with PriceCompare's key",
                a,
                a + n,
                {"ips": [scraper], "consumers": ["PriceCompare"], "endpoints": [_ITEM_GET]},
            )
        )

        a, n = self.plan["flooding"]
        logistics = apps["LogisticsPartner"]
        eps = [ep for ep, _ in logistics.endpoints]
        self._stream(
            a,
            a + n,
            220,
            lambda t: _request(rng, t, logistics, rng.choice(logistics.ips), logistics.ua, rng.choice(eps)),
        )
        self.attacks.append(
            (
                "flooding",
                "LogisticsPartner's client loops: 220 requests a minute "
                f"against a tier limit of {self._limit(logistics)}",
                a,
                a + n,
                {"consumers": ["LogisticsPartner"], "ips": list(logistics.ips), "endpoints": eps},
            )
        )

        a, n = self.plan["key_compromise"]
        thief_ips = _pool(rng, ("5.188", "45.67", "139.59", "159.65", "167.99"), 15, 3)
        mobile = apps["PartnerMobile"]
        loot = (_SHIP_GET, _ORDER_GET, _ACCOUNT)
        self._stream(
            a, a + n, 25, lambda t: _request(rng, t, mobile, rng.choice(thief_ips), "curl", rng.choice(loot))
        )
        self.attacks.append(
            (
                "key_compromise",
                f"PartnerMobile's key used from {len(thief_ips)} never-seen IPs in 15 "
                "subnets with curl, reading shipments, orders and accounts",
                a,
                a + n,
                {"consumers": ["PartnerMobile"], "ips": thief_ips},
            )
        )

        a, n = self.plan["anomaly"]
        bot = apps["ReportingBot"]
        self._stream(a, a + n, 6, lambda t: _request(rng, t, bot, bot.ips[0], bot.ua, _BIG_EXPORT))
        self.attacks.append(
            (
                "anomaly",
                "ReportingBot pulls unbounded exports: 3.5 MB answers, 2.4 s latency, 30% 500s",
                a,
                a + n,
                {"consumers": ["ReportingBot"], "ips": list(bot.ips), "endpoints": [_BIG_EXPORT]},
            )
        )

    def _limit(self, app: _App) -> int:
        """The app's tier limit per minute; a scaled app's grows with ``scale`` above 1.

        So a large run (``make bench``) is not mostly 429s; runs at scale 1 or below are unchanged.
        """
        return round(app.limit_per_min * max(1.0, self.scale)) if app.scaled else app.limit_per_min

    def throttle(self) -> None:
        """Requests beyond a consumer's tier limit in a minute become throttled (429 / THROTTLED)."""
        self.reqs.sort(key=lambda r: r.ts)
        used: dict[tuple[str, int], int] = {}
        for i, r in enumerate(self.reqs):
            if r.app is None:
                continue
            key = (r.app.name, r.ts // 60_000)
            used[key] = used.get(key, 0) + 1
            if used[key] > self._limit(r.app):
                self.reqs[i] = msgspec.structs.replace(
                    r, status=429, size=0, backend=0, latency=1, fault="THROTTLED"
                )

    def truth(self, fmt: str, lines: int, log: str, seed: int) -> GroundTruth:
        apps = self.apps

        def consumer(name: str) -> SubjectRef:
            app = apps[name]
            ident = {"wso2": app.app_id, "kong": app.kong_id, "combined": app.user}[fmt]
            return SubjectRef("consumer", ident, app.user if fmt == "combined" else app.name)

        def refs(d: dict, key: str) -> list[SubjectRef]:
            if key == "consumers":
                return [consumer(name) for name in d.get(key, [])]
            if key == "ips":
                return [SubjectRef("ip", ip) for ip in d.get(key, [])]
            return [SubjectRef("api", api_subject(fmt, ep)) for ep in d.get(key, [])]

        attacks = []
        for kind, description, a, b, d in self.attacks:
            main = {
                "credential_stuffing": ("consumers", "endpoints"),
                "brute_force": ("ips",),
                "probing": ("ips",),
                "scraping": ("ips",),
                "flooding": ("consumers",),
                "key_compromise": ("consumers",),
                "anomaly": ("consumers",),
            }[kind]
            subjects = [r for key in main for r in refs(d, key)]
            others = [r for key in ("consumers", "ips", "endpoints") if key not in main for r in refs(d, key)]
            if d.get("anonymous") and fmt != "wso2":  # requests without credentials: the "" consumer
                others.append(SubjectRef("consumer", ""))
            attacks.append(Incident(kind, description, a / 1000, b / 1000, subjects, others))
        end = (self.start_ms + self.minutes * 60_000) / 1000
        flash = [consumer(a.name) for a in apps.values() if a.flash]
        newcomer = apps["NewPartnerApp"]
        lookalikes = [
            Incident(
                "flash_crowd",
                "most consumers triple their traffic for 8 minutes",
                self.flash[0] / 1000,
                self.flash[1] / 1000,
                flash,
            ),
            Incident(
                "steady_giant",
                "InternalBilling: 400 requests a minute, every minute, about 65x the median consumer",
                self.start_ms / 1000,
                end,
                [consumer("InternalBilling")],
            ),
            Incident(
                "new_consumer",
                "NewPartnerApp appears 40% into the run",
                (self.start_ms + int(self.minutes * newcomer.first_seen) * 60_000) / 1000,
                end,
                [consumer("NewPartnerApp")],
            ),
            Incident(
                "login_heavy",
                "MobileApp: users log in all day from 3,000 phone IPs; 4% of logins fail",
                self.start_ms / 1000,
                end,
                [consumer("MobileApp")],
            ),
        ]
        return GroundTruth(fmt, seed, self.start_ms / 1000, end, 60, lines, log, attacks, lookalikes)


def api_subject(fmt: str, ep: _Endpoint) -> str:
    """The api subject gatewatch derives for an endpoint in this format."""
    if fmt == "wso2":
        return f"{ep.api.name}:{ep.api.version} {ep.method} {ep.template}"
    service, _, prefix = _KONG[ep.api]
    path = endpoint(prefix + _fill(ep.template, random.Random(0)))
    return f"{service} {ep.method} {path}" if fmt == "kong" else f"{ep.method} {path}"


def _wso2_line(r: _Req, rng: random.Random, threads: list[str]) -> tuple[int, str]:
    api, app = r.ep.api, r.app
    log = r.ts + r.latency + 1
    prefix = _PREFIX % (_time_of_day(log), rng.choice(threads))
    if r.fault:
        auth = r.fault == "AUTH"
        fields = {
            "apiName": api.name,
            "proxyResponseCode": r.status,
            "apiCreatorTenantDomain": "carbon.super",
            "errorType": r.fault,
            "apiVersion": api.version,
            "gatewayType": "SYNAPSE",
            "apiCreator": "admin",
            "correlationId": _uuid4(rng),
            "errorMessage": "AUTHENTICATION_FAILURE" if auth else "APPLICATION_LEVEL_LIMIT_EXCEEDED",
            "errorCode": 900901 if auth else 900803,
            "keyType": "UNKNOWN" if auth else app.key_type,
            "apiId": api.api_id,
            "applicationName": "UNKNOWN" if auth else app.name,
            "targetResponseCode": -1,
            "requestTimestamp": format_request_timestamp(r.ts),
            "applicationOwner": "UNKNOWN" if auth else app.owner,
            "regionId": "default",
            "applicationId": "UNKNOWN" if auth else app.app_id,
            "apiType": "HTTP",
            "properties": ({} if auth else {"userName": f"{app.owner}@carbon.super"})
            | {"apiContext": api.context, "responseSize": 0, "responseContentType": "application/json"},
        }
        return log, prefix + "apim:faulty, properties :" + msgspec.json.encode(fields).decode() + "\n"
    _, family, platform = _UAS[r.ua]
    user = f"{app.owner}@carbon.super"
    fields = {
        "apiName": api.name,
        "proxyResponseCode": r.status,
        "destination": api.destination,
        "apiCreatorTenantDomain": "carbon.super",
        "platform": platform,
        "apiMethod": r.ep.method,
        "apiVersion": api.version,
        "gatewayType": "SYNAPSE",
        "apiCreator": "admin",
        "responseCacheHit": r.cache_hit,
        "backendLatency": r.backend,
        "correlationId": _uuid4(rng),
        "requestMediationLatency": 1,
        "keyType": app.key_type,
        "apiId": api.api_id,
        "applicationName": app.name,
        "targetResponseCode": r.status,
        "requestTimestamp": format_request_timestamp(r.ts),
        "applicationOwner": app.owner,
        "userAgent": family,
        "userName": user,
        "apiResourceTemplate": r.ep.template,
        "responseLatency": r.latency,
        "regionId": "default",
        "responseMediationLatency": 1,
        "userIp": r.ip,
        "apiContext": api.context,
        "applicationId": app.app_id,
        "apiType": "HTTP",
        "properties": {
            "userName": user,
            "apiContext": api.context,
            "responseSize": r.size,
            "responseContentType": "application/json",
        },
    }
    return log, prefix + "apim:response, properties :" + msgspec.json.encode(fields).decode() + "\n"


def _kong_line(r: _Req, rng: random.Random) -> tuple[int, str]:
    app = r.app
    log = r.ts + r.latency + 1
    routed = not r.raw_path
    service, route, prefix = _KONG[r.ep.api]
    uri = prefix + r.path if routed else r.raw_path
    by_kong = bool(r.fault) or not routed
    rec: dict = {
        "request": {
            "id": stable_hex("req", str(r.ts), r.ip, uri, str(rng.random())),
            "uri": uri,
            "url": f"https://api.example.com{uri}",
            "querystring": {},
            "method": r.ep.method,
            "headers": {"host": "api.example.com", "user-agent": _UAS[r.ua][0], "accept": "*/*"},
            "size": 312,
        },
        "upstream_uri": r.path if routed and not by_kong else "",
        "upstream_status": "" if by_kong else str(r.status),
        "response": {
            "status": r.status,
            "headers": {"content-type": "application/json"},
            "size": r.size + 240,
        },
        "latencies": {"kong": 1, "proxy": -1 if by_kong else r.backend, "request": r.latency, "receive": 0},
    }
    if app is not None:
        rec["authenticated_entity"] = {"id": stable_hex("cred", app.name), "consumer_id": app.kong_id}
        rec["consumer"] = {
            "id": app.kong_id,
            "username": app.name,
            "custom_id": app.owner,
            "created_at": 1762000000,
        }
    if routed:
        rec["route"] = {
            "id": stable_hex("route", route),
            "name": route,
            "paths": [prefix or "/"],
            "strip_path": True,
        }
        rec["service"] = {
            "id": stable_hex("service", service),
            "name": service,
            "host": f"{route}-backend",
            "port": 8080,
        }
    rec |= {
        "client_ip": r.ip,
        "started_at": r.ts,
        "source": "kong" if by_kong else "upstream",
        "workspace": "f381e34e-5c25-4e65-b91b-3c0a86cfc393",
        "workspace_name": "default",
    }
    return log, msgspec.json.encode(rec).decode() + "\n"


_MONTH_ABBR = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def _combined_line(r: _Req) -> tuple[int, str]:
    log = r.ts + r.latency + 1
    t = datetime.fromtimestamp(log // 1000, timezone.utc)
    when = f"{t.day:02d}/{_MONTH_ABBR[t.month - 1]}/{t.year}:{t:%H:%M:%S} +0000"
    path = r.raw_path or _KONG[r.ep.api][2] + r.path
    user = r.app.user if r.app is not None and r.fault != "AUTH" else "-"
    ua = _UAS[r.ua][0]
    request = r.raw_request or f"{r.ep.method} {path} HTTP/1.1"
    return log, f'{r.ip} - {user} [{when}] "{request}" {r.status} {r.size} "-" "{ua}"\n'


# -- the wide scenario (``--scenario wide``): held-out attacks with drawn parameters ----------------------

SCENARIOS = ("standard", "wide")
_MIN_WIDE_MINUTES = 120
_WIDE_WARM_UP_MIN = 20  # an attack starts this far into the run at the earliest: established subjects have history
_WIDE_BUDGET = 20_000  # requests a drawn attack sends at most: keeps line generation fast
_WIDE_KINDS = (
    "credential_stuffing", "brute_force", "probing", "scraping", "flooding", "key_compromise", "form_spam",
    "anomaly",
)  # fmt: skip
# The default thresholds of docs/detection.md, over 1 window, 10 minutes and 1 hour. They decide only
# the ``horizon_s`` label of a drawn attack (the shortest horizon its rate is meant to show on), never
# what is drawn; they are copied, not read from flows/config.py, so a retuning does not move the labels.
_T_AUTH_FAILURES = (6, 15, 40)
_T_FAILING_IPS = (20, 30, 60)
_T_FAILING_SUBNETS = (10, 15, 30)
_T_ERROR_PATHS = (11, 20, 40)
_T_ERRORS = (30, 60, 150)
_T_SENSITIVE = (5, 6, 10)
_T_PAYLOADS = (3, 6, 10)
_T_BAD_REQUESTS = (5, 10, 20)
_T_DISTINCT_PATHS = (40, 150, 400)
_T_SEQUENTIAL_IDS = (20, 60, 150)
_T_HASTY_POSTS = (2, 2, 2)

_TOKEN_EP = _Endpoint(_ACCOUNTS, "POST", "/oauth/token", _LOGIN, 900, 120)
_SIGNIN_EP = _Endpoint(_PIZZA, "POST", "/signin", _LOGIN, 700, 110)
_LOGINS = (_LOGIN_EP, _TOKEN_EP, _SIGNIN_EP)
_DETAILS = (_ITEM_GET, _SHIP_GET, _ORDER_GET, _ACCOUNT)
_HOME = _Endpoint(_WEB, "GET", "/", _LIST, 20_000, 30, cacheable=True)
_PRODUCTS = _Endpoint(_WEB, "GET", "/products", _LIST, 9000, 40)
_PRODUCT = _Endpoint(_WEB, "GET", "/products/{productId}", _ITEM, 7000, 35)
_CATEGORY = _Endpoint(_WEB, "GET", "/category/{name}", _LIST, 9000, 40)
_SEARCH = _Endpoint(_WEB, "GET", "/search", _LIST, 6000, 60)
_ROBOTS = _Endpoint(_WEB, "GET", "/robots.txt", ((1.0, 200),), 310, 2)
# the site's forms: the page, and the form posted back to it (answered with a redirect)
_FORMS = tuple(
    (_Endpoint(_WEB, "GET", path, ((1.0, 200),), 4200, 30), _Endpoint(_WEB, "POST", path, ((1.0, 302),), 0, 60))
    for path in ("/contact", "/guestbook", "/products/{productId}/reviews")
)
_TLS_HELLO = r"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"  # as nginx logs a TLS ClientHello's first bytes
_TRAVERSALS = (
    "/..%2f..%2fetc/passwd",
    "/..%2f..%2f..%2fetc/passwd",
    "/..%2f..%2f..%2f..%2fetc/passwd",
    "/static/..%2f..%2f..%2fetc/passwd",
    "/images/..%2f..%2f..%2f..%2fetc/passwd",
    "/assets/..%2f..%2fetc/shadow",
    "/..%2f..%2f..%2fwindows/win.ini",
    "/download/..%2f..%2f..%2fetc/hosts",
    "/files/..%2f..%2f..%2fproc/self/environ",
)
# query strings of a drawn payload scan (percent-encoded as clients send them); {n} varies per request
_PAYLOADS = (
    "id={n}%27%20OR%20%271%27%3D%271",
    "id={n}%20UNION%20SELECT%20username%2Cpassword%20FROM%20users--",
    "q=%3Cscript%3Ealert({n})%3C%2Fscript%3E",
    "q=%3Cimg%20src%3Dx%20onerror%3Dalert({n})%3E",
    "file=..%2f..%2f..%2fetc%2fpasswd&v={n}",
    "host=127.0.0.{n}%3Bcat%20%2Fetc%2Fpasswd",
)
_ATTACK_OCTETS = (31, 37, 45, 46, 77, 78, 80, 85, 89, 91, 94, 103, 104, 109, 176, 178, 185, 188, 193, 212)
_CARRIER_OCTETS = (2, 5, 39, 49, 101, 110, 112, 117, 151, 174)  # the mobile look-alike's phones
_CATEGORIES = ("pizza", "pasta", "drinks", "desserts", "vegan", "family", "offers", "sides", "salads")


def _loguniform(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi))) if hi > lo else lo


def _net(ip: str) -> str:
    return ip.rpartition(".")[0]


def _first_horizon(count, thresholds: tuple) -> int | None:
    """The shortest horizon (s) whose expected count reaches its threshold; ``count(minutes)``."""
    for minutes, threshold in zip((1, 10, 60), thresholds, strict=True):
        if threshold is not None and count(minutes) >= threshold:
            return minutes * 60
    return None


def _shortest(*horizons: int | None) -> int | None:
    return min((h for h in horizons if h is not None), default=None)


def _within(total: float, duration_min: float):
    """``count(minutes)`` of ``total`` events spread evenly over ``duration_min``."""
    return lambda minutes: total * min(1.0, minutes / max(duration_min, 1e-9))


@dataclass
class _Drawn:
    """One attack of the wide scenario, before it is named in a format."""

    kind: str
    description: str
    start: int  # epoch ms of its first request
    end: int
    subjects: dict
    participants: dict
    horizon_s: int
    params: dict


class _WideScenario(_Scenario):
    """Held-out traffic: each attack kind one or more times, with parameters drawn from wide ranges.

    The standard scenario's consumers and look-alikes, three more established consumers, and
    four more look-alikes (a NAT'd office, a partner moving to new IPs, a declared search
    crawler, a mobile app over thousands of phone IPs that retries its 5xx). Every draw
    comes from ``random.Random(f"wide-{seed}")`` whatever the format; an attack a format
    cannot log (payloads in WSO2, TLS handshakes in Kong and WSO2) is left out of that format.
    """

    def __init__(self, start_ms: int, minutes: int, seed: int, scale: float, fmt: str) -> None:
        super().__init__(start_ms, minutes, seed, scale)
        self.fmt = fmt
        self.seed = seed
        self.end_ms = start_ms + minutes * 60_000
        self.w = random.Random(f"wide-{seed}")
        self.drawn: list[_Drawn] = []
        self.looks: list[tuple[str, str, int, int, dict]] = []
        w = self.w
        extra = (
            _App(
                "5e8d1f2a-3c4b-4d6e-9f7a-8b9c0d1e2f3a",
                "TravelAgency",
                "travel-agency",
                "travelco",
                "httpclient",
                ("198.18.12.40", "198.18.12.41"),
                8,
                0.3,
                11,
                ((_SIGNIN_EP, 1), (_ORDER, 2), (_ORDER_GET, 3), (_MENU, 2)),
                200,
                flash=False,
            ),
            _App(
                "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d",
                "LoyaltyService",
                "svc-loyalty",
                "internal_svc",
                "go",
                ("10.20.7.31", "10.20.7.32"),
                20,
                0.1,
                13,
                ((_TOKEN_EP, 1), (_ACCOUNT, 6), (_PROFILE, 3)),
                600,
                flash=False,
            ),
            _App(
                "9c8b7a6f-5e4d-4c3b-a2f1-e0d9c8b7a6f5",
                "KioskFleet",
                "kiosk-fleet",
                "retail_ops",
                "okhttp",
                ("198.18.40.21", "198.18.40.22", "198.18.40.23", "198.18.40.24"),
                6,
                0.4,
                12,
                ((_TOKEN_EP, 1), (_MENU, 4), (_ORDER, 3), (_ORDER_GET, 2)),
                120,
                flash=False,
            ),
        )
        # look-alikes with normal traffic of their own
        office_login = replace(_LOGIN_EP, statuses=((0.93, 200), (0.995, 401), (1.0, 500)))
        self.office = _App(
            "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
            "HQOffice",
            "hq-office",
            "corp_it",
            "chrome",
            ("81.2.69.160",),
            90,
            0.05,
            13,
            (
                (office_login, 3), (_PROFILE, 4), (_ACCOUNT, 5), (_ORDER_GET, 4), (_ORDER, 2),
                (_ORDER_PUT, 1), (_MENU, 3), (_ITEMS, 2),
            ),  # fmt: skip
            4000,
            flash=False,
        )
        self.partner = _App(
            "3d4e5f6a-7b8c-4d9e-af0b-1c2d3e4f5a6b",
            "PartnerB2B",
            "partner-b2b",
            "b2b_partner",
            "httpclient",
            ("198.18.20.11", "198.18.20.12", "198.18.20.13"),
            10,
            0.2,
            14,
            ((_SHIP_LIST, 1), (_SHIP_GET, 4), (_SHIP_NEW, 2), (_ITEMS, 1)),
            300,
            flash=False,
        )
        self.field = _App(
            "6f5e4d3c-2b1a-4f9e-8d7c-6b5a4f3e2d1c",
            "FieldServiceApp",
            "field-app",
            "field_ops",
            "dalvik",
            (),
            25,  # sessions a minute at scale 1, each 1-3 requests from a phone IP of its own
            0.3,
            15,
            ((_SHIP_GET, 4), (_SHIP_NEW, 2), (_PROFILE, 2), (_ITEMS, 1)),
            5000,
            flash=False,
        )
        self.apps |= {a.name: a for a in (*extra, self.office, self.partner)}
        self.used_nets = {_net(ip) for a in self.apps.values() for ip in a.ips} | {"198.18.52"}
        # established consumers an attack may target, each at most once as a subject
        targets = [
            "OrderProcessing", "StorefrontWeb", "PartnerPortal", "PartnerMobile", "LogisticsPartner",
            "ReportingBot", "DevSandbox", "PriceCompare", "TravelAgency", "LoyaltyService", "KioskFleet",
        ]  # fmt: skip
        self.established = [self.apps[n] for n in targets]
        self.victims = list(self.established)
        w.shuffle(self.victims)
        self.login_eps = list(_LOGINS)
        w.shuffle(self.login_eps)

    # -- draws ------------------------------------------------------------------------------------

    def _fresh(self, n: int, per_subnet: tuple[int, int] = (1, 4), octets=_ATTACK_OCTETS) -> tuple[str, ...]:
        """``n`` never-seen addresses, ``per_subnet`` to a /24 no other traffic uses."""
        w, ips = self.w, []
        while len(ips) < n:
            net = f"{w.choice(octets)}.{w.randint(0, 255)}.{w.randint(0, 255)}"
            if net in self.used_nets:
                continue
            self.used_nets.add(net)
            k = min(w.randint(*per_subnet), n - len(ips))
            ips.extend(f"{net}.{h}" for h in sorted(w.sample(range(2, 254), k)))
        return tuple(ips)

    def _duration(self, lo: float, hi: float) -> float:
        """Minutes, log-uniform in ``[lo, hi]``, capped by what the run leaves after the warm-up."""
        return _loguniform(self.w, lo, max(lo, min(hi, self.minutes - _WIDE_WARM_UP_MIN - 1)))

    def _place(self, duration_min: float, earliest_min: float = _WIDE_WARM_UP_MIN) -> tuple[int, int]:
        latest = max(earliest_min, self.minutes - duration_min)
        a = self.start_ms + int(self.w.uniform(earliest_min, latest) * 60) * 1000
        return a, min(a + int(duration_min * 60_000), self.end_ms)

    def _fit(self, n_ips: int, per_ip: float, duration_min: float) -> tuple[float, float]:
        """Shorten (to 5 minutes), then slow down, an attack over the request budget."""
        if n_ips * per_ip * duration_min > _WIDE_BUDGET:
            duration_min = max(min(5.0, duration_min), _WIDE_BUDGET / (n_ips * per_ip))
        if n_ips * per_ip * duration_min > _WIDE_BUDGET:
            per_ip = _WIDE_BUDGET / (n_ips * duration_min)
        return per_ip, duration_min

    def _times(self, a: int, b: int, per_min: float, timer: bool = False) -> list[int]:
        """Request times in ``[a, b)``: Poisson, or a timer with 3% jitter."""
        w, out = self.w, []
        gap = 60_000 / per_min
        t = a + (w.uniform(0, gap) if timer else w.expovariate(1 / gap))
        while t < b:
            out.append(int(t))
            t += gap * w.uniform(0.97, 1.03) if timer else w.expovariate(1 / gap)
        return out

    def _new_key(self, label: str, ua: str) -> _App:
        """A consumer that appears only with the attack (a self-signup key)."""
        h = stable_hex("wide-key", str(self.seed), label, str(self.w.random()))
        name = f"{label}-{h[:6]}"
        return _App(
            f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}",
            name,
            name,
            f"selfsignup_{h[6:12]}",
            ua,
            (),
            0.0,
            0.0,
            12,
            (),
            self.w.choice((100, 1000, 10_000)),
            flash=False,
            scaled=False,
        )

    def _key(self, label: str, ua: str, p_new: float) -> tuple[_App, str]:
        """An established consumer's key (shared: a participant) or a new one."""
        if self.w.random() < p_new:
            return self._new_key(label, ua), "new"
        return self.w.choice(self.established), "established"

    def _target(self, label: str, ua: str, p_new: float) -> tuple[_App, str]:
        """A consumer that is the attack's subject: established (no other attack targets it) or new."""
        if self.w.random() >= p_new and self.victims:
            return self.victims.pop(), "established"
        return self._new_key(label, ua), "new"

    def _normal_per_min(self, app: _App | None = None, ep: _Endpoint | None = None) -> float:
        """The mean normal rate of an app, or of an endpoint over every app, at this scale."""
        total = 0.0
        for x in self.apps.values():
            if app is not None and x is not app:
                continue
            weights = sum(wt for _, wt in x.endpoints)
            share = 1.0 if ep is None else sum(wt for e, wt in x.endpoints if _same(e, ep)) / weights
            total += x.per_min * (self.scale if x.scaled else 1.0) * share
        return round(total, 2)

    @property
    def paths(self) -> str:
        return "templated" if self.fmt == "wso2" else "concrete"

    def _add(
        self,
        kind: str,
        description: str,
        reqs: list[_Req],
        a: int,
        b: int,
        subjects: dict,
        participants: dict,
        horizon: int | None,
        params: dict,
        formats: tuple[str, ...] = SIM_FORMATS,
    ) -> None:
        """Keep an attack's requests and truth, if this format logs them."""
        if self.fmt not in formats:
            return
        reqs = [r for r in reqs if self.start_ms <= r.ts < self.end_ms]
        logged = [r for r in reqs if not (r.raw_request and self.fmt != "combined")]
        logged = [r for r in logged if not (self.fmt == "wso2" and (r.raw_path or r.ep.api is _WEB))]
        if not logged:
            return
        self.reqs.extend(logged)
        first, last = min(r.ts for r in logged), max(r.ts for r in logged)
        params = {
            "behaviour": "drawn",
            **params,
            "paths": self.paths,
            "requests": len(logged),
            "visible": horizon is not None,
        }
        horizon_s = horizon if horizon is not None else 3600
        self.drawn.append(
            _Drawn(kind, description, first, max(b, last + 1), subjects, participants, horizon_s, params)
        )

    # -- look-alikes ------------------------------------------------------------------------------

    def lookalikes(self) -> None:
        """The wide look-alikes that need more than a consumer's normal traffic."""
        w = self.w
        # the partner moves to a new /24 at normal volume
        move = self.start_ms + int(self.minutes * w.uniform(0.45, 0.6)) * 60_000
        new_ips = tuple(f"198.18.52.{h}" for h in sorted(w.sample(range(10, 60), 3)))
        for i, r in enumerate(self.reqs):
            if r.app is self.partner and r.ts >= move:
                self.reqs[i] = msgspec.structs.replace(r, ip=w.choice(new_ips))
        self.looks.append(
            (
                "partner_new_ips",
                "PartnerB2B's traffic moves to 3 IPs in a new /24 at its normal volume, same client",
                move,
                self.end_ms,
                {"consumers": [self.partner], "ips": list(new_ips)},
            )
        )
        self.looks.append(
            (
                "nat_office",
                "HQOffice: hundreds of users behind one NAT IP, ~90 requests a minute (at scale 1), "
                "steady, ~6% of logins fail",
                self.start_ms,
                self.end_ms,
                {"consumers": [self.office], "ips": list(self.office.ips)},
            )
        )
        self._crawler()
        self._mobile_retries()
        self._form_fillers()

    def _crawler(self) -> None:
        """A declared search crawler: robots.txt first, distinct pages slowly, every answer 200."""
        w = self.w
        bots = tuple(f"66.249.{n}.{w.randint(2, 250)}" for n in (66, 68, 72, 79, 64))
        ok = ((1.0, 200),)
        reqs = []
        for ip in bots:
            t = self.start_ms + w.randint(0, 300_000)
            robots_at = t
            while t < self.end_ms:
                if t >= robots_at:  # robots.txt again every hour or so
                    reqs.append(_request(w, t, None, ip, "googlebot", _ROBOTS, "/robots.txt"))
                    robots_at = t + w.randint(50, 70) * 60_000
                    t += w.randint(2_000, 10_000)
                    if t >= self.end_ms:
                        break
                r = w.random()
                if r < 0.75:
                    ep, path = _PRODUCT, f"/products/{w.randint(10_000, 99_999)}"
                else:
                    ep = _CATEGORY
                    path = f"/category/{w.choice(_CATEGORIES)}?page={w.randint(1, 40)}"
                reqs.append(_request(w, t, None, ip, "googlebot", replace(ep, statuses=ok), path))
                t += int(w.expovariate(1 / 27_000)) + 3_000  # ~2 a minute, never two within 3 s
        if self.fmt != "wso2":  # a crawler reads the public site, which only Kong and nginx log
            self.reqs.extend(reqs)
            self.looks.append(
                (
                    "search_crawler",
                    f"Googlebot from {len(bots)} IPs: robots.txt, then distinct product and category "
                    "pages, ~2 a minute per IP, all 200",
                    self.start_ms,
                    self.end_ms,
                    {"ips": list(bots)},  # not the "" consumer: every anonymous client shares it
                )
            )

    def _form_fillers(self) -> None:
        """People filling in the site's forms: the page, then the post 15 s to 3 minutes later."""
        w, reqs = self.w, []
        people = self._fresh(w.randint(8, 20), (1, 2))
        for ip in people:
            ua = w.choice(("firefox", "chrome", "chrome_mac"))
            for _ in range(w.randint(1, 4)):
                page, post = w.choice(_FORMS)
                t = w.randint(self.start_ms, self.end_ms - 200_000)
                path = _fill(page.template, w)
                reqs.append(_request(w, t, None, ip, ua, page, path))
                reqs.append(_request(w, t + w.randint(15_000, 180_000), None, ip, ua, post, path))
        if self.fmt != "wso2":  # the public site, which only Kong and nginx log
            self.reqs.extend(reqs)
            self.looks.append(
                (
                    "form_fillers",
                    f"{len(people)} people posting the site's forms 15 s to 3 minutes after loading them, "
                    "up to 4 times each",
                    self.start_ms,
                    self.end_ms,
                    {"ips": list(people)},
                )
            )

    def _mobile_retries(self) -> None:
        """A mobile app over thousands of phone IPs: 1-3 requests per IP, a 5xx is retried."""
        w, app = self.w, self.field
        statuses = ((0.95, 200), (0.97, 404), (0.99, 502), (1.0, 503))
        flaky = {ep: replace(ep, statuses=statuses) for ep, _ in app.endpoints}
        eps = [ep for ep, _ in app.endpoints]
        cum = list(accumulate(wt for _, wt in app.endpoints))
        sessions = self._times(self.start_ms, self.end_ms, app.per_min * self.scale)
        pool = self._fresh(len(sessions), (10, 30), _CARRIER_OCTETS)
        for opened, ip in zip(sessions, w.sample(pool, len(pool)), strict=True):
            t = opened
            for _ in range(w.choice((1, 1, 2, 3))):
                ep = flaky[eps[bisect_right(cum, w.random() * cum[-1])]]
                for _retry in range(3):
                    if t >= self.end_ms:
                        break
                    req = _request(w, t, app, ip, w.choice(("dalvik", "okhttp")), ep)
                    self.reqs.append(req)
                    t += req.latency + w.randint(300, 3_000)
                    if req.status < 500:
                        break
        self.looks.append(
            (
                "mobile_retries",
                f"FieldServiceApp from {len(pool):,} phone IPs, 1-3 requests each, 5xx retried",
                self.start_ms,
                self.end_ms,
                {"consumers": [app]},
            )
        )

    # -- attacks ----------------------------------------------------------------------------------

    def inject(self) -> None:
        """The listed behaviours, then each kind one or two more times with drawn parameters."""
        self._slow_brute_force()
        self._distributed_stuffing()
        self._new_key_scraper()
        self._cache_busting()
        self._payload_burst("sqli", 16, "/products", "id={n}%27%20OR%20%271%27%3D%271")
        self._payload_burst("xss", 26, "/search", "q=%3Cscript%3Ealert({n})%3C%2Fscript%3E")
        self._tls_handshakes()
        self._traversal()
        for kind in _WIDE_KINDS:
            for _ in range(1 + (self.w.random() < 0.4)):
                getattr(self, f"_draw_{kind}")()

    def _slow_brute_force(self) -> None:
        w = self.w
        ip, app, ep = self._fresh(1)[0], self.apps["StorefrontWeb"], _LOGIN_EP
        a, b = self._place(60)
        guess = replace(ep, statuses=((1.0, 401),))
        reqs, t = [], a + w.randint(0, 19_999)
        while t < b:
            reqs.append(_request(w, t, app, ip, "firefox", guess))
            t += 20_000 + w.randint(-1_500, 1_500)
        self._add(
            "brute_force",
            "slow brute force: one never-seen IP fails a login on POST /login every 20 s for an hour, "
            "with StorefrontWeb's public key",
            reqs,
            a,
            b,
            {"ips": [ip]},
            {"consumers": [app], "endpoints": [ep]},
            _first_horizon(_within(len(reqs), 60), _T_AUTH_FAILURES),
            {
                "behaviour": "slow_brute_force", "n_ips": 1, "per_ip_per_min": 3.0, "total_per_min": 3.0,
                "duration_min": 60, "failure_ratio": 1.0, "subject": "new", "consumer": app.name,
                "key": "established", "endpoint": f"{ep.method} {ep.template}",
            },
        )  # fmt: skip

    def _stuffing(self, behaviour: str, n_ips: int, tries: int, duration_min: float, ratio: float) -> None:
        """Credential stuffing: each of ``n_ips`` IPs tries ``tries`` times at random in the span."""
        w = self.w
        ua = w.choice(("requests", "chrome", "okhttp", "go"))
        app, subject = self._target("signup", ua, 0.25)
        ep = self.login_eps.pop()
        ips = self._fresh(n_ips, (1, 4))
        a, b = self._place(duration_min)
        stuffing = replace(ep, statuses=((1 - ratio, 200), (1.0, 401)))
        times = sorted(w.randint(a, b - 1) for _ in range(n_ips * tries))
        order = [ip for ip in ips for _ in range(tries)]
        w.shuffle(order)
        reqs = [_request(w, t, app, ip, ua, stuffing) for t, ip in zip(times, order, strict=True)]
        nets: dict[str, int] = {}
        for ip in ips:
            nets[_net(ip)] = nets.get(_net(ip), 0) + tries

        def spread(minutes: float, counts) -> float:  # distinct failing sources within ``minutes``
            p = min(1.0, minutes / duration_min)
            return sum(1 - (1 - p) ** (k * ratio) for k in counts)

        horizon = _shortest(
            _first_horizon(lambda m: spread(m, [tries] * n_ips), _T_FAILING_IPS),
            _first_horizon(lambda m: spread(m, nets.values()), _T_FAILING_SUBNETS),
        )
        who = "a new key" if subject == "new" else f"{app.name}'s key"
        self._add(
            "credential_stuffing",
            f"{n_ips} IPs in {len(nets)} /24s try {tries} password(s) each on {ep.method} {ep.template} "
            f"over {duration_min:.0f} min with {who}, {ratio:.0%} answered 401",
            reqs,
            a,
            b,
            {"consumers": [app], "endpoints": [ep]},
            {"ips": list(ips)},
            horizon,
            {
                "behaviour": behaviour, "n_ips": n_ips, "n_subnets": len(nets), "tries_per_ip": tries,
                "per_ip_per_min": round(tries / duration_min, 3),
                "total_per_min": round(n_ips * tries / duration_min, 2), "duration_min": round(duration_min, 1),
                "failure_ratio": round(ratio, 3), "subject": subject, "consumer": app.name,
                "consumer_normal_per_min": self._normal_per_min(app=app) if subject == "established" else 0.0,
                "endpoint": f"{ep.method} {ep.template}", "endpoint_normal_per_min": self._normal_per_min(ep=ep),
                "user_agent": ua,
            },
        )  # fmt: skip

    def _distributed_stuffing(self) -> None:
        self._stuffing("distributed_stuffing", 150, 2, 40, 1.0)

    def _scraper(
        self,
        behaviour: str,
        n_ips: int,
        per_ip: float,
        duration_min: float,
        app: _App,
        subject: str,
        ep: _Endpoint,
        order: str,
        timer: bool,
    ) -> None:
        w = self.w
        ips = self._fresh(n_ips, (1, 4))
        a, b = self._place(duration_min, 5 if subject == "new" else _WIDE_WARM_UP_MIN)
        scrape = replace(ep, statuses=((0.96, 200), (1.0, 404)))
        first = w.randint(100_000, 500_000)
        streams = [(t, k) for k, _ in enumerate(ips) for t in self._times(a, b, per_ip, timer)]
        streams.sort()
        reqs, seen = [], [0] * n_ips
        prefix = ep.template.rsplit("/", 1)[0]
        for i, (t, k) in enumerate(streams):
            if order in ("sequential", "interleaved"):  # one id after the other, dealt round the IPs
                n = first + i
            elif order == "blocks":  # each IP reads its own run of ids
                n, seen[k] = first + k * 1_000_000 + seen[k], seen[k] + 1
            else:
                n = w.randint(100_000, 999_999)
            ident = f"ACC-{n}" if ep is _ACCOUNT else f"TRK{n:09d}" if ep is _SHIP_GET else str(n)
            reqs.append(_request(w, t, app, ips[k], app.ua, scrape, f"{prefix}/{ident}"))
        total = len(reqs)
        per_ip_total = total / n_ips
        if self.fmt == "wso2":  # templates: only the timing of each IP shows
            per_ip_h = horizon = 60 if timer and per_ip >= 30 else None
        else:
            seq_ip = per_ip_total if order in ("blocks", "sequential") else 0.0
            per_ip_h = _shortest(
                _first_horizon(_within(per_ip_total, duration_min), _T_DISTINCT_PATHS),
                _first_horizon(_within(seq_ip, duration_min), _T_SEQUENTIAL_IDS),
                60 if timer and per_ip >= 30 else None,
            )
            seq_all = total if order in ("sequential", "interleaved") else seq_ip
            horizon = _shortest(
                per_ip_h,
                _first_horizon(_within(total, duration_min), _T_DISTINCT_PATHS),
                _first_horizon(_within(seq_all, duration_min), _T_SEQUENTIAL_IDS),
            )
        subjects: dict = {"ips": list(ips)}
        participants: dict = {"endpoints": [ep]}
        (subjects if subject == "new" else participants)["consumers"] = [app]
        who = "a brand-new key" if subject == "new" else f"{app.name}'s key"
        self._add(
            "scraping",
            f"{n_ips} IP(s) read {ep.method} {ep.template} ({order} ids, {'timer' if timer else 'Poisson'} "
            f"timing) at {per_ip:.1f} a minute each for {duration_min:.0f} min with {who}",
            reqs,
            a,
            b,
            subjects,
            participants,
            horizon,
            {
                "behaviour": behaviour, "n_ips": n_ips, "per_ip_per_min": round(per_ip, 2),
                "total_per_min": round(per_ip * n_ips, 1), "duration_min": round(duration_min, 1),
                "subject": subject, "consumer": app.name, "endpoint": f"{ep.method} {ep.template}",
                "order": order, "timing": "timer" if timer else "poisson", "per_ip_horizon_s": per_ip_h,
            },
        )  # fmt: skip

    def _new_key_scraper(self) -> None:
        w = self.w
        app = self._new_key("catalog-sync", "requests")
        order = w.choice(("interleaved", "random"))
        self._scraper("new_key_scraper", 24, 70 / 24, self._duration(20, 90), app, "new", _ITEM_GET, order, False)

    def _cache_busting(self) -> None:
        w = self.w
        ips = self._fresh(8, (1, 3))
        a = self._place(1, 5)[0]
        reqs = []
        for _ in range(355):
            busted = f"/?{stable_hex('bust', str(w.random()))[: w.randint(8, 10)]}"
            req = _request(w, a + w.randint(0, 59_999), None, w.choice(ips), "chrome", _HOME, busted)
            reqs.append(req)
        per_ip = 355 / 8
        self._add(
            "flooding",
            "cache busting: 355 GET /?<random> in one minute from 8 never-seen IPs, no credentials",
            reqs,
            a,
            a + 60_000,
            {"ips": list(ips)},
            {"endpoints": [_HOME], "anonymous": True},
            60 if per_ip >= 30 else None,
            {
                "behaviour": "cache_busting", "n_ips": 8, "per_ip_per_min": round(per_ip, 1),
                "total_per_min": 355, "duration_min": 1, "subject": "new", "consumer": None,
                "endpoint": "GET /",
            },
            formats=("kong", "combined"),
        )  # fmt: skip

    def _payload_burst(self, payload: str, n: int, path: str, query: str) -> None:
        w = self.w
        ip = self._fresh(1)[0]
        a = self._place(1, 5)[0]
        ep = _PRODUCTS if path == "/products" else _SEARCH
        ok = replace(ep, statuses=((0.8, 200), (1.0, 500)))
        reqs = [
            _request(w, a + w.randint(0, 999), None, ip, "firefox", ok, f"{path}?{query.format(n=i)}")
            for i in range(n)
        ]
        self._add(
            "probing",
            f"{n} {'SQL injection' if payload == 'sqli' else 'XSS'} requests in one second from one IP "
            f"(GET {path}?{query.format(n=1)})",
            reqs,
            a,
            a + 1000,
            {"ips": [ip]},
            {"endpoints": [ep], "anonymous": True},
            _first_horizon(_within(n, 1 / 60), _T_PAYLOADS),
            {
                "behaviour": f"{payload}_burst", "n_ips": 1, "per_ip_per_min": n * 60, "total_per_min": n * 60,
                "duration_min": round(1 / 60, 3), "subject": "new", "consumer": None, "payload": payload,
                "endpoint": f"GET {path}",
            },
            formats=("kong", "combined"),
        )  # fmt: skip

    def _tls_handshakes(self) -> None:
        w = self.w
        ip = self._fresh(1)[0]
        a = self._place(1, 5)[0]
        reqs = [
            _Req(a + w.randint(0, 999), None, ip, "none", _HOME, "", 400, 150, 0, 1, raw_path="/", raw_request=_TLS_HELLO)
            for _ in range(12)
        ]
        self._add(
            "probing",
            "12 TLS handshakes sent to the plain-HTTP port within one second, answered 400",
            reqs,
            a,
            a + 1000,
            {"ips": [ip]},
            {"anonymous": True},
            _first_horizon(_within(12, 1 / 60), _T_BAD_REQUESTS),
            {
                "behaviour": "tls_handshakes", "n_ips": 1, "per_ip_per_min": 720, "total_per_min": 720,
                "duration_min": round(1 / 60, 3), "subject": "new", "consumer": None,
            },
            formats=("combined",),
        )  # fmt: skip

    def _traversal(self) -> None:
        w = self.w
        ip = self._fresh(1)[0]
        a = self._place(1, 5)[0]
        reqs = [
            _Req(a + w.randint(0, 29_999), None, ip, "curl", _HOME, "", 404, 150, 0, 2, raw_path=p)
            for p in _TRAVERSALS
        ]
        self._add(
            "probing",
            f"path traversal: {len(_TRAVERSALS)} distinct /..%2f..%2fetc/passwd-like probes within 30 s, all 404",
            reqs,
            a,
            a + 30_000,
            {"ips": [ip]},
            {"anonymous": True},
            _shortest(
                _first_horizon(_within(9, 0.5), _T_PAYLOADS), _first_horizon(_within(9, 0.5), _T_ERROR_PATHS)
            ),
            {
                "behaviour": "path_traversal", "n_ips": 1, "per_ip_per_min": 18, "total_per_min": 18,
                "duration_min": 0.5, "subject": "new", "consumer": None, "payload": "traversal",
            },
            formats=("kong", "combined"),
        )  # fmt: skip

    # each _draw_<kind>: one attack of that kind with parameters drawn from wide ranges

    def _draw_credential_stuffing(self) -> None:
        w = self.w
        if not self.login_eps:
            return
        n_ips = round(_loguniform(w, 20, 500))
        tries = w.randint(1, 4)
        self._stuffing("drawn", n_ips, tries, self._duration(5, 240), w.uniform(0.85, 1.0))

    def _draw_brute_force(self) -> None:
        w = self.w
        n_ips = w.choice((1, 1, 1, 2, 3))
        per_ip, duration = self._fit(n_ips, _loguniform(w, 1, 600), self._duration(5, 300))
        timer = w.random() < 0.5
        ratio = w.uniform(0.85, 1.0)
        ep = w.choice(_LOGINS)
        ua = w.choice(("requests", "firefox", "curl", "go"))
        app, key = self._key("bf", ua, 0.3)
        if key == "established" and w.random() < 0.2:  # a host behind the client's own IPs
            ips, subject, n_ips = (w.choice(app.ips),), "established", 1
        else:
            ips, subject = self._fresh(n_ips, (1, 2)), "new"
        a, b = self._place(duration, 5)
        guess = replace(ep, statuses=((1 - ratio, 200), (1.0, 401)))
        reqs = [_request(w, t, app, ip, ua, guess) for ip in ips for t in self._times(a, b, per_ip, timer)]
        horizon = _first_horizon(_within(per_ip * duration * ratio, duration), _T_AUTH_FAILURES)
        burst = per_ip / 6 >= 6  # login attempts within 10 s
        who = "a new key" if key == "new" else f"{app.name}'s key"
        self._add(
            "brute_force",
            f"{n_ips} {subject} IP(s) each guess passwords on {ep.method} {ep.template} at {per_ip:.1f} a "
            f"minute for {duration:.0f} min with {who}, {ratio:.0%} answered 401",
            reqs,
            a,
            b,
            {"ips": list(ips)},
            {"consumers": [app], "endpoints": [ep]},
            _shortest(horizon, 60 if burst else None),
            {
                "n_ips": n_ips, "per_ip_per_min": round(per_ip, 2), "total_per_min": round(per_ip * n_ips, 1),
                "duration_min": round(duration, 1), "failure_ratio": round(ratio, 3), "subject": subject,
                "key": key, "consumer": app.name, "endpoint": f"{ep.method} {ep.template}", "user_agent": ua,
                "timing": "timer" if timer else "poisson",
                "tier_limit_per_min": self._limit(app),
            },
        )  # fmt: skip

    def _draw_probing(self) -> None:
        w = self.w
        style = w.choice(("wordlist", "ids", "payload"))
        n_ips = max(1, round(_loguniform(w, 1, 20)))
        per_ip, duration = self._fit(n_ips, _loguniform(w, 1, 600), self._duration(5, 120))
        ua = w.choice(("nikto", "nuclei", "sqlmap", "curl", "chrome", "go", "requests"))
        app, key = self._key("probe", ua, 0.3)
        ips = self._fresh(n_ips, (1, 3))
        a, b = self._place(duration, 5)
        denied = ((0.05, 200), (0.75, 404), (1.0, 403))
        wordlist = list(_PROBE_PATHS)
        w.shuffle(wordlist)
        reqs, touched = [], {}
        for k, ip in enumerate(ips):
            words = iter(wordlist[k % 7 :])
            for t in self._times(a, b, per_ip, w.random() < 0.5):
                r = w.random()
                if style == "payload":
                    ep = w.choice((_ITEMS, _SHIP_LIST, _MENU))
                    q = w.choice(_PAYLOADS).format(n=w.randint(1, 999))
                    touched[ep] = None
                    ep = replace(ep, statuses=((0.6, 200), (0.8, 400), (1.0, 500)))
                    reqs.append(_request(w, t, app, ip, ua, ep, f"{_fill(ep.template, w)}?{q}"))
                elif style == "ids" or r < 0.5:
                    ep = w.choice(_DETAILS)
                    touched[ep] = None
                    reqs.append(_request(w, t, app, ip, ua, replace(ep, statuses=denied)))
                else:
                    path = next(words, None) or f"/{stable_hex(ip, str(t))[:8]}.php"
                    reqs.append(_Req(t, None, ip, ua, _MENU, "", 404, 150, 0, 2, raw_path=path))
        scanner = ua in ("nikto", "nuclei", "sqlmap")
        share = 1.0 if style != "wordlist" else 0.5
        if style == "payload":
            per_ip_h = _first_horizon(_within(per_ip * duration, duration), _T_PAYLOADS)
        elif self.fmt == "wso2":  # templates: an error burst, and the few templates as distinct paths
            api_share = 1.0 if style == "ids" else 0.5
            per_ip_h = _first_horizon(_within(per_ip * duration * api_share * 0.95, duration), _T_ERRORS)
        else:
            per_ip_h = _first_horizon(_within(per_ip * duration * 0.95, duration), _T_ERROR_PATHS)
            if style == "wordlist":
                sensitive = sum(1 for p in wordlist if classify(p) & SENSITIVE)
                per_ip_h = _shortest(
                    per_ip_h,
                    _first_horizon(
                        lambda m: min(sensitive, per_ip * min(m, duration) * share), _T_SENSITIVE
                    ),
                )
        if scanner and per_ip >= 2 and self.fmt != "wso2":  # WSO2 logs the agent's family, "Other"
            per_ip_h = _shortest(per_ip_h, 60)
        self._add(
            "probing",
            f"{n_ips} IP(s) probe ({style}, user agent {ua}) at {per_ip:.1f} requests a minute each for "
            f"{duration:.0f} min, {'payloads in the query string' if style == 'payload' else 'mostly 403/404'}",
            reqs,
            a,
            b,
            {"ips": list(ips)},
            {"consumers": [app], "endpoints": list(touched), "anonymous": style == "wordlist"},
            per_ip_h,
            {
                "n_ips": n_ips, "per_ip_per_min": round(per_ip, 2), "total_per_min": round(per_ip * n_ips, 1),
                "duration_min": round(duration, 1), "style": style, "user_agent": ua, "scanner_agent": scanner,
                "subject": "new", "key": key, "consumer": app.name,
            },
            formats=("kong", "combined") if style == "payload" else SIM_FORMATS,
        )  # fmt: skip

    def _draw_scraping(self) -> None:
        w = self.w
        n_ips = max(1, round(_loguniform(w, 1, 50)))
        per_ip, duration = self._fit(n_ips, _loguniform(w, 1, 600), self._duration(10, 240))
        ua = w.choice(("requests", "curl", "go", "chrome", "httpclient"))
        app, subject = self._key("scrape", ua, 0.4)
        orders = ("sequential", "random") if n_ips == 1 else ("interleaved", "blocks", "random")
        self._scraper(
            "drawn", n_ips, per_ip, duration, app, subject, w.choice(_DETAILS), w.choice(orders), w.random() < 0.5
        )

    def _draw_flooding(self) -> None:
        w = self.w
        variant = w.choice(("client_loop", "new_key", "cache_busting"))
        duration = self._duration(5, 180)
        if variant == "cache_busting":
            n_ips = max(1, round(_loguniform(w, 1, 20)))
            per_ip, duration = self._fit(n_ips, _loguniform(w, 10, 200), duration)
            ips = self._fresh(n_ips, (1, 4))
            a, b = self._place(duration, 5)
            ep = w.choice((_HOME, _PRODUCTS))
            reqs = [
                _request(w, t, None, ip, "chrome", ep, f"{ep.template}?{stable_hex(ip, str(t))[:9]}")
                for ip in ips
                for t in self._times(a, b, per_ip)
            ]
            self._add(
                "flooding",
                f"cache busting: {n_ips} never-seen IP(s) send GET {ep.template}?<random> at {per_ip:.0f} a "
                f"minute each for {duration:.0f} min",
                reqs,
                a,
                b,
                {"ips": list(ips)},
                {"endpoints": [ep], "anonymous": True},
                60 if per_ip >= 30 else None,
                {
                    "variant": variant, "n_ips": n_ips, "per_ip_per_min": round(per_ip, 1),
                    "total_per_min": round(per_ip * n_ips, 1), "duration_min": round(duration, 1),
                    "subject": "new", "consumer": None, "endpoint": f"GET {ep.template}",
                },
                formats=("kong", "combined"),
            )  # fmt: skip
            return
        if variant == "client_loop":
            app, subject = self._target("loop", "go", 0.0)
        else:
            app, subject = self._new_key("burst", w.choice(("go", "requests", "httpclient"))), "new"
        variant = "client_loop" if subject == "established" else "new_key"
        normal = self._normal_per_min(app=app) if subject == "established" else 0.0
        if subject == "established":
            factor = _loguniform(w, 2, 50)
            total = max(normal * factor, 20.0)
            ips = app.ips
        else:
            factor = None
            total = _loguniform(w, 60, 1500)
            ips = self._fresh(max(1, round(_loguniform(w, 1, 20))), (1, 4))
        per_ip, duration = self._fit(len(ips), total / len(ips), duration)
        total = per_ip * len(ips)
        a, b = self._place(duration, _WIDE_WARM_UP_MIN if subject == "established" else 5)
        eps = [ep for ep, _ in app.endpoints] or [_ITEMS, _MENU, _ORDER_GET]
        reqs = [
            _request(w, t, app, w.choice(ips), app.ua, w.choice(eps)) for t in self._times(a, b, total)
        ]
        limit = self._limit(app)
        volume = subject == "established" and total + normal >= max(4 * normal, 60)
        throttled = total + normal >= 2 * limit and total + normal - limit >= 10
        self._add(
            "flooding",
            f"{app.name if subject == 'established' else 'a brand-new key'}: {total:.0f} extra requests a "
            f"minute from {len(ips)} IP(s) for {duration:.0f} min (normal {normal:.0f}, tier limit {limit})",
            reqs,
            a,
            b,
            {"consumers": [app]},
            {"ips": list(ips), "endpoints": eps},
            60 if volume or throttled else None,
            {
                "variant": variant, "n_ips": len(ips), "per_ip_per_min": round(per_ip, 2),
                "total_per_min": round(total, 1), "duration_min": round(duration, 1), "subject": subject,
                "consumer": app.name, "normal_per_min": normal,
                "factor": None if factor is None else round(factor, 2), "tier_limit_per_min": limit,
            },
        )  # fmt: skip

    def _draw_form_spam(self) -> None:
        """Bots posting a form back within 0.2-1.5 s of loading it, a few times each, slowly."""
        w = self.w
        n_ips = max(1, round(_loguniform(w, 1, 500)))
        posts = w.randint(2, 6)  # per IP
        duration = self._duration(5, 600)
        page, post = w.choice(_FORMS)
        ua = w.choice(("chrome", "firefox", "requests", "curl"))
        ips = self._fresh(n_ips, (1, 8))
        a, b = self._place(duration)
        reqs = []
        for ip in ips:
            for t in sorted(w.randint(a, b - 2_000) for _ in range(posts)):
                path = _fill(page.template, w)
                reqs.append(_request(w, t, None, ip, ua, page, path))
                reqs.append(_request(w, t + w.randint(200, 1_500), None, ip, ua, post, path))
        self._add(
            "form_spam",
            f"form spam: {n_ips} never-seen IPs each post {post.method} {post.template} {posts} times "
            f"over {duration:.0f} min, within 1.5 s of loading it",
            reqs,
            a,
            b,
            {"ips": list(ips)},
            {"anonymous": True},
            _first_horizon(_within(posts, duration), _T_HASTY_POSTS),
            {
                "behaviour": "drawn", "n_ips": n_ips, "per_ip_per_min": 2 * posts / duration,
                "total_per_min": 2 * posts * n_ips / duration, "duration_min": round(duration, 1),
                "subject": "new", "consumer": None, "endpoint": f"{post.method} {post.template}",
            },
            formats=("kong", "combined"),
        )  # fmt: skip

    def _draw_key_compromise(self) -> None:
        w = self.w
        if not self.victims:
            return
        app = self.victims.pop()
        n_ips = max(1, round(_loguniform(w, 1, 500)))
        ips = self._fresh(n_ips, (1, 4))
        n_nets = len({_net(ip) for ip in ips})
        ua = app.ua if w.random() < 0.3 else w.choice(("curl", "requests", "go"))
        total, duration = self._fit(1, _loguniform(w, 2, 300), self._duration(5, 240))
        a, b = self._place(duration)
        eps = [ep for ep, _ in app.endpoints if ep.method == "GET"] or [ep for ep, _ in app.endpoints]
        reqs = [_request(w, t, app, w.choice(ips), ua, w.choice(eps)) for t in self._times(a, b, total)]
        threshold = 5 / 2 if ua != app.ua else 5  # a never-seen agent halves it
        per_window = n_nets * (1 - math.exp(-total / n_nets))  # distinct new /24s a minute
        self._add(
            "key_compromise",
            f"{app.name}'s key used from {n_ips} never-seen IP(s) in {n_nets} /24(s) with {ua}, "
            f"{total:.1f} requests a minute for {duration:.0f} min",
            reqs,
            a,
            b,
            {"consumers": [app]},
            {"ips": list(ips), "endpoints": eps},
            60 if per_window >= threshold else None,
            {
                "n_ips": n_ips, "n_subnets": n_nets, "per_ip_per_min": round(total / n_ips, 3),
                "total_per_min": round(total, 2), "duration_min": round(duration, 1), "subject": "established",
                "consumer": app.name, "user_agent": ua, "new_user_agent": ua != app.ua,
                "normal_per_min": self._normal_per_min(app=app),
            },
        )  # fmt: skip

    def _draw_anomaly(self) -> None:
        w = self.w
        if not self.victims:
            return
        app = self.victims.pop()
        variant = w.choice(("export", "errors", "slow"))
        normal = self._normal_per_min(app=app)
        total, duration = self._fit(1, max(2.0, normal * w.uniform(0.5, 2.0)), self._duration(10, 120))
        a, b = self._place(duration)
        base = w.choice([ep for ep, _ in app.endpoints])
        if variant == "export":
            size, slow, fail = _loguniform(w, 20, 2000), _loguniform(w, 2, 20), w.uniform(0, 0.4)
        elif variant == "errors":
            size, slow, fail = 1.0, 1.0, w.uniform(0.2, 0.9)
        else:
            size, slow, fail = 1.0, _loguniform(w, 5, 30), 0.0
        ep = replace(
            base,
            statuses=((1 - fail, base.statuses[0][1]), (1.0, 500)),
            body_bytes=int(base.body_bytes * size),
            backend_ms=int(base.backend_ms * slow),
        )
        reqs = [_request(w, t, app, w.choice(app.ips), app.ua, ep) for t in self._times(a, b, total)]
        self._add(
            "anomaly",
            f"{app.name} {variant}: {ep.method} {ep.template} answers x{size:.0f} bytes, x{slow:.1f} latency, "
            f"{fail:.0%} 500s, {total:.1f} requests a minute for {duration:.0f} min",
            reqs,
            a,
            b,
            {"consumers": [app], "endpoints": [base]},  # the consumer misbehaves, or the endpoint it calls
            {"ips": list(app.ips)},
            None if variant == "slow" and self.fmt == "combined" else 60,  # combined logs no latency
            {
                "variant": variant, "n_ips": len(app.ips), "total_per_min": round(total, 2),
                "per_ip_per_min": round(total / len(app.ips), 2), "duration_min": round(duration, 1),
                "subject": "established", "consumer": app.name, "normal_per_min": normal,
                "bytes_factor": round(size, 1), "latency_factor": round(slow, 2), "server_error_ratio": round(fail, 3),
                "endpoint": f"{ep.method} {ep.template}",
            },
        )  # fmt: skip

    # -- ground truth -----------------------------------------------------------------------------

    def truth(self, fmt: str, lines: int, log: str, seed: int) -> GroundTruth:
        def refs(d: dict) -> list[SubjectRef]:
            out = [_consumer_ref(fmt, app) for app in d.get("consumers", [])]
            out += [SubjectRef("ip", ip) for ip in d.get("ips", [])]
            out += [SubjectRef("api", api_subject(fmt, ep)) for ep in d.get("endpoints", [])]
            if d.get("anonymous") and fmt != "wso2":
                out.append(SubjectRef("consumer", ""))
            return list(dict.fromkeys(out))

        attacks = [
            Incident(d.kind, d.description, d.start / 1000, d.end / 1000, refs(d.subjects), refs(d.participants),
                     d.horizon_s, d.params)
            for d in sorted(self.drawn, key=lambda d: (d.start, d.kind))
        ]  # fmt: skip
        standard = super().truth(fmt, lines, log, seed).lookalikes
        # a look-alike consumer an attack uses while it lasts is that attack's, not the look-alike's
        grace = 60_000
        for i, la in enumerate(standard):
            busy = {
                r
                for d in self.drawn
                if d.start < la.end * 1000 + grace and d.end + grace > la.start * 1000
                for r in refs(d.subjects) + refs(d.participants)
            }
            standard[i] = msgspec.structs.replace(la, subjects=[r for r in la.subjects if r not in busy])
        lookalikes = [la for la in standard if la.subjects] + [
            Incident(kind, description, a / 1000, b / 1000, refs(d)) for kind, description, a, b, d in self.looks
        ]
        return GroundTruth(
            fmt, seed, self.start_ms / 1000, self.end_ms / 1000, 60, lines, log, attacks, lookalikes, "wide"
        )


def _same(a: _Endpoint, b: _Endpoint) -> bool:
    return a.api is b.api and a.method == b.method and a.template == b.template


def _consumer_ref(fmt: str, app: _App) -> SubjectRef:
    ident = {"wso2": app.app_id, "kong": app.kong_id, "combined": app.user}[fmt]
    return SubjectRef("consumer", ident, app.user if fmt == "combined" else app.name)


def simulate(
    fmt: str,
    out_dir: str | Path,
    *,
    minutes: int = 90,
    seed: int = 1,
    scale: float = 1.0,
    start: datetime = datetime(2026, 11, 2, 8, tzinfo=timezone.utc),
    scenario: str = "standard",
) -> GroundTruth:
    """Write a labelled log of every attack kind and benign look-alikes, and its ground truth.

    Normal traffic: eleven consumers of different sizes and daily rhythms,
    tier limits, invalid-key noise. Look-alikes that must stay clean: a flash
    crowd (most consumers triple for 8 minutes), a very large steady internal
    consumer, a consumer that first appears 40% into the run, and a login-heavy
    mobile app with an ordinary failure rate. Attacks, one of each kind:
    credential stuffing, brute force, probing, scraping, flooding, key
    compromise and an anomaly (see each :class:`Incident`'s description).

    Writes ``<out_dir>/<fmt>.log`` and ``<out_dir>/<fmt>.truth.json``; the same
    arguments give the same bytes. WSO2 cannot log a request that matches no
    API, so there the probe's unrouted requests are left out.

    ``scenario="wide"`` is the held-out evaluation (:class:`_WideScenario`): the
    same normal traffic and look-alikes plus three more consumers and four more
    look-alikes (a NAT'd office, a partner moving to new IPs, a search crawler,
    a mobile app over thousands of IPs with retries), and each attack kind one
    or more times with parameters drawn from wide ranges, next to fixed slow and
    content-based behaviours. Each attack's truth records its drawn ``params``
    and ``horizon_s``. It needs at least 120 minutes; 240 lets the slow ones show.

    Args:
        fmt: ``wso2``, ``kong`` or ``combined``.
        out_dir: Folder to write into (created if needed).
        minutes: Length of the run (at least 60).
        seed: Seeds every random choice.
        scale: Multiplier on the normal consumers' rates (and, above 1, their tier limits).
        start: Start of the run, timezone-aware.
        scenario: ``standard`` (the one the detectors were tuned on) or ``wide`` (held out).

    Returns:
        The ground truth that was written.

    Raises:
        ValueError: an unknown format or scenario, a naive start, a run shorter than 60 minutes
            (120 for ``wide``) or a scale that is not positive.
    """
    if not scale > 0:  # a negative one makes negative rates, and a request loop that never ends
        msg = f"scale must be positive, got {scale}"
        raise ValueError(msg)
    if fmt not in SIM_FORMATS:
        msg = f"unknown format {fmt!r}; choose one of {', '.join(SIM_FORMATS)}"
        raise ValueError(msg)
    if start.tzinfo is None:
        msg = "start must be timezone-aware"
        raise ValueError(msg)
    if scenario not in SCENARIOS:
        msg = f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}"
        raise ValueError(msg)
    if minutes < _MIN_SCENARIO_MINUTES:
        msg = f"a scenario needs at least {_MIN_SCENARIO_MINUTES} minutes, got {minutes}"
        raise ValueError(msg)
    if scenario == "wide" and minutes < _MIN_WIDE_MINUTES:
        msg = f"the wide scenario needs at least {_MIN_WIDE_MINUTES} minutes, got {minutes}"
        raise ValueError(msg)
    if scenario == "wide":
        sc = _WideScenario(round(start.timestamp() * 1000), minutes, seed, scale, fmt)
        sc.normal()
        sc.lookalikes()
    else:
        sc = _Scenario(round(start.timestamp() * 1000), minutes, seed, scale)
        sc.normal()
    sc.inject()
    sc.throttle()
    rng = random.Random(f"render-{seed}")
    threads = [f"PassThroughMessageProcessor-{n}" for n in sorted(rng.sample(range(1, 400), 48))]
    if fmt == "wso2":
        lines = [_wso2_line(r, rng, threads) for r in sc.reqs if not r.raw_path]
    elif fmt == "kong":  # a request line that is not HTTP never reaches Kong's log
        lines = [_kong_line(r, rng) for r in sc.reqs if not r.raw_request]
    else:
        lines = [_combined_line(r) for r in sc.reqs]
    lines.sort(key=itemgetter(0))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"{fmt}.log"
    with open(log, "w", encoding="utf-8", newline="\n") as f:
        f.writelines(line for _, line in lines)
    truth = sc.truth(fmt, len(lines), log.name, seed)
    (out / f"{fmt}.truth.json").write_bytes(msgspec.json.format(msgspec.json.encode(truth), indent=2) + b"\n")
    return truth


def main(argv: list[str] | None = None) -> None:
    """Command line: write a log and print (or save) its ground truth as JSON."""
    parser = argparse.ArgumentParser(prog="python -m gatewatch.flows.lab.simulate", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="log file to write")
    parser.add_argument(
        "--start", type=datetime.fromisoformat, required=True, help="with a zone, e.g. 2026-11-02T09:00:00Z"
    )
    parser.add_argument("--minutes", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--no-attack", dest="attack", action="store_false")
    parser.add_argument("--truth", type=Path, help="write the ground truth here instead of stdout")
    args = parser.parse_args(argv)
    truth = generate_wso2(
        args.out, start=args.start, minutes=args.minutes, seed=args.seed, attack=args.attack, scale=args.scale
    )
    text = msgspec.json.format(msgspec.json.encode(truth), indent=2).decode() + "\n"
    if args.truth:
        args.truth.write_text(text, encoding="utf-8")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
