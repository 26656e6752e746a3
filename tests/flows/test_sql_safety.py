"""``gatewatch sql`` prints what the logs said, and reads only the store.

Log-derived strings (user names, paths, user agents) are attacker-written: the
table output must print them as they are, never read them as Rich markup. The
query runs in a DuckDB that can read the store's files and nothing else: no
writes (``COPY … TO``), no attached databases, no other file on the machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import gatewatch

HOSTILE_USERS = ["[/bold]", "[red]admin[/red]", "[link=https://evil.example]x[/link]", "a\\[b]"]


def _store_with_users(tmp_path: Path) -> Path:
    log = tmp_path / "access.log"
    log.write_text(
        "".join(
            f'203.0.113.{i} - {user} [30/Nov/2026:09:00:0{i} +0000] "GET / HTTP/1.1" 401 10 "-" "curl/8"\n'
            for i, user in enumerate(HOSTILE_USERS)
        )
    )
    store = tmp_path / "store"
    gatewatch("replay", str(log), "--store", str(store))
    return store


def test_table_output_prints_markup_in_log_strings_as_text(tmp_path):
    store = _store_with_users(tmp_path)
    out = gatewatch("sql", "SELECT DISTINCT consumer FROM traffic ORDER BY 1", "--store", str(store)).stdout
    for user in HOSTILE_USERS:
        assert user in out


@pytest.mark.parametrize(
    "statement",
    [
        "COPY (SELECT 1) TO '{tmp}/written.csv'",
        "SELECT * FROM read_csv_auto('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "ATTACH '{tmp}/other.duckdb' AS other",
        "INSTALL httpfs",
        "",
        "  ;  ",
    ],
)
def test_sql_reads_the_store_and_nothing_else(tmp_path, statement):
    store = _store_with_users(tmp_path)
    proc = gatewatch("sql", statement.format(tmp=tmp_path), "--store", str(store), check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "written.csv").exists() and not (tmp_path / "other.duckdb").exists()


def test_sql_still_reads_every_table(tmp_path):
    store = _store_with_users(tmp_path)
    out = gatewatch("sql", "SELECT count(*) AS n FROM traffic", "--store", str(store), "--format", "csv").stdout
    assert out.splitlines()[0] == "n" and int(out.splitlines()[1]) >= 1


def test_a_missing_store_is_an_error_not_an_empty_answer(tmp_path):
    proc = gatewatch("sql", "SELECT count(*) FROM traffic", "--store", str(tmp_path / "nope"), check=False)
    assert proc.returncode == 2 and "no store at" in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize(
    "statement",
    [
        "EXPLAIN ANALYZE COPY (SELECT 1) TO '{store}/x.parquet'",
        "/* a comment */ explain analyse COPY (SELECT 1) TO '{store}/x.parquet'",
        "EXPLAIN (FORMAT json, ANALYZE) COPY (SELECT 1) TO '{store}/x.parquet'",
        "EXPLAIN ANALYZE SELECT count(*) FROM traffic",
        "EXPLAIN COPY (SELECT 1) TO '{store}/x.parquet'",
    ],
)
def test_explain_is_refused_when_it_would_run_its_statement_or_explains_no_select(tmp_path, statement):
    store = _store_with_users(tmp_path)
    proc = gatewatch("sql", statement.format(store=store), "--store", str(store), check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "EXPLAIN" in proc.stderr
    assert not (store / "x.parquet").exists()


def test_explain_of_a_select_is_still_answered(tmp_path):
    store = _store_with_users(tmp_path)
    out = gatewatch("sql", "EXPLAIN SELECT count(*) FROM traffic", "--store", str(store), "--format", "csv").stdout
    assert "physical_plan" in out
