"""Benchmark the decision and risk API at fixed request rates, with the pipeline idle and while a replay runs.

Usage::

    python tests/bench_api.py --workdir bench-data/api [--seconds 10] [--rates 2000 10000] [--lines 3000000]

Needs ``wrk`` (Debian's HTTP load generator) on PATH; without it the script says
so and exits 0 with "skipped" (``make bench`` installs it with apt-get first).

It starts ``gatewatch run sample_logs/wso2_apim_metrics.log`` (the console script
next to this interpreter) into a fresh store (see ``start_server`` for its control
file), with ``[api] enabled = true`` on a free port of 127.0.0.1 and one key from
the environment, and waits (at most ``READY_TIMEOUT_S``) until ``GET /v1/decisions?ip=SAMPLE_IP`` answers a non-empty
list: the sample's decisions are live and the pipeline then idles, following the
log. Then, for each endpoint (``GET /v1/decisions?ip=SAMPLE_IP``, and ``POST
/v1/score`` with ``SCORE_BODY``) and each of ``--rates`` requests/s, it runs ``wrk``
(one thread) with ``C`` keep-alive connections, ``C`` = rate / ``--worker-rate``,
and a Lua script (``PACE_LUA``) that paces them on a schedule: each request takes the
next slot of ``1 / rate`` seconds and is sent at its time. A request whose slot has
passed (every connection was waiting for an answer) is sent at once, so the offered
rate holds as long as a connection is free; such a request is counted *late* when it
left more than 1 ms after its slot, since wrk measures its latency from when it left,
not from its slot (the queueing before it is not in the percentiles). Reported, median
of ``--runs``: the achieved requests/s (responses / wrk's wall time), p50 and p99
latency (wrk's, 1 us resolution), errors (responses other than 2xx/3xx, plus
connection errors and timeouts; the most of any run), the share of late requests,
the API process's CPU over the run (100 % = one core), the time its threads waited,
runnable, for a core (from ``/proc/PID/task/*/schedstat``; 100 % = the run's length: the
queueing the API suffers from whatever else runs) and wrk's CPU a request.

Each figure is measured in up to three conditions (``--conditions``):

- ``idle``: nothing else runs but the idle pipeline;
- ``replay``: a ``gatewatch replay BIGLOG --store OTHERDIR`` runs alongside (a
  fresh store each time; BIGLOG is a WSO2 log of ``--lines`` lines generated once
  into the workdir as ``tests/bench_replay.py`` generates it, and reused). It
  starts ``--replay-lead`` seconds before the load (past its start-up) and is
  stopped after it; if it ends before the load does, the table says when, and
  that run does not count for the target;
- ``replay-nice``: the same replay run under ``nice -n 10``, as docs/decision-api.md
  advises for a batch replay on a machine that serves the API.

The last lines say whether the target "p99 under 5 ms at 2,000 requests/s while a
replay runs" was met for each endpoint (in the ``replay`` condition, and in
``replay-nice`` as well): p99 under ``TARGET_P99_MS``, at least ``TARGET_SHARE`` of the
rate achieved, at most ``TARGET_LATE`` of the requests late, no error, the replay
running throughout. The machine matters: wrk, the API and the replay share its cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# run as a plain script: make the repository importable without installing it
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gatewatch.sinks.control import ControlDB  # noqa: E402
from tests.bench_replay import _print_table, ensure_wso2_log  # noqa: E402
from tests.conftest import free_ports  # noqa: E402

SAMPLE_LOG = ROOT / "sample_logs" / "wso2_apim_metrics.log"
SAMPLE_IP = "103.56.218.248"  # the sample gives it a decision under CONFIG's policy
KEYS_ENV = "GW_BENCH_KEYS"
KEY = "0123456789abcdef0123"
CONFIG = """\
[policy]
mode = "enforce"
review_tiers = []
elevate_score = 0.5
restrict_score = 0.6

