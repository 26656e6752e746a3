"""Deliver the outbox: bounded retries, backoff with jitter, a circuit breaker, dead letters.

Retries happen here and nowhere else. A *channel* (a gateway target or an
alert destination) turns one outbox entry into HTTP calls and reports an
:class:`Attempt`; the :class:`Sender` decides what happens next and records
every attempt as a row of the store's ``deliveries`` table:

- 2xx: ``sent``.
- ``skipped``: the destination cannot do what the entry asks (a gateway
  without a way to limit an IP, say); the reason is kept, and it is never
  retried. A decision whose delivery was skipped stays ``approved``, never
  ``applied``.
- 408, 429, 5xx (but 501) and connection errors or timeouts: ``retry``
  after an exponential backoff with full jitter (or the server's
  ``Retry-After``), until ``max_attempts``; then ``dead_letter``.
- Any other status: ``dead_letter`` at once, with the error kept: retrying
  a request the server calls invalid would not help, and nothing is dropped
  silently.

After ``breaker_failures`` consecutive failures a destination's breaker
opens: its entries wait ``breaker_cooldown_s`` before one trial call.

An ``on_dead_letter`` hook hears of every dead letter inside the transaction
that records it: the alert on a failed expiry or revert
(``flows.control.incidents.FailedLifts``) is queued exactly once with it.
"""

from __future__ import annotations

import random
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, ClassVar, Protocol
from urllib.parse import quote

from gatewatch.sinks.control import ControlDB, OutboxEntry
from gatewatch.sinks.store import StoreWriter

if TYPE_CHECKING:
    import httpx

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})

DUE_PAGE = 100  # outbox entries one step attempts at most
MIN_SECRET_CHARS = 6  # shorter "secrets" (a test's "x") would blank out ordinary words


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one delivery attempt did."""

    http_status: int  # 0 when no response came back
    operation: str  # e.g. "POST /throttling/deny-policies"
    error: str = ""
    retry_after_s: float | None = None
    skipped: bool = False  # the destination cannot do it (``error`` says why): settled, not retried


class Channel(Protocol):
    """Delivers outbox entries to one destination."""

    kind: ClassVar[str]  # channel type, e.g. "wso2", "kong", "webhook"
    name: str  # the configured destination name

    def deliver(self, entry: OutboxEntry) -> Attempt:
        """Make the calls for ``entry``; raise ``httpx.TransportError`` on connection trouble."""
        ...

    def secret_values(self) -> list[str]:
        """The secrets the channel sends (a URL that is one, keys, tokens): never stored or printed."""
        ...


def tls_verify(verify_tls: bool, ca_file: str) -> bool | ssl.SSLContext:
    """What ``httpx``'s ``verify`` gets: no check, the system's CAs, or those of ``ca_file`` (read now)."""
    if not verify_tls:
        return False
    return ssl.create_default_context(cafile=ca_file) if ca_file else True


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret, as is or percent-encoded, replaced by ``[secret]``.

    A receiver may echo its URL or a header in an error body, which the outbox
    stores and the command line prints.

    >>> scrub("404 /services/T0/B0/xyzSECRET1 not found", ["xyzSECRET1"])
    '404 /services/T0/B0/[secret] not found'
    """
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_SECRET_CHARS:
            for form in {secret, quote(secret, safe=""), quote(secret)}:
                text = text.replace(form, "[secret]")
    return text


def outcome_of(status: int) -> str:
    """Classify an HTTP status as ``sent``, ``retry`` or ``dead_letter``."""
    if 200 <= status < 300:
        return "sent"
    if status in RETRYABLE_STATUS or status == 0:
        return "retry"
    return "dead_letter"


def retry_after(response: httpx.Response) -> float | None:
    """Seconds a server asked us to wait (``Retry-After`` in seconds), if any."""
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


@dataclass
class _Breaker:
    failures: int = 0
    open_until: float = 0.0


