"""Run a real CrowdSec bouncer against our decision API and record what it does.

Why: "compatible with CrowdSec's Local API" should mean that the bouncers people
already run work against gatewatch. This runs Debian's ``crowdsec-custom-bouncer``
(0.0.15, install: ``apt-get install -y --no-install-recommends crowdsec-custom-bouncer``;
without ``--no-install-recommends`` apt also pulls ``crowdsec``, whose setup fails
offline) as a plain subprocess: no root, no systemd, no crowdsec.

What it sends (seen against a stub): ``GET {api_url}v1/decisions/stream?startup=true``
once, then ``GET {api_url}v1/decisions/stream?`` (empty query) every
``update_frequency``, with headers ``X-Api-Key``, ``User-Agent:
crowdsec-custom-bouncer/-`` and ``Accept-Encoding: gzip``; nothing else, no
heartbeat or metrics. It wants 200 with ``{"new": [...] | null, "deleted": [...] | null}``;
each decision needs non-null ``value``, ``type``, ``duration`` (a Go duration such as
``"59m58s"``) and ``scenario``, or the bouncer panics and exits. ``scope`` is not checked,
so "Range" values go through as they are. Any non-2xx or bad JSON on the first call
leaves it alive but never polling again; on later calls it logs and goes on.

For each decision it runs ``bin_path add|del <value> <duration in whole seconds>
<scenario> <decision JSON>``: deletes first, then adds, within one response. It
skips an add (or del) of a (value, type) it already added (or deleted) in the
last ``cache_retention_duration`` (10 s by default), even if it was deleted in
between. The script here records those calls as :class:`BouncerEvent`.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

BINARY = Path("/usr/bin/crowdsec-custom-bouncer")
INSTALL = "apt-get install -y --no-install-recommends crowdsec-custom-bouncer"
READY = "deleting '"  # logged once a stream response has been read, the first one included
IDLE = ("deleting '0' decisions", "adding '0' decisions")  # one of each per poll: left out of log tails

# argv[1] is the events file, then what the bouncer passed; one write per call, calls come one at a time
_RECORD = (
    "import json, os, sys\n"
    "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)\n"
    "os.write(fd, (json.dumps(sys.argv[2:]) + '\\n').encode())\n"
)


class BouncerEvent(NamedTuple):
    """One call of the bouncer's script: ``("add", "192.0.2.7", 3598, "gatewatch/brute_force", ...)``."""

    action: str  # "add" or "del"
    value: str  # the decision's value as sent: an IP, a CIDR for "Range"...
    duration_s: int  # the decision's duration, truncated to whole seconds (negative if so sent)
    scenario: str
    decision: dict[str, Any]  # the decision as the bouncer re-serialised it (no "uuid")

    @property
    def type(self) -> str | None:
        return self.decision.get("type")

    @property
    def scope(self) -> str | None:
        return self.decision.get("scope")


class Bouncer:
    """A running bouncer: what its script recorded, and its log."""

    def __init__(self, proc: subprocess.Popen[bytes], events_path: Path, log_path: Path) -> None:
        self.proc = proc
        self.events_path = events_path
        self.log_path = log_path

    def events(self) -> list[BouncerEvent]:
        if not self.events_path.exists():
            return []
        text = self.events_path.read_text()
        out = []
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # a call still being written
            action, value, seconds, scenario, *rest = json.loads(line)
            decision = json.loads(rest[0]) if rest and rest[0] else {}
            out.append(BouncerEvent(action, value, int(seconds), scenario, decision))
        return out

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        kept = [line for line in self.log().splitlines() if not any(idle in line for idle in IDLE)]
        return "\n".join(kept[-lines:])

    def wait_for(
        self, predicate: Callable[[list[BouncerEvent]], bool], timeout_s: float = 15.0
    ) -> list[BouncerEvent]:
        """Poll the events until ``predicate(events)``; else fail with the events and the log's tail."""
        deadline = time.monotonic() + timeout_s
        while True:
            events = self.events()
            if predicate(events):
                return events
            exited = self.proc.poll()
            if exited is not None or time.monotonic() > deadline:
                why = (
                    f"the bouncer exited with {exited}" if exited is not None else f"not within {timeout_s}s"
                )
                lines = "\n".join(f"  {e[:4]} {e.decision}" for e in events) or "  (none)"
                msg = f"bouncer events never matched ({why}); events:\n{lines}\nlog tail:\n{self.log_tail()}"
                raise AssertionError(msg)
            time.sleep(0.05)


