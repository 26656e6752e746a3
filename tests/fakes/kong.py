"""A stateful fake Kong Admin API (OSS 3.9): consumers and plugins.

Every request is validated against the real Admin API spec
(tests/fakes/specs/); plugin ``config`` is then checked against the rules
of the plugins' ``schema.lua`` at 3.9.1 for the three plugins gatewatch
uses, since the spec leaves ``config`` open. Kong's
entity rules apply: one plugin of a name per (consumer, route, service)
scope, ``PUT`` creates or replaces with the given id, ``PATCH`` merges
``config`` (arrays are replaced), ``DELETE`` answers 204 whether or not the
plugin existed.
"""

from __future__ import annotations

import copy
import ipaddress
import time
import uuid
from dataclasses import dataclass, field

from werkzeug.wrappers import Request, Response

from tests.fakes.server import FakeServer, error, load_spec, ok

PERIODS = ("second", "minute", "hour", "day", "month", "year")
DEFAULTS = {
    "rate-limiting": {
        **dict.fromkeys(PERIODS), "limit_by": "consumer", "policy": "local", "fault_tolerant": True,
        "hide_client_headers": False, "error_code": 429, "error_message": "API rate limit exceeded",
    },
    "request-termination": {"status_code": 503, "message": None, "body": None, "content_type": None, "echo": False, "trigger": None},
    "ip-restriction": {"allow": None, "deny": None, "status": None, "message": None},
}  # fmt: skip
_SPEC: list = []


def _spec():
    if not _SPEC:
        _SPEC.append(load_spec("kong-admin-api-oss-3.9.yaml", ""))
    return _SPEC[0]


def check_config(name: str, config: dict) -> str | None:
    """Kong's verdict on a plugin config (None: valid)."""
    unknown = set(config) - set(DEFAULTS[name])
    if unknown:
        return f"config.{sorted(unknown)[0]}: unknown field"
    if name == "rate-limiting":
        limits = [(p, config.get(p)) for p in PERIODS if config.get(p) is not None]
        if not limits:
            return "config: at least one of these fields must be non-empty: " + ", ".join(PERIODS)
        for p, v in limits:
            if not isinstance(v, int | float) or v <= 0:
                return f"config.{p}: value must be greater than 0"
        for (p1, v1), (p2, v2) in zip(limits, limits[1:], strict=False):
            if v2 < v1:
                return f"config: the limit for {p2} ({v2}) cannot be lower than the limit for {p1} ({v1})"
        if config.get("policy", "local") not in ("local", "cluster", "redis"):
            return "config.policy: expected one of: local, cluster, redis"
        if config.get("limit_by", "consumer") not in ("consumer", "credential", "ip", "service", "header", "path", "consumer-group"):
            return "config.limit_by: invalid value"
    elif name == "request-termination":
        code = config.get("status_code", 503)
        if not isinstance(code, int) or not 100 <= code <= 599:
            return "config.status_code: value should be between 100 and 599"
    elif name == "ip-restriction":
        lists = [config.get("allow") or [], config.get("deny") or []]
        if not any(lists):
            return "config: at least one of these fields must be non-empty: 'allow', 'deny'"
        for entry in lists[0] + lists[1]:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                return f"config.deny: invalid ip or cidr range: '{entry}'"
    return None


