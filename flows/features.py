"""Event-time windows and the features of each subject (plain Python, no Bytewax).

Abuse shows on three kinds of subject, so every event is counted three times,
each by its own shard family (``flows/dataflow.py`` routes them):

- **consumer** (the application / API key / basic-auth user): one cell per
  (window, API, consumer), which is also a ``traffic`` row;
- **ip** (the client address): one cell per (window, IP);
- **api** (an endpoint: API, method and resource, concrete ids folded into
  ``{id}``): one cell per (window, endpoint).

Each family has a cap on the cells of a window (``pipeline.max_ips_per_window``,
``max_consumers_per_window``, ``max_endpoints_per_window``): past it, subjects
new to the window are counted together (:class:`Overflow`, applied as the shard
takes cells: :meth:`WindowTable._adopt`). The sets of attacker-chosen values a
cell keeps (paths, user agents …) stop growing at ``MAX_CELL_VALUES``.

A :class:`WindowTable` keeps one family's open tumbling windows as
``{window_start: {key: accumulator}}`` and closes a window once the watermark
(newest event time minus the allowed lateness) passes its end. An event for a
window already closed is not dropped: it is counted in a separate *late*
cell for that window. The per-event loops do as little as possible (counters,
set inserts); everything else is computed once per closed window: a
subject's feature dict (``ConsumerWindow.features``, :func:`api_features`), or
for IPs, whose cells are mostly one-off addresses, one column per feature over
the whole window (:func:`ip_feature_columns`).

Features, per window and subject (the detectors read what they need):

=====================  ======================================================
``requests``           events in the window
``auth_failures``      events with ``auth_failure`` (401/403, WSO2 AUTH faults)
``auth_failure_ratio`` the same as a share of requests
``errors``             (ip) answers 400/403/404/405
``error_ratio``        4xx share, throttling aside (ip: 400/403/404/405 only)
``server_error_ratio`` 5xx share
``throttled``          429 answers and WSO2 ``THROTTLED`` faults
``throttled_ratio``    the same as a share
``bytes_per_request``  response bytes per request
``latency_p95_ms``     (consumer, api) p95 of the response latency
``distinct_ips``       distinct client IPs (consumer, api); exact up to ``EXACT_IPS`` per cell,
                       then estimated (:class:`IpSketch`, 3.3 % standard error)
``distinct_subnets``   distinct /24 (IPv6: /64) subnets of those IPs (the same)
``failing_ips``        distinct client IPs with an auth failure (consumer, api; the same)
``failing_subnets``    distinct subnets of those (the same)
``distinct_ua_families`` (consumer) distinct user-agent families
``new_subnets``        (consumer) subnets never seen for this consumer (of more than 1,024, the
                       1,024 of lowest hash: every window samples the same ones)
``new_ua_families``    (consumer) user-agent families never seen for it
``read_ratio``         GET/HEAD share
``write_ratio``        (ip) share of other methods
``detail_ratio``       (ip) share of reads of detail resources (``/items/{sku}``, ``/items/42``)
``distinct_paths``     (ip) distinct non-static paths read
``sequential_ids``     (ip) ids read in sequence (``/items/41``, ``/items/42`` …)
``regularity``         (ip) ``1 - CV`` of the gaps between requests (0 for ≤ 10 requests)
``error_paths``        (ip) distinct paths answered 400/403/404/405
``sensitive_paths``    (ip) distinct sensitive files requested
``scanner_requests``   (ip) requests of an IP that used a scanner's user agent
``login_requests``     (ip) writes to a login path
``login_burst``        (ip) most login writes within ``BURST_S`` seconds
``login_share``        (ip) login writes as a share of requests
``hasty_posts``        (ip) writes to a web page (not an API, not a login) within ``FORM_FILL_S``
                       seconds of the same IP loading that page: a form no one read
``payload_requests``   (ip) requests carrying an attack payload: SQL injection, XSS, path traversal,
                       command injection (``flows/payloads.py``; formats that log concrete requests)
``bad_requests``       (ip) malformed request lines (TLS handshakes to a plain port, invalid versions)
``bad_versions``       (ip) those of them that are an HTTP request but for the version (``GET / HTTP/1.2``)
``max_queries_per_path`` (ip) most distinct query strings on one path (cache busting: ``/?<random>``)
``probe_paths``        (ip) distinct admin-console or WordPress plugin paths answered 403/404
``proxy_requests``     (ip) refused requests to use the server as a proxy (``CONNECT host:port``,
                       ``GET http://elsewhere/`` answered 400/405)
``enumerated_users``   (ip) distinct ``author=N`` values requested (WordPress user enumeration)
``keyed``              (ip) 1 when the IP's requests carry a consumer (key, application, user)
``distinct_uas``       (ip) distinct user agents
``ua_share``           (ip) distinct user agents per request (1: a new one every request)
``peer_shift``         median rise (log space) of the family's subjects in this window
=====================  ======================================================
"""

from __future__ import annotations

import heapq
import math
import re
import sys
from array import array
from collections import Counter, deque
from collections.abc import Callable, Collection, Container, Iterable
from dataclasses import dataclass
from functools import cache
from hashlib import blake2b
from itertools import compress, islice, pairwise, repeat
from operator import attrgetter, is_, not_
from pathlib import Path
from typing import ClassVar

import msgspec
import numpy as np
from msgspec import Struct

from gatewatch.detectors.base import subnet
from gatewatch.flows.events import Event
from gatewatch.flows.payloads import payload_kind

BURST_S = 10.0  # span of ``login_burst``
FORM_FILL_S = 2.0  # a form posted this soon after its page loaded was not filled in by a person
MAX_EARLY_POSTS = 64  # per IP cell: pages posted before the cell loaded one (see IpAcc.merge)
MAX_TIMESTAMPS = 512  # per IP and window, for ``regularity``
MAX_LOGIN_TIMES = 4096  # login timestamps an IP cell keeps, for ``login_burst``: far above its threshold
MAX_SEEN = 1024  # subnets / UA families remembered per consumer
MAX_QUERIES = 1024  # distinct path?query targets an IP cell keeps (enumeration, cache busting)
EXACT_IPS = 4096  # distinct client IPs a consumer or endpoint cell keeps exactly; past it, an IpSketch
EXAMPLE_IPS = 5  # client IPs a finding's context shows
# distinct paths, user agents … a cell keeps per set: far above every detector's threshold, and an
# attacker's flood of one-off values stops growing there (checked as cells merge, not per event)
MAX_CELL_VALUES = 4096
OVERFLOW = ""  # the key of a window's Overflow among its cells (no IP cell has it, other keys are tuples)
OVERFLOW_CONSUMER = "~overflow"  # the consumer of a window's traffic rows for consumers past the cap

# path flags; SERVABLE: sensitive by its extension only (a .sql, .bak, .db file): an app may serve
# such files as its content, so one counts as probed only when refused or missing; ESCAPED: a
# percent-escape or a "..", where a traversal payload can hide (flows/payloads.py); PAGE: a web
# page that may hold a form (not static, not a login, not an API: no /api, version or .json)
STATIC, LOGIN, SENSITIVE, DETAIL, SERVABLE, ESCAPED, PAGE = 1, 2, 4, 8, 16, 32, 64
_STATIC_EXT = frozenset(
    "css js mjs map png jpg jpeg gif ico svg webp avif bmp woff woff2 ttf eot otf mp3 mp4 webm ogg".split()
)
_LOGIN_NAMES = frozenset(
    "login log-in logon signin sign-in sign_in authenticate auth token session sessions wp-login xmlrpc "
    "j_security_check".split()
)
_SENSITIVE_NAMES = frozenset(
    "wp-config.php.bak wp-config.php~ wp-config.old web.config phpinfo.php server-status id_rsa id_dsa "
    "id_ecdsa id_ed25519 backup.sql dump.sql database.sql config.php.bak settings.php.bak credentials".split()
)
_SENSITIVE_EXT = frozenset("bak old orig swp sql sqlite db pem key".split())
# what scanners look for: admin consoles (CrowdSec's list, flows/data/) and WordPress plugin files
_ADMIN_PATHS = tuple(
    line
    for line in (Path(__file__).parent / "data" / "admin_interfaces.txt").read_text().splitlines()
    if line and not line.startswith("#")
)
_WORDPRESS_PROBE = re.compile(r"/wp-.*\.php|/wp-content/plugins/.*\.(?:txt|md)")
_AUTHOR = re.compile(r"(?:^|&)author=([0-9]+)", re.IGNORECASE)
_API_SEGMENT = re.compile(r"api|graphql|rest|v[0-9]{1,2}|[0-9]+(?:\.[0-9]+)+", re.IGNORECASE)
_API_EXT = frozenset("json xml".split())


def _id_shapes(possessive: str = "") -> str:
    """The shapes of a concrete id, each quantifier followed by ``possessive``."""
    p = possessive
    return rf"[0-9]+{p}|[0-9a-fA-F-]{{8,}}{p}|[A-Za-z]{{0,12}}{p}[-_]?{p}[0-9]+{p}"


# an API version (/v2/login, /api/V10/items) looks like an id but names no resource instance
_VERSION = r"(?![vV][0-9]{1,2}(?:/|\Z))"
_ID = re.compile(r"\{[^}]*\}|" + _VERSION + rf"(?:{_id_shapes()})")  # a template segment, or a concrete id
# Possessive quantifiers (Python 3.11+) never give back: that changes no match here, since
# each run is followed by a character its shorter forms cannot be followed by, and cuts the
# folding from 1.1 to 0.67 us a path. Anchored on "/": a fifth faster than a lookbehind.
_ID_SEGMENT = re.compile(rf"/{_VERSION}(?:{_id_shapes('+' if sys.version_info >= (3, 11) else '')})(?=/|\Z)")
_LAST_NUMBER = re.compile(r"[0-9]+(?=[^0-9]*$)")
_DIGITS = "0123456789"
_SCANNERS = (
    "nikto", "sqlmap", "nmap", "masscan", "zgrab", "nuclei", "wpscan", "dirbuster", "gobuster", "dirb/",
    "ffuf", "wfuzz", "acunetix", "nessus", "openvas", "w3af", "arachni", "skipfish", "netsparker", "qualys",
    "jaeles", "zmeu", "morfeus", "fuzz faster u fool", "hydra", "commix", "whatweb", "xsstrike",
)  # fmt: skip
_BROWSERS = (
    ("edg/", "Edge"),
    ("opr/", "Opera"),
    ("firefox/", "Firefox"),
    ("chrome/", "Chrome"),
    ("safari/", "Safari"),
)