[api]
enabled = true
address = "127.0.0.1"
port = {port}
keys_env = "{keys_env}"
"""
SCORE_BODY = {
    "current_request": {"ip": SAMPLE_IP},
    "api_context": {
        "api": "AccountsAPI:1.0.0",
        "method": "POST",
        "resource": "/login",
        "consumer": "3f8a1c2e-7b4d-4e9a-8c6f-2d1e0b9a7c54",
    },
}
VARIED = " (new IP each)"  # SCORE_BODY with a different client IP in each request: no cached answer
ENDPOINTS = (f"GET /v1/decisions?ip={SAMPLE_IP}", "POST /v1/score", "POST /v1/score" + VARIED)
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
TARGET_RATE = 2_000
TARGET_P99_MS = 5.0
TARGET_SHARE = 0.95  # of the target rate that must be achieved for the target to count
TARGET_LATE = 0.01  # of the requests at most sent late (their queueing unmeasured)
REPLAY_NICE = 10
PACE_LUA = """\
-- written by tests/bench_api.py: {rate} requests/s on a schedule over this thread's connections
local ffi = require("ffi")
ffi.cdef[[ typedef struct {{ long tv_sec; long tv_nsec; }} gw_timespec; int clock_gettime(int, gw_timespec *); ]]
local ts = ffi.new("gw_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
wrk.method = "{method}"
wrk.headers["X-Api-Key"] = "{key}"
{body}
local gap = 1000 / {rate}
local slot = nil
late, late_max, slots = 0, 0, 0  -- globals: done() reads them from each thread
function delay()  -- after each answer: wait for the next free slot, or go now if it has passed
  local now = now_ms()
  slot = (slot or now) + gap
  slots = slots + 1
  local wait = slot - now
  if wait < 0 then
    if wait < -1 then late = late + 1 end
    if -wait > late_max then late_max = -wait end
    return 0
  end
  return math.floor(wait + 0.5)  -- wrk's timers count milliseconds
end
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local n_late, n_slots, worst = 0, 0, 0
  for _, t in ipairs(threads) do
    n_late, n_slots = n_late + t:get("late"), n_slots + t:get("slots")
    worst = math.max(worst, t:get("late_max"))
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d errors=%d status_errors=%d late=%d slots=%d late_max_ms=%.1f\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status, n_late, n_slots, worst))
end
"""
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- processes ----------------------------------------------------------------------------------------


class Processes:
    """The processes this script starts, each in a session of its own; :meth:`stop_all` ends them."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start ``cmd`` with stdout and stderr to ``log``; Ctrl-C at a terminal reaches only this script."""
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )  # fmt: skip
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to ``proc``; after ``STOP_TIMEOUT_S`` kill its process group (its own children).

        ``proc`` is reaped last: until then its pid, which is its process group's id, is nobody else's.
        """
        if not exited(proc):
            os.kill(proc.pid, sig)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while not exited(proc) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not exited(proc):
                print(
                    f"{proc.args[0]} (pid {proc.pid}) did not stop within {STOP_TIMEOUT_S:.0f} s: killing it"
                )
        # a process group outlives its leader while a child of it runs (gatewatch run's API process)
        if proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(self.procs[:]):
            self.stop(proc)


@contextmanager
def started_processes() -> Iterator[Processes]:
    """A :class:`Processes` whose processes are stopped on the way out, also on Ctrl-C or SIGTERM."""

    def on_term(signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    procs = Processes()
    try:
        yield procs
    finally:
        procs.stop_all()
        signal.signal(signal.SIGTERM, previous)


def exited(proc: subprocess.Popen) -> bool:
    """Whether ``proc`` has exited, without reaping it (``Popen.poll`` would)."""
    if proc.returncode is not None:
        return True
    return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def cpu_ticks(pid: int) -> int | None:
    """User + system CPU of ``pid`` in clock ticks, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


def run_queue_ns(pid: int) -> int | None:
    """Nanoseconds the threads of ``pid`` have waited, runnable, for a core (``/proc/PID/task/*/schedstat``)."""
    try:
        return sum(int((t / "schedstat").read_text().split()[1]) for t in Path(f"/proc/{pid}/task").iterdir())
    except (OSError, IndexError, ValueError):
        return None


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet waited for, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def api_pid(run_pid: int) -> int | None:
    """The API process of ``gatewatch run`` ``run_pid``: its child started by multiprocessing's spawn."""
    try:
        children = Path(f"/proc/{run_pid}/task/{run_pid}/children").read_text().split()
    except OSError:
        return None
    for pid in children:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            return int(pid)
    return None


# -- the server -----------------------------------------------------------------------------------------