@dataclass
class Sender:
    """Deliver due outbox entries through their channels."""

    control: ControlDB
    writer: StoreWriter
    channels: dict[str, Channel]
    max_attempts: int = 8
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    seed: int = 0
    # told of each entry dead-lettered, with its error, in the transaction that records it
    on_dead_letter: Callable[[OutboxEntry, str, sqlite3.Connection], None] | None = None
    # told of each entry sent, in the transaction that records it
    on_sent: Callable[[OutboxEntry, sqlite3.Connection], None] | None = None
    _rng: random.Random = field(init=False, repr=False)
    _breakers: dict[str, _Breaker] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def backoff_s(self, attempt: int) -> float:
        """Full-jitter exponential backoff before attempt ``attempt + 1``."""
        return self._rng.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1)))

    def step(self, now: float | None = None, stop: threading.Event | None = None) -> int:
        """Attempt every due entry once; return how many attempts were made.

        A destination that could not be reached (timeout, refused) gets no
        more attempts in this step, and no attempt starts once ``stop`` is
        set: so a hung receiver costs a step one timeout, not one per entry,
        and never holds up a stop for longer than the call in flight. The
        entries left wait in the outbox, untouched.

        Each attempt is recorded as it completes: its ``deliveries`` row is
        written, then its outcome committed with an acknowledgement of the row
        (the controller rolls unacknowledged rows back after a crash). A crash
        mid-step therefore re-sends at most the attempt in flight, and each
        attempt is recorded exactly once.
        """
        import httpx  # here, not at the top: a run without destinations never loads it (0.08 s)

        now = time.time() if now is None else now
        attempts = 0
        unreachable: set[str] = set()
        for entry in self.control.due(now, DUE_PAGE):
            if stop is not None and stop.is_set():
                break
            if entry.destination in unreachable:
                continue
            breaker = self._breakers.setdefault(entry.destination, _Breaker())
            if breaker.open_until > now:
                self.control.settle(
                    entry.id, state="pending", attempts=entry.attempts, next_at=breaker.open_until,
                    last_error=entry.last_error or "circuit breaker open",
                )  # fmt: skip
                continue
            channel = self.channels.get(entry.destination)
            attempt_no = entry.attempts + 1
            started = time.perf_counter()
            if channel is None:
                result = Attempt(0, "", f"no destination named {entry.destination!r} is configured")
                outcome = "dead_letter"
            else:
                try:
                    result = channel.deliver(entry)
                except httpx.TransportError as exc:  # connection refused, reset, timeout
                    result = Attempt(0, "", f"{type(exc).__name__}: {exc}")
                    unreachable.add(entry.destination)
                outcome = "skipped" if result.skipped else outcome_of(result.http_status)
            latency_ms = (time.perf_counter() - started) * 1000
            if result.error and channel is not None:
                result = replace(result, error=scrub(result.error, channel.secret_values()))
            if outcome == "retry" and attempt_no >= self.max_attempts:
                outcome = "dead_letter"
            settle = {"entry_id": entry.id, "attempts": attempt_no, "next_at": now, "last_error": ""}
            if outcome in ("sent", "skipped"):
                breaker.failures = 0
                settle["state"] = outcome
                settle["last_error"] = result.error
            else:
                breaker.failures += 1
                if breaker.failures >= self.breaker_failures:
                    breaker.open_until = now + self.breaker_cooldown_s
                settle["last_error"] = result.error or f"HTTP {result.http_status}"
                settle["state"] = "pending" if outcome == "retry" else "dead_letter"
                if outcome == "retry":
                    wait = result.retry_after_s if result.retry_after_s is not None else self.backoff_s(attempt_no)
                    settle["next_at"] = now + wait
            row = (
                entry.id, channel.kind if channel else "", entry.destination, entry.ref_id, attempt_no,
                result.operation, outcome, result.http_status, result.error, latency_ms, time.time(),
            )  # fmt: skip
            self.writer.append("deliveries", [row])
            with self.control.transaction() as con:
                self.control.settle(**settle, con=con)
                if settle["state"] == "dead_letter" and self.on_dead_letter is not None:
                    self.on_dead_letter(entry, settle["last_error"], con)  # what it queues commits with it
                elif settle["state"] == "sent" and self.on_sent is not None:
                    self.on_sent(entry, con)
                self.control.acknowledge_store(self.writer.last_seq, con)
            attempts += 1
        return attempts
