"""``gatewatch replay`` and ``gatewatch run``: start the dataflow on files, stdin or Kafka, and report on it."""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated

import typer

from gatewatch.flows import log
from gatewatch.flows.cli.common import ConfigOpt, StoreOpt, TextOrJson, fail, is_loopback, load, version
from gatewatch.flows.config import Config, ConfigError, check_paths
from gatewatch.flows.parsers import FORMATS

FormatOpt = Annotated[
    str | None,
    typer.Option("--format", metavar="FORMAT", help=f"Log format: {' | '.join(FORMATS)} (default: the config's input.format)."),
]
ProcessIdOpt = Annotated[
    int | None,
    typer.Option("--process-id", "-i", metavar="N", help="This process's index in a cluster started with --addresses."),
]
AddressesOpt = Annotated[
    str | None,
    typer.Option(
        "--addresses", "-a", metavar="HOST:PORT;...",
        help="Every cluster process's address, the same list in each; this process is entry --process-id.",
    ),
]  # fmt: skip

def _inputs(specs: list[str], follow: bool) -> list[str]:
    from gatewatch.flows.sources import expand_inputs

    try:
        return expand_inputs(specs, follow=follow)
    except (ValueError, FileNotFoundError) as exc:
        raise fail([str(exc)]) from None


class _Hidden:
    """An import finder for which the named modules (and their submodules) are not installed."""

    def __init__(self, *names: str) -> None:
        self.names = names

    def find_spec(self, name: str, path=None, target=None) -> None:
        if any(name == n or name.startswith(n + ".") for n in self.names):
            raise ModuleNotFoundError(name)


@contextmanager
def _hidden(*names: str) -> Iterator[None]:
    hide = _Hidden(*names)
    sys.meta_path.insert(0, hide)
    try:
        yield
    finally:
        sys.meta_path.remove(hide)


_NO_HTTPX_CLI = _Hidden("httpx._main")


def _pyarrow_without_pandas() -> None:
    """Let pyarrow look for pandas once, with pandas hidden: a pipeline never hands it pandas objects.

    On its first conversion pyarrow imports pandas (0.35 s of every replay's start) only to
    check whether the data is a pandas object, and it never looks again.
    """
    if "pandas" in sys.modules:
        return
    import pyarrow as pa  # noqa: PLC0415 - the pipeline imports it anyway

    with _hidden("pandas"):
        pa.array([0])


