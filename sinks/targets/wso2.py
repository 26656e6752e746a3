"""WSO2 API-M 4.x: deny policies (Admin API v4) and subscription actions (Publisher API v4).

Authentication (as the Admin API v4 spec's introduction describes it):
dynamic client registration with the admin's Basic credentials, then a
password-grant token from ``/oauth2/token``; the token is cached and renewed
on expiry or on a 401 (refresh grant first, password grant if that fails).

What a subject's desired state becomes:

- **block** a consumer: an ``APPLICATION`` deny policy ``owner:appName``, or
  (``block_with = "subscriptions"``) ``block-subscription`` on each of its
  subscriptions; an IP: an ``IP`` deny policy (a network: ``IPRANGE``); a
  user: a ``USER`` deny policy.
- **limit** a consumer: ``change-business-plan`` of each of its
  subscriptions to ``restrict_business_plan`` (API-M 4.4+ only; WSO2 tiers
  are fixed, so the tier's limit applies, not the computed one); an IP or a
  network (``ip_custom_policy``): a custom (Siddhi) rule keyed on
  ``$clientIp`` with the computed limit per address (:func:`ip_rule`).

Idempotent and owned: a duplicate deny policy is a conflict and values with
``:`` cannot be searched, so deny policies are listed and matched before one
is created. Every object we create, and every one we found already there,
is recorded in the control database *before* the call that creates it; a
revert removes only what is recorded as ours, so a crash at any point
leaves exactly one effect and never removes an operator's policy.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Iterator
from typing import ClassVar

import httpx

from gatewatch.sinks.control import ControlDB, OutboxEntry
from gatewatch.sinks.outbox import Attempt, tls_verify
from gatewatch.sinks.targets.base import CallFailed, Calls, Desired, Secret, SecretMissing

ADMIN = "/api/am/admin/v4"
PUBLISHER = "/api/am/publisher/v4"
DCR = "/client-registration/v0.17/register"
TOKEN = "/oauth2/token"
SCOPES = (
    "apim:admin apim:bl_view apim:bl_manage apim:tier_view "
    "apim:subscription_view apim:subscription_block apim:subscription_manage"
)
BLOCKED_STATES = ("BLOCKED", "PROD_ONLY_BLOCKED")
PAGE = 100


def version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def deny_condition(d: Desired) -> tuple[str, object]:
    """The deny policy (type, value) that blocks the subject (Admin API v4, ``POST /throttling/deny-policies``)."""
    if d.subject_type == "consumer":
        if not d.subject_owner or not d.subject_name:
            msg = f"consumer {d.subject} has no owner/name to build an APPLICATION deny policy"
            raise ValueError(msg)
        return "APPLICATION", f"{d.subject_owner}:{d.subject_name}"
    if d.subject_type == "ip":
        net = ipaddress.ip_network(d.subject, strict=False)
        if net.num_addresses == 1:
            return "IP", {"fixedIp": str(net.network_address), "invert": False}
        return "IPRANGE", {
            "startingIp": str(net.network_address),
            "endingIp": str(net.broadcast_address),
            "invert": False,
        }
    if d.subject_type == "user":
        return "USER", d.subject
    msg = f"WSO2 deny policies cannot block a subject of type {d.subject_type!r}"
    raise ValueError(msg)


def ip_rule_name(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """``gatewatch_ip_<first address as a decimal integer>``, and ``_<prefix length>`` for a network."""
    first = int(net.network_address)
    return f"gatewatch_ip_{first}" if net.num_addresses == 1 else f"gatewatch_ip_{first}_{net.prefixlen}"


def ip_rule(subject: str, limit_per_min: int) -> dict:
    """The custom rule that limits an IP, or each address of a network, to ``limit_per_min`` a minute.

    Keyed on ``$clientIp``, which the gateway replaces with the client's address as a
    decimal integer (``ThrottleHandler`` in wso2/carbon-apimgt): the rule's
    ``throttleKey`` must be that same text. The eligibility conditions are those API-M
    itself generates for IP conditions (``IPCondition``): the address is
    ``propertiesMap['ip']`` (a long) for IPv4 and ``propertiesMap['ipv6']`` (a big
    integer) for IPv6.

    >>> ip_rule("203.0.113.7", 30)["policyName"], ip_rule("2001:db8::/64", 30)["policyName"]
    ('gatewatch_ip_3405803783', 'gatewatch_ip_42540766411282592856903984951653826560_64')
    """
    net = ipaddress.ip_network(subject, strict=False)
    first, last = int(net.network_address), int(net.broadcast_address)
    if net.version == 4:
        value = "cast(map:get(propertiesMap,'ip'),'Long')"
        single, lower, upper = f"{value}=={first}l", f"{first}l<={value}", f"{last}l>={value}"
        address = "cast(map:get(propertiesMap,'ip'),'string')"
    else:
        value = "map:get(propertiesMap,'ipv6')"
        single = f"throttler:bigIntcmp({value}, '{first}')==0"
        lower, upper = f"throttler:bigIntcmp({value}, '{first}')>=0", f"throttler:bigIntcmp({value}, '{last}')<=0"
        address = f"cast({value},'string')"
    if net.num_addresses == 1:
        eligible, key = f"({single})", f"str:concat('{first}','')"
    else:
        eligible, key = f"({lower} AND {upper})", address
    query = (
        f"FROM RequestStream\nSELECT messageID, {eligible} AS isEligible, {key} AS throttleKey\n"
        "INSERT INTO EligibilityStream;\n"
        "FROM EligibilityStream[isEligible==true]#throttler:timeBatch(1 min)\n"
        f"SELECT throttleKey, (count(messageID) >= {limit_per_min}) AS isThrottled, expiryTimeStamp "
        "GROUP BY throttleKey\nINSERT ALL EVENTS INTO ResultStream;"
    )
    return {
        "policyName": ip_rule_name(net),
        "description": f"gatewatch: {subject} restricted to {limit_per_min} requests a minute per address",
        "keyTemplate": "$clientIp",
        "siddhiQuery": query,
    }


def _same_condition(cond: dict, ctype: str, value: object) -> bool:
    if cond.get("conditionType") != ctype:
        return False
    have = cond.get("conditionValue")
    if isinstance(value, dict):
        if isinstance(have, str):  # some versions return the object as JSON text
            try:
                have = json.loads(have)
            except ValueError:
                return False
        keys = ("fixedIp",) if ctype == "IP" else ("startingIp", "endingIp")
        return isinstance(have, dict) and all(have.get(k) == value[k] for k in keys) and not have.get("invert")
    if ctype == "USER":  # the server stores users tenant-qualified
        return have == value or (isinstance(have, str) and have.split("@")[0] == str(value).split("@")[0])
    return have == value


class Wso2Channel:
    """Delivers desired states to one WSO2 API-M deployment."""

    kind: ClassVar[str] = "wso2"

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        version: str,
        username: str,
        password: Secret,
        state: ControlDB,
        block_with: str = "deny_policy",
        restrict_business_plan: str = "",
        ip_custom_policy: bool = False,
        api_ids: tuple[str, ...] = (),
        timeout_s: float = 10.0,
        verify_tls: bool = True,
        ca_file: str = "",
        client_name: str = "gatewatch",
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.version = version_tuple(version)
        self.username = username
        self.password = password
        self.state = state
        self.block_with = block_with
        self.restrict_business_plan = restrict_business_plan
        self.ip_custom_policy = ip_custom_policy
        self.api_ids = tuple(api_ids)
        self.timeout_s = timeout_s
        self.verify_tls = verify_tls
        self.ca_file = ca_file
        self.client_name = client_name
        self._client: httpx.Client | None = None
        self._client_id = ""
        self._client_secret = ""
        self._access = ""
        self._refresh = ""
        self._expires_at = 0.0

    # -- HTTP and tokens -----------------------------------------------------

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            verify = tls_verify(self.verify_tls, self.ca_file)
            self._client = httpx.Client(base_url=self.base_url, timeout=self.timeout_s, verify=verify)
        return self._client

    def secret_values(self) -> list[str]:
        return [self.password.value_if_set(), self._client_secret, self._access, self._refresh]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _register(self, calls: Calls) -> None:
        body = {
            "callbackUrl": "www.example.com",
            "clientName": self.client_name,
            "owner": self.username,
            "grantType": "client_credentials password refresh_token",
            "saasApp": True,
        }
        r = calls(
            "POST", DCR, ok=(200, 201), json=body,
            auth=(self.username, self.password.get()), send_raw=True,
        )  # fmt: skip
        data = r.json()
        self._client_id, self._client_secret = data["clientId"], data["clientSecret"]

    def _token(self, calls: Calls, *, renew: bool = False) -> str:
        if self._access and not renew and time.time() < self._expires_at - 30:
            return self._access
        if not self._client_id:
            self._register(calls)
        r = None
        if renew and self._refresh:
            r = calls(
                "POST", TOKEN, ok=(200, 400, 401), auth=(self._client_id, self._client_secret), send_raw=True,
                data={"grant_type": "refresh_token", "refresh_token": self._refresh, "scope": SCOPES},
            )  # fmt: skip
        if r is None or r.status_code != 200:
            r = calls(
                "POST", TOKEN, ok=(200, 401), auth=(self._client_id, self._client_secret), send_raw=True,
                data={"grant_type": "password", "username": self.username, "password": self.password.get(), "scope": SCOPES},
            )  # fmt: skip
            if r.status_code == 401:  # our client registration is gone: register again, once
                self._register(calls)
                r = calls(
                    "POST", TOKEN, ok=(200,), auth=(self._client_id, self._client_secret), send_raw=True,
                    data={"grant_type": "password", "username": self.username, "password": self.password.get(), "scope": SCOPES},
                )  # fmt: skip
        data = r.json()
        self._access = data["access_token"]
        self._refresh = data.get("refresh_token", "")
        self._expires_at = time.time() + float(data.get("expires_in", 3600))
        return self._access

    def _calls(self) -> Calls:
        calls: Calls

        def send(method: str, path: str, send_raw: bool = False, **kw) -> httpx.Response:
            if send_raw:
                return self.client.request(method, path, **kw)
            headers = {"Authorization": f"Bearer {self._token(calls)}", "Accept": "application/json"}
            r = self.client.request(method, path, headers=headers, **kw)
            if r.status_code == 401:  # expired or revoked token: renew once and repeat
                headers["Authorization"] = f"Bearer {self._token(calls, renew=True)}"
                r = self.client.request(method, path, headers=headers, **kw)
            return r

        calls = Calls(send)
        return calls

    # -- delivery --------------------------------------------------------------

    def deliver(self, entry: OutboxEntry) -> Attempt:
        d = Desired.from_payload(entry.payload)
        calls = self._calls()
        try:
            if d.block:
                self._ensure_block(calls, d)
            else:
                self._remove_block(calls, d)
            if d.limit_per_min is not None:
                self._ensure_plan(calls, d)
                self._ensure_ip_rule(calls, d)
            else:
                self._remove_plan(calls, d)
                self._remove_ip_rule(calls, d)
        except CallFailed as failed:
            return failed.attempt
        except (ValueError, SecretMissing) as exc:
            return calls.fail(str(exc)).attempt
        return calls.done(d.unenforced(self.cannot_limit))

    def cannot_limit(self, subject_type: str) -> str:
        """Why this API-M, as configured, cannot limit a subject of this type ("" when it can)."""
        key = f"targets.{self.name}"
        if subject_type == "ip" and not self.ip_custom_policy:
            return f"WSO2 limits an IP only with a custom rule, and {key}.ip_custom_policy is off"
        if subject_type == "consumer" and not self.restrict_business_plan:
            return (
                "WSO2 limits an application by moving its subscriptions to a tier, "
                f"and {key}.restrict_business_plan is not set"
            )
        if subject_type == "consumer" and self.version < (4, 4):
            return f"changing a subscription's tier needs API-M 4.4 or later ({key}.version)"
        return ""

    def check(self) -> list[str]:
        """Problems with the credentials or the configured tiers (``gatewatch validate``)."""
        calls = self._calls()
        key = f"targets.{self.name}"
        try:
            self._token(calls)
            calls("GET", f"{ADMIN}/throttling/deny-policies")
            if self.restrict_business_plan:
                r = calls("GET", f"{ADMIN}/throttling/policies/subscription")
                names = {p.get("policyName") for p in r.json().get("list", [])}
                if self.restrict_business_plan not in names:
                    return [
                        f"{key}.restrict_business_plan: no subscription tier named {self.restrict_business_plan!r} "
                        f"at {self.base_url} (has: {', '.join(sorted(n for n in names if n))})"
                    ]
            if self.ip_custom_policy:
                try:
                    calls("GET", f"{ADMIN}/throttling/policies/custom")
                except CallFailed as failed:  # e.g. 403: custom rules are for super tenant admins only
                    return [f"{key}.ip_custom_policy: {failed.attempt.error}"]
        except CallFailed as failed:
            return [f"{key}: {failed.attempt.error}"]
        except SecretMissing as exc:
            return [str(exc)]
        except httpx.HTTPError as exc:
            return [f"{key}: cannot reach {self.base_url}: {type(exc).__name__}: {exc}"]
        return []

    # -- deny policies -----------------------------------------------------------

    def _deny_policies(self, calls: Calls) -> list[dict]:
        return calls("GET", f"{ADMIN}/throttling/deny-policies").json().get("list", [])

    def _ensure_block(self, calls: Calls, d: Desired) -> None:
        if d.subject_type == "consumer" and self.block_with == "subscriptions":
            self._block_subscriptions(calls, d)
            return
        ctype, value = deny_condition(d)
        key = f"deny|{ctype}|{json.dumps(value, sort_keys=True)}"
        mine = self.state.get_state(self.name, key)
        found = next((c for c in self._deny_policies(calls) if _same_condition(c, ctype, value)), None)
        if found is not None:
            # there before we ever meant to create it: an operator's, never removed by us
            owner = "theirs" if mine is None or mine.get("owner") == "theirs" else "ours"
            self.state.put_state(self.name, key, {"owner": owner, "id": found.get("conditionId", "")})
            return
        self.state.put_state(self.name, key, {"owner": "ours", "id": ""})  # intent first: a crash now is still ours
        body = {"conditionType": ctype, "conditionValue": value, "conditionStatus": True}
        r = calls("POST", f"{ADMIN}/throttling/deny-policies", ok=(201, 409), json=body)
        if r.status_code == 409:  # created meanwhile (our own earlier attempt): adopt it
            found = next((c for c in self._deny_policies(calls) if _same_condition(c, ctype, value)), None)
            condition_id = found.get("conditionId", "") if found else ""
        else:
            condition_id = r.json().get("conditionId", "")
        self.state.put_state(self.name, key, {"owner": "ours", "id": condition_id})

    def _remove_block(self, calls: Calls, d: Desired) -> None:
        self._unblock_subscriptions(calls, d)
        try:
            ctype, value = deny_condition(d)
        except ValueError:
            return  # nothing of ours can exist for a subject we could never block
        def find() -> str:
            found = next((c for c in self._deny_policies(calls) if _same_condition(c, ctype, value)), None)
            return found.get("conditionId", "") if found else ""

        key = f"deny|{ctype}|{json.dumps(value, sort_keys=True)}"
        self._remove_owned(calls, key, find, f"{ADMIN}/throttling/deny-policy")

    def _remove_owned(self, calls: Calls, key: str, find: Callable[[], str], path: str) -> None:
        """Delete the object recorded under ``key`` if it is ours, then forget the record.

        ``find`` looks its id up when a crash came before the id was recorded.
        """
        mine = self.state.get_state(self.name, key)
        if mine is None:
            return
        if mine["owner"] == "ours":
            object_id = mine["id"] or find()
            if object_id:
                calls("DELETE", f"{path}/{object_id}", ok=(200, 204, 404))
        self.state.delete_state(self.name, key)

    # -- subscriptions -------------------------------------------------------------

    def _subscriptions(self, calls: Calls, application_id: str) -> Iterator[dict]:
        for api_id in self.api_ids or (None,):
            offset = 0
            while True:
                params = {"limit": PAGE, "offset": offset}
                if api_id is not None:
                    params["apiId"] = api_id
                page = calls("GET", f"{PUBLISHER}/subscriptions", params=params).json().get("list", [])
                for sub in page:
                    if sub.get("applicationInfo", {}).get("applicationId") == application_id:
                        yield sub
                if len(page) < PAGE:
                    break
                offset += PAGE

    def _block_subscriptions(self, calls: Calls, d: Desired) -> None:
        for sub in list(self._subscriptions(calls, d.subject)):
            key = f"subblock|{d.subject}|{sub['subscriptionId']}"
            mine = self.state.get_state(self.name, key)
            if sub["subscriptionStatus"] in BLOCKED_STATES:
                if mine is None:
                    self.state.put_state(self.name, key, {"owner": "theirs"})
                continue
            self.state.put_state(self.name, key, {"owner": "ours"})
            calls(
                "POST", f"{PUBLISHER}/subscriptions/block-subscription",
                params={"subscriptionId": sub["subscriptionId"], "blockState": "BLOCKED"},
            )  # fmt: skip

    def _unblock_subscriptions(self, calls: Calls, d: Desired) -> None:
        for key, mine in self.state.state_items(self.name, f"subblock|{d.subject}|"):
            if mine["owner"] == "ours":
                subscription_id = key.rsplit("|", 1)[1]
                calls(
                    "POST", f"{PUBLISHER}/subscriptions/unblock-subscription",
                    params={"subscriptionId": subscription_id}, ok=(200, 404),
                )  # fmt: skip
            self.state.delete_state(self.name, key)

    def _ensure_plan(self, calls: Calls, d: Desired) -> None:
        plan = self.restrict_business_plan
        if d.subject_type != "consumer" or not plan or self.version < (4, 4):
            return
        for sub in list(self._subscriptions(calls, d.subject)):
            key = f"plan|{d.subject}|{sub['subscriptionId']}"
            mine = self.state.get_state(self.name, key)
            if sub["throttlingPolicy"] == plan:
                if mine is None:
                    self.state.put_state(self.name, key, {"owner": "theirs"})
                continue
            self.state.put_state(self.name, key, {"owner": "ours", "previous": sub["throttlingPolicy"]})
            self._change_plan(calls, sub["subscriptionId"], plan)

    def _remove_plan(self, calls: Calls, d: Desired) -> None:
        items = self.state.state_items(self.name, f"plan|{d.subject}|")
        if not items:
            return
        current = {s["subscriptionId"]: s for s in self._subscriptions(calls, d.subject)}
        for key, mine in items:
            sub = current.get(key.rsplit("|", 1)[1])
            # restore only while our tier is still in place: an operator's later change wins
            if mine["owner"] == "ours" and sub is not None and sub["throttlingPolicy"] == self.restrict_business_plan:
                self._change_plan(calls, sub["subscriptionId"], mine["previous"])
            self.state.delete_state(self.name, key)

    def _change_plan(self, calls: Calls, subscription_id: str, plan: str) -> None:
        calls(
            "POST", f"{PUBLISHER}/subscriptions/change-business-plan",
            params={"subscriptionId": subscription_id, "businessPlan": plan},
        )  # fmt: skip

    # -- custom rules (IP limits) -------------------------------------------------------

    def _custom_rule(self, calls: Calls, name: str) -> dict | None:
        rules = calls("GET", f"{ADMIN}/throttling/policies/custom").json().get("list", [])
        return next((r for r in rules if r.get("policyName") == name), None)

    def _ensure_ip_rule(self, calls: Calls, d: Desired) -> None:
        if d.subject_type != "ip" or not self.ip_custom_policy:
            return
        body = ip_rule(d.subject, d.limit_per_min)
        key = f"iprule|{d.subject}"
        mine = self.state.get_state(self.name, key)
        found = self._custom_rule(calls, body["policyName"])
        if found is not None and (mine is None or mine["owner"] == "theirs"):
            # an operator's rule under our name: left as it is, and never removed by us
            self.state.put_state(self.name, key, {"owner": "theirs", "id": found.get("policyId", "")})
            return
        if found is None:
            self.state.put_state(self.name, key, {"owner": "ours", "id": ""})  # intent first, as for deny policies
            r = calls("POST", f"{ADMIN}/throttling/policies/custom", ok=(201, 409), json=body)
            found = self._custom_rule(calls, body["policyName"]) if r.status_code == 409 else r.json()
        if found is None:
            msg = f"custom rule {body['policyName']} was refused as a duplicate but is not listed"
            raise calls.fail(msg)
        rule_id = found.get("policyId", "")
        if found.get("siddhiQuery") != body["siddhiQuery"]:  # another limit, or adopted after a 409
            calls("PUT", f"{ADMIN}/throttling/policies/custom/{rule_id}", json=body)
        self.state.put_state(self.name, key, {"owner": "ours", "id": rule_id})

    def _remove_ip_rule(self, calls: Calls, d: Desired) -> None:
        def find() -> str:
            found = self._custom_rule(calls, ip_rule_name(ipaddress.ip_network(d.subject, strict=False)))
            return found.get("policyId", "") if found else ""

        self._remove_owned(calls, f"iprule|{d.subject}", find, f"{ADMIN}/throttling/policies/custom")
