"""Findings -> decisions (plain Python, no I/O).

The policy sees one finding at a time, in the order the pipeline recorded
them, together with the subject's active decision (if any), and returns the
decision states that follow. The controller (flows/controller.py) persists
them and turns them into deliveries.

This first policy is deliberately small: a finding at or above
``restrict_score`` restricts its subject to an absolute per-minute limit
derived from the subject's own baseline, for ``ttl_s`` of event time. While a
restriction is active the subject gets no second one. In ``dry-run`` every
decision is recorded and nothing is sent.
"""

from __future__ import annotations

import json
import math
import time

from msgspec.structs import replace

from flows.events import Decision, Finding, stable_id

# consumers the gateway did not resolve cannot be restricted
UNRESOLVED_SUBJECTS = frozenset({"", "UNKNOWN", "anonymous"})


def baseline_requests(finding: Finding) -> float:
    """The subject's usual requests per window, from the finding's evidence."""
    evidence = json.loads(finding.evidence or "{}")
    reason = evidence.get("reasons", {}).get("requests")
    if reason is not None:
        return float(reason["baseline"])
    return float(evidence.get("features", {}).get("requests", 0.0))


class Policy:
    """Turn findings into restrictions with a TTL."""

    def __init__(
        self,
        *,
        mode: str = "dry-run",
        restrict_score: float = 0.8,
        ttl_s: int = 3600,
        window_s: int = 60,
        limit_factor: float = 2.0,
        min_limit_per_min: int = 10,
    ) -> None:
        self.mode = mode
        self.restrict_score = restrict_score
        self.ttl_s = ttl_s
        self.window_s = window_s
        self.limit_factor = limit_factor
        self.min_limit_per_min = min_limit_per_min

    def decide(self, finding: Finding, active: Decision | None) -> list[Decision]:
        """Return the new decision states caused by ``finding``."""
        if finding.score < self.restrict_score or finding.subject in UNRESOLVED_SUBJECTS:
            return []
        if active is not None and active.expires_at > finding.window_end:
            return []
        per_min = baseline_requests(finding) * 60.0 / self.window_s
        limit = max(self.min_limit_per_min, math.ceil(per_min * self.limit_factor))
        now = time.time()
        inputs = {
            "score": finding.score,
            "evidence": json.loads(finding.evidence or "{}"),
            "policy": {"restrict_score": self.restrict_score, "ttl_s": self.ttl_s, "limit_factor": self.limit_factor},
        }
        return [
            Decision(
                decision_id=stable_id(finding.finding_id, "restricted"),
                finding_id=finding.finding_id,
                subject_type=finding.subject_type,
                subject=finding.subject,
                subject_name=finding.subject_name,
                action="restrict",
                tier="restricted",
                previous_tier="normal",
                limit_per_min=limit,
                mode=self.mode,
                status="recorded" if self.mode == "dry-run" else "approved",
                reason=f"{finding.kind} score {finding.score:.2f}: " + "; ".join(finding.reasons[:3]),
                inputs=json.dumps(inputs),
                actor="policy",
                effective_from=finding.window_end,
                expires_at=finding.window_end + self.ttl_s,
                created_at=now,
                changed_at=now,
            )
        ]

    def expire(self, active: list[Decision], watermark: float) -> list[Decision]:
        """Return the ``expired`` states of decisions whose TTL has passed on event time."""
        now = time.time()
        return [
            replace(d, status="expired", actor="policy", changed_at=now)
            for d in active
            if d.expires_at <= watermark
        ]