@dataclass
class FakeKong(FakeServer):
    consumers: dict[str, dict] = field(default_factory=dict)  # id -> Consumer
    plugins: dict[str, dict] = field(default_factory=dict)  # id -> Plugin

    def __post_init__(self) -> None:
        super().__post_init__()
        self.specs[""] = _spec()
        self.route("GET", "/consumers/{consumer}", self._get_consumer)
        self.route("GET", "/consumers/{consumer}/plugins", self._list_consumer_plugins)
        self.route("PUT", "/consumers/{consumer}/plugins/{plugin_id}", self._put_consumer_plugin)
        self.route("DELETE", "/consumers/{consumer}/plugins/{plugin_id}", self._delete_plugin)
        self.route("GET", "/plugins", self._list_plugins)
        self.route("POST", "/plugins", self._post_plugin)
        self.route("GET", "/plugins/{plugin_id}", self._get_plugin)
        self.route("PUT", "/plugins/{plugin_id}", self._put_plugin)
        self.route("PATCH", "/plugins/{plugin_id}", self._patch_plugin)
        self.route("DELETE", "/plugins/{plugin_id}", self._delete_plugin)

    # -- test setup and read-back --------------------------------------------------

    def add_consumer(self, consumer_id: str, username: str) -> None:
        with self.lock:
            self.consumers[consumer_id] = {"id": consumer_id, "username": username, "created_at": int(time.time())}

    def add_plugin(self, name: str, config: dict, consumer: str | None = None, tags: list[str] | None = None) -> str:
        """An operator's plugin, made by hand."""
        with self.lock:
            pid = str(uuid.uuid4())
            self._store(pid, {"name": name, "config": config, "tags": tags or []}, consumer)
            return pid

    def consumer_plugins(self, consumer_id: str) -> dict[str, dict]:
        """What Kong enforces on a consumer now: plugin name -> config."""
        with self.lock:
            return {
                p["name"]: copy.deepcopy(p["config"]) for p in self.plugins.values()
                if (p.get("consumer") or {}).get("id") == consumer_id and p["enabled"]
            }  # fmt: skip

    def denied_ips(self) -> list[str]:
        with self.lock:
            return sorted(
                ip for p in self.plugins.values()
                if p["name"] == "ip-restriction" and not p.get("consumer") for ip in (p["config"].get("deny") or [])
            )  # fmt: skip

    # -- entity rules ------------------------------------------------------------------

    def _resolve_consumer(self, ref: str) -> dict | None:
        return self.consumers.get(ref) or next((c for c in self.consumers.values() if c["username"] == ref), None)

    def _store(self, pid: str, body: dict, consumer_id: str | None, created_at: int | None = None) -> dict | Response:
        name = body.get("name")
        if name not in DEFAULTS:
            return error(400, f"plugin '{name}' not enabled; is it loaded in your Kong?")
        problem = check_config(name, body.get("config") or {})
        if problem:
            return error(400, "schema violation", problem)
        clash = next(
            (p for p in self.plugins.values() if p["id"] != pid and p["name"] == name
             and (p.get("consumer") or {}).get("id") == consumer_id and not p.get("route") and not p.get("service")),
            None,
        )  # fmt: skip
        if clash is not None:
            return error(409, f"UNIQUE violation detected on '{{consumer={consumer_id},name=\"{name}\"}}'")
        now = int(time.time())
        plugin = {
            "id": pid, "name": name, "instance_name": body.get("instance_name"),
            "config": {**DEFAULTS[name], **(body.get("config") or {})},
            "consumer": {"id": consumer_id} if consumer_id else None, "route": None, "service": None,
            "protocols": body.get("protocols") or ["grpc", "grpcs", "http", "https"],
            "enabled": body.get("enabled", True), "tags": body.get("tags"),
            "created_at": created_at or now, "updated_at": now,
        }  # fmt: skip
        self.plugins[pid] = plugin
        return plugin

    @staticmethod
    def _valid_id(pid: str) -> bool:
        try:
            uuid.UUID(pid)
        except ValueError:
            return False
        return True

    # -- routes ----------------------------------------------------------------------------

    def _get_consumer(self, request: Request, consumer: str) -> Response:
        c = self._resolve_consumer(consumer)
        return ok(c) if c else error(404, "Not found")

    def _list_consumer_plugins(self, request: Request, consumer: str) -> Response:
        c = self._resolve_consumer(consumer)
        if c is None:
            return error(404, "Not found")
        data = [p for p in self.plugins.values() if (p.get("consumer") or {}).get("id") == c["id"]]
        return ok({"data": data, "next": None})

    def _put_consumer_plugin(self, request: Request, consumer: str, plugin_id: str) -> Response:
        c = self._resolve_consumer(consumer)
        if c is None:
            return error(404, "Not found")
        if not self._valid_id(plugin_id):
            return error(400, "schema violation", "id: expected a valid UUID")
        old = self.plugins.get(plugin_id)
        result = self._store(plugin_id, request.get_json(), c["id"], old["created_at"] if old else None)
        return result if isinstance(result, Response) else ok(result)

    def _list_plugins(self, request: Request) -> Response:
        data = sorted(self.plugins.values(), key=lambda p: p["id"])
        size = int(request.args.get("size", 100))
        start = int(request.args.get("offset", 0) or 0)
        page = data[start : start + size]
        more = start + size < len(data)
        return ok({"data": page, "next": f"/plugins?offset={start + size}" if more else None,
                   **({"offset": str(start + size)} if more else {})})  # fmt: skip

    def _post_plugin(self, request: Request) -> Response:
        result = self._store(str(uuid.uuid4()), request.get_json(), None)
        return result if isinstance(result, Response) else ok(result, 201)

    def _get_plugin(self, request: Request, plugin_id: str) -> Response:
        p = self.plugins.get(plugin_id)
        return ok(p) if p else error(404, "Not found")

    def _put_plugin(self, request: Request, plugin_id: str) -> Response:
        if not self._valid_id(plugin_id):
            return error(400, "schema violation", "id: expected a valid UUID")
        old = self.plugins.get(plugin_id)
        result = self._store(plugin_id, request.get_json(), None, old["created_at"] if old else None)
        return result if isinstance(result, Response) else ok(result)

    def _patch_plugin(self, request: Request, plugin_id: str) -> Response:
        old = self.plugins.get(plugin_id)
        if old is None:
            return error(404, "Not found")
        body = request.get_json()
        merged = {**old, **{k: v for k, v in body.items() if k != "config"}}
        merged["config"] = {**old["config"], **(body.get("config") or {})}
        consumer = (old.get("consumer") or {}).get("id")
        result = self._store(plugin_id, merged, consumer, old["created_at"])
        return result if isinstance(result, Response) else ok(result)

    def _delete_plugin(self, request: Request, plugin_id: str, consumer: str | None = None) -> Response:
        self.plugins.pop(plugin_id, None)
        return Response(status=204)