def decisions(base: str, timeout: float = 2.0) -> object:
    """``GET /v1/decisions?ip=SAMPLE_IP`` decoded, or None if the API does not answer (yet)."""
    req = urllib.request.Request(f"{base}/decisions?ip={SAMPLE_IP}", headers={"X-Api-Key": KEY})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def start_server(procs: Processes, exe: Path, workdir: Path) -> tuple[subprocess.Popen, int, str]:
    """Start ``gatewatch run`` on the sample log with the API; return it, the API's pid and base URL once ready.

    The store is fresh but for its control file, created first with the pipeline's own
    :class:`gatewatch.sinks.control.ControlDB`: on a store without it the API process can read the
    file between its creation and its tables' and die at start (``no such table``) while
    ``gatewatch run`` goes on without it, which is checked for here all the same.
    """
    store = workdir / "run-store"
    shutil.rmtree(store, ignore_errors=True)
    ControlDB(store).open().close()
    (port,) = free_ports(1)
    config = workdir / "gatewatch-api.toml"
    config.write_text(CONFIG.format(port=port, keys_env=KEYS_ENV), encoding="utf-8")
    log = workdir / "run.log"
    env = {**os.environ, KEYS_ENV: f"bench:{KEY}"}
    cmd = [str(exe), "run", str(SAMPLE_LOG), "--store", str(store), "--config", str(config)]
    proc = procs.start(cmd, log, env)
    base = f"http://127.0.0.1:{port}/v1"
    api = None
    t0 = time.monotonic()
    while time.monotonic() - t0 < READY_TIMEOUT_S:
        if exited(proc):
            procs.stop(proc)
            msg = f"gatewatch run exited with code {proc.returncode}:\n{log.read_text(errors='replace')[-2000:]}"
            raise RuntimeError(msg)
        if api is None:
            api = api_pid(proc.pid)  # not found if it has already exited (a zombie has no command line)
        if (api is not None and not alive(api)) or b"Application startup failed" in log.read_bytes():
            procs.stop(proc)
            errors = [line for line in log.read_text(errors="replace").splitlines() if "Error" in line]
            msg = f"the API process exited at start ({errors[-1].strip() if errors else f'see {log}'})"
            raise RuntimeError(msg)
        found = decisions(base)
        if api is not None and isinstance(found, list) and found:
            print(
                f"API ready on {base}/ with a decision for {SAMPLE_IP} after {time.monotonic() - t0:.1f} s."
            )
            return proc, api, base
        time.sleep(0.5)
    msg = f"no decision for {SAMPLE_IP} within {READY_TIMEOUT_S:.0f} s (see {log})"
    raise RuntimeError(msg)


# -- load -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """One wrk run's figures."""

    achieved: float  # responses per second
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx/3xx responses, connection errors and timeouts
    late: float  # share of the requests sent more than 1 ms after their slot
    api_cpu: float  # the API process's CPU over the run, 1.0 = one core
    api_waited: float  # the time the API's threads waited, runnable, for a core, 1.0 = the run's length
    client_us: float  # wrk's CPU a request, microseconds
    replay_note: str = ""  # "" idle; "running" or when it ended otherwise
    replay_ok: bool = True  # the replay ran throughout the load
    error_sample: str = ""


def parse_wrk(text: str) -> dict[str, float]:
    """The figures ``PACE_LUA``'s ``done()`` prints (``RESULT name=value ...``)."""
    line = next((x for x in text.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        msg = f"no RESULT line in wrk's output:\n{text[-2000:]}"
        raise RuntimeError(msg)
    return {k: float(v) for k, v in (kv.split("=", 1) for kv in line.split()[1:])}


def wrk_command(
    wrk: str, base: str, endpoint: str, rate: int, seconds: float, worker_rate: float, workdir: Path
) -> tuple[list[str], int]:
    """The wrk command line for ``endpoint`` at ``rate`` requests/s, and its number of connections."""
    connections = max(1, math.ceil(rate / worker_rate))
    method, path = endpoint.removesuffix(VARIED).split(" ", 1)
    body = ""
    if method == "POST":
        body = 'wrk.headers["Content-Type"] = "application/json"\n'
        if endpoint.endswith(VARIED):  # 10.0.0.1, 10.0.0.2, ...: a subject never seen, every time
            text = json.dumps({**SCORE_BODY, "current_request": {"ip": "10.%d.%d.%d"}})
            body += (
                "local n = 0\nfunction request()\n  n = n + 1\n"
                f"  return wrk.format(nil, nil, nil, string.format({json.dumps(text)}, "
                "math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256))\nend"
            )
        else:
            body += f"wrk.body = {json.dumps(json.dumps(SCORE_BODY))}"
    script = workdir / f"pace-{method.lower()}-{rate}{'-varied' if endpoint.endswith(VARIED) else ''}.lua"
    script.write_text(PACE_LUA.format(rate=rate, method=method, key=KEY, body=body), encoding="utf-8")
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(script)]
    return [*cmd, base + path.removeprefix("/v1")], connections


def run_wrk(cmd: list[str], api: int, seconds: float) -> tuple[Load, str]:
    """Run wrk; return its figures and its output."""
    ticks0, waited0, t0 = cpu_ticks(api), run_queue_ns(api), time.monotonic()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    ticks1, waited1, wall = cpu_ticks(api), run_queue_ns(api), time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        msg = f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}"
        raise RuntimeError(msg)
    f = parse_wrk(done.stdout)
    n = max(f["requests"], 1)
    client = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / n * 1e6
    cpu = (ticks1 - ticks0) / CLK_TCK / wall if ticks0 is not None and ticks1 is not None else math.nan
    waited = (waited1 - waited0) / 1e9 / wall if waited0 is not None and waited1 is not None else math.nan
    errors = int(f["errors"] + f["status_errors"])
    sample = ", ".join(
        what for what, count in (("HTTP errors", f["status_errors"]), ("connection errors or timeouts", f["errors"])) if count
    )  # fmt: skip
    load = Load(
        f["requests"] / (f["duration_us"] / 1e6), f["p50_us"] / 1000, f["p99_us"] / 1000, errors,
        f["late"] / max(f["slots"], 1), cpu, waited, client, error_sample=sample,
    )  # fmt: skip
    return load, done.stdout


