"""One shard's work, in plain Python: window, detect, decide.

The dataflow routes each consumer to one shard (crc32 of its id) and feeds
the shard whole batches of events. The shard keeps the open windows, the
detectors' baselines, and turns every closed window into store rows:
``traffic`` always, ``findings`` when a detector fires.
It is pickled whole for Bytewax recovery snapshots. Policy does not live
here: findings go to the control plane (flows/controller.py), which sees
every shard's findings and so can apply global limits such as the blast
radius.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from msgspec.structs import astuple

from detectors import DETECTORS
from flows.config import Config
from flows.events import Event, Finding, stable_id
from flows.features import ClosedWindow, TrafficAcc, WindowTable

Output = tuple[str, list[tuple]]  # (table, rows in the table's column order)

def build_detectors(cfg: Config) -> list:
    """Instantiate every enabled detector from its config section."""
    out = []
    for name, cls in DETECTORS.items():
        section = getattr(cfg.detectors, name)
        if section.enabled:
            out.append(cls(**section.model_dump(exclude={"enabled"})))
    return out


class _ConsumerWindow:
    __slots__ = ("auth", "errors", "ips", "name", "owner", "requests", "throttled")

    def __init__(self, acc: TrafficAcc) -> None:
        self.name, self.owner = acc.consumer_name, acc.consumer_owner
        self.requests = self.auth = self.errors = self.throttled = 0
        self.ips: set[str] = set()

    def add(self, acc: TrafficAcc) -> None:
        self.requests += acc.requests
        self.auth += acc.auth_failures
        self.errors += acc.s4xx + acc.s5xx
        self.throttled += acc.throttled
        self.ips |= acc.ips

    def features(self) -> dict[str, float]:
        n = self.requests
        return {
            "requests": float(n),
            "distinct_ips": float(len(self.ips)),
            "auth_failure_ratio": self.auth / n,
            "error_ratio": self.errors / n,
            "throttled_ratio": self.throttled / n,
        }


class ShardProcessor:
    """Windows and detectors of one shard."""

    def __init__(self, cfg: Config) -> None:
        p = cfg.pipeline
        self.window_s = p.window_s
        self.lateness_s = p.allowed_lateness_s
        self.idle_close_s = p.idle_close_s
        self.min_score = cfg.detectors.min_score
        self.table = WindowTable(p.window_s, p.allowed_lateness_s)
        self.detectors = build_detectors(cfg)
        self._advanced_at: float | None = None  # wall clock when event time last advanced

    def ingest(self, events: list[Event], max_ts: float) -> list[Output]:
        """Add a batch; ``max_ts`` is the newest event time the whole input has reached."""
        before = self.table.max_ts
        self.table.add(events)
        self.table.observe(max_ts)
        if self.table.max_ts > before:
            self._advanced_at = time.time()
        return self._emit(self.table.close_until(self.table.watermark()))

    def tick(self, wall_now: float) -> list[Output]:
        """Close windows when input has been quiet: event time follows the wall clock."""
        if self._advanced_at is None:
            return []
        quiet = wall_now - self._advanced_at
        if quiet < self.idle_close_s:
            return []
        return self._emit(self.table.close_until(self.table.max_ts + quiet - self.lateness_s))

    def has_open_windows(self) -> bool:
        return bool(self.table.open)

    def flush(self) -> list[Output]:
        """Close every window (end of input or clean stop)."""
        return self._emit(self.table.close_all())

    def _emit(self, windows: Iterable[ClosedWindow]) -> list[Output]:
        traffic: list[tuple] = []
        findings: list[tuple] = []
        for w in windows:
            per_consumer: dict[str, _ConsumerWindow] = {}
            for (api, consumer), acc in w.cells.items():
                traffic.append(
                    (
                        w.start, w.end, api, consumer, acc.consumer_name, acc.consumer_owner,
                        acc.requests, acc.s2xx, acc.s3xx, acc.s4xx, acc.s5xx,
                        acc.auth_failures, acc.throttled, acc.bytes_out,
                        acc.latency_quantile(0.5), acc.latency_quantile(0.95), len(acc.ips),
                        acc.requests if w.late else 0,
                    )
                )  # fmt: skip
                cw = per_consumer.get(consumer)
                if cw is None:
                    cw = per_consumer[consumer] = _ConsumerWindow(acc)
                cw.add(acc)
            if not w.late:  # late rows were after the fact: counted, not scored
                for consumer in sorted(per_consumer):
                    self._detect(w, consumer, per_consumer[consumer], findings)
        out: list[Output] = [("traffic", traffic)] if traffic else []
        if findings:
            out.append(("findings", findings))
        return out

    def _detect(self, w: ClosedWindow, consumer: str, cw: _ConsumerWindow, findings: list) -> None:
        x = cw.features()
        for det in self.detectors:
            score = det.score_one(consumer, x)
            reasons = det.explain_one(consumer, x) if score >= self.min_score else []
            det.learn_one(consumer, x)
            if score < self.min_score:
                continue
            finding = Finding(
                finding_id=stable_id(det.name, det.subject_type, consumer, w.start),
                subject_type=det.subject_type,
                subject=consumer,
                subject_name=cw.name,
                subject_owner=cw.owner,
                kind=det.kind,
                detector=det.name,
                score=round(score, 4),
                window_start=w.start,
                window_end=w.end,
                detected_at=time.time(),
                reasons=[r.text for r in reasons],
                evidence=json.dumps(
                    {
                        "features": x,
                        "reasons": {
                            r.feature: {"observed": r.observed, "baseline": r.baseline, "spread": r.spread}
                            for r in reasons
                        },
                    }
                ),
            )
            findings.append(astuple(finding))
