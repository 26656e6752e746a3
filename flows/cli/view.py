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
        for st in statements:
            if st.type.name == "EXPLAIN" and (problem := _explain_problem(st.query)):
                raise fail([f"sql: {problem}"])
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
_ANALYZE = frozenset({"ANALYZE", "ANALYSE"})


def _explain_problem(statement: str) -> str | None:
    """Why an EXPLAIN statement is refused, or None: ANALYZE runs the statement it explains, so only a SELECT may follow.

    >>> _explain_problem("EXPLAIN SELECT 1") is None
    True
    >>> _explain_problem("EXPLAIN (FORMAT json, ANALYZE) SELECT 1")
    'EXPLAIN ANALYZE is refused: it runs the statement it explains'
    >>> _explain_problem("explain copy (SELECT 1) TO 'x.csv'")
    'EXPLAIN is allowed of a SELECT only, not of COPY'
    """
    import duckdb

    starts = [start for start, kind in duckdb.tokenize(statement) if kind != duckdb.token_type.comment]
    ends = [*starts[1:], len(statement)]
    words = [statement[a:b].strip().upper() for a, b in zip(starts, ends, strict=True)]
    i = 1  # words[0] is EXPLAIN
    analyze = False
    if i < len(words) and words[i] == "(":  # options: EXPLAIN (FORMAT json, ANALYZE) ...
        close = words.index(")", i) if ")" in words[i:] else len(words)
        analyze = any(w in _ANALYZE for w in words[i:close])
        i = close + 1
    while i < len(words) and words[i] in _ANALYZE:
        analyze, i = True, i + 1
    if analyze:
        return "EXPLAIN ANALYZE is refused: it runs the statement it explains"
    explained = duckdb.extract_statements(statement[starts[i]:]) if i < len(starts) else []
    kinds = [st.type.name for st in explained]
    if kinds != ["SELECT"]:
        return f"EXPLAIN is allowed of a SELECT only, not of {', '.join(kinds) or 'nothing'}"
    return None


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


