"""The catalog's schema, as numbered migrations, and the SQL text every implementation runs.

One list for every database: the SQLite and SQLAlchemy catalogs run the same statements (named parameters,
``:name``), with table names filled in for the repository's schema and prefix and ``{serial}`` for the one
type that differs. A catalog records the versions applied in ``schema_version``; opening it applies the
missing ones in order, in one transaction, under a lock. A catalog made before versions existed holds the
tables of version 1 (hence ``IF NOT EXISTS`` there) and is upgraded like any other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from assay.errors import InputError


@dataclass(frozen=True)
class Migration:
    version: int
    what: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "refs, reflog and the commit index", (
        "CREATE TABLE IF NOT EXISTS {refs} (name VARCHAR(255) NOT NULL PRIMARY KEY, kind VARCHAR(16) NOT NULL, "
        '"commit" VARCHAR(64) NOT NULL, updated DOUBLE PRECISION NOT NULL)',
        "CREATE TABLE IF NOT EXISTS {reflog} (seq {serial}, name VARCHAR(255) NOT NULL, old VARCHAR(64), "
        "new VARCHAR(64), time DOUBLE PRECISION NOT NULL, message TEXT)",
        "CREATE INDEX IF NOT EXISTS {ix_reflog_name} ON {reflog} (name)",
        "CREATE TABLE IF NOT EXISTS {commits} (oid VARCHAR(64) NOT NULL PRIMARY KEY, "
        "time DOUBLE PRECISION NOT NULL, message TEXT)",
    )),
    Migration(2, "commit parents (log and merge-base without reading commits) and locks (gc)", (
        "ALTER TABLE {commits} ADD COLUMN parents INTEGER",  # how many; NULL: not known yet (back-filled)
        "CREATE TABLE {commit_parents} (child VARCHAR(64) NOT NULL, pos INTEGER NOT NULL, "
        "parent VARCHAR(64) NOT NULL, PRIMARY KEY (child, pos))",
        "CREATE TABLE {locks} (name VARCHAR(64) NOT NULL PRIMARY KEY, owner VARCHAR(255) NOT NULL, "
        "expires DOUBLE PRECISION NOT NULL)",
    )),
)
LATEST = MIGRATIONS[-1].version
TABLES = ("schema_version", "refs", "reflog", "commits", "commit_parents", "locks")
SERIAL = {"sqlite": "INTEGER PRIMARY KEY", "postgresql": "BIGSERIAL PRIMARY KEY"}

# The statements of the catalog's behaviour, shared by every implementation.
SQL = {
    "create_version": "CREATE TABLE IF NOT EXISTS {schema_version} (version INTEGER NOT NULL PRIMARY KEY, "
                      "applied DOUBLE PRECISION NOT NULL, what TEXT)",
    "pg_migration_lock": "SELECT pg_advisory_xact_lock(:key)",
    "version": "SELECT MAX(version) FROM {schema_version}",
    "select_versions": "SELECT version FROM {schema_version} ORDER BY version",
    "applied": "INSERT INTO {schema_version} (version, applied, what) VALUES (:version, :now, :what)",
    "get_ref": 'SELECT name, kind, "commit" FROM {refs} WHERE name = :name',
    "list_refs": 'SELECT name, kind, "commit" FROM {refs} ORDER BY name',
    "list_refs_kind": 'SELECT name, kind, "commit" FROM {refs} WHERE kind = :kind ORDER BY name',
    "insert_ref": 'INSERT INTO {refs} (name, kind, "commit", updated) VALUES (:name, :kind, :new, :now)',
    "move_ref": 'UPDATE {refs} SET "commit" = :new, updated = :now WHERE name = :name AND "commit" = :expected',
    "delete_ref": 'DELETE FROM {refs} WHERE name = :name AND "commit" = :expected',
    "ref_commit": 'SELECT "commit" FROM {refs} WHERE name = :name',
    "log_ref": "INSERT INTO {reflog} (name, old, new, time, message) VALUES (:name, :old, :new, :now, :message)",
    "reflog": "SELECT old, new, time, message FROM {reflog} WHERE name = :name ORDER BY seq DESC LIMIT :limit",
    "insert_commit": "INSERT INTO {commits} (oid, time, message, parents) VALUES (:oid, :time, :message, :n) "
                     "ON CONFLICT (oid) DO NOTHING",
    "set_parents": "UPDATE {commits} SET parents = :n WHERE oid = :oid AND parents IS NULL",
    "insert_parent": "INSERT INTO {commit_parents} (child, pos, parent) VALUES (:child, :pos, :parent) "
                     "ON CONFLICT (child, pos) DO NOTHING",
    "find_commits": "SELECT oid FROM {commits} WHERE oid LIKE :pattern ORDER BY oid LIMIT 5",
    "unknown_parents": "SELECT oid FROM {commits} WHERE parents IS NULL",
    # Every ancestor of :start whose parents are known, with its time and parents (one row per parent).
    "ancestry": "WITH RECURSIVE anc(oid) AS (SELECT CAST(:start AS VARCHAR(64)) "
                "UNION SELECT p.parent FROM {commit_parents} p JOIN anc ON p.child = anc.oid) "
                "SELECT c.oid, c.time, c.parents, p.pos, p.parent FROM anc JOIN {commits} c ON c.oid = anc.oid "
                "LEFT JOIN {commit_parents} p ON p.child = c.oid WHERE c.parents IS NOT NULL",
    "take_lock": "INSERT INTO {locks} (name, owner, expires) VALUES (:name, :owner, :expires) "
                 "ON CONFLICT (name) DO NOTHING",
    "steal_lock": "UPDATE {locks} SET owner = :owner, expires = :expires WHERE name = :name "
                  "AND (expires < :now OR owner = :owner)",
    "read_lock": "SELECT owner, expires FROM {locks} WHERE name = :name",
    "renew_lock": "UPDATE {locks} SET expires = :expires WHERE name = :name AND owner = :owner",
    "release_lock": "DELETE FROM {locks} WHERE name = :name AND owner = :owner",
}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")


def check_identifier(value: str, what: str) -> str:
    """A schema name or table prefix from a URL: letters, digits and ``_`` only (it becomes part of SQL)."""
    if not _NAME.fullmatch(value):
        raise InputError(f"the catalog {what} {value!r} is not a plain name; use letters, digits and _ "
                         "(at most 41, not starting with a digit)")
    return value


def render(dialect: str, schema: str | None, prefix: str) -> dict[str, str]:
    """Every statement of MIGRATIONS (``"m<version>.<i>"``) and SQL with the repository's table names."""
    names = {t: (f'"{schema}".' if schema else "") + f'"{prefix}{t}"' for t in TABLES}
    names["ix_reflog_name"] = f'"{prefix}ix_reflog_name"'
    names["serial"] = SERIAL[dialect]
    out = {k: v.format(**names) for k, v in SQL.items()}
    for m in MIGRATIONS:
        out.update({f"m{m.version}.{i}": s.format(**names) for i, s in enumerate(m.statements)})
    if schema:
        out["create_schema"] = f'CREATE SCHEMA IF NOT EXISTS "{schema}"'
    return out
