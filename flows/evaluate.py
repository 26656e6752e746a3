"""Score a store's findings against a simulation's ground truth (``gatewatch evaluate``).

- **Recall, per attack kind**: an attack is caught when one of its subjects
  gets a finding whose window overlaps the attack (or the ``grace_windows``
  after it). Findings on its participants (e.g. the IPs of a credential
  stuffing run) are correct but not required.
- **Detection latency**: from the attack's first request to the end of the
  first catching window, in windows (a finding exists once its window closes).
- **Kind agreement**: the share of caught attacks that also got a finding of
  their own kind.
- **Subject-level precision**: of the subjects with any finding, the share
  that are subjects or participants of an attack and were flagged while it
  ran. Every finding of the other subjects is listed as a false positive,
  with its reasons; so are findings on attack subjects outside every attack.
- **Look-alikes**: the highest score on each benign look-alike's subjects
  during it; none may reach ``policy.restrict_score``.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import msgspec

from flows.simulate import GroundTruth, Incident, SubjectRef
from sinks.store import query

TARGET_RECALL = 1.0
TARGET_PRECISION = 0.95
TARGET_LATENCY_WINDOWS = 2.0


class FindingRow(msgspec.Struct, frozen=True):
    subject_type: str
    subject: str
    subject_name: str
    kind: str
    score: float
    window_start: float
    window_end: float
    reasons: list[str]


class AttackResult(msgspec.Struct, frozen=True):
    kind: str
    description: str
    caught: bool
    latency_windows: float | None
    kind_agrees: bool
    first: FindingRow | None  # the first catching finding


class KindSummary(msgspec.Struct, frozen=True):
    kind: str
    attacks: int
    caught: int
    recall: float
    median_latency_windows: float | None
    kind_agreement: float


class LookalikeResult(msgspec.Struct, frozen=True):
    kind: str
    description: str
    findings: int
    max_score: float
    clean: bool  # max_score below the restriction threshold


class Report(msgspec.Struct, frozen=True):
    format: str
    seed: int
    restrict_score: float
    kinds: list[KindSummary]
    attacks: list[AttackResult]
    flagged_subjects: int
    true_subjects: int
    precision: float
    lookalikes: list[LookalikeResult]
    false_positives: list[FindingRow]

    def targets_met(self) -> list[str]:
        """The targets missed, as sentences; empty when every target is met."""
        missed = []
        for k in self.kinds:
            if k.recall < TARGET_RECALL:
                missed.append(f"{k.kind}: recall {k.recall:.2f} < {TARGET_RECALL}")
            if k.median_latency_windows is not None and k.median_latency_windows > TARGET_LATENCY_WINDOWS:
                missed.append(
                    f"{k.kind}: median latency {k.median_latency_windows:.1f} > "
                    f"{TARGET_LATENCY_WINDOWS} windows"
                )
        if self.precision < TARGET_PRECISION:
            missed.append(f"precision {self.precision:.3f} < {TARGET_PRECISION}")
        missed.extend(
            f"look-alike {la.kind}: score {la.max_score:.2f} >= restrict_score {self.restrict_score}"
            for la in self.lookalikes
            if not la.clean
        )
        return missed


def load_truth(path: str | Path) -> GroundTruth:
    """Read a ground-truth file written by ``gatewatch simulate``."""
    return msgspec.json.decode(Path(path).read_bytes(), type=GroundTruth)


def load_findings(store: str | Path) -> list[FindingRow]:
    """Every finding in the store, oldest window first."""
    table = query(
        store,
        "SELECT subject_type, subject, subject_name, kind, score, epoch(window_start) AS window_start, "
        "epoch(window_end) AS window_end, reasons FROM findings "
        "ORDER BY window_end, subject_type, subject, kind",
    )
    return [FindingRow(**{**r, "reasons": list(r["reasons"] or [])}) for r in table.to_pylist()]


def _matches(f: FindingRow, refs: list[SubjectRef]) -> bool:
    return any(
        f.subject_type == r.type
        and (f.subject == r.id or (r.type == "consumer" and r.name and f.subject_name == r.name))
        for r in refs
    )


def _during(f: FindingRow, inc: Incident, grace_s: float) -> bool:
    return f.window_start < inc.end + grace_s and f.window_end > inc.start


def evaluate(
    truth: GroundTruth, findings: list[FindingRow], *, restrict_score: float, grace_windows: int = 1
) -> Report:
    """Compare findings with the ground truth."""
    grace = grace_windows * truth.window_s
    attacks = []
    for inc in truth.attacks:
        catching = [f for f in findings if _matches(f, inc.subjects) and _during(f, inc, grace)]
        involved = [
            f for f in findings if _matches(f, inc.subjects + inc.participants) and _during(f, inc, grace)
        ]
        first = min(catching, key=lambda f: f.window_end, default=None)
        latency = None if first is None else max(first.window_end - inc.start, 0.0) / truth.window_s
        attacks.append(
            AttackResult(
                inc.kind,
                inc.description,
                first is not None,
                latency,
                any(f.kind == inc.kind for f in involved),
                first,
            )
        )
    kinds = []
    for kind in dict.fromkeys(a.kind for a in attacks):
        of_kind = [a for a in attacks if a.kind == kind]
        caught = [a for a in of_kind if a.caught]
        kinds.append(
            KindSummary(
                kind,
                len(of_kind),
                len(caught),
                len(caught) / len(of_kind),
                statistics.median(a.latency_windows for a in caught) if caught else None,
                sum(a.kind_agrees for a in caught) / len(caught) if caught else 0.0,
            )
        )
    explained: set[int] = set()
    for inc in truth.attacks:
        refs = inc.subjects + inc.participants
        explained.update(i for i, f in enumerate(findings) if _matches(f, refs) and _during(f, inc, grace))
    flagged = {(f.subject_type, f.subject) for f in findings}
    true_subjects = {(f.subject_type, f.subject) for i, f in enumerate(findings) if i in explained}
    false_positives = [f for i, f in enumerate(findings) if i not in explained]
    lookalikes = []
    for inc in truth.lookalikes:
        on_it = [f for f in findings if _matches(f, inc.subjects) and _during(f, inc, 0)]
        top = max((f.score for f in on_it), default=0.0)
        lookalikes.append(LookalikeResult(inc.kind, inc.description, len(on_it), top, top < restrict_score))
    return Report(
        truth.format,
        truth.seed,
        restrict_score,
        kinds,
        attacks,
        len(flagged),
        len(true_subjects),
        len(true_subjects) / len(flagged) if flagged else 1.0,
        lookalikes,
        false_positives,
    )


def _fmt_latency(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render(report: Report) -> str:
    """The report as text tables."""
    lines = [f"evaluation: format={report.format} seed={report.seed}", ""]
    head = ("attack kind", "attacks", "caught", "recall", "median latency (windows)", "kind agrees")
    rows = [
        (
            k.kind,
            str(k.attacks),
            str(k.caught),
            f"{k.recall:.2f}",
            _fmt_latency(k.median_latency_windows),
            f"{k.kind_agreement:.0%}",
        )
        for k in report.kinds
    ]
    lines += _table(head, rows)
    lines += [
        "",
        f"subject-level precision: {report.precision:.3f} "
        f"({report.true_subjects} of {report.flagged_subjects} flagged subjects)",
        "",
    ]
    rows = [
        (la.kind, str(la.findings), f"{la.max_score:.2f}", "clean" if la.clean else "RESTRICTED")
        for la in report.lookalikes
    ]
    lines += _table(
        ("look-alike", "findings", "max score", f"vs restrict_score {report.restrict_score}"), rows
    )
    lines += ["", f"false positives: {len(report.false_positives)}"]
    for f in report.false_positives:
        lines.append(
            f"  {f.subject_type} {f.subject_name or f.subject} {f.kind} {f.score:.2f} "
            f"window {f.window_start:.0f}: {'; '.join(f.reasons)}"
        )
    missed = report.targets_met()
    lines += ["", "targets: met" if not missed else "targets missed: " + "; ".join(missed)]
    return "\n".join(lines) + "\n"


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return out
