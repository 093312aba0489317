"""A catalog in a database server through SQLAlchemy: PostgreSQL for shared repositories (SQLite works too).

The statements and behaviour are those of ``SqlTextCatalog``; this module only connects, begins transactions,
and reads the server's errors: SQLSTATE 40001 (serialization failure) and 40P01 (deadlock) are retried, as
are SQLite's "locked"; 23505 (unique violation) is a duplicate key. Concurrent upgrades of one schema wait
for each other on a transaction-level advisory lock.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from assay.errors import CatalogUnavailable
from assay.repo.catalog.base import Cursor, SqlTextCatalog
from assay.repo.catalog.sqlite import DAMAGE, damaged
from assay.repo.catalog.urls import ENV_URL, CatalogURL, parse_catalog_url, with_credentials

_RETRY_STATES = {"40001", "40P01"}  # serialization failure, deadlock detected


class _Cursor:
    def __init__(self, con: sa.Connection, sql: Mapping[str, str]):
        self.con, self.sql = con, sql

    def run(self, key: str, params: Mapping[str, Any]) -> tuple[list[tuple[Any, ...]], int]:
        r = self.con.execute(sa.text(self.sql[key]), dict(params))
        rows = [tuple(x) for x in r.fetchall()] if r.returns_rows else []
        return rows, r.rowcount


class SqlCatalog(SqlTextCatalog):
    """A catalog in any database SQLAlchemy reaches: ``postgresql://host/db?schema=name`` for shared repositories.

    ``schema`` (PostgreSQL) or ``prefix`` in the URL keep several repositories apart in one database. User and
    password are never read from the repository's config: they come from the URL given here, from
    ``ASSAY_CATALOG_URL``, or from libpq's own ``PGUSER``/``PGPASSWORD``/``~/.pgpass``.
    """

    def __init__(self, url: str | CatalogURL):
        parsed = url if isinstance(url, CatalogURL) else parse_catalog_url(url)
        self.dialect = "sqlite" if parsed.backend == "sqlite" else "postgresql"
        connect = with_credentials(parsed).connect_url()
        sqlite = self.dialect == "sqlite"
        self.engine = sa.create_engine(connect, poolclass=sa.pool.NullPool if sqlite else sa.pool.QueuePool,
                                       connect_args={"timeout": 60} if sqlite else {}, pool_pre_ping=not sqlite)
        if sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_connect)
            sa.event.listen(self.engine, "begin", _sqlite_begin)
        self.path = parsed.path if sqlite else None
        try:
            self._setup(parsed.public(), parsed.schema, parsed.prefix)
        except OperationalError as e:
            self.close()
            if sqlite:
                raise
            raise CatalogUnavailable(
                f"cannot open the catalog {parsed.public()}: {str(e.orig).strip()}. User and password are not kept "
                f"in the repository's config: give them in {ENV_URL} (this URL with user:password@), or in PGUSER "
                "and PGPASSWORD or ~/.pgpass") from e
        except BaseException:
            self.close()
            raise

    @property
    def where(self) -> str:
        return self.url

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Cursor]:
        with self.engine.connect() as c:
            yield _Cursor(c, self.sql)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Cursor]:
        with self.engine.connect().execution_options(assay_write=True) as c, c.begin():
            yield _Cursor(c, self.sql)

    def _lock_migration(self, c: Cursor) -> None:
        if self.dialect == "postgresql":
            key = zlib.crc32(f"assay catalog {self.schema}.{self.prefix}".encode()) - (1 << 31)
            c.run("pg_migration_lock", {"key": key})

    def _retryable(self, error: Exception) -> bool:
        if not isinstance(error, DBAPIError):
            return False
        return _sqlstate(error) in _RETRY_STATES or (self.dialect == "sqlite" and any(
            m in str(error.orig).lower() for m in ("locked", "busy")))

    def _duplicate(self, error: Exception) -> bool:
        return isinstance(error, IntegrityError)

    def _missing_table(self, error: Exception) -> bool:
        return isinstance(error, DBAPIError) and (
            _sqlstate(error) == "42P01" or "no such table" in str(error.orig))

    def _raise_damage(self, error: Exception) -> None:
        if self.dialect == "sqlite" and isinstance(error, DBAPIError) and any(
                d in str(error.orig).lower() for d in DAMAGE):
            raise damaged(self.path or self.url, error.orig or error) from error

    def close(self) -> None:
        self.engine.dispose()


def _sqlstate(error: DBAPIError) -> str | None:
    orig = error.orig
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)  # psycopg 3, psycopg2


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event below says when a transaction starts
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("assay_write") else "BEGIN")
