"""Benchmark the ways a batch of log lines can become columns, against the parsers gatewatch uses.

Usage::

    python tests/bench_decoders.py --lines 1000000 --sample 100000 --workdir bench-data

It takes the first ``--sample`` lines of ``make bench``'s wso2-mobile and combined logs
(generated as :mod:`tests.bench_replay` does, reused when present), in batches of
``BATCH`` lines as the sources hand them on, and prints each way's median CPU time per
line over ``--runs``, summed over every thread (polars uses its pool, whose size is printed
first; DuckDB the threads its row names):

- **wso2**, the JSON part of each line (every way reads the fields the parser uses):
  the parser itself (line checks, decoding, one ``Event`` a line); msgspec's per-line
  decode into the parser's record; msgspec's ``decode_lines`` over the batch (the parse
  floor of ``bench_replay``); the same records turned into a list per field; polars'
  ``read_ndjson`` and ``str.json_decode`` with the same fields as a schema; DuckDB's
  ``read_json`` on a file of the JSON parts, with 1 and 2 threads;
- **combined**: the parser itself; Python's ``re`` with the parser's access-line pattern
  (the parse floor); polars' ``str.extract_groups`` with the same pattern (its engine has
  no look-ahead: the one ``(?=")`` is left out, which can only widen the match);
- **counting one family** (the consumer family's cells of a batch: requests, status
  classes, reads, bytes, latencies, distinct client IPs and user agents):
  ``ConsumerWindows.collect`` over the parser's events against a polars ``group_by`` on a
  frame of the same fields, the frame's building not counted.

Each row says what share of the parse floor's time it takes: a row above 1.0x is slower
than decoding the line into the parser's record.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import sys
import tempfile
from collections.abc import Callable
from operator import attrgetter
from pathlib import Path

import duckdb
import msgspec
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gatewatch.flows.events import Chunk  # noqa: E402
from gatewatch.flows.features import ConsumerWindows  # noqa: E402
from gatewatch.flows.parsers import ChunkParser  # noqa: E402
from gatewatch.flows.parsers.nginx import _ACCESS_PLAIN  # noqa: E402
from gatewatch.flows.parsers.wso2 import _LooseRecord  # noqa: E402
from tests.bench_replay import ensure_combined_log, ensure_wso2_mobile_log  # noqa: E402

BATCH = 8192
WSO2_FIELDS = (
    "requestTimestamp apiName apiVersion apiId applicationId applicationName applicationOwner userName userIp "
    "userAgent apiMethod apiResourceTemplate proxyResponseCode responseLatency errorType"
).split()
_STRING_FIELDS = {f: pl.String for f in WSO2_FIELDS}
WSO2_SCHEMA = {
    **_STRING_FIELDS,
    "proxyResponseCode": pl.Int64,
    "responseLatency": pl.Float64,
    "properties": pl.Struct({"userName": pl.String, "responseSize": pl.Float64}),
}
_DUCKDB_TYPES = {pl.String: "VARCHAR", pl.Int64: "BIGINT", pl.Float64: "DOUBLE"}
DUCKDB_COLUMNS = (
    "{"
    + ", ".join(f"{f}: '{_DUCKDB_TYPES[t]}'" for f, t in WSO2_SCHEMA.items() if f != "properties")
    + ", properties: 'STRUCT(userName VARCHAR, responseSize DOUBLE)'}"
)


def cpu_s() -> float:
    """CPU seconds of this process so far, every thread's."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def median_cpu_s(fn: Callable[[], object], runs: int) -> float:
    """Median CPU time of ``runs`` calls of ``fn``, after one untimed call."""
    fn()
    times = []
    for _ in range(runs):
        t0 = cpu_s()
        fn()
        times.append(cpu_s() - t0)
    return statistics.median(times)


def batches(lines: list[bytes]) -> list[list[bytes]]:
    return [lines[i : i + BATCH] for i in range(0, len(lines), BATCH)]


def read_sample(path: Path, sample: int) -> list[bytes]:
    with open(path, "rb") as f:
        return [f.readline().rstrip(b"\n") for _ in range(sample)]


def wso2_ways(lines: list[bytes], workdir: Path) -> dict[str, Callable[[], object]]:
    parts = batches(lines)
    json_parts = [[line[line.index(b"{") :] for line in b] for b in parts]
    joined = [b"\n".join(b) for b in json_parts]
    parser = ChunkParser("wso2")
    loose = msgspec.json.Decoder(_LooseRecord)  # the timestamp as text, as in bench_replay's floor
    fields = [attrgetter(f) for f in WSO2_FIELDS] + [attrgetter("properties.responseSize")]
    ndjson = workdir / "bench_decoders_wso2.ndjson"
    ndjson.write_bytes(b"\n".join(joined) + b"\n")
    query = f"SELECT * FROM read_json('{ndjson}', format = 'newline_delimited', columns = {DUCKDB_COLUMNS})"

    def duckdb_read(threads: int) -> Callable[[], object]:
        def run() -> object:
            with duckdb.connect(config={"threads": threads}) as con:
                return con.sql(query).to_arrow_table()

        return run

    return {
        "the wso2 parser: an Event a line": lambda: [parser.parse(Chunk("x", 1, 0, b)) for b in parts],
        "msgspec, a line at a time": lambda: [list(map(loose.decode, b)) for b in json_parts],
        "msgspec decode_lines (the floor)": lambda: [loose.decode_lines(b) for b in joined],
        "msgspec decode_lines, then a list per field": lambda: [
            [list(map(f, recs)) for f in fields] for recs in map(loose.decode_lines, joined)
        ],
        "polars read_ndjson": lambda: [pl.read_ndjson(io.BytesIO(b), schema=WSO2_SCHEMA) for b in joined],
        "polars str.json_decode": lambda: [
            pl.Series(b, dtype=pl.Binary).cast(pl.String).str.json_decode(pl.Struct(WSO2_SCHEMA))
            for b in json_parts
        ],
        "DuckDB read_json, 1 thread": duckdb_read(1),
        "DuckDB read_json, 2 threads": duckdb_read(2),
    }


