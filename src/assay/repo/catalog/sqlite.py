"""The default catalog: a SQLite file opened with the standard library (no SQLAlchemy to import or set up)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from assay.errors import CatalogDamaged
from assay.repo.catalog.base import Cursor, SqlTextCatalog
from assay.store.fs import ClosedAtExit, out_of_space

# What SQLite says about a file that is not (or no longer) a whole database.
DAMAGE = ("malformed", "not a database", "file is encrypted", "database disk image", "database corrupt")
# What it says when it cannot make the side files a WAL reader needs (a full disk).
_CANNOT_WRITE = ("disk i/o error", "database or disk is full", "unable to open")


class _Cursor:
    def __init__(self, con: sqlite3.Connection, sql: Mapping[str, str]):
        self.con, self.sql = con, sql

    def run(self, key: str, params: Mapping[str, Any]) -> tuple[list[tuple[Any, ...]], int]:
        cur = self.con.execute(self.sql[key], dict(params))
        return cur.fetchall(), cur.rowcount


class SqliteCatalog(SqlTextCatalog):
    """A catalog in one SQLite file (WAL, synchronous writes), one connection per thread."""

    dialect = "sqlite"

    def __init__(self, path: str | os.PathLike[str], *, url: str | None = None, prefix: str = ""):
        self.path: str | None = None if str(path) == ":memory:" else str(path)
        self._memory = self.path is None
        self._cons: dict[tuple[int, int], sqlite3.Connection] = {}
        self._guard = threading.Lock()
        try:
            self._setup(url or (f"sqlite:///{path}" + (f"?prefix={prefix}" if prefix else "")), None, prefix)
        except BaseException:
            self.close()
            raise

    @property
    def where(self) -> str:
        return self.path or ":memory:"

    # -- connections -------------------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        key = (os.getpid(), 0 if self._memory else threading.get_ident())  # one shared for a memory database
        con = self._cons.get(key)
        if con is None:
            with self._guard:
                con = self._cons.get(key) or self._connect()
                self._cons[key] = con
        return con

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            return self._immutable()
        con = sqlite3.connect(self.path or ":memory:", timeout=60, isolation_level=None, check_same_thread=False,
                              factory=ClosedAtExit)
        try:
            con.execute("PRAGMA busy_timeout=60000")
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
        except sqlite3.DatabaseError as e:
            con.close()
            self._raise_damage(e)
            if not self._full_disk(e):
                raise
            self.read_only = True
            return self._immutable()
        return con

    def _full_disk(self, e: sqlite3.Error) -> bool:
        """On a full disk SQLite cannot create the files a WAL reader needs (``-shm``): the file is then opened
        as immutable, so that read-only commands still work; writes fail as a full disk."""
        return self.path is not None and os.path.exists(self.path) and any(m in str(e).lower() for m in _CANNOT_WRITE)

    def _immutable(self) -> sqlite3.Connection:
        uri = f"{Path(self.path or '').resolve().as_uri()}?immutable=1"
        return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)

    def _read(self, key: str, **params: Any) -> list[tuple[Any, ...]]:
        try:
            return super()._read(key, **params)
        except sqlite3.OperationalError as e:
            if self.read_only or not self._full_disk(e):
                raise
            self.close()
            self.read_only = True
            return super()._read(key, **params)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Cursor]:
        yield _Cursor(self._connection(), self.sql)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Cursor]:
        con = self._connection()
        con.execute("BEGIN IMMEDIATE")  # the write lock first: no reader-turned-writer deadlock
        try:
            yield _Cursor(con, self.sql)
        except BaseException:
            if con.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def _writable(self) -> None:
        if self.read_only:
            raise out_of_space(self.where)

    # -- errors ------------------------------------------------------------------------------------------------

    def _retryable(self, error: Exception) -> bool:
        return isinstance(error, sqlite3.OperationalError) and any(
            m in str(error).lower() for m in ("locked", "busy"))

    def _duplicate(self, error: Exception) -> bool:
        return isinstance(error, sqlite3.IntegrityError)

    def _missing_table(self, error: Exception) -> bool:
        return isinstance(error, sqlite3.OperationalError) and "no such table" in str(error)

    def _raise_damage(self, error: Exception) -> None:
        if isinstance(error, sqlite3.DatabaseError) and any(d in str(error).lower() for d in DAMAGE):
            raise damaged(self.where, error) from error
        if isinstance(error, sqlite3.OperationalError) and "database or disk is full" in str(error):
            raise out_of_space(self.where) from error

    def close(self) -> None:
        with self._guard:
            mine = [k for k in self._cons if k[0] == os.getpid()]
            for k in mine:
                self._cons.pop(k).close()


def damaged(where: str, error: Exception) -> CatalogDamaged:
    return CatalogDamaged(
        f"the catalog {where} is damaged ({error}); the branches and tags it holds cannot be read. "
        "Rebuild it from the commits in the object store with `assay fsck --rebuild-catalog` "
        "(which keeps the damaged file beside it, renamed)", where)