def _run_flow(
    cfg: Config,
    inputs: list[str],
    stats,
    *,
    follow: bool,
    stop: threading.Event,
    recovery: Path | None,
    process_id: int | None = None,
    addresses: list[str] | None = None,
    live=None,
    before_reading: Callable[[], None] | None = None,
):
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.run import cli_main

    _pyarrow_without_pandas()

    # httpx imports its own command line's modules if it can (click, pygments, rich: 0.11 s);
    # gatewatch never runs that command, so they stay hidden wherever httpx is first imported
    # (a channel module, or the first delivery of a run without one)
    if _NO_HTTPX_CLI not in sys.meta_path:
        sys.meta_path.insert(0, _NO_HTTPX_CLI)
    from gatewatch.flows.control.controller import CONTROL_WRITER, Controller, ControlLoop, build_policy
    from gatewatch.flows.control.incidents import FailedLifts, build_alerting
    from gatewatch.flows.dataflow import build_flow
    from gatewatch.sinks.control import ControlDB
    from gatewatch.sinks.outbox import Sender
    from gatewatch.sinks.store import StoreWriter
    from gatewatch.sinks.targets import name_problems, sender_options, wire_targets

    if problems := check_paths(cfg):  # a CA file that cannot be read stops here, not at the first delivery
        raise fail(problems)
    writer = StoreWriter(cfg.store.path, writer=CONTROL_WRITER)
    try:
        observers, channels = build_alerting(cfg, writer, on_change=live.on_incident if live else None)
    except ConfigError as exc:
        raise fail(exc.problems) from None
    if problems := name_problems(cfg, list(channels)):
        raise fail(problems)
    kwargs = {}
    base_seq = None
    if recovery is not None:
        if not recovery.exists() and not process_id:
            # built aside, then renamed: a cluster's other processes wait for the finished folder
            fresh = recovery.with_name(recovery.name + ".new")
            shutil.rmtree(fresh, ignore_errors=True)
            fresh.mkdir(parents=True)
            init_db_dir(fresh, 1)
            # where this recovery lineage starts in the store: a run killed before its first
            # snapshot is rolled back to here, since it will be read again from the start
            (fresh / _BASE_SEQ).write_text(str(StoreWriter(cfg.store.path).open().last_seq))
            (fresh / _SHARDS).write_text(str(cfg.pipeline.shards))
            fresh.rename(recovery)
        _wait_for_recovery(recovery, cfg.pipeline.connect_timeout_s)
        _check_shards(recovery, cfg.pipeline.shards)
        base_seq = int((recovery / _BASE_SEQ).read_text())
        kwargs["recovery_config"] = RecoveryConfig(recovery)
    connected = threading.Event()
    flow = build_flow(
        cfg,
        inputs,
        follow=follow,
        stats=stats,
        stop=stop,
        snapshots=recovery is not None,
        store_base_seq=base_seq,
        on_start=connected.set,
        on_resume=lambda path, n: log.emit("info", "resuming", f"resuming {path} at line {n:,}", path=path, line=n),
    )
    if addresses is not None:
        kwargs |= {"process_id": process_id, "addresses": addresses}
        if timeout_s := cfg.pipeline.connect_timeout_s:
            threading.Thread(
                target=_connect_watchdog,
                args=(connected, timeout_s, process_id, addresses),
                name="connect-watchdog",
                daemon=True,
            ).start()
    if process_id:
        wait_for_local_peers(addresses[:process_id])
    # in a cluster only process 0 runs the control plane: one controller, one sender, one writer "c0"
    controlling = not process_id
    if controlling:
        control = ControlDB(cfg.store.path).open()
        writer.open()
        planner, channels = wire_targets(cfg, control, channels)
        if live is not None:
            observers = [live, *observers]  # a finding's line, then its incident's
        controller = Controller(
            control, writer, build_policy(cfg), planner=planner, observers=observers,
            on_decisions=live.on_decisions if live else None,
        )  # fmt: skip
        sender = None
        if channels:  # a failed expiry or revert alerts through the alert destinations, and its retry resolves it
            lifts = FailedLifts(control, cfg.alerts)
            sender = Sender(
                control, writer, channels, on_dead_letter=lifts, on_sent=lifts.delivered, **sender_options(cfg)
            )

        def control_failed(exc: BaseException) -> None:
            log.emit(
                "error", "control_plane_stopped",
                f"the control plane stopped ({type(exc).__name__}: {exc}); stopping the run",
            )  # fmt: skip
            stop.set()

        loop = ControlLoop(
            controller,
            sender=sender,
            interval_s=cfg.delivery.interval_s,
            compact_every_s=cfg.store.compact_every_s,
            compact_min_files=cfg.store.compact_min_files,
            on_failure=control_failed,
        ).start()
    metrics = None
    if follow and cfg.metrics.enabled:
        from gatewatch.flows.metrics import serve

        def ready() -> bool:
            return connected.is_set() and not stop.is_set() and (not controlling or loop.error is None)

        m = cfg.metrics
        port = m.port + (process_id or 0)
        try:
            metrics = serve(stats, cfg.store.path, m.address, port, ready, version())
        except OSError as exc:
            if controlling:
                loop.stop()
            raise fail([f"metrics.port: cannot listen on {m.address}:{port} ({exc.strerror})"]) from None
    # window state is many small containers: at the default gen-0 threshold of 700 the
    # collector ran 1,600 times on 1M nginx lines, 7 % of the run (full passes walk every baseline)
    gc.set_threshold(*_GC_THRESHOLDS)
    try:
        if before_reading is not None:
            before_reading()
        cli_main(
            flow,
            workers_per_process=cfg.pipeline.workers,
            epoch_interval=timedelta(seconds=cfg.pipeline.snapshot_interval_s),
            **kwargs,
        )
    finally:
        if metrics is not None:
            metrics.shutdown()
        if controlling:
            if loop.error is not None:
                control.close()
                raise fail([], 3)
            loop.stop()
            stats.add_rows("decisions", controller.decisions_made)
            _report_pending(control, replayable=not (cfg.store.path / RECOVERY_DIR).exists())
            control.close()