def measure(
    procs: Processes,
    exe: Path,
    cmd: list[str],
    *,
    api: int,
    seconds: float,
    biglog: Path | None,
    workdir: Path,
    lead_s: float,
    nice: int = 0,
) -> Load:
    """One wrk run of ``cmd``; with ``biglog``, while ``gatewatch replay biglog`` runs into a fresh store."""
    if biglog is None:
        return run_wrk(cmd, api, seconds)[0]
    store = workdir / "replay-store"
    shutil.rmtree(store, ignore_errors=True)
    replay_cmd = [str(exe), "replay", str(biglog), "--store", str(store)]
    if nice:
        replay_cmd = ["nice", "-n", str(nice), *replay_cmd]
    replay = procs.start(replay_cmd, workdir / "replay.log")
    ended: list[float] = []
    watching = threading.Event()

    def watch() -> None:
        while not watching.wait(0.05):
            if exited(replay):
                ended.append(time.monotonic())
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        time.sleep(lead_s)
        t0 = time.monotonic()
        load = run_wrk(cmd, api, seconds)[0]
        running = not exited(replay)
    finally:
        watching.set()
        watcher.join(5)
        procs.stop(replay)
    if running:
        note, ok = "running", True
    else:
        into = ended[0] - t0 if ended else math.nan
        when = f"{-into:.1f} s before the load" if into < 0 else f"{into:.1f} s into the load"
        note, ok = f"ended {when} (code {replay.returncode})", False
    return dataclasses.replace(load, replay_note=note, replay_ok=ok)


def median_load(loads: list[Load]) -> Load:
    """The median of each figure; the replay must have run throughout every run."""
    notes = sorted({x.replay_note for x in loads if x.replay_note != "running"}) or [loads[0].replay_note]
    return Load(
        statistics.median(x.achieved for x in loads),
        statistics.median(x.p50_ms for x in loads),
        statistics.median(x.p99_ms for x in loads),
        max(x.errors for x in loads),
        statistics.median(x.late for x in loads),
        statistics.median(x.api_cpu for x in loads),
        statistics.median(x.api_waited for x in loads),
        statistics.median(x.client_us for x in loads),
        "; ".join(notes),
        all(x.replay_ok for x in loads),
        next((x.error_sample for x in loads if x.error_sample), ""),
    )


# -- main ---------------------------------------------------------------------------------------------


