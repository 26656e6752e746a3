"""The gatewatch image's HEALTHCHECK: plain Python, since a slim image has no curl.

It reads what the container runs from /proc/1/cmdline (gatewatch is PID 1, or the child of an
init such as docker run --init) and asks the matching endpoint, on the config's ports:

- ``gatewatch dashboard``: Streamlit's ``/_stcore/health`` answers 200;
- ``gatewatch run``: ``/healthz`` of ``[metrics]`` answers 200; without metrics, the decision
  API answers at all (403 without a key is an answer); with neither, the engine's own watch
  of the process is all there is, and the check passes;
- any other command (sql, validate, decisions ...): passes.

Exit 0 for healthy, 1 for unhealthy, as HEALTHCHECK expects.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT_S = 4.0


def container_command(cmdline: bytes) -> tuple[str, str | None]:
    """The gatewatch subcommand in PID 1's command line, and its --config if it has one."""
    argv = [a.decode(errors="replace") for a in cmdline.split(b"\0") if a]
    names = [Path(a).name for a in argv]
    if "gatewatch" not in names:
        return "", None
    rest = argv[names.index("gatewatch") + 1 :]
    command = next((a for a in rest if not a.startswith("-")), "")
    config = None
    for i, arg in enumerate(rest):
        if arg == "--config" and i + 1 < len(rest):
            config = rest[i + 1]
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
    return command, config


def probe_host(address: str) -> str:
    """Where to reach a server bound to ``address`` from inside its own container."""
    if address in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{address}]" if ":" in address else address


def status_of(url: str) -> int:
    """The HTTP status ``url`` answers, or 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return 0


def main() -> int:
    try:
        command, config = container_command(Path("/proc/1/cmdline").read_bytes())
    except OSError:
        return 0
    if command not in ("run", "dashboard"):
        return 0
    from gatewatch.flows.config import ConfigError, load_config

    try:
        cfg = load_config(config or os.environ.get("GATEWATCH_CONFIG") or None)
    except ConfigError as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    if command == "dashboard":
        url = f"http://{probe_host(cfg.dashboard.address)}:{cfg.dashboard.port}/_stcore/health"
        healthy = status_of(url) == 200
    elif cfg.metrics.enabled:
        url = f"http://{probe_host(cfg.metrics.address)}:{cfg.metrics.port}/healthz"
        healthy = status_of(url) == 200
    elif cfg.api.enabled:
        url = f"http://{probe_host(cfg.api.address)}:{cfg.api.port}/v1/allow?ip=127.0.0.1"
        healthy = 200 <= status_of(url) < 500
    else:
        return 0
    if not healthy:
        print(f"healthcheck: no healthy answer from {url}", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