_CACHE_MAX = 100_000
_flags: dict[str, int] = {}
_endpoints: dict[str, str] = {}  # resources without digits, and paths with digits outside their ids
_shapes: dict[bytes, str] = {}  # path shapes (see endpoint_of)
_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_families: dict[str, str] = {}
_scanner_uas: dict[str, bool] = {}
_probe_paths: dict[str, bool] = {}
_hashes: dict[str, int] = {}  # hash64 of IPs and subnets
_CLIENT_IP, _TS, _BYTES_OUT, _CELL_MARKS = map(attrgetter, ("client_ip", "ts", "bytes_out", "marks"))


def _cached(cache: dict, key, compute):
    value = cache.get(key)
    if value is None:
        if len(cache) > _CACHE_MAX:
            cache.clear()
        value = cache[key] = compute(key)
    return value


def classify(resource: str) -> int:
    """Flags of a path or template: ``STATIC``, ``LOGIN``, ``SENSITIVE``, ``DETAIL``, ``PAGE`` ….

    >>> classify("/wp-login.php") == LOGIN, classify("/.git/HEAD") == SENSITIVE
    (True, True)
    >>> classify("/items/{sku}") == DETAIL | PAGE, classify("/app.js") == STATIC
    (True, True)
    >>> classify("/migrations/0001_init.sql") == SENSITIVE | SERVABLE
    True
    >>> classify("/contact") == PAGE, classify("/api/contact") == 0, classify("/shop/1.0.0/contact") == 0
    (True, True, True)
    """
    path = resource.partition("?")[0].lower()
    segments = [s for s in path.split("/") if s]
    last = segments[-1] if segments else ""
    stem, dot, ext = last.rpartition(".")
    flags = 0
    if dot and stem and ext in _STATIC_EXT:
        flags |= STATIC
    if (stem if dot and stem else last) in _LOGIN_NAMES or path.endswith(("/oauth/token", "/oauth2/token")):
        flags |= LOGIN
    if any(s.startswith(".") and s != ".well-known" for s in segments) or last in _SENSITIVE_NAMES:
        flags |= SENSITIVE
    elif dot and stem and ext in _SENSITIVE_EXT:
        flags |= SENSITIVE | SERVABLE
    if last and not flags & STATIC and _ID.fullmatch(last):
        flags |= DETAIL
    if "%" in path or ".." in path:
        flags |= ESCAPED
    if (
        path
        and not flags & (STATIC | LOGIN | SENSITIVE)
        and ext not in _API_EXT
        and not any(map(_API_SEGMENT.fullmatch, segments))
    ):
        flags |= PAGE
    return flags


def is_probe_path(resource: str) -> bool:
    """Tell whether a path is one scanners look for: an admin console, a WordPress plugin file.

    Judged on the concrete path (folding ids would hide ``/phpmyadmin2017``).

    >>> is_probe_path("/phpmyadmin2017/index.php"), is_probe_path("/wp-content/plugins/x/readme.txt")
    (True, True)
    >>> is_probe_path("/items/42"), is_probe_path("/blog/wp-guide")
    (False, False)
    """
    path = resource.lower()
    return any(a in path for a in _ADMIN_PATHS) or _WORDPRESS_PROBE.search(path) is not None


def endpoint(resource: str) -> str:
    """The resource with concrete ids folded into ``{id}`` (templates stay as they are).

    >>> endpoint("/items/1042?x=1"), endpoint("/order/{orderId}"), endpoint("/accounts/login")
    ('/items/{id}', '/order/{orderId}', '/accounts/login')
    >>> endpoint("/v2/orders/A-1042"), endpoint("/api/V10/items/9")
    ('/v2/orders/{id}', '/api/V10/items/{id}')
    """
    return _ID_SEGMENT.sub("/{id}", "/" + resource.partition("?")[0])[1:]  # "/" + : a leading id segment too


def _endpoint_of_shape(shape: bytes) -> str:
    return endpoint(shape.decode("utf-8", "surrogatepass"))


def endpoint_of(resource: str) -> str:
    """:func:`endpoint`, cached: the parsers fold every event's resource (``Event.endpoint``).

    Most concrete paths are one-offs (``/orders/80412``), so the cache is keyed by the
    path's shape: its bytes with every digit made 0 (0.06 us, against 0.6 us for a
    ``str.translate``). Which segments are ids depends only on the character classes,
    which that keeps; the folded shape is the endpoint unless it still holds a 0 (a digit
    outside the ids), and then the path itself is folded. A resource without digits (WSO2's
    templates, most fixed paths) is its own shape, and is cached under itself as well: a
    hit then costs one lookup (0.05 us, against 0.4 us through the shape).
    """
    ep = _endpoints.get(resource)
    if ep is not None:
        return ep
    try:
        shape = resource.encode().translate(_ZERO_DIGITS)
    except UnicodeEncodeError:  # a lone surrogate, from a JSON escape
        shape = resource.encode("utf-8", "surrogatepass").translate(_ZERO_DIGITS)
    ep = _shapes.get(shape)
    if ep is None:
        ep = _cached(_shapes, shape, _endpoint_of_shape)
    if "0" in ep:
        return _cached(_endpoints, resource, endpoint)
    if b"0" not in shape:
        _cached(_endpoints, resource, lambda _: ep)
    return ep


def ua_family(user_agent: str) -> str:
    """A coarse user-agent family: the browser, or the client's product token.

    WSO2 logs families already (``Chrome``, ``Python Requests``); they are kept.

    >>> ua_family("Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/98.0 Safari/537.36")
    'Chrome'
    >>> ua_family("python-requests/2.31.0"), ua_family("Python Requests")
    ('python-requests', 'Python Requests')
    """
    if "/" not in user_agent:
        return user_agent
    low = user_agent.lower()
    if low.startswith("mozilla/"):
        for token, family in _BROWSERS:
            if token in low:
                return family
    return user_agent.split("/", 1)[0].split(" ", 1)[0]


def is_scanner(user_agent: str) -> bool:
    """Tell whether a user agent is a known vulnerability scanner's.

    >>> is_scanner("Mozilla/5.00 (Nikto/2.1.5) (Evasions:None) (Test:Port Check)"), is_scanner("curl/8.1")
    (True, False)
    """
    low = user_agent.lower()
    return any(s in low for s in _SCANNERS)


_NUMPY_IDS = 64  # past this many ids, sorting them in numpy beats a set lookup per id


def sequential_ids(paths: Collection[str]) -> int:
    """The longest family of paths that differ only in an id read in sequence.

    Counts the ids whose predecessor (or the one before) was also read.

    >>> sequential_ids([f"/items/{i}" for i in range(100, 130)] + ["/about"])
    29
    """
    if len(paths) < 2:  # most IP windows: nothing to be in sequence with
        return 0
    # keyed by the path around the id: its head alone when the id ends the path, as most do
    # (no regex), else (head, tail)
    groups: dict[str | tuple[str, str], set[int]] = {}
    for p in paths:
        head = p.rstrip(_DIGITS)
        if len(head) < len(p):
            key: str | tuple[str, str] = head
            number = p[len(head) :]
        elif (m := _LAST_NUMBER.search(p)) is not None:
            key, number = (p[: m.start()], p[m.end() :]), m.group()
        else:
            continue
        if len(number) <= 12:
            ids = groups.get(key)
            if ids is None:
                groups[key] = {int(number)}
            else:
                ids.add(int(number))
    best = 0
    for ids in groups.values():
        if len(ids) <= best:
            continue
        if len(ids) > _NUMPY_IDS:  # the ids in sequence are those 1 or 2 above the id before
            ordered = np.fromiter(ids, np.int64, len(ids))
            ordered.sort()
            best = max(best, int(np.count_nonzero(np.diff(ordered) <= 2)))
        else:
            best = max(best, sum(1 for i in ids if i - 1 in ids or i - 2 in ids))
    return best


def regularity(timestamps: list[float]) -> float:
    """``1 - CV`` of the gaps between sorted timestamps, clipped to [0, 1]; 0 for 10 or fewer.

    >>> regularity([float(i) for i in range(30)]), regularity([0.0] * 30)
    (1.0, 0.0)
    """
    if len(timestamps) <= 10:
        return 0.0
    gaps = [b - a for a, b in pairwise(sorted(timestamps))]
    mean = sum(gaps) / len(gaps)
    if mean <= 0:
        return 0.0
    cv = math.sqrt(sum((g - mean) ** 2 for g in gaps) / len(gaps)) / mean
    return max(0.0, 1.0 - cv)


def max_in_span(timestamps: list[float], span: float) -> int:
    """The most timestamps within any ``span`` seconds.

    >>> max_in_span([0.0, 1.0, 2.0, 30.0, 30.5], 10.0)
    3
    """
    ts = sorted(timestamps)
    best = lo = 0
    for hi, t in enumerate(ts):
        while t - ts[lo] > span:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def add_counts(counts: dict[int, int], other: dict[int, int]) -> None:
    """Add ``other``'s counts into ``counts`` (latency histograms of two cells of one window)."""
    for value, count in other.items():
        counts[value] = counts.get(value, 0) + count


