"""Kong Gateway: consumer-scoped plugins and a merged IP deny list (Admin API 3.9).

What a subject's desired state becomes:

- **limit** a consumer: a consumer-scoped ``rate-limiting`` plugin,
  ``PUT`` with our own id (a UUID derived from destination, consumer and
  plugin), so a retry or a replay changes the same plugin in place.
- **block** a consumer: a consumer-scoped ``request-termination`` plugin,
  again ``PUT`` with our own id.
- **block** an IP: the global ``ip-restriction`` plugin's ``deny`` list.
  Kong replaces the whole list on update, so it is read, merged and written
  back; an IP that was on the list before us is recorded as the operator's
  and stays when we revert. With no global plugin we create our own.

A state without the limit or block ``DELETE``s our plugin id (Kong answers
204 whether it existed or not), so reverting never touches a plugin an
operator made. Kong has no per-IP rate limit plugin scope: an IP's limit
changes nothing here.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

import httpx

from gatewatch.sinks.control import ControlDB, OutboxEntry
from gatewatch.sinks.outbox import Attempt, tls_verify
from gatewatch.sinks.targets.base import CallFailed, Calls, Desired, Secret, SecretMissing

# fixed namespace of gatewatch's plugin ids (uuid5 of it and a name)
NAMESPACE = uuid.UUID("5d0c6f3e-8a43-4b0e-9a53-6761746577a1")
TAG = "gatewatch"


def plugin_id(destination: str, scope: str, plugin: str) -> str:
    """Our deterministic id for one plugin instance."""
    return str(uuid.uuid5(NAMESPACE, f"{destination}|{scope}|{plugin}"))


class KongChannel:
    """Delivers desired states to one Kong Admin API."""

    kind: ClassVar[str] = "kong"

    def __init__(
        self,
        name: str,
        *,
        admin_url: str,
        state: ControlDB,
        admin_token: Secret | None = None,
        block_status_code: int = 403,
        block_message: str = "Access suspended",
        timeout_s: float = 10.0,
        verify_tls: bool = True,
        ca_file: str = "",
    ) -> None:
        self.name = name
        self.admin_url = admin_url.rstrip("/")
        self.state = state
        self.admin_token = admin_token
        self.block_status_code = block_status_code
        self.block_message = block_message
        self.timeout_s = timeout_s
        self.verify_tls = verify_tls
        self.ca_file = ca_file
        self._client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            headers = {"Kong-Admin-Token": self.admin_token.get()} if self.admin_token else {}
            self._client = httpx.Client(
                base_url=self.admin_url,
                timeout=self.timeout_s,
                verify=tls_verify(self.verify_tls, self.ca_file),
                headers=headers,
            )
        return self._client

    def secret_values(self) -> list[str]:
        return [self.admin_token.value_if_set()] if self.admin_token is not None else []

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _calls(self) -> Calls:
        return Calls(self.client.request)

    def deliver(self, entry: OutboxEntry) -> Attempt:
        d = Desired.from_payload(entry.payload)
        calls = self._calls()
        try:
            if d.subject_type == "consumer":
                self._consumer(calls, d)
            elif d.subject_type == "ip":
                if d.block:
                    self._deny_ip(calls, d.subject)
                else:
                    self._allow_ip(calls, d.subject)
        except CallFailed as failed:
            return failed.attempt
        except SecretMissing as exc:
            return calls.fail(str(exc)).attempt
        return calls.done(d.unenforced(self.cannot_limit))

    def cannot_limit(self, subject_type: str) -> str:
        """Why Kong cannot limit a subject of this type ("" when it can)."""
        # rate-limiting by IP counts every client alike: one address cannot be given its own limit
        if subject_type == "ip":
            return "Kong can block an IP (ip-restriction) but not limit one address"
        return ""

    def check(self) -> list[str]:
        """Problems reaching the Admin API (``gatewatch validate``)."""
        try:
            self._calls()("GET", "/plugins", params={"size": 1})
        except CallFailed as failed:
            return [f"targets.{self.name}: {failed.attempt.error}"]
        except SecretMissing as exc:
            return [str(exc)]
        except httpx.HTTPError as exc:
            return [f"targets.{self.name}: cannot reach {self.admin_url}: {type(exc).__name__}: {exc}"]
        return []

    # -- consumers ---------------------------------------------------------------

    def _consumer(self, calls: Calls, d: Desired) -> None:
        base = f"/consumers/{d.subject}/plugins"
        limit_id = plugin_id(self.name, d.subject, "rate-limiting")
        block_id = plugin_id(self.name, d.subject, "request-termination")
        if d.limit_per_min is not None:
            body = {
                "name": "rate-limiting",
                "config": {"minute": d.limit_per_min, "policy": "local", "limit_by": "consumer"},
                "tags": [TAG],
            }
            self._put(calls, f"{base}/{limit_id}", body, d)
        else:
            calls("DELETE", f"{base}/{limit_id}", ok=(204, 404))
        if d.block:
            body = {
                "name": "request-termination",
                "config": {"status_code": self.block_status_code, "message": self.block_message},
                "tags": [TAG],
            }
            self._put(calls, f"{base}/{block_id}", body, d)
        else:
            calls("DELETE", f"{base}/{block_id}", ok=(204, 404))

    def _put(self, calls: Calls, path: str, body: dict, d: Desired) -> None:
        r = calls("PUT", path, json=body, ok=(200, 201, 404, 409))
        if r.status_code == 404:
            msg = f"Kong has no consumer {d.subject} ({d.subject_name})"
            raise calls.fail(msg)
        if r.status_code == 409:
            msg = (
                f"consumer {d.subject} already has a {body['name']} plugin that gatewatch did not create; "
                "it is left alone: remove it or enforce by hand"
            )
            raise calls.fail(msg)

    # -- IPs -----------------------------------------------------------------------

    def _ip_plugin(self, calls: Calls) -> dict | None:
        """The global ``ip-restriction`` plugin, if there is one."""
        offset = None
        while True:
            params = {"size": 1000, **({"offset": offset} if offset else {})}
            page = calls("GET", "/plugins", params=params).json()
            for p in page.get("data", []):
                if p.get("name") == "ip-restriction" and not (p.get("route") or p.get("service") or p.get("consumer")):
                    return p
            offset = page.get("offset")
            if not offset:
                return None

    def _deny_ip(self, calls: Calls, ip: str) -> None:
        key = f"ipdeny|{ip}"
        mine = self.state.get_state(self.name, key)
        plugin = self._ip_plugin(calls)
        deny = list((plugin or {}).get("config", {}).get("deny") or [])
        if ip in deny:
            if mine is None:  # on the list before we meant to add it: the operator's
                self.state.put_state(self.name, key, {"owner": "theirs"})
            return
        self.state.put_state(self.name, key, {"owner": "ours"})
        if plugin is None:
            body = {"name": "ip-restriction", "config": {"deny": [ip]}, "tags": [TAG]}
            calls("PUT", f"/plugins/{plugin_id(self.name, '', 'ip-restriction')}", json=body)
        else:
            # the whole config goes back: Kong replaces arrays, and nothing else may change
            calls("PATCH", f"/plugins/{plugin['id']}", json={"config": {**plugin["config"], "deny": [*deny, ip]}})

    def _allow_ip(self, calls: Calls, ip: str) -> None:
        key = f"ipdeny|{ip}"
        mine = self.state.get_state(self.name, key)
        if mine is None:
            return
        if mine["owner"] == "ours":
            plugin = self._ip_plugin(calls)
            deny = list((plugin or {}).get("config", {}).get("deny") or [])
            if plugin is not None and ip in deny:
                rest = [x for x in deny if x != ip]
                if not rest and not plugin["config"].get("allow") and plugin["id"] == plugin_id(self.name, "", "ip-restriction"):
                    calls("DELETE", f"/plugins/{plugin['id']}", ok=(204, 404))
                else:
                    calls("PATCH", f"/plugins/{plugin['id']}", json={"config": {**plugin["config"], "deny": rest}})
        self.state.delete_state(self.name, key)