def combined_ways(lines: list[bytes]) -> dict[str, Callable[[], object]]:
    parts = batches(lines)
    parser = ChunkParser("combined")
    match = _ACCESS_PLAIN.match
    pattern = _ACCESS_PLAIN.pattern.replace('(?=")', "")

    def python_re() -> None:
        for b in parts:
            for text in map(bytes.decode, b):
                m = match(text)
                if m is not None:
                    m.groups()

    return {
        "the combined parser: an Event a line": lambda: [parser.parse(Chunk("x", 1, 0, b)) for b in parts],
        "Python re, match and groups (the floor)": python_re,
        "polars str.extract_groups": lambda: [
            pl.Series(b, dtype=pl.Binary).cast(pl.String).str.extract_groups(pattern) for b in parts
        ],
    }


def counting_ways(lines: list[bytes]) -> dict[str, Callable[[], object]]:
    parser = ChunkParser("wso2")
    event_batches = [parser.parse(Chunk("x", 1, 0, b))[0] for b in batches(lines)]
    frames = [
        pl.DataFrame(
            {
                "ts": [e.ts for e in events],
                "api": [e.api for e in events],
                "consumer": [e.consumer for e in events],
                "client_ip": [e.client_ip for e in events],
                "method": [e.method for e in events],
                "status": [e.status for e in events],
                "bytes_out": [e.bytes_out for e in events],
                "latency_ms": [e.latency_ms for e in events],
                "user_agent": [e.user_agent for e in events],
            }
        )
        for events in event_batches
    ]
    status_class = pl.col("status") // 100

    def group_by() -> list:
        return [
            frame.group_by(
                (pl.col("ts") - pl.col("ts") % 60).alias("start"), "api", "consumer", maintain_order=True
            )
            .agg(
                pl.len().alias("requests"),
                *((status_class == k).sum().alias(f"s{k}xx") for k in (2, 3, 4, 5)),
                pl.col("method").is_in(["GET", "HEAD"]).sum().alias("reads"),
                pl.col("bytes_out").sum(),
                pl.col("latency_ms").filter(pl.col("latency_ms") >= 0).value_counts(),
                pl.col("client_ip").filter(pl.col("client_ip") != "").unique(maintain_order=True),
                pl.col("user_agent").filter(pl.col("user_agent") != "").unique(maintain_order=True),
            )
            .rows()
            for frame in frames
        ]

    return {
        "ConsumerWindows.collect over the events": lambda: [
            ConsumerWindows.collect(e, 60) for e in event_batches
        ],
        "polars group_by on a frame of them": group_by,
    }


def report(
    title: str, ways: dict[str, Callable[[], object]], lines: int, runs: int, floor_s: float | None
) -> float:
    """Print each way's CPU per line and share of the floor (``floor_s``, or the way named the floor's)."""
    secs = {name: median_cpu_s(fn, runs) for name, fn in ways.items()}
    if floor_s is None:
        floor_s = next(s for name, s in secs.items() if "(the floor)" in name)
    print(f"\n{title} ({lines:,} lines, batches of {BATCH:,})")
    print(f"| {'way':<48} | CPU per line | share of the floor |")
    print(f"| {'-' * 48} | ------------ | ------------------ |")
    for name, s in secs.items():
        print(f"| {name:<48} | {s / lines * 1e6:9.2f} µs | {s / floor_s:17.2f}x |")
    return floor_s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--lines", type=int, default=1_000_000, help="the bench logs' size (make bench's are reused)"
    )
    parser.add_argument("--sample", type=int, default=100_000, help="lines decoded from each log")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("bench-data"))
    args = parser.parse_args(argv)
    sample = min(args.sample, args.lines)
    print(
        f"polars threads: {pl.thread_pool_size()} (POLARS_MAX_THREADS={os.environ.get('POLARS_MAX_THREADS', '')})"
    )
    wso2 = read_sample(ensure_wso2_mobile_log(args.workdir, args.lines), sample)
    combined = read_sample(ensure_combined_log(args.workdir, args.lines), sample)
    with tempfile.TemporaryDirectory(prefix="bench-decoders-", dir=args.workdir) as tmp:
        wso2_floor = report(
            "wso2-mobile: the JSON part of a line", wso2_ways(wso2, Path(tmp)), sample, args.runs, None
        )
    report("combined: an access line", combined_ways(combined), sample, args.runs, None)
    report(
        "counting the consumer family's cells (share of the wso2 floor)",
        counting_ways(wso2),
        sample,
        args.runs,
        wso2_floor,
    )


if __name__ == "__main__":
    main()