def target_lines(results: dict[tuple[str, str, int], Load]) -> list[str]:
    """Whether "p99 under 5 ms at 2,000 requests/s while a replay runs" was met, per endpoint and replay condition."""
    out = []
    for condition in ("replay", "replay-nice"):
        for endpoint in ENDPOINTS:
            what = (
                f"Target p99 < {TARGET_P99_MS:g} ms at {TARGET_RATE:,} requests/s while a replay runs"
                f"{f' (nice -n {REPLAY_NICE})' if condition == 'replay-nice' else ''}, {endpoint}:"
            )
            r = results.get((condition, endpoint, TARGET_RATE))
            if r is None:
                out.append(f"{what} not measured (needs --conditions {condition} and --rates {TARGET_RATE}).")
                continue
            misses = []
            if not r.p99_ms < TARGET_P99_MS:
                misses.append(f"p99 {r.p99_ms:.1f} ms")
            if r.achieved < TARGET_SHARE * TARGET_RATE:
                misses.append(f"only {r.achieved:,.0f} requests/s achieved")
            if r.late > TARGET_LATE:
                misses.append(f"{r.late:.1%} of the requests sent late")
            if r.errors:
                misses.append(f"{r.errors:,} errors")
            if not r.replay_ok:
                misses.append(f"the replay {r.replay_note}: not measured while it ran throughout")
            verdict = "NOT met: " + ", ".join(misses) if misses else f"met (p99 {r.p99_ms:.1f} ms)"
            out.append(f"{what} {verdict}.")
    return out


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, start the API, run every load and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench-data/api"))
    parser.add_argument("--seconds", type=float, default=10.0, help="Length of each load (wrk -d).")
    parser.add_argument("--rates", type=int, nargs="+", default=[2_000, 10_000], help="Target requests/s.")
    parser.add_argument(
        "--worker-rate", type=float, default=100.0,
        help="Requests/s per connection; the number of connections (wrk -c) is rate / this.",
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=1, help="Runs of each load; the table shows medians.")
    # 3M WSO2 lines replay for about 25 s on a quiet machine: past the lead and a 10 s load (it is stopped after)
    parser.add_argument("--lines", type=int, default=3_000_000, help="Lines of the log replayed alongside.")
    parser.add_argument(
        "--replay-lead", type=float, default=3.0, help="Seconds the replay runs before the load starts."
    )
    parser.add_argument(
        "--conditions", nargs="+", choices=("idle", "replay", "replay-nice"),
        default=["idle", "replay", "replay-nice"],
        help=f"idle: the pipeline idle; replay: while gatewatch replay runs; replay-nice: under nice -n {REPLAY_NICE}.",
    )  # fmt: skip
    args = parser.parse_args(argv)

    wrk = shutil.which("wrk")
    if wrk is None:
        print("Skipping the API benchmark: wrk is not on PATH (apt-get install wrk): skipped.")
        return
    exe = Path(sys.executable).with_name("gatewatch")
    if not exe.exists():
        print(
            f"Skipping the API benchmark: {exe} not found (install the project into this venv first): skipped."
        )
        return
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    replaying = any(c.startswith("replay") for c in args.conditions)
    biglog = ensure_wso2_log(workdir, args.lines) if replaying else None

    header = (
        "condition", "endpoint", "target req/s", "conns", "achieved req/s", "p50 ms", "p99 ms", "errors",
        "late %", "API CPU %", "API waited %", "wrk us/req", "replay",
    )  # fmt: skip
    table: list[tuple[str, ...]] = []
    results: dict[tuple[str, str, int], Load] = {}
    errors: list[str] = []
    with started_processes() as procs:
        server, api, base = start_server(procs, exe, workdir)
        # a short untimed load: connections, the first requests' imports and caches
        run_wrk(wrk_command(wrk, base, ENDPOINTS[0], 500, 1, args.worker_rate, workdir)[0], api, 1)
        print(f"Load average before measuring: {', '.join(f'{x:.2f}' for x in os.getloadavg())}.")
        for condition in args.conditions:
            for endpoint in ENDPOINTS:
                for rate in args.rates:
                    cmd, conns = wrk_command(
                        wrk, base, endpoint, rate, args.seconds, args.worker_rate, workdir
                    )
                    loads = [
                        measure(
                            procs,
                            exe,
                            cmd,
                            api=api,
                            seconds=args.seconds,
                            workdir=workdir,
                            biglog=biglog if condition.startswith("replay") else None,
                            lead_s=args.replay_lead,
                            nice=REPLAY_NICE if condition == "replay-nice" else 0,
                        )  # fmt: skip
                        for _ in range(args.runs)
                    ]
                    r = results[condition, endpoint, rate] = median_load(loads)
                    if exited(server) or not alive(api):
                        msg = f"gatewatch run or its API process exited during the load (see {workdir / 'run.log'})"
                        raise RuntimeError(msg)
                    if r.error_sample:
                        errors.append(f"{condition}, {endpoint}, {rate:,}/s: {r.error_sample}")
                    table.append(
                        (
                            condition, endpoint, f"{rate:,}", str(conns), f"{r.achieved:,.0f}",
                            f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}", f"{r.errors:,}", f"{r.late * 100:.1f}",
                            f"{r.api_cpu * 100:.0f}", f"{r.api_waited * 100:.0f}", f"{r.client_us:.0f}", r.replay_note or "-",
                        )
                    )  # fmt: skip
                    print(f"{condition:>11}  {endpoint}  {rate:,} req/s: done.", flush=True)
    _print_table(header, table)
    print(
        f"\n{args.seconds:g} s per load, median of {args.runs} run(s); "
        f"{os.cpu_count()} CPUs shared by wrk, the API and the replay; "
        f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}."
    )
    for line in errors:
        print(f"Errors: {line}")
    for line in target_lines(results):
        print(line)


if __name__ == "__main__":
    main()
