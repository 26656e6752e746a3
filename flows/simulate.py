"""Seeded WSO2 API-M 4.x ``apim_metrics.log`` traffic with an injected attack.

The lines follow CONTRACTS.md §1 exactly: the log4j prefix
``HH:mm:ss,SSS [-] [thread]  INFO ELKCounterMetric``, then
``apimMetrics: apim:response|apim:faulty, properties :{json}`` with the
API-M 4.3+ field sets (response §1.3, fault §1.4). Key order is one fixed
Gson-HashMap-like order, taken from the real sample line in §1.9.

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

    python -m flows.simulate sample_logs/wso2_apim_metrics.log --start 2026-11-02T09:00:00Z \\
        --minutes 90 --seed 7 --scale 0.4 --truth sample_logs/wso2_apim_metrics.truth.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import lru_cache
from itertools import accumulate
from operator import itemgetter
from pathlib import Path

import msgspec

from flows.features import endpoint

__all__ = [
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
    ips: tuple[str, ...]
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


def generate_wso2(
    out_path: str | Path,
    *,
    start: datetime,
    minutes: int,
    seed: int,
    attack: bool = True,
    scale: float = 1.0,
    max_lines: int | None = None,
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
    sources = [
        _Source(rng, c, start_ms, end_ms, c.per_min * (scale if c.scaled else 1.0)) for c in _CONSUMERS
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
    """

    kind: str
    description: str
    start: float  # epoch seconds
    end: float
    subjects: list[SubjectRef]
    participants: list[SubjectRef] = msgspec.field(default_factory=list)


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
            "paths": [prefix],
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


def simulate(
    fmt: str,
    out_dir: str | Path,
    *,
    minutes: int = 90,
    seed: int = 1,
    scale: float = 1.0,
    start: datetime = datetime(2026, 11, 2, 8, tzinfo=timezone.utc),
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

    Args:
        fmt: ``wso2``, ``kong`` or ``combined``.
        out_dir: Folder to write into (created if needed).
        minutes: Length of the run (at least 60).
        seed: Seeds every random choice.
        scale: Multiplier on the normal consumers' rates (and, above 1, their tier limits).
        start: Start of the run, timezone-aware.

    Returns:
        The ground truth that was written.

    Raises:
        ValueError: an unknown format, a naive start, a run shorter than 60 minutes or a scale
            that is not positive.
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
    if minutes < _MIN_SCENARIO_MINUTES:
        msg = f"a scenario needs at least {_MIN_SCENARIO_MINUTES} minutes, got {minutes}"
        raise ValueError(msg)
    sc = _Scenario(round(start.timestamp() * 1000), minutes, seed, scale)
    sc.normal()
    sc.inject()
    sc.throttle()
    rng = random.Random(f"render-{seed}")
    threads = [f"PassThroughMessageProcessor-{n}" for n in sorted(rng.sample(range(1, 400), 48))]
    if fmt == "wso2":
        lines = [_wso2_line(r, rng, threads) for r in sc.reqs if not r.raw_path]
    elif fmt == "kong":
        lines = [_kong_line(r, rng) for r in sc.reqs]
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
    parser = argparse.ArgumentParser(prog="python -m flows.simulate", description=__doc__.split("\n")[0])
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
