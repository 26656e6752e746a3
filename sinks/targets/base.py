"""What every gateway channel shares: secrets, the calls of one delivery, the desired state."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gatewatch.sinks.outbox import Attempt, retry_after

if TYPE_CHECKING:  # the channel modules import it: a run with no destination never does
    import httpx


class SecretMissing(RuntimeError):
    """A configured secret cannot be read (the message names the key, never the value)."""


@dataclass(frozen=True)
class Secret:
    """A secret named by an environment variable or a file; read when needed, never stored in config."""

    key: str  # the config key that names it, for error messages, e.g. "targets.wso2.password_env"
    env: str = ""
    file: str = ""

    def problem(self) -> str | None:
        """Why the secret cannot be read, or None."""
        if self.env:
            return None if os.environ.get(self.env) else f"{self.key}: environment variable {self.env} is not set"
        if self.file:
            path = Path(self.file)
            if not path.is_file() or not os.access(path, os.R_OK):
                return f"{self.key.removesuffix('_env')}_file: cannot read {self.file}"
            return None
        return f"{self.key}: no environment variable or file is configured"

    def value_if_set(self) -> str:
        """The value, or "" when it cannot be read (for scrubbing: never raises)."""
        return "" if self.problem() is not None else self.get()

    def get(self) -> str:
        problem = self.problem()
        if problem is not None:
            raise SecretMissing(problem)
        if self.env:
            return os.environ[self.env]
        return Path(self.file).read_text(encoding="utf-8").strip()


class CallFailed(Exception):
    """A call answered with a status the delivery cannot go on with."""

    def __init__(self, attempt: Attempt) -> None:
        super().__init__(attempt.error)
        self.attempt = attempt


class Calls:
    """The HTTP calls of one delivery attempt, kept for the ``deliveries`` row.

    ``send`` makes one request (a channel adds its authentication there).
    A status outside ``ok`` raises :class:`CallFailed` carrying the attempt
    to report; connection errors propagate as ``httpx.TransportError`` for
    the sender to retry.
    """

    def __init__(self, send: Callable[..., httpx.Response]) -> None:
        self.send = send
        self.ops: list[str] = []
        self.last_status = 200

    def __call__(self, method: str, path: str, *, ok: tuple[int, ...] = (200, 201, 204), **kw) -> httpx.Response:
        response = self.send(method, path, **kw)
        op = f"{method} {path.split('?', 1)[0]}"
        self.ops.append(f"{op} {response.status_code}")
        if response.status_code not in ok:
            error = f"{op}: HTTP {response.status_code}: {response.text[:300]}"
            raise CallFailed(Attempt(response.status_code, self.operation(), error, retry_after(response)))
        self.last_status = response.status_code
        return response

    def fail(self, error: str) -> CallFailed:
        """A failure found by the channel itself (not retryable: the request would not change)."""
        return CallFailed(Attempt(422, self.operation(), error))

    def operation(self) -> str:
        return "; ".join(self.ops) or "none: nothing to change"

    def done(self, unenforced: str = "") -> Attempt:
        """The attempt's result; with ``unenforced`` (why), settled as ``skipped``, the calls made kept."""
        status = self.last_status if self.ops else 200
        return Attempt(status, self.operation(), unenforced, skipped=bool(unenforced))


@dataclass(frozen=True)
class Desired:
    """What the gateway should enforce on one subject: the payload of every gateway outbox entry."""

    subject_type: str
    subject: str
    subject_name: str
    subject_owner: str
    block: bool
    limit_per_min: int | None  # None: no limit of ours
    decision_id: str

    @classmethod
    def from_payload(cls, payload: dict) -> Desired:
        return cls(**{k: payload[k] for k in cls.__dataclass_fields__})

    def unenforced(self, cannot_limit: Callable[[str], str]) -> str:
        """Why a target (its ``cannot_limit``) leaves this state's limit out; "" if it does not, or if blocked."""
        if self.limit_per_min is None or self.block or not (reason := cannot_limit(self.subject_type)):
            return ""
        return f"no limit applied: {reason}"
