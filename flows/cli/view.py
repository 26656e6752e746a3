"""``gatewatch sql`` and ``gatewatch dashboard``: look at what the store holds."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from gatewatch.flows import log
from gatewatch.flows.cli.common import ConfigOpt, SqlFormat, StoreOpt, existing_store, fail, load, render


def sql(
    query: Annotated[str, typer.Argument(metavar="QUERY", help="SQL over the tables traffic, findings, decisions, deliveries, rejected.")],
    store: StoreOpt = None,
    config: ConfigOpt = None,
    out: Annotated[
        SqlFormat, typer.Option("--output", "-o", "--format", help="Output format (--format is its older name).")
    ] = SqlFormat.table,
) -> None:
    """Query the store with DuckDB (read-only, safe while a pipeline writes)."""
    import duckdb

    from gatewatch.sinks.store import query as run_query

    cfg = load(config, store=store)
    root = existing_store(cfg)
    try:
        statements = duckdb.extract_statements(query)
        if not statements:
            raise fail(["sql: the query is empty"])
        refused = [st.type.name for st in statements if st.type.name not in _READ_STATEMENTS]
        if refused:
            raise fail([f"sql: only queries are allowed (SELECT, EXPLAIN), not {', '.join(refused)}"])
        con = duckdb.connect()
        # the store's files and nothing else: no other file, no database to attach, no extension
        con.execute(f"SET allowed_directories = ['{str(root).replace(chr(39), chr(39) * 2)}']")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        result = run_query(root, query, con=con)
    except duckdb.Error as exc:
        raise fail([str(exc).splitlines()[0]], 1) from None
    sys.stdout.write(render(result, out))


_READ_STATEMENTS = frozenset({"SELECT", "EXPLAIN"})


def dashboard(store: StoreOpt = None, config: ConfigOpt = None) -> None:
    """Serve the Streamlit dashboard on the store."""
    from gatewatch.dashboards import serve
    from gatewatch.flows.credentials import CredentialsError, read_operators

    cfg = load(config, store=store)
    dash = cfg.dashboard
    try:
        operators = read_operators(dash.operators_env, dash.operators_file)
    except CredentialsError as exc:
        raise fail([str(exc)]) from None
    if operators is None:
        log.emit("note", "dashboard_read_only", read_only_note(dash))
    code = serve(
        cfg.store.path, address=dash.address, port=dash.port, refresh_s=dash.refresh_s,
        operators_env=dash.operators_env, operators_file=dash.operators_file, hosts=dash.allowed_hosts,
    )  # fmt: skip
    raise typer.Exit(code)


def read_only_note(dash) -> str:
    """Why the dashboard is read-only: no operators configured."""
    unset = f"environment variable {dash.operators_env} is not set" if dash.operators_env else "is empty"
    return (
        "dashboard: read-only, nobody can approve or revert decisions in it: no operators are configured "
        f"(dashboard.operators_env: {unset}, and there is no dashboard.operators_file)"
    )


