"""gatewatch's messages on stderr: errors, warnings and lifecycle events, as text or JSON lines.

``gatewatch --log-format json`` (or ``GATEWATCH_LOG_FORMAT=json``) makes each one a JSON
object for a log shipper: ``{"time": ..., "level": ..., "event": ..., "message": ...}``
plus the event's own fields. Text is what a person reads: ``error: ...``,
``warning: ...``, ``note: ...``, ``gatewatch: ...``.

>>> import sys
>>> emit("info", "following", "following a.log into ./data (Ctrl-C to stop)", file=sys.stdout)
gatewatch: following a.log into ./data (Ctrl-C to stop)
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import TextIO

LEVELS = ("info", "note", "warning", "error")
_PREFIX = {"info": "gatewatch", "note": "note", "warning": "warning", "error": "error"}
_json = False


def use_json(on: bool) -> None:
    """Write every later message as a JSON line (``True``) or as text."""
    global _json  # noqa: PLW0603 - one switch for the process, set once from the command line
    _json = on


def emit(level: str, event: str, message: str, *, file: TextIO | None = None, **fields: object) -> None:
    """Write one message; ``event`` names what happened (``following``, ``config_error`` ...)."""
    out = file if file is not None else sys.stderr
    if _json:
        body = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "level": level,
            "event": event,
            "message": message,
            **fields,
        }
        out.write(json.dumps(body, default=str) + "\n")
    else:
        out.write(f"{_PREFIX[level]}: {message}\n")
    out.flush()
