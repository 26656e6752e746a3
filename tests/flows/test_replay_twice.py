"""Replaying a file into a store that already holds it is refused: every count would double."""

from __future__ import annotations

import shutil

from tests.conftest import SAMPLE, gatewatch, scalar


def test_a_second_replay_of_the_same_file_is_refused_and_changes_nothing(tmp_path):
    store = tmp_path / "store"
    gatewatch("replay", str(SAMPLE), "--store", str(store))
    requests = scalar(store, "SELECT sum(requests) FROM traffic")

    again = gatewatch("replay", str(SAMPLE), "--store", str(store), check=False)
    assert again.returncode == 2
    assert "was already replayed into" in again.stderr and "give another --store" in again.stderr
    copy = tmp_path / "renamed.log"  # the same log under another name, or grown since
    shutil.copy(SAMPLE, copy)
    with copy.open("ab") as f:
        f.write(SAMPLE.read_bytes().splitlines(keepends=True)[0])
    assert gatewatch("replay", str(copy), "--store", str(store), check=False).returncode == 2
    assert scalar(store, "SELECT sum(requests) FROM traffic") == requests


def test_another_file_goes_into_the_same_store(tmp_path):
    store = tmp_path / "store"
    lines = SAMPLE.read_bytes().splitlines(keepends=True)
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_bytes(b"".join(lines[: len(lines) // 2]))
    second.write_bytes(b"".join(lines[len(lines) // 2 :]))
    gatewatch("replay", str(first), "--store", str(store))
    gatewatch("replay", str(second), "--store", str(store))
    assert scalar(store, "SELECT count(*) FROM rejected") == 0
    assert scalar(store, "SELECT sum(requests) FROM traffic") == len(lines)
