"""Named secrets from the environment or a file: the decision API's keys, the dashboard's operator tokens.

Both come as ``NAME:SECRET`` entries, separated by commas in an environment
variable or one a line in a file (``#`` starts a comment). An error names the
config key and the entry, never a secret. A presented secret is matched in
constant time.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from pathlib import Path

DEFAULT_OPERATORS_ENV = "GATEWATCH_OPERATORS"  # [dashboard] operators_env's default
MIN_SECRET_CHARS = 16
# an operator's name is recorded as the actor of what they do: a plain word, an e-mail address
OPERATOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}")


class CredentialsError(ValueError):
    """Configured secrets cannot be read or are malformed (the message names the key, never a value)."""


def parse_named(
    entries: list[str], where: str, *, secret: str = "KEY", name: re.Pattern[str] | None = None
) -> dict[str, str]:
    """``{secret: name}`` from ``NAME:SECRET`` entries; blank entries and ``#`` comments are skipped.

    Args:
        entries: One entry each (the lines of a file, or a variable split at commas).
        where: The config key (and variable or file) for error messages.
        secret: What the secret is called in error messages (``KEY``, ``TOKEN``).
        name: A pattern each name must match in full; None: any non-empty name.

    Raises:
        CredentialsError: An entry is malformed, two entries share a secret, or there is no entry.
    """
    found: dict[str, str] = {}
    first: dict[str, int] = {}
    for n, entry in enumerate((e.strip() for e in entries), start=1):
        if not entry or entry.startswith("#"):
            continue
        who, sep, value = (part.strip() for part in entry.partition(":"))
        if not sep or not who or len(value) < MIN_SECRET_CHARS:
            msg = f"{where}: entry {n} is not NAME:{secret} with a {secret.lower()} of {MIN_SECRET_CHARS} characters or more"
            raise CredentialsError(msg)
        if name is not None and not name.fullmatch(who):
            msg = (
                f"{where}: entry {n}: the name must be 1 to 64 letters, digits and . _ @ + -, "
                "starting with a letter or digit"
            )
            raise CredentialsError(msg)
        if value in first and found[value] != who:
            msg = f"{where}: entry {n} has the {secret.lower()} of entry {first[value]}, for another name"
            raise CredentialsError(msg)
        first.setdefault(value, n)
        found[value] = who
    if not found:
        msg = f"{where} holds no NAME:{secret} entry"
        raise CredentialsError(msg)
    return found


def read_named(
    env_key: str, env: str, file_key: str, file: str, environ: Mapping[str, str], **parse
) -> dict[str, str] | None:
    """``{secret: name}`` from the variable ``env``, else the file ``file``; None when neither is set.

    An empty or unset variable counts as not set; a file that is named must be readable.
    ``parse`` goes to :func:`parse_named`.
    """
    if env and environ.get(env, ""):
        return parse_named(environ[env].split(","), f"{env_key}: environment variable {env}", **parse)
    if file:
        where = f"{file_key}: {file}"
        try:
            text = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            msg = f"{where}: cannot read it ({reason})"
            raise CredentialsError(msg) from None
        return parse_named(text.splitlines(), where, **parse)
    return None


def name_of(secrets: Mapping[str, str], presented: str) -> str | None:
    """The name whose secret was presented, or None; every secret is compared, in constant time.

    Digests are compared, so neither the secrets' lengths nor where they differ shows in the time taken.

    >>> name_of({"s3cret-s3cret-s3cret": "alice"}, "s3cret-s3cret-s3cret"), name_of({"x" * 16: "bob"}, "y")
    ('alice', None)
    """
    given = hashlib.sha256(presented.encode()).digest()
    found = None
    for value, who in secrets.items():
        if hmac.compare_digest(_digest(value), given):
            found = who
    return found


@functools.lru_cache(maxsize=1024)
def _digest(secret: str) -> bytes:
    # a configured secret's digest, once: the decision API matches a key on every request
    return hashlib.sha256(secret.encode()).digest()


def read_operators(env: str, file: str, environ: Mapping[str, str] = os.environ) -> dict[str, str] | None:
    """The dashboard's operators, ``{token: name}``, from ``[dashboard] operators_file`` or ``operators_env``.

    The file wins when it is named (the config refuses both set). None: no operator is
    configured (the variable is unset or empty and no file is named), so the dashboard
    is read-only.

    Raises:
        CredentialsError: The operators are configured but unusable.
    """
    if file:
        env = ""
    return read_named(
        "dashboard.operators_env", env, "dashboard.operators_file", file, environ,
        secret="TOKEN", name=OPERATOR_NAME,
    )  # fmt: skip


def operators_problem(env: str, file: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """Why configured operators cannot be used, else None (also None when none is configured)."""
    try:
        read_operators(env, file, environ)
    except CredentialsError as exc:
        return str(exc)
    return None
