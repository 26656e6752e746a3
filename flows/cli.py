"""The ``gatewatch`` command."""

from __future__ import annotations

import signal
import sys
import threading
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from flows.config import Config, ConfigError, check_paths, example_toml, load_config
from flows.parsers import FORMATS

app = typer.Typer(
    name="gatewatch",
    help="Streaming abuse detection and adaptive quotas for API gateways (WSO2 API-M, Kong, nginx).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

FormatOpt = Annotated[
    str | None,
    typer.Option("--format", metavar="FORMAT", help=f"Log format: {' | '.join(FORMATS)} (default: the config's input.format)."),
]
StoreOpt = Annotated[Path | None, typer.Option("--store", metavar="DIR", help="Store folder (default: the config's store.path).")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", metavar="FILE", help="TOML config file (default: embedded defaults; see gatewatch.example.toml).")
]


def _fail(problems: list[str], code: int = 2) -> typer.Exit:
    for p in problems:
        typer.echo(f"error: {p}", err=True)
    return typer.Exit(code)


def _load(config: Path | None, fmt: str | None = None, store: Path | None = None) -> Config:
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise _fail(exc.problems) from None
    if fmt is not None:
        if fmt not in FORMATS:
            raise _fail([f"--format: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}"])
        cfg = cfg.model_copy(update={"input": cfg.input.model_copy(update={"format": fmt})})
    if store is not None:
        cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update={"path": store})})
    return cfg


def _inputs(specs: list[str], follow: bool) -> list[str]:
    from flows.sources import expand_inputs

    try:
        return expand_inputs(specs, follow=follow)
    except (ValueError, FileNotFoundError) as exc:
        raise _fail([str(exc)]) from None


def _run_flow(cfg: Config, inputs: list[str], stats, *, follow: bool, stop: threading.Event, recovery: Path | None):
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.run import cli_main

    from flows.controller import CONTROL_WRITER, ControlLoop, Controller, build_policy
    from flows.dataflow import build_flow
    from sinks.control import ControlDB
    from sinks.store import StoreWriter

    flow = build_flow(cfg, inputs, follow=follow, stats=stats, stop=stop, snapshots=recovery is not None)
    kwargs = {}
    if recovery is not None:
        if not recovery.exists():
            recovery.mkdir(parents=True)
            init_db_dir(recovery, 1)
        kwargs["recovery_config"] = RecoveryConfig(recovery)
    control = ControlDB(cfg.store.path).open()
    controller = Controller(control, StoreWriter(cfg.store.path, writer=CONTROL_WRITER).open(), build_policy(cfg))
    loop = ControlLoop(controller, sender=None).start()
    try:
        cli_main(
            flow,
            workers_per_process=cfg.pipeline.workers,
            epoch_interval=timedelta(seconds=cfg.pipeline.snapshot_interval_s),
            **kwargs,
        )
    finally:
        loop.stop()
        stats.add_rows("decisions", controller.decisions_made)
        control.close()


def _progress(stats, total_bytes: int, done: threading.Event) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("replay"), BarColumn(), DownloadColumn(), TextColumn("{task.fields[lines]} lines"),
        TimeRemainingColumn(), transient=True, console=Console(stderr=True),
    ) as bar:  # fmt: skip
        task = bar.add_task("replay", total=total_bytes, lines=0)
        while not done.wait(0.2):
            bar.update(task, completed=stats.bytes, lines=stats.lines)


@app.command()
def replay(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="Log files (or globs) to read to the end, on event time.")],
    fmt: FormatOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Read log files to the end, close every window, print a summary."""
    from flows.dataflow import RunStats

    cfg = _load(config, fmt, store)
    inputs = _inputs([str(f) for f in files], follow=False)
    stats = RunStats()
    done = threading.Event()
    if sys.stderr.isatty():
        total = sum(Path(p).stat().st_size for p in _expand_globs(inputs))
        threading.Thread(target=_progress, args=(stats, total, done), daemon=True).start()
    try:
        _run_flow(cfg, inputs, stats, follow=False, stop=threading.Event(), recovery=None)
    finally:
        done.set()
    typer.echo(f"replay: {stats.summary()} store={cfg.store.path}")


def _expand_globs(inputs: list[str]) -> list[str]:
    import glob

    out = []
    for spec in inputs:
        out.extend(sorted(glob.glob(spec)) if any(c in spec for c in "*?[") else [spec])
    return out


@app.command()
def run(
    inputs: Annotated[list[str], typer.Argument(metavar="FILE-OR-GLOB... | -", help="Files or globs to follow like tail -F, or - for stdin.")],
    fmt: FormatOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Follow live logs; continue where it stopped after a restart. Ctrl-C stops cleanly."""
    from flows.dataflow import RunStats

    cfg = _load(config, fmt, store)
    specs = _inputs(inputs, follow=True)
    stop = threading.Event()

    def on_signal(signum, _frame):
        if stop.is_set():  # a second signal: give up on the clean stop
            raise SystemExit(130)
        typer.echo(f"gatewatch: {signal.Signals(signum).name}: flushing open windows and stopping", err=True)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    cfg.store.path.mkdir(parents=True, exist_ok=True)
    typer.echo(f"gatewatch: following {', '.join(specs)} into {cfg.store.path} (Ctrl-C to stop)", err=True)
    # stdin cannot be re-read after a restart, so it runs without recovery
    recovery = None if specs == ["-"] else cfg.store.path / "_recovery"
    stats = RunStats()
    _run_flow(cfg, specs, stats, follow=True, stop=stop, recovery=recovery)
    typer.echo(f"run: {stats.summary()} store={cfg.store.path}")


class SqlFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


@app.command()
def sql(
    query: Annotated[str, typer.Argument(metavar="QUERY", help="SQL over the tables traffic, findings, decisions, deliveries, rejected.")],
    store: StoreOpt = None,
    config: ConfigOpt = None,
    out: Annotated[SqlFormat, typer.Option("--format", help="Output format.")] = SqlFormat.table,
) -> None:
    """Query the store with DuckDB (safe while a pipeline writes)."""
    import duckdb

    from sinks.store import query as run_query

    cfg = _load(config, store=store)
    try:
        result = run_query(cfg.store.path, query)
    except duckdb.Error as exc:
        raise _fail([str(exc).splitlines()[0]], 1) from None
    sys.stdout.write(_render(result, out))


def _render(result, out: SqlFormat) -> str:
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

    table = Table(*result.column_names)
    for row in rows:
        table.add_row(*(_cell(v) for v in row.values()))
    console = Console(width=200)
    with console.capture() as cap:
        console.print(table)
    return cap.get()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


@app.command()
def dashboard(store: StoreOpt = None, config: ConfigOpt = None) -> None:
    """Serve the Streamlit dashboard on the store."""
    from dashboards import serve

    cfg = _load(config, store=store)
    raise typer.Exit(serve(cfg.store.path, address=cfg.dashboard.address, port=cfg.dashboard.port))


@app.command()
def validate(
    config: ConfigOpt = None,
    print_example: Annotated[bool, typer.Option("--print-example", help="Print every key with its default.")] = False,
) -> None:
    """Check a config file; list every problem and exit non-zero if there is one."""
    if print_example:
        sys.stdout.write(example_toml())
        return
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise _fail(exc.problems, 1) from None
    problems = check_paths(cfg)
    if problems:
        raise _fail(problems, 1)
    typer.echo(f"{config or 'embedded defaults'}: OK")


def main() -> None:
    """Console-script entry point."""
    app()