def _go_duration(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def write_config(
    workdir: Path,
    api_url: str,
    api_key: str,
    *,
    update_frequency_s: float,
    cache_retention_s: float,
    extra_config: Mapping[str, object] | None = None,
) -> Path:
    """The bouncer's YAML config and recording script in ``workdir``; returns the config's path."""
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "record-decision"
    events = workdir / "bouncer-events.jsonl"
    script.write_text(
        "#!/bin/sh\n"
        f"exec {shlex.quote(sys.executable)} -I -S -c {shlex.quote(_RECORD)} {shlex.quote(str(events))} "
        '"$@"\n'
    )
    script.chmod(0o755)
    settings: dict[str, object] = {
        "bin_path": str(script),
        "feed_via_stdin": False,
        "update_frequency": _go_duration(update_frequency_s),
        "cache_retention_duration": _go_duration(cache_retention_s),
        "daemonize": True,  # only means: handle SIGTERM, then exit 0 (sd_notify is a no-op off systemd)
        "log_mode": "stdout",  # stdout and stderr go to bouncer.log, Go panics included
        "log_level": "info",
        "api_url": api_url,
        "api_key": api_key,
        "prometheus": {"enabled": False},
        **(extra_config or {}),  # e.g. {"scopes": ["Ip", "Range"], "origins": ["gatewatch"]}
    }
    # JSON values are YAML flow scalars and sequences; no ${VAR} expansion happens in this version
    body = "".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items())
    config = workdir / "crowdsec-custom-bouncer.yaml"  # a "<config>.local" beside it would be merged in
    config.write_text(body)
    return config


@contextmanager
def running_bouncer(
    api_url: str,
    api_key: str,
    workdir: Path,
    *,
    update_frequency_s: float = 0.2,
    cache_retention_s: float = 10.0,
    extra_config: Mapping[str, object] | None = None,
    wait_ready: bool = True,
    ready_timeout_s: float = 15.0,
    binary: Path = BINARY,
) -> Iterator[Bouncer]:
    """Start the real bouncer on ``api_url`` (its LAPI base URL) and stop it on exit.

    The API must already answer: the bouncer never retries its first call. With
    ``wait_ready`` this returns once that call has been read, and fails with the
    log's tail if the bouncer logged an error or exited first.
    """
    if not binary.exists():
        msg = f"{binary} is missing: install the CrowdSec bouncer with `{INSTALL}`"
        raise RuntimeError(msg)
    config = write_config(
        workdir,
        api_url,
        api_key,
        update_frequency_s=update_frequency_s,
        cache_retention_s=cache_retention_s,
        extra_config=extra_config,
    )
    log_path = workdir / "bouncer.log"
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(binary), "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
    bouncer = Bouncer(proc, workdir / "bouncer-events.jsonl", log_path)
    try:
        if wait_ready:
            _wait_ready(bouncer, ready_timeout_s)
        yield bouncer
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(bouncer: Bouncer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        text = bouncer.log()
        if READY in text:
            return
        exited = bouncer.proc.poll()
        if (
            "level=error" in text
            or "level=fatal" in text
            or exited is not None
            or time.monotonic() > deadline
        ):
            why = f"exited with {exited}" if exited is not None else "did not read a first stream response"
            msg = f"the CrowdSec bouncer {why}; log tail:\n{bouncer.log_tail()}"
            raise AssertionError(msg)
        time.sleep(0.05)
