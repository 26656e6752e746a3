"""What every command shares: the --store and --config options, loading the config, failing, printing tables."""

from __future__ import annotations

import ipaddress
import os
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from gatewatch.flows import log
from gatewatch.flows.config import Config, ConfigError, load_config
from gatewatch.flows.parsers import FORMATS


def version() -> str:
    """gatewatch's installed version."""
    from importlib.metadata import version as installed

    return installed("gatewatch")


class TextOrJson(str, Enum):
    """What --log-format, run's and evaluate's --output write: text for a person, or JSON."""

    text = "text"
    json = "json"


FormatOpt = Annotated[
    str | None,
    typer.Option("--format", metavar="FORMAT", help=f"Log format: {' | '.join(FORMATS)} (default: the config's input.format)."),
]
StoreOpt = Annotated[Path | None, typer.Option("--store", metavar="DIR", envvar="GATEWATCH_STORE", help="Store folder (default: the config's store.path).")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", metavar="FILE", envvar="GATEWATCH_CONFIG", help="TOML config file (default: embedded defaults; see gatewatch.example.toml).")
]




def fail(problems: list[str], code: int = 2) -> typer.Exit:
    """Log each problem as an error; return the exit to raise (2: a usage or config error)."""
    for p in problems:
        log.emit("error", "error", p)
    return typer.Exit(code)


def load(config: Path | None, fmt: str | None = None, store: Path | None = None) -> Config:
    """The config with --format and --store applied; a bad one ends the command naming its keys."""
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise fail(exc.problems) from None
    if fmt is not None:
        if fmt not in FORMATS:
            raise fail([f"--format: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}"])
        cfg = cfg.model_copy(update={"input": cfg.input.model_copy(update={"format": fmt})})
    if store is not None:
        cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update={"path": store})})
    return cfg


def existing_store(cfg: Config) -> Path:
    """The store's folder; a missing one is an error, not an empty answer."""
    root = cfg.store.path.resolve()
    if not root.is_dir():
        raise fail([f"no store at {root}: gatewatch replay or run writes one (--store, GATEWATCH_STORE)"])
    return root


ActorOpt = Annotated[
    str | None, typer.Option("--actor", metavar="NAME", help="Who makes the change (default: $USER).")
]


def actor_name(actor: str | None) -> str:
    """Who makes a change: ``--actor``, else the user running the command."""
    return actor or os.environ.get("USER") or os.environ.get("LOGNAME") or ""


class SqlFormat(str, Enum):
    """What --output writes in a command that prints rows: sql, decisions list, deliveries list."""

    table = "table"
    csv = "csv"
    json = "json"


def render(result, out: SqlFormat) -> str:
    """A pyarrow table as text: a Rich table, CSV or JSON."""
    import msgspec

    rows = result.to_pylist()
    if out is SqlFormat.json:
        return msgspec.json.Encoder(decimal_format="number").encode(rows).decode() + "\n"
    if out is SqlFormat.csv:
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(result.column_names)
        w.writerows([_cell(v) for v in row.values()] for row in rows)
        return buf.getvalue()
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Text, not str: a user name like "[/bold]" is what the log said, not Rich markup
    table = Table()
    for name in result.column_names:
        table.add_column(Text(name))
    for row in rows:
        table.add_row(*(Text(_cell(v)) for v in row.values()))
    console = Console(width=200)
    with console.capture() as cap:
        console.print(table)
    return cap.get()


def render_rows(rows: list[dict], columns: tuple[str, ...], out: SqlFormat) -> str:
    """Rows, each a dict of ``columns``, as :func:`render` writes them; no rows still name the columns."""
    import pyarrow as pa

    return render(pa.Table.from_pylist(rows) if rows else pa.table({c: [] for c in columns}), out)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, without brackets) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
