"""The control database under a cluster's processes."""

from __future__ import annotations

import multiprocessing

from gatewatch.sinks.control import ControlDB

_PROCESSES = 6


def _open_at_once(store: str, barrier, results) -> None:
    barrier.wait()
    try:
        ControlDB(store).open().close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - the test reports whatever escaped
        results.put(repr(exc))


def test_processes_creating_the_control_db_at_once_all_open_it(tmp_path):
    # a cluster's processes start together on a fresh store; before the retry, about one
    # open in 25 failed with "database is locked" and took its process down
    ctx = multiprocessing.get_context("fork")
    failures = []
    for trial in range(15):
        store = tmp_path / f"store-{trial}"
        barrier, results = ctx.Barrier(_PROCESSES), ctx.Queue()
        procs = [ctx.Process(target=_open_at_once, args=(str(store), barrier, results)) for _ in range(_PROCESSES)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join()
        failures += [o for o in outcomes if o != "ok"]
    assert failures == []
