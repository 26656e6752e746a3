"""A stateful fake WSO2 API-M 4.x: DCR, /oauth2/token, Admin API v4 deny policies and tiers, Publisher v4 subscriptions.

Requests under ``/api/am/admin/v4`` and ``/api/am/publisher/v4`` are
validated against the real specs (tests/fakes/specs/); DCR and the token
endpoint, which the specs only describe in prose, are checked by hand.
Behaviour follows the server: a duplicate deny policy is a 409 conflict,
``APPLICATION`` values must name an existing ``owner:appName``, users are
stored tenant-qualified, ``change-business-plan`` exists only on 4.4+,
custom rules are for the super tenant only and their names are unique, and
each operation needs one of the scopes its spec lists.
:meth:`FakeWso2.throttle_keys` plays the Traffic Manager for the custom
rules' Siddhi queries (the condition forms API-M generates for IP
conditions, nothing else).
"""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field

from werkzeug.wrappers import Request, Response

from tests.fakes.server import FakeServer, error, load_spec, ok

ADMIN = "/api/am/admin/v4"
PUBLISHER = "/api/am/publisher/v4"


def _patch_admin(doc: dict) -> None:
    # the server takes a string for APPLICATION / USER / API values (tests/fakes/specs/SOURCES.md)
    doc["components"]["schemas"]["BlockingCondition"]["properties"]["conditionValue"] = {
        "oneOf": [{"type": "object"}, {"type": "string"}]
    }


_SPECS: dict[str, object] = {}


def _specs() -> dict:
    if not _SPECS:  # parsing the specs takes a second: once per test session
        _SPECS[ADMIN] = load_spec("wso2-admin-api-v4.yaml", ADMIN, _patch_admin)
        _SPECS[PUBLISHER] = load_spec("wso2-publisher-api-v4.yaml", PUBLISHER)
    return _SPECS


