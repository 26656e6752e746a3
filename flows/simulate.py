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

__all__ = ["Attack", "Truth", "format_request_timestamp", "generate_wso2", "main", "scale_for"]


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
        for p, status in ep.statuses:
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
