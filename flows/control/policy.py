"""Findings -> decisions (plain Python, no I/O).

The policy sees one finding at a time, in the order the pipeline recorded
them, with what the controller knows about the subject (its decisions so far)
and the fleet (how many consumers are restricted now, how many are active),
and returns the decision states that follow. The controller
(flows/control/controller.py) persists them and turns them into deliveries.

Tiers ``normal -> elevated -> restricted -> blocked``:

- **Up** at once: a finding's score picks a tier (``elevate_score``,
  ``restrict_score``, ``block_score``); a tier above the subject's current
  one makes a new decision.
- **Hysteresis.** While a decision is in force, findings scoring at least
  its tier's threshold minus ``hold_margin`` extend its TTL; so a subject
  must stay calm for a whole TTL before it goes back down, and a score
  hovering around a threshold does not flap. A lower tier under a higher
  one is held the same way, so it is still there if the higher one goes.
- **Down** only by the TTL, on event time (``expire``), or by a person.
- **Repeat offenders.** Each earlier restriction within ``repeat_window_s``
  multiplies the TTL by ``ttl_escalation_factor`` (up to ``max_ttl_s``);
  after ``escalate_after`` of them a restriction becomes a block.
- **Never touched:** unresolved consumers, the allowlist (consumer ids and
  CIDRs), and API subjects (restricting a whole API would hit every
  consumer): they are watched at most.
- **Blast radius.** A consumer is not restricted or blocked when that would
  put more than ``max_restricted_share`` of the active consumers (never
  below one) or ``max_restricted_count`` of them under restriction at once:
  the decision is recorded as ``suppressed``, with the reason, for a person
  to look at.
- **Modes.** ``dry-run`` records every decision as ``recorded`` and sends
  nothing. ``enforce`` approves decisions at once, except on the
  ``review_tiers``, which wait as ``pending_review`` for a person.
  ``elevated`` is a watch tier: it is recorded, never sent.
"""

from __future__ import annotations

import ipaddress
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from msgspec.structs import replace

from gatewatch.flows.events import Decision, Finding, stable_id

# consumers the gateway did not resolve cannot be restricted
UNRESOLVED_SUBJECTS = frozenset({"", "UNKNOWN", "anonymous"})
TIERS = ("normal", "elevated", "restricted", "blocked")
RANK = {t: i for i, t in enumerate(TIERS)}
ACTIONS = {"elevated": "watch", "restricted": "restrict", "blocked": "block"}
# current states in which a decision is in force (or would be, in dry-run)
LIVE = ("recorded", "pending_review", "approved", "applied")
# earlier decisions that count towards a repeat offence
OFFENCE_STATUSES = ("recorded", "pending_review", "approved", "applied", "expired", "reverted")
NO_LIMIT = -1  # limit_per_min of a tier that pushes no limit (elevated)


def baseline_requests(finding: Finding) -> float:
    """The subject's usual requests per window, from the finding's evidence; 0 when unknown.

    Never the window's own count: that is the attack, and a limit drawn from it lets
    the attack through.
    """
    evidence = json.loads(finding.evidence or "{}")
    reason = evidence.get("reasons", {}).get("requests")
    if reason is not None:
        return float(reason["baseline"])
    return float(evidence.get("normal_requests", 0.0))


@dataclass(frozen=True)
class SubjectContext:
    """What the controller knows beyond the finding (read before ``decide``)."""

    history: Sequence[Decision] = ()  # the subject's decisions (current states), oldest first
    restricted_now: int = 0  # other consumers restricted or blocked now (pending review included)
    active_consumers: Callable[[], int] = field(default=lambda: 0)  # asked only when the blast radius matters


