"""``gatewatch deliveries``: dead letters are listed and sent again, unless something newer supersedes them."""

from __future__ import annotations

import json
import time

from werkzeug import Response

from gatewatch.sinks.control import ControlDB
from gatewatch.sinks.outbox import Sender
from gatewatch.sinks.store import StoreWriter
from tests.conftest import gatewatch
from tests.sinks.test_outbox import _PostChannel


def test_dead_letters_are_listed_retried_and_sent_once_the_receiver_is_back(tmp_path, httpserver):
    answers = iter([Response("no such route", 404)] * 3 + [Response("ok", 200)] * 10)
    httpserver.expect_request("/hook", method="POST").respond_with_handler(lambda req: next(answers))
    control = ControlDB(tmp_path).open()
    sender = Sender(control, StoreWriter(tmp_path, writer="c0").open(), {"hook": _PostChannel("hook", httpserver.url_for("/hook"))})
    control.enqueue("e1", "test-post", "hook", "incident-1", {"x": 1})
    control.enqueue("e2", "test-post", "hook", "incident-2", {"x": 2})
    control.enqueue("e3", "test-post", "hook", "incident-3", {"x": 3}, not_before=time.time() - 10)
    sender.step()
    control.enqueue("e4", "test-post", "hook", "incident-3", {"x": 4})  # the same incident, later: resolved
    sender.step()
    assert {e.id: e.state for e in control.outbox()} == {"e1": "dead_letter", "e2": "dead_letter", "e3": "dead_letter", "e4": "sent"}

    listed = json.loads(gatewatch("deliveries", "list", "--store", str(tmp_path), "--output", "json").stdout)
    assert [(e["id"], e["destination"], e["attempts"]) for e in listed] == [("e1", "hook", 1), ("e2", "hook", 1), ("e3", "hook", 1)]
    assert all("no such route" in e["last_error"] for e in listed)
    table = gatewatch("deliveries", "list", "--store", str(tmp_path)).stdout
    assert "┃ id ┃ destination ┃ attempts ┃ last_error" in table
    assert [line.split("│")[1].strip() for line in table.splitlines() if line.startswith("│")] == ["e1", "e2", "e3"]

    out = gatewatch("deliveries", "retry", "--all", "--store", str(tmp_path), "--actor", "ops-on-call")
    assert "e1: pending again" in out.stdout and "e2: pending again" in out.stdout
    retries = control.con.execute("SELECT entry_id, actor FROM retries ORDER BY rowid").fetchall()
    assert retries == [("e1", "ops-on-call"), ("e2", "ops-on-call")]  # who asked, for each entry retried
    assert "e3: not retried: a newer delivery" in out.stderr
    sender.step()
    assert {e.id: e.state for e in control.outbox()} == {"e1": "sent", "e2": "sent", "e3": "dead_letter", "e4": "sent"}

    unknown = gatewatch("deliveries", "retry", "e1", "nope", "--store", str(tmp_path), check=False)
    assert unknown.returncode == 1 and "nope is not a dead letter" in unknown.stderr


def test_a_store_without_a_control_database_has_no_dead_letters(tmp_path):
    # a replay with nothing to deliver writes none: the store is valid, its outbox empty
    store = tmp_path / "store"
    StoreWriter(store).open()
    listed = gatewatch("deliveries", "list", "-o", "json", "--store", str(store))
    assert (listed.returncode, json.loads(listed.stdout), listed.stderr) == (0, [], "")
    assert gatewatch("deliveries", "retry", "--all", "--store", str(store)).returncode == 0
    unknown = gatewatch("deliveries", "retry", "d1", "--store", str(store), check=False)
    assert (unknown.returncode, unknown.stderr) == (1, "error: d1 is not a dead letter\n")
    assert not (store / "control.sqlite").exists()  # reading made none
