"""Findings -> decisions (plain Python, no I/O).

The first policy is deliberately small: a finding at or above
``restrict_score`` restricts its subject to an absolute per-minute limit
derived from the subject's own baseline, for ``ttl_s`` of event time. While a
restriction is active the subject gets no second one. Every decision is
recorded; in ``dry-run`` nothing is sent anywhere.
"""

from __future__ import annotations

import hashlib
import math
import time

from flows.events import Decision, Finding


def stable_id(*parts: object) -> str:
    """Deterministic id from parts, so a replayed output is recognisably the same."""
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:20]


class Policy:
    """Turn findings into dry-run restrictions with a TTL."""

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
        self._active_until: dict[tuple[str, str], float] = {}

    def decide(self, finding: Finding, baseline_requests: float) -> Decision | None:
        """Return a decision for ``finding``, or None when none is due."""
        if finding.score < self.restrict_score:
            return None
        key = (finding.subject_type, finding.subject)
        if self._active_until.get(key, -math.inf) > finding.window_end:
            return None
        expires = finding.window_end + self.ttl_s
        self._active_until[key] = expires
        per_min = baseline_requests * 60.0 / self.window_s
        limit = max(self.min_limit_per_min, math.ceil(per_min * self.limit_factor))
        return Decision(
            decision_id=stable_id(finding.finding_id, "restricted"),
            finding_id=finding.finding_id,
            subject_type=finding.subject_type,
            subject=finding.subject,
            subject_name=finding.subject_name,
            action="restrict",
            tier="restricted",
            limit_per_min=limit,
            mode=self.mode,
            status="recorded",
            reason=f"{finding.kind} score {finding.score:.2f}: " + "; ".join(finding.reasons[:3]),
            effective_from=finding.window_end,
            expires_at=expires,
            created_at=time.time(),
        )

    def expire(self, before: float) -> None:
        """Forget restrictions that ended before ``before`` (event time)."""
        for key in [k for k, until in self._active_until.items() if until <= before]:
            del self._active_until[key]