class Policy:
    """Turn findings into tiered, expiring decisions."""

    def __init__(
        self,
        *,
        mode: str = "dry-run",
        elevate_score: float = 0.6,
        restrict_score: float = 0.8,
        block_score: float = 0.97,
        hold_margin: float = 0.2,
        ttl_s: int = 3600,
        max_ttl_s: int = 7 * 86_400,
        repeat_window_s: int = 86_400,
        ttl_escalation_factor: float = 2.0,
        escalate_after: int = 2,
        window_s: int = 60,
        limit_factor: float = 2.0,
        min_limit_per_min: int = 10,
        review_tiers: Iterable[str] = ("blocked",),
        allowlist_consumers: Iterable[str] = (),
        allowlist_cidrs: Iterable[str] = (),
        max_restricted_share: float = 0.1,
        max_restricted_count: int = 50,
        active_window_s: int = 3600,
    ) -> None:
        self.mode = mode
        self.thresholds = {"elevated": elevate_score, "restricted": restrict_score, "blocked": block_score}
        self.hold_margin = hold_margin
        self.ttl_s = ttl_s
        self.max_ttl_s = max_ttl_s
        self.repeat_window_s = repeat_window_s
        self.ttl_escalation_factor = ttl_escalation_factor
        self.escalate_after = escalate_after
        self.window_s = window_s
        self.limit_factor = limit_factor
        self.min_limit_per_min = min_limit_per_min
        self.review_tiers = frozenset(review_tiers)
        self.allowlist_consumers = frozenset(allowlist_consumers)
        self.allowlist_networks = tuple(ipaddress.ip_network(c, strict=False) for c in allowlist_cidrs)
        self.max_restricted_share = max_restricted_share
        self.max_restricted_count = max_restricted_count
        self.active_window_s = active_window_s

    # -- findings ----------------------------------------------------------

    def decide(
        self, finding: Finding, active: Decision | None, context: SubjectContext | None = None
    ) -> list[Decision]:
        """Return the new decision states caused by ``finding``."""
        ctx = context if context is not None else SubjectContext(history=[active] if active else [])
        if self.never_touched(finding.subject_type, finding.subject):
            return []
        live = [d for d in ctx.history if d.status in LIVE]
        current = max(live, key=lambda d: (RANK[d.tier], d.created_at), default=None)
        target = self._tier_for(finding.score)
        if finding.subject_type == "api" and target is not None and RANK[target] > RANK["elevated"]:
            target = "elevated"
        offences = [
            d
            for d in ctx.history
            if RANK[d.tier] >= RANK["restricted"]
            and d.status in OFFENCE_STATUSES
            and d not in live
            and finding.window_end - d.effective_from <= self.repeat_window_s
        ]
        escalated = False
        if target == "restricted" and len(offences) >= self.escalate_after and finding.subject_type != "api":
            target, escalated = "blocked", True
        held = self._hold(finding, live)
        if target is not None and (current is None or RANK[target] > RANK[current.tier]):
            decision = self._new(finding, target, current, offences, escalated, ctx)
            if decision.status == "suppressed" and any(
                d.status == "suppressed" and d.tier == target and d.expires_at > finding.window_end for d in ctx.history
            ):
                return held  # flagged once already; it is not repeated every window
            return [*held, decision]
        return held

    def _hold(self, finding: Finding, live: list[Decision]) -> list[Decision]:
        """TTL extensions of the live decisions this finding's score still justifies (hysteresis)."""
        out = []
        for d in live:
            if finding.score < self.thresholds[d.tier] - self.hold_margin:
                continue
            expires_at = finding.window_end + json.loads(d.inputs).get("ttl_s", self.ttl_s)
            if expires_at > d.expires_at:
                out.append(replace(d, expires_at=expires_at, changed_at=time.time()))
        return out

    def never_touched(self, subject_type: str, subject: str) -> bool:
        """Whether the subject is unresolved or on the allowlist."""
        if subject in UNRESOLVED_SUBJECTS:
            return True
        if subject_type == "consumer":
            return subject in self.allowlist_consumers
        if subject_type == "ip" and self.allowlist_networks:
            try:
                net = ipaddress.ip_network(subject, strict=False)
            except ValueError:
                return False
            return any(net.version == n.version and net.subnet_of(n) for n in self.allowlist_networks)
        return False

    def _tier_for(self, score: float) -> str | None:
        for tier in ("blocked", "restricted", "elevated"):
            if score >= self.thresholds[tier]:
                return tier
        return None

    def _new(
        self,
        finding: Finding,
        tier: str,
        current: Decision | None,
        offences: list[Decision],
        escalated: bool,
        ctx: SubjectContext,
    ) -> Decision:
        ttl = min(self.max_ttl_s, round(self.ttl_s * self.ttl_escalation_factor ** len(offences)))
        per_min = baseline_requests(finding) * 60.0 / self.window_s
        limit = max(self.min_limit_per_min, math.ceil(per_min * self.limit_factor))
        limit_per_min = {"elevated": NO_LIMIT, "restricted": limit, "blocked": 0}[tier]
        reason = f"{finding.kind} score {finding.score:.2f}: " + "; ".join(finding.reasons[:3])
        if offences:
            reason += f" | repeat offender: {len(offences)} earlier restriction(s), TTL {ttl}s"
        if escalated:
            reason += ", escalated to blocked"
        inputs = {
            "finding_id": finding.finding_id,
            "score": finding.score,
            "subject_owner": finding.subject_owner,
            "evidence": json.loads(finding.evidence or "{}"),
            "ttl_s": ttl,
            "earlier_restrictions": [d.decision_id for d in offences],
            "policy": {
                "thresholds": self.thresholds,
                "hold_margin": self.hold_margin,
                "limit_factor": self.limit_factor,
                "review_tiers": sorted(self.review_tiers),
            },
        }
        if tier == "elevated" or self.mode == "dry-run":
            status = "recorded"
        elif tier in self.review_tiers:
            status = "pending_review"
        else:
            status = "approved"
        newly_restricted = RANK[tier] >= RANK["restricted"] and (current is None or RANK[current.tier] < RANK["restricted"])
        if newly_restricted and finding.subject_type == "consumer":
            active = ctx.active_consumers()
            cap = min(self.max_restricted_count, max(1, math.floor(self.max_restricted_share * active)))
            inputs["blast_radius"] = {"restricted_now": ctx.restricted_now, "active_consumers": active, "cap": cap}
            if ctx.restricted_now + 1 > cap:
                status = "suppressed"
                reason = (
                    f"blast radius: {ctx.restricted_now} of {active} active consumers already restricted "
                    f"or blocked (cap {cap}); not {tier}, needs a person | " + reason
                )
        now = time.time()
        return Decision(
            decision_id=stable_id(finding.finding_id, tier),
            finding_id=finding.finding_id,
            subject_type=finding.subject_type,
            subject=finding.subject,
            subject_name=finding.subject_name,
            action=ACTIONS[tier],
            tier=tier,
            previous_tier=current.tier if current is not None else "normal",
            limit_per_min=limit_per_min,
            mode=self.mode,
            status=status,
            reason=reason,
            inputs=json.dumps(inputs),
            actor="policy",
            effective_from=finding.window_end,
            expires_at=finding.window_end + ttl,
            created_at=now,
            changed_at=now,
        )

    # -- time --------------------------------------------------------------

    def expire(self, active: list[Decision], watermark: float) -> list[Decision]:
        """Return the ``expired`` states of decisions whose TTL has passed on event time."""
        now = time.time()
        return [
            replace(d, status="expired", actor="policy", changed_at=now)
            for d in active
            if d.status in LIVE and d.expires_at <= watermark
        ]
