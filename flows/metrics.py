"""Prometheus metrics, ``/healthz`` and ``/readyz``, served by ``gatewatch run`` (``[metrics]``).

Nothing on the hot path: the counters are the run's own (:class:`~gatewatch.flows.dataflow.RunStats`),
and the control plane's state (decisions, the outbox, the watermark) is read from its
SQLite file when Prometheus scrapes, on a connection of the endpoint's own thread.

- ``/metrics``: the Prometheus text format (see :func:`collect` for the metric names);
- ``/healthz``: 200 while the process serves;
- ``/readyz``: 200 once the dataflow has started and while it is not stopping, else 503.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from gatewatch.flows.control.decision_api import read_stats
from gatewatch.sinks.control import open_read_only


class RunCollector:
    """Collects a run's metrics at scrape time."""

    def __init__(self, stats, store: Path, version: str) -> None:
        self.stats = stats
        self.store = Path(store)
        self.version = version
        self._con: sqlite3.Connection | None = None

    def _control(self) -> sqlite3.Connection | None:
        if self._con is None:
            self._con = open_read_only(self.store, timeout_s=2.0)
        return self._con

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        info = GaugeMetricFamily("gatewatch_build_info", "The running version.", labels=["version"])
        info.add_metric([self.version], 1)
        yield info
        for name, doc, value in (
            ("gatewatch_lines_read", "Input lines read.", s.lines),
            ("gatewatch_input_bytes", "Input bytes read.", s.bytes),
            ("gatewatch_events", "Lines parsed into events.", s.events),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        labelled = dict(s.labelled)
        for table, name, label, doc in (
            ("rejected", "gatewatch_rejected_lines", "reason", "Lines that could not be parsed, by reason."),
            ("findings", "gatewatch_findings", "kind", "Findings, by kind."),
        ):
            family = CounterMetricFamily(name, doc, labels=[label])
            for (t, value), n in sorted(labelled.items()):
                if t == table:
                    family.add_metric([value], n)
            yield family
        rows = CounterMetricFamily("gatewatch_rows_written", "Rows written to the store, by table.", labels=["table"])
        for table, n in sorted(dict(s.rows).items()):
            rows.add_metric([table], n)
        yield rows
        now = time.time()
        newest = s.newest_event_ts
        lag = GaugeMetricFamily(
            "gatewatch_event_time_lag_seconds", "Now minus the newest event time read (a replayed log's age)."
        )
        if newest is not None:
            lag.add_metric([], now - newest)
        yield lag
        yield from self._control_metrics(newest)
        yield from self._api_metrics()

    def _api_metrics(self) -> Iterator[Metric]:
        """The decision API's counters, as its process last wrote them (every few seconds)."""
        stats = read_stats(self.store)
        if stats is None:
            return  # the API is off, or has not written them yet
        calls = CounterMetricFamily(
            "gatewatch_api_requests", "Decision API requests with a valid key, by caller and outcome.",
            labels=["caller", "outcome"],
        )  # fmt: skip
        for caller, c in sorted(stats["callers"].items()):
            calls.add_metric([caller, "ok"], c["requests"] - c["errors"])
            calls.add_metric([caller, "error"], c["errors"])
        yield calls
        yield CounterMetricFamily(
            "gatewatch_api_forbidden", "Decision API requests refused for want of a valid key.", value=stats["forbidden"]
        )
        yield CounterMetricFamily(
            "gatewatch_api_refused_connections",
            "Decision API connections refused (503) past api.max_connections.",
            value=stats.get("refused_connections", 0),  # counters written by an earlier version lack it
        )

    def _control_metrics(self, newest: float | None) -> Iterator[Metric]:
        decisions = GaugeMetricFamily("gatewatch_decisions", "Decisions by current status.", labels=["status"])
        outbox = GaugeMetricFamily(
            "gatewatch_outbox_entries",
            "Deliveries by channel and state (pending is the backlog; sent, skipped, dead_letter the outcomes).",
            labels=["channel", "state"],
        )
        delay = GaugeMetricFamily(
            "gatewatch_window_close_delay_seconds",
            "The newest event time read minus the event time up to which every window is closed.",
        )
        try:
            con = self._control()
            if con is not None:
                for status, n in con.execute("SELECT status, count(*) FROM decisions GROUP BY 1 ORDER BY 1"):
                    decisions.add_metric([status], n)
                for channel, state, n in con.execute(
                    "SELECT channel, state, count(*) FROM outbox GROUP BY 1, 2 ORDER BY 1, 2"
                ):
                    outbox.add_metric([channel, state], n)
                mark = con.execute("SELECT value FROM meta WHERE key = 'watermark'").fetchone()
                if mark is not None and newest is not None:
                    delay.add_metric([], max(newest - float(mark[0]), 0.0))
        except sqlite3.Error:
            self._con = None  # reopened at the next scrape; this one reports what it has
        yield decisions
        yield outbox
        yield delay


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # a scrape every 15 s is not news
        pass


def make_app(registry: CollectorRegistry, ready: Callable[[], bool]):
    """The WSGI application: ``/metrics``, ``/healthz``, ``/readyz``."""

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, generate_latest(registry)
        elif path == "/healthz":
            status, ctype, body = "200 OK", "text/plain", b"ok\n"
        elif path == "/readyz":
            ok = ready()
            status, ctype, body = ("200 OK" if ok else "503 Service Unavailable"), "text/plain", b"ready\n" if ok else b"not ready\n"
        else:
            status, ctype, body = "404 Not Found", "text/plain", b"metrics at /metrics, /healthz, /readyz\n"
        start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [body]

    return app


def serve(stats, store: Path, address: str, port: int, ready: Callable[[], bool], version: str) -> WSGIServer:
    """Start the endpoint in a daemon thread; raise ``OSError`` if the port cannot be had."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(stats, store, version))
    server = make_server(address, port, make_app(registry, ready), _ThreadingServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="gatewatch-metrics", daemon=True).start()
    return server