@dataclass
class FakeWso2(FakeServer):
    version: tuple[int, int] = (4, 4)
    users: dict[str, str] = field(default_factory=lambda: {"admin": "admin-password"})
    tenant: str = "carbon.super"
    token_ttl_s: float = 3600.0
    applications: dict[str, dict] = field(default_factory=dict)  # applicationId -> {name, owner}
    subscriptions: dict[str, dict] = field(default_factory=dict)  # subscriptionId -> Subscription (+ apiId)
    deny_policies: dict[str, dict] = field(default_factory=dict)  # conditionId -> BlockingCondition
    custom_rules: dict[str, dict] = field(default_factory=dict)  # policyId -> CustomRule
    tiers: list[str] = field(default_factory=lambda: ["Unlimited", "Gold", "Silver", "Bronze", "Quarantine10PerMin"])
    clients: dict[str, dict] = field(default_factory=dict)
    tokens: dict[str, dict] = field(default_factory=dict)
    refresh_tokens: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.specs.update(_specs())
        self.route("POST", "/client-registration/v0.17/register", self._register)
        self.route("POST", "/oauth2/token", self._token)
        self.route("GET", f"{ADMIN}/throttling/deny-policies", self._list_deny)
        self.route("POST", f"{ADMIN}/throttling/deny-policies", self._add_deny)
        self.route("GET", f"{ADMIN}/throttling/deny-policy/{{conditionId}}", self._get_deny)
        self.route("DELETE", f"{ADMIN}/throttling/deny-policy/{{conditionId}}", self._delete_deny)
        self.route("GET", f"{ADMIN}/throttling/policies/subscription", self._list_tiers)
        self.route("GET", f"{ADMIN}/throttling/policies/custom", self._list_rules)
        self.route("POST", f"{ADMIN}/throttling/policies/custom", self._add_rule)
        self.route("PUT", f"{ADMIN}/throttling/policies/custom/{{ruleId}}", self._put_rule)
        self.route("DELETE", f"{ADMIN}/throttling/policies/custom/{{ruleId}}", self._delete_rule)
        self.route("GET", f"{PUBLISHER}/subscriptions", self._list_subscriptions)
        self.route("POST", f"{PUBLISHER}/subscriptions/block-subscription", self._block)
        self.route("POST", f"{PUBLISHER}/subscriptions/unblock-subscription", self._unblock)
        if self.version >= (4, 4):
            self.route("POST", f"{PUBLISHER}/subscriptions/change-business-plan", self._change_plan)

    # -- test setup and read-back --------------------------------------------------

    def add_application(self, application_id: str, name: str, owner: str, api_ids: list[str], tier: str = "Gold") -> None:
        with self.lock:
            self.applications[application_id] = {"name": name, "owner": owner}
            for api_id in api_ids:
                sid = str(uuid.uuid4())
                self.subscriptions[sid] = {
                    "subscriptionId": sid,
                    "apiId": api_id,
                    "applicationInfo": {"applicationId": application_id, "name": name, "subscriber": owner},
                    "throttlingPolicy": tier,
                    "subscriptionStatus": "UNBLOCKED",
                }

    def add_deny_policy(self, ctype: str, value: object) -> str:
        """An operator's deny policy, made by hand."""
        with self.lock:
            cid = str(uuid.uuid4())
            self.deny_policies[cid] = {"conditionId": cid, "conditionType": ctype, "conditionValue": value, "conditionStatus": True}
            return cid

    def denied(self) -> list[tuple[str, object]]:
        """What the gateway denies now: (type, value) of every enabled deny policy."""
        with self.lock:
            return sorted(
                ((p["conditionType"], p["conditionValue"]) for p in self.deny_policies.values() if p["conditionStatus"]),
                key=str,
            )

    def throttle_keys(self, client_ip: str) -> dict[str, tuple[str, int]]:
        """What each custom rule does with a request from ``client_ip``.

        ``{policyName: (the throttle key it emits, its limit a minute)}`` for the rules the
        request is eligible for, and the key the gateway looks up for the request
        (``$clientIp``: the address as a decimal integer) under ``"$clientIp"``: a rule
        throttles the request only when the two keys are equal.
        """
        address = ipaddress.ip_address(client_ip)
        out = {"$clientIp": (str(int(address)), 0)}
        with self.lock:
            rules = list(self.custom_rules.values())
        for rule in rules:
            m = _RULE.fullmatch(rule["siddhiQuery"])
            assert m is not None, f"not a rule shape the fake understands: {rule['siddhiQuery']!r}"
            env = {"ip": int(address) if address.version == 4 else None, "ipv6": int(address) if address.version == 6 else None}
            if _siddhi_eval(m["eligible"], env):
                out[rule["policyName"]] = (str(_siddhi_eval(m["key"], env)), int(m["limit"]))
        return out

    def subscriptions_of(self, application_id: str) -> list[dict]:
        with self.lock:
            return [dict(s) for s in self.subscriptions.values() if s["applicationInfo"]["applicationId"] == application_id]

    def expire_tokens(self) -> None:
        """Every issued access token stops working (refresh tokens still do)."""
        with self.lock:
            self.tokens.clear()

    # -- auth ------------------------------------------------------------------------

    @staticmethod
    def _basic(request: Request) -> tuple[str, str] | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user, password

    def _register(self, request: Request) -> Response:
        creds = self._basic(request)
        if creds is None or self.users.get(creds[0]) != creds[1]:
            return error(401, "invalid admin credentials")
        body = request.get_json(silent=True)
        required = ("clientName", "owner", "grantType")
        if not isinstance(body, dict) or any(not isinstance(body.get(k), str) for k in required):
            return error(400, f"DCR body needs string fields {', '.join(required)}")
        if body["owner"] != creds[0] or "password" not in body["grantType"].split():
            return error(400, "owner must be the caller and grantType must include password")
        existing = next((c for c in self.clients.values() if c["clientName"] == body["clientName"] and c["owner"] == creds[0]), None)
        client = existing or {
            "clientId": secrets.token_hex(8),
            "clientSecret": secrets.token_hex(16),
            "clientName": body["clientName"],
            "owner": creds[0],
        }
        self.clients[client["clientId"]] = client
        return ok({
            "clientId": client["clientId"], "clientName": client["clientName"], "callBackURL": body.get("callbackUrl", ""),
            "clientSecret": client["clientSecret"], "isSaasApplication": True, "appOwner": client["owner"],
            "jsonString": "{}", "jsonAppAttribute": "{}", "tokenType": None,
        })  # fmt: skip

    def _token(self, request: Request) -> Response:
        creds = self._basic(request)
        client = self.clients.get(creds[0]) if creds else None
        if client is None or client["clientSecret"] != creds[1]:
            return error(401, "invalid client")
        if request.mimetype != "application/x-www-form-urlencoded":
            return error(400, "the token endpoint takes a form body")
        form = request.form
        grant = form.get("grant_type")
        if grant == "password":
            if self.users.get(form.get("username", "")) != form.get("password"):
                return error(400, "invalid_grant")
            user = form["username"]
        elif grant == "refresh_token":
            rt = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if rt is None:
                return error(400, "invalid_grant")
            user = rt["user"]
        else:
            return error(400, "unsupported_grant_type")
        scopes = form.get("scope", "").split()
        access, refresh = str(uuid.uuid4()), str(uuid.uuid4())
        self.tokens[access] = {"user": user, "scopes": set(scopes), "expires": time.time() + self.token_ttl_s}
        self.refresh_tokens[refresh] = {"user": user}
        return ok({"access_token": access, "refresh_token": refresh, "scope": " ".join(scopes),
                   "token_type": "Bearer", "expires_in": int(self.token_ttl_s)})  # fmt: skip

    def _authorized(self, request: Request, *scopes: str) -> Response | None:
        header = request.headers.get("Authorization", "")
        token = self.tokens.get(header.removeprefix("Bearer ")) if header.startswith("Bearer ") else None
        if token is None or token["expires"] < time.time():
            return error(401, "invalid or expired access token")
        if not token["scopes"] & set(scopes):
            return error(403, f"token lacks every scope of: {', '.join(scopes)}")
        return None

    # -- Admin: deny policies --------------------------------------------------------

    def _list_deny(self, request: Request) -> Response:
        if denied := self._authorized(request, "apim:admin", "apim:bl_view"):
            return denied
        items = list(self.deny_policies.values())
        query = request.args.get("query")
        if query:  # the server splits on '&' then ':' (so values with ':' cannot be searched)
            for part in query.split("&"):
                attr, _, value = part.strip().partition(":")
                items = [p for p in items if str(p.get(attr)) == value]
        return ok({"count": len(items), "list": items})

    def _add_deny(self, request: Request) -> Response:
        if denied := self._authorized(request, "apim:admin", "apim:bl_manage"):
            return denied
        body = request.get_json()
        ctype, value = body["conditionType"], body["conditionValue"]
        problem = self._check_condition(ctype, value)
        if problem:
            return error(400, problem)
        if ctype == "USER" and "@" not in value:
            value = f"{value}@{self.tenant}"
        if any(p["conditionType"] == ctype and p["conditionValue"] == value for p in self.deny_policies.values()):
            return error(409, f"A black list item with type: {ctype}, value: {value} already exists")
        cid = str(uuid.uuid4())
        policy = {"conditionId": cid, "conditionType": ctype, "conditionValue": value,
                  "conditionStatus": bool(body.get("conditionStatus", True))}  # fmt: skip
        self.deny_policies[cid] = policy
        return ok(policy, 201, {"Location": f"{ADMIN}/throttling/deny-policy/{cid}"})

    def _check_condition(self, ctype: str, value: object) -> str | None:
        if ctype == "APPLICATION":
            if not isinstance(value, str) or ":" not in value:
                return "APPLICATION value must be owner:applicationName"
            owner, _, name = value.partition(":")
            if not any(a["owner"] == owner and a["name"] == name for a in self.applications.values()):
                return f"no application {name!r} owned by {owner!r}"
        elif ctype in ("IP", "IPRANGE"):
            keys = ("fixedIp",) if ctype == "IP" else ("startingIp", "endingIp")
            if not isinstance(value, dict) or set(value) - {*keys, "invert"}:
                return f"{ctype} value must be an object with {', '.join(keys)} and invert"
            try:
                for k in keys:
                    ipaddress.ip_address(value[k])
            except (KeyError, ValueError):
                return f"{ctype} value has an invalid IP address"
        elif ctype in ("USER", "API") and not isinstance(value, str):
            return f"{ctype} value must be a string"
        return None

    def _get_deny(self, request: Request, conditionId: str) -> Response:  # noqa: N803 - the spec's name
        if denied := self._authorized(request, "apim:admin", "apim:bl_view"):
            return denied
        policy = self.deny_policies.get(conditionId)
        return ok(policy) if policy else error(404, "no such deny policy")

    def _delete_deny(self, request: Request, conditionId: str) -> Response:  # noqa: N803
        if denied := self._authorized(request, "apim:admin", "apim:bl_manage"):
            return denied
        if self.deny_policies.pop(conditionId, None) is None:
            return error(404, "no such deny policy")
        return Response(status=200)

    def _list_tiers(self, request: Request) -> Response:
        if denied := self._authorized(request, "apim:admin", "apim:tier_view", "apim:admin_tier_view"):
            return denied
        tiers = [
            {"policyName": t, "displayName": t, "type": "SubscriptionThrottlePolicy",
             "defaultLimit": {"type": "REQUESTCOUNTLIMIT", "requestCount": {"timeUnit": "min", "unitTime": 1, "requestCount": 10}}}
            for t in self.tiers
        ]  # fmt: skip
        return ok({"count": len(tiers), "list": tiers})

    # -- Admin: custom rules --------------------------------------------------------------

    def _rules_allowed(self, request: Request, *scopes: str) -> Response | None:
        if denied := self._authorized(request, *scopes):
            return denied
        if self.tenant != "carbon.super":
            return error(403, "Only super tenant users are allowed")
        return None

    def _list_rules(self, request: Request) -> Response:
        if denied := self._rules_allowed(request, "apim:admin", "apim:tier_view", "apim:admin_tier_view"):
            return denied
        rules = list(self.custom_rules.values())
        return ok({"count": len(rules), "list": rules})

    def _check_rule(self, body: dict) -> str | None:
        if body["keyTemplate"] != "$clientIp" and not set(re.findall(r"\$(\w+)", body["keyTemplate"])) <= _KEYS:
            return f"unknown key in template {body['keyTemplate']!r}"
        if _RULE.fullmatch(body["siddhiQuery"]) is None:
            return "Siddhi query is invalid"
        return None

    def _add_rule(self, request: Request) -> Response:
        if denied := self._rules_allowed(request, "apim:admin", "apim:tier_manage", "apim:admin_tier_manage"):
            return denied
        body = request.get_json()
        if problem := self._check_rule(body):
            return error(400, problem)
        if any(r["policyName"] == body["policyName"] for r in self.custom_rules.values()):
            return error(409, f"Custom rule with name {body['policyName']} already exists")
        rule_id = str(uuid.uuid4())
        rule = {**body, "policyId": rule_id, "isDeployed": True, "type": "CustomRule"}
        self.custom_rules[rule_id] = rule
        return ok(rule, 201, {"Location": f"{ADMIN}/throttling/policies/custom/{rule_id}"})

    def _put_rule(self, request: Request, ruleId: str) -> Response:  # noqa: N803 - the spec's name
        if denied := self._rules_allowed(request, "apim:admin", "apim:tier_manage", "apim:admin_tier_manage"):
            return denied
        rule = self.custom_rules.get(ruleId)
        if rule is None:
            return error(404, "no such custom rule")
        body = request.get_json()
        if problem := self._check_rule(body):
            return error(400, problem)
        if body["policyName"] != rule["policyName"]:
            return error(400, "a custom rule cannot be renamed")
        rule.update(body)
        return ok(rule)

    def _delete_rule(self, request: Request, ruleId: str) -> Response:  # noqa: N803
        if denied := self._rules_allowed(request, "apim:admin", "apim:tier_manage", "apim:admin_tier_manage"):
            return denied
        if self.custom_rules.pop(ruleId, None) is None:
            return error(404, "no such custom rule")
        return Response(status=200)

    # -- Publisher: subscriptions --------------------------------------------------------

    def _list_subscriptions(self, request: Request) -> Response:
        if denied := self._authorized(request, "apim:api_view", "apim:subscription_view", "apim:subscription_manage"):
            return denied
        subs = sorted(self.subscriptions.values(), key=lambda s: s["subscriptionId"])
        api_id = request.args.get("apiId")
        if api_id:
            subs = [s for s in subs if s["apiId"] == api_id]
        limit, offset = int(request.args.get("limit", 25)), int(request.args.get("offset", 0))
        page = [{k: v for k, v in s.items() if k != "apiId"} for s in subs[offset : offset + limit]]
        return ok({"count": len(page), "list": page, "pagination": {"offset": offset, "limit": limit, "total": len(subs)}})

    def _subscription(self, request: Request) -> dict | Response:
        sub = self.subscriptions.get(request.args["subscriptionId"])
        return sub if sub is not None else error(404, "no such subscription")

    def _block(self, request: Request) -> Response:
        if denied := self._authorized(request, "apim:subscription_block", "apim:subscription_manage"):
            return denied
        sub = self._subscription(request)
        if isinstance(sub, Response):
            return sub
        sub["subscriptionStatus"] = request.args["blockState"]
        return Response(status=200)

    def _unblock(self, request: Request) -> Response:
        if denied := self._authorized(request, "apim:subscription_block", "apim:subscription_manage"):
            return denied
        sub = self._subscription(request)
        if isinstance(sub, Response):
            return sub
        sub["subscriptionStatus"] = "UNBLOCKED"
        return Response(status=200)

    def _change_plan(self, request: Request) -> Response:
        if denied := self._authorized(request, "apim:subscription_manage"):
            return denied
        sub = self._subscription(request)
        if isinstance(sub, Response):
            return sub
        plan = request.args["businessPlan"]
        if plan not in self.tiers:
            return error(400, f"no subscription tier {plan!r}")
        sub["throttlingPolicy"] = plan
        return Response(status=200)