def _report_pending(control, *, replayable: bool) -> None:
    """Say what the outbox still holds: a run can end while deliveries back off, and they stay for the next one.

    ``replayable``: replay takes the store (it refuses one that run follows).
    """
    pending = control.outbox("pending")
    if not pending:
        return
    by_destination: dict[str, int] = {}
    for entry in pending:
        by_destination[entry.destination] = by_destination.get(entry.destination, 0) + 1
    first = min(pending, key=lambda e: e.next_at)
    counts = ", ".join(f"{name}: {n}" for name, n in sorted(by_destination.items()))
    error = f"; last error: {first.last_error}" if first.last_error else ""
    log.emit(
        "info", "outbox_pending",
        f"{len(pending)} deliveries still pending in the outbox ({counts}), the next due in "
        f"{max(first.next_at - time.time(), 0.0):.0f} s{error}; the next {'run or replay' if replayable else 'run'} with this store sends them",
        pending=len(pending),
    )  # fmt: skip


RECOVERY_DIR = "_recovery"  # in the store: the Bytewax recovery partitions of `run`
_BASE_SEQ = "store_base_seq"
_SHARDS = "pipeline_shards"


def shards_problem(recovery: Path, shards: int) -> str:
    """The problem with resuming the state in ``recovery`` under ``shards`` shards per family, or "".

    The shard keys depend on the shard count, so Bytewax would resume none of the
    saved shards: every open window and learned baseline would be silently lost.
    """
    recorded = recovery / _SHARDS
    if not recorded.exists() or (saved := int(recorded.read_text())) == shards:
        return ""
    return (
        f"pipeline.shards: is {shards}, but the restart state in {recovery} was kept with {saved}: "
        f"resuming would drop its open windows and learned baselines. Set pipeline.shards = {saved}, "
        "or start a new store to change it."
    )


def _check_shards(recovery: Path, shards: int) -> None:
    """Refuse to resume state kept under another ``pipeline.shards``.

    A folder from before the count was recorded takes this one.
    """
    if problem := shards_problem(recovery, shards):
        raise fail([problem])
    if not (recorded := recovery / _SHARDS).exists():
        recorded.write_text(str(shards))


_GC_THRESHOLDS = (20_000, 20, 20)


def _wait_for_recovery(recovery: Path, timeout_s: int) -> None:
    """Wait for process 0 of a cluster to set up the shared recovery folder (``timeout_s`` 0: for ever)."""
    deadline = time.monotonic() + (timeout_s or float("inf"))
    while not (recovery / _BASE_SEQ).exists():
        if time.monotonic() > deadline:
            raise fail(
                [f"pipeline.connect_timeout_s: no recovery folder at {recovery} after {timeout_s} s: is process 0 running?"]
            )
        time.sleep(0.1)


def _connect_watchdog(connected: threading.Event, timeout_s: int, process_id: int, addresses: list[str]) -> None:
    """Stop this process if its cluster has not connected within ``timeout_s``.

    Bytewax (Timely) retries connecting for ever, in Rust, holding the main thread:
    no exception can reach it, so the process exits from here. Nothing has been
    read yet, and the control plane commits in transactions.
    """
    if connected.wait(timeout_s):
        return
    others = ", ".join(a for i, a in enumerate(addresses) if i != process_id)
    log.emit(
        "error", "connect_timeout",
        f"pipeline.connect_timeout_s: process {process_id} was not connected to the other processes "
        f"({others}) after {timeout_s} s: are they running, with the same --addresses?",
    )  # fmt: skip
    sys.stderr.flush()
    os._exit(2)


