"""Where a user's SQL runs: a DuckDB connection that reaches only the data assay registers on it.

Suites travel with the data and between users, so a suite's ``sql`` condition (and ``scores --where``) is
untrusted input. It runs on a connection made by :func:`sandbox`: no file system, no network, no
extensions to install or load, and its configuration locked, so that ``SET`` cannot undo any of it.
Before it runs, :func:`check_condition` makes sure the string is one expression over columns (no second
statement, no comment, no subquery, no table or file function), so that a mistake is an error that says
so instead of a DuckDB permission error at run time.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

from assay.errors import SQLConditionError

LOCKED = {
    "enable_external_access": False,  # no files, no network: read_csv, glob, COPY, ATTACH, INSTALL all fail
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
}
ALLOWED = ("a condition may only use the columns of the dataset, with operators, functions (lower, "
           "regexp_matches, ...), CASE and casts; statements, ';', comments, subqueries and table or file "
           "functions (read_csv, glob, ...) are not allowed")
_STATEMENTS = {"ALTER", "ANALYZE", "ATTACH", "CALL", "CHECKPOINT", "COPY", "CREATE", "DELETE", "DESCRIBE",
               "DETACH", "DROP", "EXPORT", "IMPORT", "INSERT", "INSTALL", "LOAD", "PRAGMA", "RESET", "SET",
               "SHOW", "SUMMARIZE", "UPDATE", "USE", "VACUUM"}
_CLAUSES = ("where_clause", "having", "qualify", "sample")


def sandbox(memory_limit: str = "1GB", threads: int | None = None) -> Any:
    """A DuckDB connection that reads only what is registered on it, its configuration locked."""
    import duckdb

    config: dict[str, Any] = {**LOCKED, "memory_limit": memory_limit}
    if threads is not None:
        config["threads"] = threads
    con = duckdb.connect(config=config)
    con.execute("SET lock_configuration = true")
    return con


def check_condition(condition: str, what: str) -> None:
    """Raise :class:`SQLConditionError` naming ``what`` unless ``condition`` is one SQL expression over
    columns, safe to put in any expression of a query."""
    reason = _unsafe(condition)
    if reason is not None:
        raise SQLConditionError(f"{what} {condition!r} is not allowed: {reason}; {ALLOWED}")


def _unsafe(condition: str) -> str | None:
    """Why ``condition`` is not one safe expression, or None."""
    import duckdb

    try:
        tokens = _tokens(condition)
    except duckdb.Error as e:
        return f"it is not valid SQL ({str(e).splitlines()[0]})"
    depth = 0
    for text, kind in tokens:
        if kind == "comment":
            return "it holds a comment"
        if kind == "keyword" and text.upper() in _STATEMENTS:
            return f"it holds the statement keyword {text.upper()}"
        if kind == "operator":
            if ";" in text:
                return "it holds ';', which would start a second statement"
            depth += text.count("(") - text.count(")")
            if depth < 0:
                return "it closes a parenthesis it did not open"
    if depth:
        return "its parentheses do not balance"
    if not tokens:
        return "it is empty"
    return _not_an_expression(f"SELECT ({condition}) FROM assay_data")


def _tokens(sql: str) -> list[tuple[str, str]]:
    import duckdb

    found = duckdb.tokenize(sql)
    starts = [p for p, _ in found] + [len(sql)]
    return [(sql[starts[i]:starts[i + 1]].strip(), kind.name) for i, (_, kind) in enumerate(found)]


def _not_an_expression(query: str) -> str | None:
    import duckdb

    try:
        if len(duckdb.extract_statements(query)) != 1:
            return "it holds more than one statement"
    except duckdb.Error as e:
        return f"it is not one SQL expression ({str(e).splitlines()[0]})"
    con = sandbox()
    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [query]).fetchone()[0])
        if tree.get("error") or len(tree["statements"]) != 1:
            return f"it is not one SQL expression ({tree.get('error_message', 'more than one statement')})"
        node = tree["statements"][0]["node"]
        if (node.get("type") != "SELECT_NODE" or len(node.get("select_list", [])) != 1
                or any(node.get(c) for c in _CLAUSES) or node.get("group_expressions") or node.get("modifiers")
                or node.get("cte_map", {}).get("map") or node.get("from_table", {}).get("table_name") != "assay_data"):
            return "it is more than one expression"
    finally:
        con.close()
    table_functions = _table_functions()
    for part in _walk(node["select_list"][0]):
        if part.get("class") == "SUBQUERY" or "subquery" in part or "from_table" in part:
            return "it holds a subquery, which could read other tables or files"
        name = str(part.get("function_name", "")).lower() if part.get("class") == "FUNCTION" else ""
        if name in table_functions:
            return f"it calls the table function {name}"
    return None


@functools.cache
def _table_functions() -> frozenset[str]:
    """The names of DuckDB's table functions (the same on every sandbox: no extension loads there)."""
    con = sandbox()
    try:
        return frozenset(r[0].lower() for r in con.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type IN ('table', 'table_macro')"
        ).fetchall())
    finally:
        con.close()


def _walk(tree: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in a serialised expression tree."""
    if isinstance(tree, dict):
        yield tree
        for v in tree.values():
            yield from _walk(v)
    elif isinstance(tree, list):
        for v in tree:
            yield from _walk(v)
