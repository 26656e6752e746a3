"""The detector contract.

Detectors follow River's conventions with one addition: a subject. The
pipeline calls, for every closed window and subject,
``score_one(subject, x)`` *before* ``learn_one(subject, x)`` (prequential
order). A detector protects its baselines itself: it does not learn from a
window that is anomalous against the subject's established normal, so an
attack does not become the subject's new normal. Scores are calibrated to
[0, 1]. Detectors are plain picklable objects: no I/O, no Bytewax, and any
randomness comes from the ``seed`` argument.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

import msgspec


class Reason(msgspec.Struct, frozen=True):
    """One observed-versus-baseline fact behind a score."""

    feature: str
    observed: float
    baseline: float
    spread: float
    text: str  # human-readable, e.g. "auth failures 94% vs baseline 1%"


class Detector(Protocol):
    """What the pipeline needs from a detector."""

    name: ClassVar[str]
    kind: ClassVar[str]  # the finding kind it raises
    subject_type: ClassVar[str]  # "consumer" | "ip" | "api"

    def score_one(self, subject: str, x: dict[str, float]) -> float:
        """Score one window of one subject in [0, 1] (0 = normal)."""
        ...

    def learn_one(self, subject: str, x: dict[str, float]) -> None:
        """Update the subject's baseline with one window (unless it is anomalous)."""
        ...

    def explain_one(self, subject: str, x: dict[str, float]) -> list[Reason]:
        """Return the reasons behind the score, most important first."""
        ...

    def forget(self, subject: str) -> None:
        """Drop a subject's state (eviction of idle subjects)."""
        ...

    @classmethod
    def _unit_test_params(cls) -> dict:
        """Constructor arguments for the shared contract test (River's convention)."""
        ...