def wait_for_local_peers(addresses: list[str]) -> None:
    """Wait until each of ``addresses`` on this host's loopback listens (Linux); leave the others to Timely.

    Timely connects to every lower-numbered process and, refused, sleeps a whole second
    before it tries again: two processes started together, as in docs/scaling.md's example,
    lost that second in 4 runs of 8. Waiting here overlaps this process's start with theirs.
    Only a listener is looked for: a probing connection would be taken for a peer. The
    connect watchdog bounds the wait.
    """
    ports = set()
    for address in addresses:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        if is_loopback(host) and port.isdigit():
            ports.add(int(port))
    while ports:
        listening = listening_ports()
        if listening is None:
            return
        ports -= listening
        if ports:
            time.sleep(0.005)


def listening_ports() -> set[int] | None:
    """The TCP ports something listens on here, from ``/proc/net/tcp{,6}`` (``None`` without them)."""
    ports: set[int] = set()
    found = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        found = True
        for fields in map(str.split, rows):
            if fields[3] == "0A":  # TCP_LISTEN
                ports.add(int(fields[1].rpartition(":")[2], 16))
    return ports if found else None


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


def replay(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="Log files (or globs) to read to the end, on event time.")],
    fmt: FormatOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    process_id: ProcessIdOpt = None,
    addresses: AddressesOpt = None,
) -> None:
    """Read log files to the end, close every window, print a summary."""
    from gatewatch.flows.dataflow import RunStats

    cfg = load(config, fmt, store)
    cluster = _cluster(process_id, addresses)
    if (cfg.store.path / RECOVERY_DIR).exists():
        raise fail([
            f"{cfg.store.path} is followed by gatewatch run (its restart state is in {RECOVERY_DIR}/): "
            "a restart of run rolls the store back to its own snapshot, which would drop a replay's rows; "
            "replay into another --store"
        ])  # fmt: skip
    inputs = _inputs([str(f) for f in files], follow=False)
    # a cluster's process 0 keeps the ledger: the others would find the files it just recorded
    heads = {} if process_id else _file_heads(_expand_globs(inputs), follow=False)
    if problems := _same_lines(heads) or _replayed_before(cfg.store.path, heads, follow=False):
        raise fail(problems)
    stats = RunStats()
    done = threading.Event()
    if sys.stderr.isatty():
        total = sum(Path(p).stat().st_size for p in _expand_globs(inputs))
        threading.Thread(target=_progress, args=(stats, total, done), daemon=True).start()
    stop = threading.Event()

    def on_interrupt(_signum, _frame):
        if stop.is_set():  # a second Ctrl-C: give up on the clean stop
            raise SystemExit(130)
        stop.set()  # the reader ends at its next batch; what was read is judged and stored

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        # recorded before the first line is read: a replay killed part-way has written some of its rows
        _run_flow(
            cfg, inputs, stats, follow=False, stop=stop, recovery=None,
            before_reading=lambda: _record_replayed(cfg.store.path, heads, finished=False), **cluster,
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
        done.set()
    if stop.is_set():
        log.emit(
            "error", "interrupted",
            f"replay interrupted after {stats.lines:,} lines: the store holds them, and the files are marked "
            "as interrupted in it; replay them into a new --store",
        )  # fmt: skip
        raise typer.Exit(130)
    _record_replayed(cfg.store.path, heads, finished=True)
    _summarize("replay", stats, cfg)


def _summarize(command: str, stats, cfg: Config) -> None:
    """The run's summary line, and a warning when nearly every line was rejected."""
    typer.echo(f"{command}: {stats.summary()} store={cfg.store.path}")
    if warning := stats.mostly_rejected(cfg.input.format):
        log.emit("warning", "mostly_rejected", warning)


_HEAD_BYTES = 1 << 16  # a file is known by the hash of its first 64 KiB of lines: a grown log is the same log


def _file_heads(paths: list[str], *, follow: bool) -> dict[str, str]:
    """``{path: ledger key}`` of the regular files among ``paths`` that hold lines.

    A gzip file is known by its lines, so a log and its compressed copy are one.
    ``follow``: only the files ``run`` reads from their start, which no gzip file
    is (one is a rotated copy, read as its log grew); one it cannot read is left
    to ``run``, which skips it.
    """
    import hashlib
    import zlib

    from gatewatch.flows.sources import content_head

    out = {}
    for p in paths:
        if not Path(p).is_file():
            continue
        try:
            head, packed = content_head(p, _HEAD_BYTES)
        except (OSError, zlib.error) as exc:
            if follow:
                continue
            raise fail([f"input {p!r}: cannot be read ({exc}); fix it or leave it out"]) from None
        if head and not (follow and packed):
            out[p] = "replayed:" + hashlib.sha256(head).hexdigest()
    return out


def _same_lines(heads: dict[str, str]) -> list[str]:
    """Why one replay of ``heads`` would count lines twice: two of its files start with the same lines."""
    first: dict[str, str] = {}
    problems = []
    for path, key in heads.items():
        if (earlier := first.setdefault(key, path)) != path:
            problems.append(
                f"{path} and {earlier} start with the same lines (the same log, a copy, or a gzip of it): "
                "replaying both would count those lines twice; give one of them"
            )
    return problems


def _replayed_before(store: Path, heads: dict[str, str], *, follow: bool) -> list[str]:
    """Why reading ``heads`` into ``store`` would count lines a replay already put there (one line per file).

    ``follow``: for ``run``, which reads a file from its start as replay does.
    """
    from gatewatch.sinks.control import CONTROL_FILE, ControlDB

    if not heads or not (store / CONTROL_FILE).exists():
        return []
    control = ControlDB(store).open()
    try:
        problems = []
        for path, key in heads.items():
            if (seen := control.get_meta(key)) is None:
                continue
            earlier = json.loads(seen)
            finished = earlier.get("finished", True)  # the ledger once recorded finished replays only
            replayed = f"({earlier['path']}, {earlier['at']})"
            if follow:
                problems.append(
                    f"{path} was {'' if finished else 'partly '}replayed into {store} {replayed}: run would read it from its start "
                    "and count its lines again; give another --store, or leave it out"
                )
            elif finished:
                problems.append(
                    f"{path} was already replayed into {store} {replayed}: "
                    "a second replay would count every line again; give another --store"
                )
            else:
                problems.append(
                    f"{path}: its replay into {store} {replayed} was interrupted, so part of its lines "
                    "are in the store and another replay would count them again; replay it into a new --store"
                )
        return problems
    finally:
        control.close()


def _record_replayed(store: Path, heads: dict[str, str], *, finished: bool) -> None:
    """Note in ``store``'s ledger that ``heads`` are being replayed, or (``finished``) were replayed to their end."""
    from gatewatch.sinks.control import ControlDB

    if not heads:
        return
    control = ControlDB(store).open()
    at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    try:
        for path, key in heads.items():
            control.set_meta(key, json.dumps({"path": str(Path(path).resolve()), "at": at, "finished": finished}))
    finally:
        control.close()


def _cluster(process_id: int | None, addresses: str | None) -> dict:
    """Check --process-id / --addresses and turn them into cli_main's arguments."""
    if process_id is None and addresses is None:
        return {}
    listed = [a.strip() for a in (addresses or "").split(";") if a.strip()]
    if process_id is None or not listed or not 0 <= process_id < len(listed):
        raise fail([f"--process-id must index the --addresses list ({len(listed)} addresses given)"])
    return {"process_id": process_id, "addresses": listed}


def _expand_globs(inputs: list[str]) -> list[str]:
    import glob

    from gatewatch.flows.sources import is_glob

    out = []
    for spec in inputs:
        out.extend(sorted(glob.glob(spec)) if is_glob(spec) else [spec])
    return out


def run(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(metavar="FILE-OR-GLOB... | -", help="Files or globs to follow like tail -F, or - for stdin."),
    ] = None,
    fmt: FormatOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    kafka: Annotated[
        str | None, typer.Option("--kafka", metavar="BROKERS", help="Read a Kafka topic instead: host:port[,host:port].")
    ] = None,
    topic: Annotated[str | None, typer.Option("--topic", metavar="TOPIC", help="The Kafka topic (with --kafka).")] = None,
    process_id: ProcessIdOpt = None,
    addresses: AddressesOpt = None,
    output: Annotated[
        TextOrJson,
        typer.Option(
            "--output", help="A line per finding, decision and incident change: text (coloured on a terminal) or json lines."
        ),
    ] = TextOrJson.text,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print no line per finding, decision or incident.")] = False,
) -> None:
    """Follow live logs; continue where it stopped after a restart. Ctrl-C stops cleanly."""
    from gatewatch.flows.dataflow import RunStats
    from gatewatch.flows.live import LiveLines, StatusLine
    from gatewatch.flows.sources import KafkaInput

    cfg = load(config, fmt, store)
    cluster = _cluster(process_id, addresses)
    if cluster and inputs and "-" in inputs:
        raise fail(["stdin (-) cannot be shared by a cluster: give files, globs or --kafka"])
    if kafka or topic:
        if not (kafka and topic) or inputs:
            raise fail(["--kafka and --topic go together, and replace FILE arguments"])
        from gatewatch.flows.kafka import (
            KafkaInputError,
            KafkaSettingsError,
            kafka_problems,
            topic_partitions,
        )

        brokers = [b.strip() for b in kafka.split(",") if b.strip()]
        if problems := kafka_problems(cfg.input.kafka):  # [input.kafka] secrets and TLS files, by key
            raise fail(problems)
        try:  # unreachable brokers, a wrong protocol, a missing topic: one clear line now, in bounded time
            topic_partitions(brokers, topic, cfg.input.kafka)
        except (KafkaInputError, KafkaSettingsError) as exc:
            raise fail([str(exc)]) from None
        source: list[str] | KafkaInput = KafkaInput(brokers, topic)
        group = cfg.input.kafka.group_id if cfg.input.kafka.commit_offsets else ""
        described = f"kafka {kafka} topic {topic}" + (f", committing offsets to group {group}" if group else "")
    elif not inputs:
        raise fail(["give FILE-OR-GLOB arguments, - for stdin, or --kafka BROKERS --topic TOPIC"])
    else:
        source = _inputs(inputs, follow=True)
        described = ", ".join(source)
        # a replayed file run has followed cannot be: replay refuses a store that run follows
        paths = _expand_globs([spec for spec in source if spec != "-"])
        if problems := _replayed_before(cfg.store.path, _file_heads(paths, follow=True), follow=True):
            raise fail(problems)
    stop = threading.Event()
    # stdin cannot be re-read after a restart, so it runs without recovery
    recovery = None if source == ["-"] else cfg.store.path / RECOVERY_DIR
    keeping = "keeping open windows for the next run" if recovery else "flushing open windows"

    def on_signal(signum, _frame):
        if stop.is_set():  # a second signal: give up on the clean stop
            raise SystemExit(130)
        name = signal.Signals(signum).name
        log.emit("info", "stopping", f"{name}: {keeping} and stopping", signal=name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    cfg.store.path.mkdir(parents=True, exist_ok=True)
    api = _start_api(cfg) if cfg.api.enabled and not process_id else None
    log.emit("info", "following", f"following {described} into {cfg.store.path} (Ctrl-C to stop)", store=str(cfg.store.path))
    if api is not None:
        url = f"http://{cfg.api.address}:{cfg.api.port}/v1/"
        log.emit("info", "api_listening", f"decision API on {url}", url=url)
    stats = RunStats()
    live = None if quiet else LiveLines(sys.stdout, json_lines=output == TextOrJson.json)
    status = None
    if live is not None and output == TextOrJson.text and sys.stdout.isatty():
        status = StatusLine(live, stats, cfg.store.path).start()
    try:
        _run_flow(cfg, source, stats, follow=True, stop=stop, recovery=recovery, live=live, **cluster)
    finally:
        if status is not None:
            status.stop()
        if live is not None:
            live.close()
        if api is not None:
            api.terminate()
            api.join(10)
    _summarize("run", stats, cfg)


def _start_api(cfg: Config):
    """Start the decision and risk API's process (a cluster's process 0 serves it)."""
    from gatewatch.flows.control.decision_api import ApiKeysError, read_keys, start

    try:
        return start(cfg, read_keys(cfg.api))
    except (ApiKeysError, RuntimeError) as exc:
        raise fail([str(exc)]) from None