# the keys API-M 4.x substitutes in a key template (``ThrottleHandler`` in wso2/carbon-apimgt)
_KEYS = {"resourceKey", "userId", "apiContext", "apiVersion", "appTenant", "apiTenant", "appId", "clientIp"}
_RULE = re.compile(
    r"FROM RequestStream\nSELECT messageID, (?P<eligible>.+) AS isEligible, (?P<key>.+) AS throttleKey\n"
    r"INSERT INTO EligibilityStream;\n"
    r"FROM EligibilityStream\[isEligible==true\]#throttler:timeBatch\(1 min\)\n"
    r"SELECT throttleKey, \(count\(messageID\) >= (?P<limit>\d+)\) AS isThrottled, expiryTimeStamp GROUP BY throttleKey\n"
    r"INSERT ALL EVENTS INTO ResultStream;"
)
# Siddhi expression -> Python, for the forms API-M's IPCondition generates (and nothing more)
_SIDDHI = (
    (re.compile(r"cast\(map:get\(propertiesMap,'(ipv6|ip)'\),'(?:Long|string)'\)"), r"\1"),
    (re.compile(r"throttler:bigIntcmp\(map:get\(propertiesMap,'ipv6'\), '(\d+)'\)"), r"_cmp(ipv6, \1)"),
    (re.compile(r"str:concat\('(\d+)',''\)"), r"\1"),
    (re.compile(r"\b(\d+)l\b"), r"\1"),
    (re.compile(r" AND "), " and "),
)


def _siddhi_eval(expression: str, env: dict[str, int | None]) -> object:
    for pattern, replacement in _SIDDHI:
        expression = pattern.sub(replacement, expression)
    if not re.fullmatch(r"[\w\s()<>=,]+", expression):
        msg = f"not an expression the fake understands: {expression!r}"
        raise AssertionError(msg)
    try:
        return eval(expression, {"__builtins__": {}, "_cmp": lambda a, b: (a > b) - (a < b)}, dict(env))  # noqa: S307 - checked above
    except TypeError:  # None compared: the request has no address of that family
        return False