def quantile(counts: dict[int, int], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of values given as ``{value: count}``, if any."""
    total = sum(counts.values())
    if not total:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= rank:
            return float(value)
    return None  # pragma: no cover - rank <= total always stops the loop


class _Slotted:
    __slots__ = ()
    # the slots of earlier versions, by count, and a default for each slot added since: a
    # recovery snapshot taken before an upgrade still loads
    LEGACY_SLOTS: ClassVar[dict[int, tuple[str, ...]]] = {}
    ADDED: ClassVar[dict[str, Callable[[], object]]] = {}

    def __getstate__(self):
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state):
        names = self.__slots__ if len(state) == len(self.__slots__) else self.LEGACY_SLOTS[len(state)]
        for name, value in zip(names, state, strict=True):
            setattr(self, name, value)
        if names is not self.__slots__:
            for name in set(self.__slots__) - set(names):
                setattr(self, name, self.ADDED[name]())


class _Cell(_Slotted):
    """A counted cell, sent between processes as columns (:func:`pack_cells`)."""

    __slots__ = ()
    ARRAYS: ClassVar[tuple[str, ...]] = ()  # array('d') slots: a batch sends each as one buffer
    _fields: ClassVar[tuple[str, ...]]  # the other slots
    _values: ClassVar[Callable[[object], tuple]]  # a cell's values of _fields, read in C
    _assign: ClassVar[Callable[[object, tuple], None]]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls._fields = tuple(s for s in cls.__slots__ if s not in cls.ARRAYS)
        cls._values = attrgetter(*cls._fields)
        # generated, as dataclasses generate __init__: one unpacking assignment costs a quarter
        # of a setattr per slot, and this runs for every cell another process counted
        code = f"def assign(self, values):\n    {', '.join('self.' + f for f in cls._fields)}, = values\n"
        namespace: dict = {}
        exec(code, namespace)  # noqa: S102 - the source is built from the class's own slot names
        cls._assign = namespace["assign"]


def pack_cells(cells: dict) -> tuple:
    """A window's cells as columns to pickle: their keys, and one group per class of cell.

    Pickled one by one, each :class:`_Cell`'s state is built and applied in Python, and an IP
    cell's timestamps go through the array reconstructor: 13 us a one-off IP's cell. As columns
    (tuples read in C, one buffer per array slot) it is about 6 us. An IP window's one-event
    cells (:class:`OneEvent`) go as MessagePack, encoded and decoded in C: 1.3 us a cell,
    against 3.9 us for pickling the tuples of their fields.
    """
    values = list(cells.values())
    kinds = list(map(type, values))
    classes = list(dict.fromkeys(kinds))
    if len(classes) == 1:
        return list(cells), None, [_pack_group(classes[0], values)]
    groups = [_pack_group(cls, list(compress(values, map(is_, kinds, repeat(cls))))) for cls in classes]
    return list(cells), list(map(classes.index, kinds)), groups


_ENCODE_STRUCTS = msgspec.msgpack.Encoder().encode


@cache
def _struct_decoder(cls: type) -> Callable[[bytes], list]:
    return msgspec.msgpack.Decoder(list[cls]).decode


def _pack_group(cls: type, values: list) -> tuple:
    if not issubclass(cls, _Cell):  # a msgspec Struct (OneEvent)
        return cls, _ENCODE_STRUCTS(values), None
    arrays = []
    for name in cls.ARRAYS:
        column = list(map(attrgetter(name), values))
        arrays.append((list(map(len, column)), b"".join(map(array.tobytes, column))))
    return cls, list(map(cls._values, values)), arrays


def _unpack_group(cls: type, values: list | bytes, arrays: list | None) -> list:
    if arrays is None:
        return _struct_decoder(cls)(values)
    new, assign = cls.__new__, cls._assign
    cells = []
    for cell_values in values:
        cell = new(cls)
        assign(cell, cell_values)
        cells.append(cell)
    for name, (lengths, buffer) in zip(cls.ARRAYS, arrays, strict=True):
        column, start = array("d", buffer), 0
        for cell, length in zip(cells, lengths, strict=True):
            setattr(cell, name, column[start : start + length])
            start += length
    return cells


def unpack_cells(packed: tuple) -> dict:
    """The cells :func:`pack_cells` packed, in their order."""
    keys, kinds, groups = packed
    values = [_unpack_group(*group) for group in groups]
    if kinds is None:
        return dict(zip(keys, values[0], strict=True))
    each = [iter(v) for v in values]
    return dict(zip(keys, map(next, map(each.__getitem__, kinds)), strict=True))


_HLL_P = 10  # 2**10 registers
_HLL_M = 1 << _HLL_P
_HLL_Q = 64 - _HLL_P  # hash bits left for the rank
_HLL_REST = (1 << _HLL_Q) - 1
_DOOR_BITS = 1 << 22  # doorkeeper of a window past the IP cap: 512 KiB
_DOOR_RESET = _DOOR_BITS >> 4  # IPs marked before it is cleared: about 1.4 % false "came back"


def hash64(value: str) -> int:
    """A stable 64-bit hash (blake2b): the same in every process and run, unlike ``hash()``."""
    return int.from_bytes(blake2b(value.encode(), digest_size=8).digest(), "big")


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        before = z
        z += x * y
        y += y
        if z == before:
            return z


def _tau(x: float) -> float:
    if x in (0.0, 1.0):
        return 0.0
    y, z = 1.0, 1.0 - x
    while True:
        x = math.sqrt(x)
        before = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z == before:
            return z / 3


class HyperLogLog(_Slotted):
    """An approximate distinct count in 1 KiB: 1024 registers, fed with :func:`hash64` values.

    Relative standard error 1.04 / sqrt(1024) = 3.3 % at every count (Ertl's improved
    estimator, 2017: no bias tables, exact enough for small counts too); the union of two
    sketches is their register-wise maximum.

    >>> h = HyperLogLog()
    >>> for i in range(20_000):
    ...     h.add_hash(hash64(f"10.0.{i >> 8}.{i & 255}"))
    >>> abs(len(h) - 20_000) < 0.1 * 20_000, len(HyperLogLog())
    (True, 0)
    """

    __slots__ = ("registers",)

    def __init__(self) -> None:
        self.registers = bytearray(_HLL_M)

    def add_hash(self, h: int) -> None:
        j = h >> _HLL_Q
        rank = _HLL_Q + 1 - (h & _HLL_REST).bit_length()
        if rank > self.registers[j]:  # noqa: PLR1730 - most adds change nothing: no write then
            self.registers[j] = rank

    def add_hashes(self, hashes: list[int] | np.ndarray) -> None:
        """:meth:`add_hash` each of ``hashes``, in NumPy: a register keeps its highest rank, whatever the order."""
        if not len(hashes):
            return
        h = np.asarray(hashes, np.uint64)
        low = h & np.uint64(_HLL_REST)
        # bit_length of each low part (below 2**54), from two halves a float holds exactly
        high = low >> np.uint64(27)
        bits = np.where(high > 0, 27 + np.frexp(high.astype(np.float64))[1], np.frexp(low.astype(np.float64))[1])
        ranks = (_HLL_Q + 1 - bits).astype(np.uint8)
        np.maximum.at(np.frombuffer(self.registers, np.uint8), (h >> np.uint64(_HLL_Q)).astype(np.intp), ranks)

    def update(self, other: HyperLogLog) -> None:
        """Become the union of both (register-wise maximum, in NumPy: a merge of two cells' sketches)."""
        mine, theirs = np.frombuffer(self.registers, np.uint8), np.frombuffer(other.registers, np.uint8)
        self.registers = bytearray(np.maximum(mine, theirs).tobytes())

    def estimate(self) -> float:
        regs = self.registers
        m = _HLL_M
        counts = [regs.count(k) for k in range(_HLL_Q + 2)]
        z = m * _tau(1.0 - counts[_HLL_Q + 1] / m)
        for k in range(_HLL_Q, 0, -1):
            z = 0.5 * (z + counts[k])
        z += m * _sigma(counts[0] / m)
        return m * m / (2 * math.log(2) * z)

    def __len__(self) -> int:
        return round(self.estimate())


_NO_CUT = (1 << 64) - 1  # the highest hash64: a sample with room takes any subnet
_NO_SAMPLE = -1  # below every hash64: a sketch keeping no subnets takes none


def _lowest_ips(*groups: Iterable[str]) -> list[str]:
    """The lowest ``EXAMPLE_IPS`` distinct IPs of ``groups``: a sketch's examples, whatever the order they came in."""
    return sorted(set().union(*groups))[:EXAMPLE_IPS]


def _lowest(hashes: np.ndarray, k: int) -> list[int]:
    """The positions of the ``k`` lowest of ``hashes`` (all of them if fewer)."""
    if len(hashes) <= k:
        return list(range(len(hashes)))
    return np.argpartition(hashes, k - 1)[:k].tolist()


class IpSketch(_Slotted):
    """A cell's distinct client IPs past ``EXACT_IPS``: approximate counts and a few exact values.

    Two :class:`HyperLogLog` (the IPs, and their /24 or /64 subnets: 3.3 % standard error
    each), the lowest ``EXAMPLE_IPS`` IPs it was given (finding context), and a sample of its
    subnets, the ``keep_subnets`` of lowest :func:`hash64` (a consumer's never-seen subnets are
    counted among those). Neither depends on the order IPs come in or sketches merge in, so
    every layout of workers keeps the same; and every window samples the same part of the
    subnets, so a subnet seen again is sampled again. About 2.5 KiB plus the sample, however
    many IPs it sees.
    """

    __slots__ = ("cut", "examples", "ips", "keep_subnets", "subnet_sample", "subnets")
    LEGACY_SLOTS: ClassVar[dict[int, tuple[str, ...]]] = {
        5: ("examples", "ips", "keep_subnets", "subnet_sample", "subnets")
    }
    ADDED: ClassVar[dict[str, Callable[[], object]]] = {"cut": lambda: _NO_CUT}

    def __init__(self, keep_subnets: int = 0) -> None:
        self.ips = HyperLogLog()
        self.subnets = HyperLogLog()
        self.examples: list[str] = []
        self.keep_subnets = keep_subnets
        # subnet -> hash64: the sample, and up to as many candidates more until the next _trim
        self.subnet_sample: dict[str, int] = {}
        self.cut = _NO_CUT if keep_subnets else _NO_SAMPLE  # a subnet hashing above it is not sampled

    def __setstate__(self, state: tuple) -> None:
        super().__setstate__(state)
        if type(self.subnet_sample) is set:  # a snapshot from when the sample was the first subnets seen
            self.subnet_sample = {net: _ip_hash(net) for net in sorted(self.subnet_sample)}
            self.cut = _NO_CUT if self.keep_subnets else _NO_SAMPLE
            self._trim()

    @classmethod
    def of(cls, ips: Iterable[str], keep_subnets: int = 0) -> IpSketch:
        """A sketch of an exact set."""
        sketch = cls(keep_subnets)
        sketch.add_all(list(ips))
        return sketch

    def add(self, ip: str) -> None:
        # cached: the consumer and the endpoint families hash each IP, and subnets recur
        self.ips.add_hash(_cached(_hashes, ip, hash64))
        net = subnet(ip)
        h = _cached(_hashes, net, hash64)
        self.subnets.add_hash(h)
        if h <= self.cut:
            sample = self.subnet_sample
            sample[net] = h
            if len(sample) >= 2 * self.keep_subnets:
                self._trim()
        examples = self.examples
        if len(examples) < EXAMPLE_IPS or ip < examples[-1]:
            self.examples = _lowest_ips(examples, (ip,))

    def add_all(self, ips: list[str]) -> None:
        """:meth:`add` each of ``ips`` (a set that outgrew ``EXACT_IPS``, a batch's set merged)."""
        if not ips:
            return
        nets = list(map(subnet, ips))
        net_hashes = np.fromiter(map(_ip_hash, nets), np.uint64, len(nets))
        self.ips.add_hashes(np.fromiter(map(_ip_hash, ips), np.uint64, len(ips)))
        self.subnets.add_hashes(net_hashes)
        if self.keep_subnets:
            taken = (net_hashes <= self.cut).tolist()
            self.subnet_sample.update(zip(compress(nets, taken), compress(net_hashes.tolist(), taken), strict=True))
            if len(self.subnet_sample) >= 2 * self.keep_subnets:
                self._trim()
        lowest = heapq.nsmallest(EXAMPLE_IPS, ips)
        if len(set(lowest)) < len(lowest):  # an IP given twice
            lowest = heapq.nsmallest(EXAMPLE_IPS, set(ips))
        self.examples = _lowest_ips(self.examples, lowest)

    def merge(self, other: IpSketch) -> None:
        """Count ``other``'s IPs too."""
        self.ips.update(other.ips)
        self.subnets.update(other.subnets)
        self.examples = _lowest_ips(self.examples, other.examples)
        if self.keep_subnets:
            if other.keep_subnets >= self.keep_subnets:  # it holds at least as many subnets up to its cut
                self.cut = min(self.cut, other.cut)
            self.subnet_sample.update(other.subnet_sample)
            self._trim()

    def _trim(self) -> None:
        """Keep the sample's ``keep_subnets`` of lowest hash; none above them is taken from now on."""
        sample = self.subnet_sample
        if len(sample) > self.keep_subnets:
            nets = list(sample)
            hashes = np.fromiter(sample.values(), np.uint64, len(nets))
            kept = _lowest(hashes, self.keep_subnets)
            self.subnet_sample = {nets[i]: sample[nets[i]] for i in kept}
            self.cut = int(hashes[kept].max())

    def sample(self) -> set[str]:
        """The sampled subnets: the ``keep_subnets`` of lowest hash of all it was given."""
        self._trim()
        return set(self.subnet_sample)

    def __len__(self) -> int:
        return len(self.ips)


def _ip_hash(value: str) -> int:
    return _cached(_hashes, value, hash64)


IpSet = set[str] | IpSketch  # a cell's distinct client IPs: exact up to EXACT_IPS


def ip_union(parts: Iterable[IpSet], keep_subnets: int = 0) -> IpSet:
    """The distinct IPs of several cells: exact while every part is, else a sketch of them all."""
    parts = list(parts)
    if all(type(p) is set for p in parts):
        return set().union(*parts)
    out = IpSketch(keep_subnets)
    for p in parts:
        if type(p) is set:
            out.add_all(list(p))
        else:
            out.merge(p)
    return out


def example_ips(ips: IpSet) -> list[str]:
    """A few of the IPs for a finding's context: the lowest ones (of the exact part)."""
    return sorted(ips)[:EXAMPLE_IPS] if type(ips) is set else list(ips.examples)


def known_ips(ips: IpSet) -> Iterable[str]:
    """The IPs known one by one: all of an exact set, a sketch's examples."""
    return ips if type(ips) is set else ips.examples


def with_ip(ips: IpSet, ip: str, keep_subnets: int = 0) -> IpSet:
    """``ips`` with ``ip`` added: past ``EXACT_IPS`` distinct ones, a sketch in place of the set."""
    ips.add(ip)
    if type(ips) is set and len(ips) > EXACT_IPS:
        return IpSketch.of(ips, keep_subnets)
    return ips


def merge_ips(ips: IpSet, other: IpSet, keep_subnets: int = 0) -> IpSet:
    """``ips`` with every IP of ``other`` added: in place while both are exact (see :func:`with_ip`)."""
    if type(ips) is set and type(other) is set:
        ips |= other
        return IpSketch.of(ips, keep_subnets) if len(ips) > EXACT_IPS else ips
    return ip_union((ips, other), keep_subnets)


def subnets_of(ips: IpSet, keep: int = 0) -> tuple[set[str], int]:
    """The subnets seen and how many distinct there are.

    With ``keep``, past that many subnets only the ``keep`` of lowest :func:`hash64`, as a
    sketch keeps them (:class:`IpSketch`): the same sample whether the cell outgrew its exact
    set or not. Without, a sketch's sample.
    """
    if type(ips) is set:
        nets = {subnet(ip) for ip in ips}
        n = len(nets)
        if keep and n > keep:
            listed = list(nets)
            nets = set(map(listed.__getitem__, _lowest(np.fromiter(map(_ip_hash, listed), np.uint64, n), keep)))
        return nets, n
    sample = ips.sample()
    return sample, max(len(ips.subnets), len(sample))


class TrafficAcc(_Cell):
    """Counters of one (window, API, consumer) cell: a ``traffic`` row and the consumer's features."""

    __slots__ = (
        "auth_failures",
        "bytes_out",
        "consumer_name",
        "consumer_owner",
        "fail_ips",
        "ips",
        "latencies",
        "reads",
        "requests",
        "s2xx",
        "s3xx",
        "s4xx",
        "s5xx",
        "throttled",
        "uas",
    )

    def __init__(self, consumer_name: str, consumer_owner: str) -> None:
        self.consumer_name = consumer_name
        self.consumer_owner = consumer_owner
        self.requests = self.s2xx = self.s3xx = self.s4xx = self.s5xx = 0
        self.auth_failures = self.throttled = self.bytes_out = self.reads = 0
        self.latencies: dict[int, int] = {}  # latency ms -> count: exact quantiles, small in practice
        self.ips: IpSet = set()  # an IpSketch past EXACT_IPS
        self.fail_ips: IpSet = set()
        self.uas: set[str] = set()

    def merge(self, other: TrafficAcc) -> None:
        """Count ``other``'s events too (the same cell, counted elsewhere)."""
        self.requests += other.requests
        self.s2xx += other.s2xx
        self.s3xx += other.s3xx
        self.s4xx += other.s4xx
        self.s5xx += other.s5xx
        self.auth_failures += other.auth_failures
        self.throttled += other.throttled
        self.bytes_out += other.bytes_out
        self.reads += other.reads
        add_counts(self.latencies, other.latencies)
        self.ips = merge_ips(self.ips, other.ips, MAX_SEEN)
        self.fail_ips = merge_ips(self.fail_ips, other.fail_ips)
        if len(self.uas) < MAX_CELL_VALUES:
            self.uas |= other.uas

    @property
    def auth(self) -> int:
        """``auth_failures`` by the name the other families' cells use (:class:`Overflow` counts it)."""
        return self.auth_failures

    def latency_quantile(self, q: float) -> float | None:
        """Return the ``q`` quantile (nearest rank) of the latencies seen, if any."""
        return quantile(self.latencies, q)


NONE: tuple = ()  # an IP cell's empty set or list until it holds a value (see IpAcc)


def _own(acc: IpAcc, name: str, kind: type[set] | type[list]) -> set | list:
    """The cell's set or list ``name``, made its own if it was still the shared ``NONE``."""
    values = getattr(acc, name)
    if type(values) is not kind:
        values = kind(values)
        setattr(acc, name, values)
    return values


class IpAcc(_Cell):
    """Counters of one (window, client IP) cell."""

    __slots__ = (
        "auth",
        "bad",
        "bad_versions",
        "bytes_out",
        "consumer",
        "detail",
        "error_paths",
        "early_posts",
        "errors",
        "hasty",
        "login_paths",
        "login_ts",
        "logins",
        "page",
        "page_ts",
        "paths",
        "payloads",
        "probes",
        "proxy",
        "queries",
        "reads",
        "requests",
        "s5xx",
        "sensitive",
        "throttled",
        "ts",
        "uas",
        "writes",
    )
    ARRAYS: ClassVar[tuple[str, ...]] = ("ts",)
    _V1 = "auth bytes_out consumer detail error_paths errors login_paths login_ts paths reads requests s5xx sensitive"
    _V2 = "auth bad bad_versions bytes_out consumer detail error_paths errors login_paths login_ts paths payloads probes"
    _V3 = "auth bad bad_versions bytes_out consumer detail error_paths early_posts errors hasty login_paths login_ts"
    LEGACY_SLOTS: ClassVar[dict[int, tuple[str, ...]]] = {
        17: (*_V1.split(), "throttled", "ts", "uas", "writes"),
        23: (*_V2.split(), "proxy", "queries", "reads", "requests", "s5xx", "sensitive", "throttled", "ts", "uas", "writes"),
        27: (*_V3.split(), "page", "page_ts", "paths", "payloads", "probes", "proxy", "queries", "reads", "requests",
             "s5xx", "sensitive", "throttled", "ts", "uas", "writes"),
    }
    ADDED: ClassVar[dict[str, Callable[[], object]]] = {
        **dict.fromkeys(("bad", "bad_versions", "payloads", "proxy", "hasty", "logins"), int),
        "probes": set, "queries": set, "early_posts": list, "page": str, "page_ts": float,
    }  # fmt: skip

    def __init__(self, consumer: str) -> None:
        self.consumer = consumer
        self.requests = self.reads = self.writes = self.detail = self.auth = self.errors = 0
        self.s5xx = self.throttled = self.bytes_out = self.bad = self.bad_versions = self.payloads = (
            self.proxy
        ) = self.hasty = self.logins = 0
        self.page = ""  # the page this IP loaded last, and when: a form posted to it soon after is hasty
        self.page_ts = 0.0
        # Most cells are one-off IPs that never fill these: each starts as the shared empty
        # NONE and gets a set or list of its own when it first holds a value (_own),
        # so such a cell allocates three objects, not ten, for the cyclic collector to walk.
        # pages posted before this cell loaded any: hasty if an earlier batch's cell loaded them
        self.early_posts: Collection[tuple[str, float]] = NONE
        self.queries: Collection[str] = NONE  # "path?query", at most MAX_QUERIES
        self.probes: Collection[str] = NONE
        self.error_paths: Collection[str] = NONE
        self.sensitive: Collection[str] = NONE
        self.login_ts: Collection[float] = NONE
        self.login_paths: Collection[str] = NONE
        self.paths: set[str] = set()
        self.ts = array("d")  # an array of floats: nothing for the cyclic collector to walk
        self.uas: set[str] = set()

    def __setstate__(self, state: tuple) -> None:
        super().__setstate__(state)
        if len(state) < len(self.__slots__):  # before logins were counted, every one kept its timestamp
            self.logins = len(self.login_ts)

    def merge(self, other: IpAcc) -> None:
        """Count ``other``'s events too (the same cell, counted elsewhere from later events)."""
        self.requests += other.requests
        self.reads += other.reads
        self.writes += other.writes
        self.detail += other.detail
        self.auth += other.auth
        self.errors += other.errors
        self.s5xx += other.s5xx
        self.throttled += other.throttled
        self.bytes_out += other.bytes_out
        self.bad += other.bad
        self.bad_versions += other.bad_versions
        self.proxy += other.proxy
        self.payloads += other.payloads
        self.hasty += other.hasty
        self.logins += other.logins
        if self.page:
            self.hasty += sum(res == self.page and ts - self.page_ts <= FORM_FILL_S for res, ts in other.early_posts)
        elif other.early_posts and len(self.early_posts) < MAX_EARLY_POSTS:
            _own(self, "early_posts", list).extend(other.early_posts[: MAX_EARLY_POSTS - len(self.early_posts)])
        if other.page:
            self.page, self.page_ts = other.page, other.page_ts
        if other.queries and len(self.queries) < MAX_QUERIES:
            _own(self, "queries", set).update(other.queries)
        # a set holds at most a batch's worth past MAX_CELL_VALUES: the router's batches are bounded
        # (spelled out, not looped over names: this runs for every cell of every batch)
        if len(self.paths) < MAX_CELL_VALUES:
            self.paths |= other.paths
        if len(self.uas) < MAX_CELL_VALUES:
            self.uas |= other.uas
        if other.probes and len(self.probes) < MAX_CELL_VALUES:
            _own(self, "probes", set).update(other.probes)
        if other.error_paths and len(self.error_paths) < MAX_CELL_VALUES:
            _own(self, "error_paths", set).update(other.error_paths)
        if other.sensitive and len(self.sensitive) < MAX_CELL_VALUES:
            _own(self, "sensitive", set).update(other.sensitive)
        if other.login_paths and len(self.login_paths) < MAX_CELL_VALUES:
            _own(self, "login_paths", set).update(other.login_paths)
        if other.login_ts and (room := MAX_LOGIN_TIMES - len(self.login_ts)) > 0:
            _own(self, "login_ts", list).extend(other.login_ts[:room])
        room = MAX_TIMESTAMPS - len(self.ts)
        if room > 0:
            self.ts.extend(other.ts[:room])


def _text(key: str | tuple[str, ...]) -> str:
    """A cell key as one string, to hash (an IP is its own)."""
    return key if type(key) is str else "\x1f".join(key)


class Overflow(_Slotted):
    """A window's subjects past the per-window cap of cells: counted together, not one by one.

    ``requests``, ``auth_failures`` and ``bytes_out`` are exact; ``ips`` estimates how many
    distinct cells (IPs, API × consumer pairs, endpoints) they came from (:class:`HyperLogLog`).
    A subject that comes back in the window, counted here before (``doorkeeper``: a Bloom filter
    of the cells counted here, cleared every 262,144 of them) or with several requests in one
    batch, gets a cell of its own in place of the oldest cell that still has a single request
    (``candidates``), which is folded in here: a burst is not lost to a flood of one-off
    subjects, at the cost of at most its first request.
    """

    __slots__ = (
        "auth_failures",
        "bytes_out",
        "candidates",
        "door_count",
        "doorkeeper",
        "folded",
        "ips",
        "requests",
    )

    def __init__(self, cells: dict, tracked: Container[str], subject: Callable[[object], str] = str) -> None:
        self.requests = self.auth_failures = self.bytes_out = self.folded = 0
        self.ips = HyperLogLog()
        self.doorkeeper = bytearray(_DOOR_BITS >> 3)
        self.door_count = 0
        # cells that may make room, oldest first: a single request, from a subject without baselines
        self.candidates = deque(k for k, acc in cells.items() if acc.requests == 1 and subject(k) not in tracked)

    def returning(self, h: int) -> bool:
        """Mark a cell (by its :func:`hash64`); tell whether it was marked already."""
        door = self.doorkeeper
        a, b = h & (_DOOR_BITS - 1), (h >> 22) & (_DOOR_BITS - 1)
        ia, ma, ib, mb = a >> 3, 1 << (a & 7), b >> 3, 1 << (b & 7)
        if door[ia] & ma and door[ib] & mb:
            return True
        if self.door_count >= _DOOR_RESET:
            door[:] = bytes(len(door))
            self.door_count = 0
        door[ia] |= ma
        door[ib] |= mb
        self.door_count += 1
        return False

    def count(self, h: int, acc) -> None:
        """Count the events of a cell that gets no place of its own (``acc``: what one batch held of it)."""
        self.requests += acc.requests
        self.auth_failures += acc.auth
        self.bytes_out += acc.bytes_out
        self.ips.add_hash(h)

    def make_room(self, cells: dict, tracked: Container[str], subject: Callable[[object], str] = str):
        """Fold the oldest single-request cell into the overflow and return (key, cell); None when there is none."""
        candidates = self.candidates
        while candidates:
            key = candidates.popleft()
            acc = cells.get(key)
            if acc is None or acc.requests != 1 or subject(key) in tracked:
                continue  # it grew, or gained baselines: it keeps its cell
            del cells[key]
            h = hash64(_text(key))
            self.count(h, acc)
            self.returning(h)  # if it comes back, it gets a cell again
            self.folded += 1
            return key, acc
        return None


IpOverflow = Overflow  # the name in recovery snapshots taken when only IPs had a cap


class ApiAcc(_Cell):
    """Counters of one (window, endpoint) cell."""

    __slots__ = ("auth", "bytes_out", "fail_ips", "ips", "latencies", "requests", "s4xx", "s5xx", "throttled")
    LEGACY_SLOTS: ClassVar[dict[int, tuple[str, ...]]] = {
        8: ("auth", "bytes_out", "fail_ips", "ips", "requests", "s4xx", "s5xx", "throttled")
    }
    ADDED: ClassVar[dict[str, Callable[[], object]]] = {"latencies": dict}

    def __init__(self) -> None:
        self.requests = self.s4xx = self.s5xx = self.auth = self.throttled = self.bytes_out = 0
        self.ips: IpSet = set()  # an IpSketch past EXACT_IPS
        self.fail_ips: IpSet = set()
        self.latencies: dict[int, int] = {}  # latency ms -> count, as TrafficAcc's

    def merge(self, other: ApiAcc) -> None:
        """Count ``other``'s events too (the same cell, counted elsewhere)."""
        self.requests += other.requests
        self.s4xx += other.s4xx
        self.s5xx += other.s5xx
        self.auth += other.auth
        self.throttled += other.throttled
        self.bytes_out += other.bytes_out
        self.ips = merge_ips(self.ips, other.ips)
        self.fail_ips = merge_ips(self.fail_ips, other.fail_ips)
        add_counts(self.latencies, other.latencies)


@dataclass(slots=True)
class ClosedWindow:
    """A window that will receive no more on-time events."""

    start: float
    end: float
    cells: dict
    late: bool = False


class WindowTable:
    """Tumbling event-time windows of one shard; subclasses count one subject family.

    >>> from gatewatch.flows.events import Event
    >>> t = ConsumerWindows(window_s=60, lateness_s=10)
    >>> def ev(ts): return Event(ts, "api", "c1", "App", "me", "", "1.2.3.4", "GET", "/", "/", 200,
    ...                          False, False, 10, 5, "")
    >>> t.add([ev(0.0), ev(59.0), ev(65.0)])
    >>> t.close_until(55.0)   # the watermark (newest event time minus the lateness) is before the end
    []
    >>> [(w.start, w.cells[("api", "c1")].requests) for w in t.close_until(61.0)]
    [(0.0, 2)]
    >>> t.add([ev(30.0)])     # after its window closed: counted in a late cell
    >>> [(w.start, w.late, w.cells[("api", "c1")].requests) for w in t.close_until(61.0)]
    [(0.0, True, 1)]
    """

    # At most ``max_cells`` subjects get a cell of their own per window. Past it, a subject still
    # gets one if it is in ``tracked`` (the shard keeps baselines for it) or comes back in the
    # window (see :class:`Overflow`), in place of a single-request cell; every other one is
    # counted in the window's :class:`Overflow` (key ``OVERFLOW``). The shard sets both.
    max_cells: int = 1 << 62
    tracked: Container[str] = frozenset()

    def __init__(self, window_s: int, lateness_s: int) -> None:
        self.window_s = window_s
        self.lateness_s = lateness_s
        self.open: dict[float, dict] = {}
        self.late: dict[float, dict] = {}
        self.closed_until = -math.inf  # every window starting before this is closed

    def add(self, events: list[Event]) -> None:
        """Count a batch of events."""
        self.take(self.collect(events, self.window_s))

    @staticmethod
    def collect(events: list[Event], window_s: int) -> object:
        """Count ``events`` into cells, ``{window_start: {key: accumulator}}``, for :meth:`take`.

        The router does this where the events are parsed, so a shard receives a few cells
        per batch rather than every event, and a subject with most of the traffic does not
        pin its family's counting to one worker.
        """
        raise NotImplementedError

    def take(self, batch) -> None:
        """Add what :meth:`collect` gave: each cell to its window's (the late cells if closed)."""
        for start, part in batch.items():
            self._take_part(self._cells(start), part)

    def _take_part(self, cells: dict, part: dict) -> None:
        for key, acc in part.items():
            mine = cells.get(key)
            if mine is None:
                self._adopt(cells, key, acc)
            else:
                mine.merge(acc)

    @staticmethod
    def subject(key) -> str:
        """The subject of a cell key, as ``tracked`` and the detectors name it."""
        return key

    def _spill(self, cells: dict, key, acc) -> None:
        """Count a cell that has no place of its own beside the window's :class:`Overflow` (a family's hook)."""

    def _adopt(self, cells: dict, key, acc) -> None:
        """A new subject's cell: past the cap it takes a single-request cell's place, or goes to the overflow."""
        over = cells.get(OVERFLOW)
        if over is None:
            if len(cells) < self.max_cells:
                cells[key] = acc
                return
            over = cells[OVERFLOW] = Overflow(cells, self.tracked, self.subject)
        tracked, subject = self.tracked, self.subject
        if subject(key) in tracked:
            folded = over.make_room(cells, tracked, subject)  # tracked subjects get a cell even without room
        else:
            h = hash64(_text(key))
            # several requests in one batch: it came back already
            folded = over.make_room(cells, tracked, subject) if over.returning(h) or acc.requests > 1 else None
            if folded is None:
                over.count(h, acc)
                self._spill(cells, key, acc)
                return
            over.candidates.append(key)
        if folded is not None:
            self._spill(cells, *folded)
        cells[key] = acc

    def _cells(self, start: float) -> dict:
        table = self.open if start >= self.closed_until else self.late
        cells = table.get(start)
        if cells is None:
            cells = table[start] = {}
        return cells

    def close_until(self, watermark: float) -> list[ClosedWindow]:
        """Close every window that ends at or before ``watermark``, oldest first.

        Late cells collected since the last call come first, flagged ``late``.
        """
        out = [ClosedWindow(s, s + self.window_s, cells, late=True) for s, cells in sorted(self.late.items())]
        self.late.clear()
        for start in sorted(self.open):
            end = start + self.window_s
            if end > watermark:
                break
            out.append(ClosedWindow(start, end, self.open.pop(start)))
            self.closed_until = max(self.closed_until, end)
        return out

    def close_all(self) -> list[ClosedWindow]:
        """Close every window (end of input)."""
        return self.close_until(math.inf)


class ConsumerWindows(WindowTable):
    """Cells keyed by (API, consumer): the ``traffic`` rows.

    Past the cap, the consumers without a cell of their own are counted per API in one
    cell, the consumer ``OVERFLOW_CONSUMER``: ``traffic`` still counts every event.
    """

    @staticmethod
    def subject(key: tuple[str, str]) -> str:
        return key[1]

    def _spill(self, cells: dict, key: tuple[str, str], acc: TrafficAcc) -> None:
        spilled = (key[0], OVERFLOW_CONSUMER)
        mine = cells.get(spilled)
        if mine is None:
            mine = cells[spilled] = TrafficAcc("consumers over capacity (counted together)", "")
        mine.merge(acc)

    @staticmethod
    def collect(events: list[Event], window_s: int) -> dict[float, dict[tuple[str, str], TrafficAcc]]:
        windows: dict[float, dict[tuple[str, str], TrafficAcc]] = {}
        current_start, cells = None, {}
        for e in events:
            ts = e.ts
            start = ts - ts % window_s
            if start != current_start:
                current_start, cells = start, windows.setdefault(start, {})
            key = (e.api, e.consumer)
            acc = cells.get(key)
            if acc is None:
                acc = cells[key] = TrafficAcc(e.consumer_name, e.consumer_owner)
            acc.requests += 1
            status = e.status
            cls = status // 100
            if cls == 2:
                acc.s2xx += 1
            elif cls == 4:
                acc.s4xx += 1
            elif cls == 5:
                acc.s5xx += 1
            elif cls == 3:
                acc.s3xx += 1
            ip = e.client_ip
            if e.auth_failure:
                acc.auth_failures += 1
                if ip:
                    acc.fail_ips = with_ip(acc.fail_ips, ip)
            if e.throttled:
                acc.throttled += 1
            method = e.method
            if method in {"GET", "HEAD"}:
                acc.reads += 1
            acc.bytes_out += e.bytes_out
            latency = e.latency_ms
            if latency >= 0:
                lat = acc.latencies
                lat[latency] = lat.get(latency, 0) + 1
            if ip:  # with_ip, inline: once per event
                ips = acc.ips
                ips.add(ip)
                if type(ips) is set and len(ips) > EXACT_IPS:
                    acc.ips = IpSketch.of(ips, MAX_SEEN)
            if e.user_agent:
                acc.uas.add(e.user_agent)
        return windows


class IpWindows(WindowTable):
    """Cells keyed by client IP (events without one, such as WSO2 faults, are not counted here).

    An IP with one event in a batch gets a :class:`OneEvent` as its cell, not an :class:`IpAcc`:
    where carrier NAT and roaming give mobile apps a new client address at every request,
    nearly every cell is such a one-off. A window's one-event cells get their features in
    columns (:func:`ip_feature_columns`), with no Python per cell; one that hears from its IP
    again, or that a finding or a trail needs, becomes the :class:`IpAcc` counting that event
    (:func:`cell_of`), so every result is the one an :class:`IpAcc` per cell would give.
    """

    @staticmethod
    def collect(events: list[Event], window_s: int) -> dict[float, dict[str, IpAcc | OneEvent]]:
        ips = list(map(_CLIENT_IP, events))
        counts = Counter(ips)
        counts.pop("", None)
        once = list(map((1).__eq__, map(counts.get, ips, repeat(0))))
        if sum(once) * 8 <= len(events):  # few one-off IPs (or none): splitting them out costs more than it saves
            return IpWindows.count(events, window_s)
        repeated = IpWindows.count(list(compress(events, map(not_, once))), window_s)
        # each one-off IP's OneEvent where its event was (the others' events are replaced below)
        cells_in_order: list = events.copy()
        ones = one_event_cells(list(compress(events, once)))
        for k, cell in zip(compress(range(len(events)), once), ones, strict=True):
            cells_in_order[k] = cell
        ts = np.fromiter(map(_TS, events), np.float64, len(events))
        starts = ts - ts % window_s  # as float % int in Python: numpy's remainder takes the divisor's sign too
        windows: dict[float, dict[str, IpAcc | OneEvent]] = {}
        first = float(starts[0])
        if (starts == first).all():
            spans: Iterable = ((first, ips, cells_in_order),)
        else:
            with_ip = list(compress(starts.tolist(), map(bool, ips)))
            spans = (
                (start, list(compress(ips, mask)), list(compress(cells_in_order, mask)))
                for start in dict.fromkeys(with_ip)
                for mask in [(starts == start).tolist()]
            )
        for start, window_ips, window_cells in spans:
            # in order of first appearance, as counting event by event gives: the order decides
            # which single-request cells make room once the window is full (Overflow)
            cells = dict(zip(window_ips, window_cells, strict=True))
            cells.pop("", None)
            cells.update(repeated.get(start, ()))
            if cells:
                windows[start] = cells
        return windows

    def _take_part(self, cells: dict, part: dict) -> None:
        clash = cells.keys() & part.keys()
        if clash:  # an IP the window has already: both its cells become IpAccs, to merge
            part = dict(part)
            for key in clash:
                if type(cells[key]) is not IpAcc:
                    cells[key] = cell_of(cells[key])
                if type(part[key]) is not IpAcc:
                    part[key] = cell_of(part[key])
        if OVERFLOW in cells or len(cells) + len(part) - len(clash) > self.max_cells:
            super()._take_part(cells, part)  # past the cap, cell by cell: which cells make room depends on the order
            return
        # room for every new IP: the known ones merge, the new ones join in one update, in C, in the
        # order counting them one by one gives (a merge does not move a cell)
        for key in clash:
            cells[key].merge(part.pop(key))
        cells.update(part)

    def _adopt(self, cells: dict, key, acc) -> None:
        if OVERFLOW in cells or len(cells) >= self.max_cells:
            # a full window picks the single-request cells that make room by their counts
            if OVERFLOW not in cells:
                for k, c in cells.items():
                    if type(c) is not IpAcc:
                        cells[k] = cell_of(c)
            if type(acc) is not IpAcc:
                acc = cell_of(acc)
        super()._adopt(cells, key, acc)

    @staticmethod
    def count(events: list[Event], window_s: int) -> dict[float, dict[str, IpAcc]]:
        """Count every event with a client IP into an :class:`IpAcc` of its (window, IP)."""
        windows: dict[float, dict[str, IpAcc]] = {}
        current_start, cells = None, {}
        flags_of = _flags.get
        for e in events:
            ip = e.client_ip
            if not ip:
                continue
            ts = e.ts
            start = ts - ts % window_s
            if start != current_start:
                current_start, cells = start, windows.setdefault(start, {})
            acc = cells.get(ip)
            if acc is None:
                acc = cells[ip] = IpAcc(e.consumer_name or e.consumer)
            acc.requests += 1
            res = e.resource
            # flags by endpoint: ids never change them, and concrete paths are mostly one-offs
            flags = flags_of(e.endpoint)
            if flags is None:
                flags = _cached(_flags, e.endpoint, classify)
            method = e.method
            if method in {"GET", "HEAD"}:
                acc.reads += 1
                if not flags & STATIC:
                    acc.paths.add(res)
                    if flags & DETAIL:
                        acc.detail += 1
                    if flags & PAGE and e.status < 400:
                        acc.page, acc.page_ts = res, ts
            elif method and method != "OPTIONS":
                acc.writes += 1
                if flags & LOGIN:
                    acc.logins += 1
                    if len(acc.login_ts) < MAX_LOGIN_TIMES:
                        _own(acc, "login_ts", list).append(ts)
                    _own(acc, "login_paths", set).add(res)
                elif flags & PAGE:
                    if res == acc.page and ts - acc.page_ts <= FORM_FILL_S:
                        acc.hasty += 1
                    elif not acc.page and len(acc.early_posts) < MAX_EARLY_POSTS:
                        _own(acc, "early_posts", list).append((res, ts))
            status = e.status
            if flags & SENSITIVE and (status >= 300 or not flags & SERVABLE):
                _own(acc, "sensitive", set).add(res)
            query = e.query
            if query:
                if len(acc.queries) < MAX_QUERIES:
                    _own(acc, "queries", set).add(f"{res}?{query}")
                if payload_kind(res, query):
                    acc.payloads += 1
            elif flags & ESCAPED and payload_kind(res, ""):
                acc.payloads += 1
            if e.bad_request:
                acc.bad += 1
                if method:  # a method and a path were read: only the version is wrong
                    acc.bad_versions += 1
            if status >= 400:
                if status <= 405 and status not in {401, 402}:
                    acc.errors += 1
                    _own(acc, "error_paths", set).add(res)
                    if status in {403, 404} and _cached(_probe_paths, res, is_probe_path):
                        _own(acc, "probes", set).add(res)
                    elif status in {400, 405} and (
                        method == "CONNECT" or res.startswith(("http://", "https://"))
                    ):
                        acc.proxy += 1
                elif status >= 500:
                    acc.s5xx += 1
            if e.auth_failure:
                acc.auth += 1
            if e.throttled:
                acc.throttled += 1
            acc.bytes_out += e.bytes_out
            if len(acc.ts) < MAX_TIMESTAMPS:
                acc.ts.append(ts)
            acc.uas.add(e.user_agent)
        return windows


def cell_of(cell: OneEvent) -> IpAcc:
    """The :class:`IpAcc` of a one-event cell (see :class:`IpWindows`)."""
    (cells,) = IpWindows.count([cell.event], 1).values()
    return cells[cell.event.client_ip]


class ApiWindows(WindowTable):
    """Cells keyed by endpoint: (API, method, resource with ids folded).

    Events that name no endpoint (WSO2 faults) are left to the consumer family. Past the cap,
    the endpoints without a cell of their own are counted in the :class:`Overflow` only.
    """

    @staticmethod
    def subject(key: tuple[str, str, str]) -> str:
        return endpoint_name(key)

    @staticmethod
    def collect(events: list[Event], window_s: int) -> dict[float, dict[tuple[str, str, str], ApiAcc]]:
        windows: dict[float, dict[tuple[str, str, str], ApiAcc]] = {}
        current_start, cells = None, {}
        for e in events:
            ts = e.ts
            if not e.resource and not e.method:  # no endpoint (WSO2 faults): the consumer family counts it
                continue
            start = ts - ts % window_s
            if start != current_start:
                current_start, cells = start, windows.setdefault(start, {})
            key = (e.api, e.method, e.endpoint)
            acc = cells.get(key)
            if acc is None:
                acc = cells[key] = ApiAcc()
            acc.requests += 1
            status = e.status
            if status >= 400:
                if status < 500:
                    acc.s4xx += 1
                else:
                    acc.s5xx += 1
            ip = e.client_ip
            if e.auth_failure:
                acc.auth += 1
                if ip:
                    acc.fail_ips = with_ip(acc.fail_ips, ip)
            if e.throttled:
                acc.throttled += 1
            acc.bytes_out += e.bytes_out
            latency = e.latency_ms
            if latency >= 0:
                lat = acc.latencies
                lat[latency] = lat.get(latency, 0) + 1
            if ip:  # with_ip, inline: once per event
                ips = acc.ips
                ips.add(ip)
                if type(ips) is set and len(ips) > EXACT_IPS:
                    acc.ips = IpSketch.of(ips)
        return windows


def endpoint_name(key: tuple[str, str, str]) -> str:
    """The api subject of an endpoint key: ``"AccountsAPI:1.0.0 POST /login"``."""
    return " ".join(p for p in key if p)


class ConsumerWindow:
    """One consumer's cells of a window, merged."""

    __slots__ = ("apis", "cells", "name", "owner")

    def __init__(self, name: str, owner: str) -> None:
        self.name, self.owner = name, owner
        self.cells: list[TrafficAcc] = []
        self.apis: dict[str, int] = {}

    def features(self) -> tuple[dict[str, float], set[str], set[str]]:
        """The features, and the subnets and UA families seen (for the never-seen memory).

        Past ``MAX_SEEN`` subnets, the subnets seen are the ``MAX_SEEN`` of lowest hash: every
        window samples the same part of them, however many IPs the cell held.
        """
        cells = self.cells
        n = sum(c.requests for c in cells)
        ips = ip_union((c.ips for c in cells), MAX_SEEN)
        failing = ip_union(c.fail_ips for c in cells)
        latencies: dict[int, int] = {}
        for c in cells:
            for value, count in c.latencies.items():
                latencies[value] = latencies.get(value, 0) + count
        subnets, n_subnets = subnets_of(ips, MAX_SEEN)
        families = {_cached(_families, ua, ua_family) for c in cells for ua in c.uas}
        auth = sum(c.auth_failures for c in cells)
        throttled = sum(c.throttled for c in cells)
        x = {
            "requests": float(n),
            "auth_failures": float(auth),
            "auth_failure_ratio": auth / n,
            "error_ratio": max(sum(c.s4xx for c in cells) - throttled, 0) / n,
            "server_error_ratio": sum(c.s5xx for c in cells) / n,
            "throttled": float(throttled),
            "throttled_ratio": throttled / n,
            "bytes_per_request": sum(c.bytes_out for c in cells) / n,
            "latency_p95_ms": quantile(latencies, 0.95) or 0.0,
            "distinct_ips": float(len(ips)),
            "distinct_subnets": float(n_subnets),
            "failing_ips": float(len(failing)),
            "failing_subnets": float(subnets_of(failing)[1]),
            "distinct_ua_families": float(len(families)),
            "read_ratio": sum(c.reads for c in cells) / n,
        }
        return x, subnets, families


def consumer_windows(cells: dict[tuple[str, str], TrafficAcc]) -> dict[str, ConsumerWindow]:
    """Group a window's (API, consumer) cells by consumer."""
    out: dict[str, ConsumerWindow] = {}
    for (api, consumer), acc in cells.items():
        cw = out.get(consumer)
        if cw is None:
            cw = out[consumer] = ConsumerWindow(acc.consumer_name, acc.consumer_owner)
        cw.cells.append(acc)
        cw.apis[api] = cw.apis.get(api, 0) + acc.requests
    return out


_IP_COUNTER_NAMES = (
    "requests", "auth", "errors", "throttled", "s5xx", "bytes_out", "reads", "writes", "detail",
    "hasty", "payloads", "bad", "bad_versions", "proxy", "logins",
)  # fmt: skip
_IP_COUNTERS = attrgetter(*_IP_COUNTER_NAMES)


def ip_feature_columns(cells: list[IpAcc | OneEvent]) -> dict[str, np.ndarray]:
    """The features of many IP windows, one column each (in the order of ``cells``).

    One-event cells (see :class:`IpWindows`) and the others are computed apart, each in
    columns, and interleaved back.
    """
    n = len(cells)
    single = np.fromiter(map(isinstance, cells, repeat(OneEvent)), bool, n)
    if not single.any():
        return _acc_feature_columns(cells)
    if single.all():
        return _one_event_feature_columns(cells)
    one, other = np.flatnonzero(single), np.flatnonzero(~single)
    ones = _one_event_feature_columns(list(compress(cells, single.tolist())))
    others = _acc_feature_columns(list(compress(cells, (~single).tolist())))
    out = {}
    for name, values in others.items():
        column = out[name] = np.empty(n)
        column[other] = values
        column[one] = ones[name]
    return out


def _acc_feature_columns(accs: list[IpAcc]) -> dict[str, np.ndarray]:
    """:func:`ip_feature_columns` of :class:`IpAcc` cells.

    A window's IP cells are mostly one-off addresses: the counters become columns in
    C-level passes, and only the features of sets and timestamps that can be nonzero are
    computed cell by cell.
    """
    n = len(accs)
    # the counters, in one pass over the cells
    counters = np.array(list(map(_IP_COUNTERS, accs)), np.float64).reshape(n, len(_IP_COUNTER_NAMES))
    column = dict(zip(_IP_COUNTER_NAMES, counters.T, strict=True))

    def sizes(name: str) -> np.ndarray:
        return np.fromiter(map(len, map(attrgetter(name), accs)), np.float64, n)

    def where(mask: np.ndarray, feature: Callable[[IpAcc], float]) -> np.ndarray:
        """``feature`` of the cells where ``mask`` holds, 0 elsewhere (most one-off cells are 0)."""
        out = np.zeros(n)
        for k in np.flatnonzero(mask).tolist():
            out[k] = feature(accs[k])
        return out

    requests = column["requests"]
    auth, errors, throttled = column["auth"], column["errors"], column["throttled"]
    login_requests = column["logins"]
    distinct_uas = sizes("uas")
    distinct_paths = sizes("paths")
    queries = sizes("queries")
    # the window's scanner user agents, judged once each: most windows have none
    uas = set().union(*map(attrgetter("uas"), accs))
    scanner_uas = {ua for ua in uas if ua and _cached(_scanner_uas, ua, is_scanner)}
    scanner = np.zeros(n, bool)
    if scanner_uas:
        scanner = np.fromiter((not acc.uas.isdisjoint(scanner_uas) for acc in accs), bool, n)
    return {
        "requests": requests,
        "auth_failures": auth,
        "auth_failure_ratio": auth / requests,
        "errors": errors,
        "error_ratio": errors / requests,
        "server_error_ratio": column["s5xx"] / requests,
        "throttled": throttled,
        "throttled_ratio": throttled / requests,
        "bytes_per_request": column["bytes_out"] / requests,
        "read_ratio": column["reads"] / requests,
        "write_ratio": column["writes"] / requests,
        "detail_ratio": column["detail"] / requests,
        "distinct_paths": distinct_paths,
        "sequential_ids": where(
            (distinct_paths > 1) | (queries > 1),
            lambda a: max(sequential_ids(a.paths), sequential_ids(a.queries)),
        ),
        "regularity": where(sizes("ts") > 10, lambda a: regularity(a.ts)),
        "error_paths": sizes("error_paths"),
        "sensitive_paths": sizes("sensitive"),
        "scanner_requests": np.where(scanner, requests, 0.0),
        "login_requests": login_requests,
        "login_burst": where(login_requests > 0, lambda a: max_in_span(a.login_ts, BURST_S)),
        "login_share": login_requests / requests,
        "hasty_posts": column["hasty"],
        "payload_requests": column["payloads"],
        "bad_requests": column["bad"],
        "bad_versions": column["bad_versions"],
        "max_queries_per_path": where(queries > 0, lambda a: max_queries_per_path(a.queries)),
        "probe_paths": sizes("probes"),
        "proxy_requests": column["proxy"],
        "enumerated_users": where(queries > 0, lambda a: enumerated_users(a.queries)),
        "keyed": np.fromiter(map(bool, map(attrgetter("consumer"), accs)), np.float64, n),
        "distinct_uas": distinct_uas,
        "ua_share": distinct_uas / requests,
    }


_READS = frozenset(("GET", "HEAD"))
_EVENT_FIELDS = tuple(
    map(attrgetter, (
        "status", "method", "endpoint", "resource", "query", "user_agent", "auth_failure", "throttled",
        "bad_request", "consumer", "consumer_name",
    ))
)  # fmt: skip
# what a one-event cell's features need of its event, one bit each (OneEvent.marks)
_MARKS = (
    "auth", "throttled", "error", "s5xx", "read", "write", "path_read", "detail", "login", "sensitive", "payload",
    "probe", "proxy", "bad", "bad_version", "query", "enumerated", "keyed", "scanner",
)  # fmt: skip
_BIT = {name: 1 << k for k, name in enumerate(_MARKS)}


class OneEvent(Struct, frozen=True, gc=False):
    """The cell of an IP with one event in a batch (see :class:`IpWindows`).

    ``marks`` holds what the event's features need, taken as the batch is counted, while
    its events are fresh in memory: read back a window later, field by field, they cost
    several times as much.
    """

    event: Event
    marks: int  # a bit per name of _MARKS
    bytes_out: int


def one_event_cells(events: list[Event]) -> list[OneEvent]:
    """The cells of one-event IPs, one per event: what :meth:`IpWindows.count` would make of it, as bits."""
    n = len(events)
    # a list per field: no tuple per event for the cyclic collector to count
    (statuses, methods, endpoints, resources, queries, uas, auth, throttled, bad, consumers,
     names) = (list(map(field, events)) for field in _EVENT_FIELDS)  # fmt: skip
    status = np.array(statuses, np.int64)
    flag_of = {ep: _cached(_flags, ep, classify) for ep in set(endpoints)}
    flags = np.fromiter(map(flag_of.__getitem__, endpoints), np.int64, n)
    read = np.fromiter(map(_READS.__contains__, methods), bool, n)
    has_method = np.fromiter(map(bool, methods), bool, n)
    write = has_method & ~read & ~np.fromiter(map("OPTIONS".__eq__, methods), bool, n)
    path_read = read & (flags & STATIC == 0)
    has_query = np.fromiter(map(bool, queries), bool, n)
    error = (status >= 400) & (status <= 405) & (status != 401) & (status != 402)
    bad_request = np.array(bad, bool)
    scanner_of = {ua: bool(ua) and _cached(_scanner_uas, ua, is_scanner) for ua in set(uas)}
    marks = {
        "auth": np.array(auth, bool),
        "throttled": np.array(throttled, bool),
        "error": error,
        "s5xx": status >= 500,
        "read": read,
        "write": write,
        "path_read": path_read,
        "detail": path_read & (flags & DETAIL != 0),
        "login": write & (flags & LOGIN != 0),
        "sensitive": (flags & SENSITIVE != 0) & ((status >= 300) | (flags & SERVABLE == 0)),
        "payload": np.zeros(n, bool),
        "probe": np.zeros(n, bool),
        "proxy": np.zeros(n, bool),
        "bad": bad_request,
        "bad_version": bad_request & has_method,
        "query": has_query,
        "enumerated": np.zeros(n, bool),
        "keyed": np.fromiter(map(bool, names), bool, n) | np.fromiter(map(bool, consumers), bool, n),
        "scanner": np.fromiter(map(scanner_of.__getitem__, uas), bool, n),
    }
    for k in np.flatnonzero(has_query | (flags & ESCAPED != 0)).tolist():
        marks["payload"][k] = bool(payload_kind(resources[k], queries[k]))
    for k in np.flatnonzero(has_query).tolist():
        marks["enumerated"][k] = enumerated_users((f"{resources[k]}?{queries[k]}",)) > 0
    for k in np.flatnonzero(error & ((status == 403) | (status == 404))).tolist():
        marks["probe"][k] = _cached(_probe_paths, resources[k], is_probe_path)
    for k in np.flatnonzero(error & ((status == 400) | (status == 405))).tolist():
        marks["proxy"][k] = methods[k] == "CONNECT" or resources[k].startswith(("http://", "https://"))
    bits = np.zeros(n, np.int64)
    for name, bit in _BIT.items():
        bits |= marks[name].astype(np.int64) * bit
    return list(map(OneEvent, events, bits.tolist(), map(_BYTES_OUT, events)))


def _one_event_feature_columns(cells: list[OneEvent]) -> dict[str, np.ndarray]:
    """:func:`ip_feature_columns` of one-event cells, from their marks (a test holds them equal to
    :func:`cell_of`'s features)."""
    n = len(cells)
    bits = np.fromiter(map(_CELL_MARKS, cells), np.int64, n)

    def mark(name: str) -> np.ndarray:
        return (bits & _BIT[name] != 0).astype(np.float64)

    ones, zeros = np.ones(n), np.zeros(n)
    auth, errors, throttled, logins, bad = mark("auth"), mark("error"), mark("throttled"), mark("login"), mark("bad")
    return {
        "requests": ones,
        "auth_failures": auth,
        "auth_failure_ratio": auth.copy(),
        "errors": errors,
        "error_ratio": errors.copy(),
        "server_error_ratio": mark("s5xx"),
        "throttled": throttled,
        "throttled_ratio": throttled.copy(),
        "bytes_per_request": np.fromiter(map(_BYTES_OUT, cells), np.float64, n),
        "read_ratio": mark("read"),
        "write_ratio": mark("write"),
        "detail_ratio": mark("detail"),
        "distinct_paths": mark("path_read"),
        "sequential_ids": zeros,
        "regularity": zeros.copy(),
        "error_paths": errors.copy(),
        "sensitive_paths": mark("sensitive"),
        "scanner_requests": mark("scanner"),
        "login_requests": logins,
        "login_burst": logins.copy(),
        "login_share": logins.copy(),
        "hasty_posts": zeros.copy(),  # a post is hasty only after its page loaded in the same cell
        "payload_requests": mark("payload"),
        "bad_requests": bad,
        "bad_versions": mark("bad_version"),
        "max_queries_per_path": mark("query"),
        "probe_paths": mark("probe"),
        "proxy_requests": mark("proxy"),
        "enumerated_users": mark("enumerated"),
        "keyed": mark("keyed"),
        "distinct_uas": ones.copy(),
        "ua_share": ones.copy(),
    }


def ip_features(acc: IpAcc | OneEvent) -> dict[str, float]:
    """The features of one IP's window (:func:`ip_feature_columns` of one cell)."""
    return {name: float(values[0]) for name, values in ip_feature_columns([acc]).items()}


def enumerated_users(targets: Collection[str]) -> int:
    """Distinct ``author=N`` values of ``path?query`` targets (WordPress serves ``/?author=N`` by user).

    >>> enumerated_users(["/?author=2", "/?author=3", "/blog?author=3&p=1", "/?q=x"])
    2
    """
    return len({m.group(1) for t in targets if (m := _AUTHOR.search(t.partition("?")[2]))})


def max_queries_per_path(targets: Collection[str]) -> int:
    """The most distinct query strings on one path, of ``path?query`` targets.

    >>> max_queries_per_path(["/?a1", "/?b7", "/?c3", "/items?page=2"])
    3
    """
    per_path: dict[str, int] = {}
    for t in targets:
        path = t.partition("?")[0]
        per_path[path] = per_path.get(path, 0) + 1
    return max(per_path.values(), default=0)


def api_features(acc: ApiAcc) -> dict[str, float]:
    """The features of one endpoint's window."""
    n = acc.requests
    return {
        "requests": float(n),
        "auth_failures": float(acc.auth),
        "auth_failure_ratio": acc.auth / n,
        "error_ratio": max(acc.s4xx - acc.throttled, 0) / n,
        "server_error_ratio": acc.s5xx / n,
        "throttled": float(acc.throttled),
        "throttled_ratio": acc.throttled / n,
        "bytes_per_request": acc.bytes_out / n,
        # one slow endpoint hardly moves the p95 of a consumer that calls several
        "latency_p95_ms": quantile(acc.latencies, 0.95) or 0.0,
        "distinct_ips": float(len(acc.ips)),
        "distinct_subnets": float(subnets_of(acc.ips)[1]),
        "failing_ips": float(len(acc.fail_ips)),
        "failing_subnets": float(subnets_of(acc.fail_ips)[1]),
    }


class SeenMemory:
    """What each consumer was used from: subnets and UA families, the newest ``MAX_SEEN`` of each.

    >>> m = SeenMemory()
    >>> m.unseen("app", {"10.0.1", "10.0.2"}, {"okhttp"})
    (2, 1)
    >>> m.remember("app", {"10.0.1"}, {"okhttp"}, 60.0)
    >>> m.unseen("app", {"10.0.1", "10.0.2"}, {"okhttp", "curl"})
    (1, 1)
    """

    def __init__(self) -> None:
        # per consumer: ({subnet: last window}, {family: last window}); dicts keep insertion order
        self._seen: dict[str, tuple[dict[str, float], dict[str, float]]] = {}

    def unseen(self, consumer: str, subnets: set[str], families: set[str]) -> tuple[int, int]:
        """How many of ``subnets`` and ``families`` the consumer was never seen with."""
        known = self._seen.get(consumer)
        if known is None:
            return len(subnets), len(families)
        return sum(s not in known[0] for s in subnets), sum(f not in known[1] for f in families)

    def remember(self, consumer: str, subnets: set[str], families: set[str], when: float) -> None:
        known = self._seen.get(consumer)
        if known is None:
            known = self._seen[consumer] = ({}, {})
        for values, memory in ((subnets, known[0]), (families, known[1])):
            # sorted: past MAX_SEEN, which of one window's values are kept must not depend on
            # the process's string hashing (a set's order)
            for v in sorted(values):
                memory.pop(v, None)
                memory[v] = when
            for v in list(islice(memory, max(len(memory) - MAX_SEEN, 0))):  # the oldest, in one pass
                del memory[v]

    def forget_many(self, consumers: Iterable[str]) -> None:
        pop_all(self._seen, consumers)


def pop_all(values: dict, keys: Iterable) -> None:
    """Remove ``keys`` from ``values`` (those it holds), in C: thousands at a time when idle IPs go."""
    deque(map(values.pop, keys, repeat(None)), maxlen=0)
