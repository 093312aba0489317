"""The catalog: refs (branches and tags) updated by compare-and-swap, a reflog, and an index of commits.

A small base class, so that the SQLite default can be swapped for PostgreSQL (any SQLAlchemy URL).
"""

from __future__ import annotations

import abc
import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError

from assay.errors import CatalogDamaged, ConflictError
from assay.store.fs import out_of_space

# What SQLite says about a file that is not (or no longer) a whole database.
_DAMAGE = ("malformed", "not a database", "file is encrypted", "database disk image", "database corrupt")

_meta = sa.MetaData()
refs_table = sa.Table(
    "refs", _meta,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("commit", sa.String(64), nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
)
reflog_table = sa.Table(
    "reflog", _meta,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, index=True),
    sa.Column("old", sa.String(64)),
    sa.Column("new", sa.String(64)),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("message", sa.Text),
)
commits_table = sa.Table(
    "commits", _meta,
    sa.Column("oid", sa.String(64), primary_key=True),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("message", sa.Text),
)


@dataclass(frozen=True)
class Ref:
    name: str
    kind: str  # "branch" or "tag"
    commit: str


@dataclass(frozen=True)
class RefUpdate:
    """Move ref ``name`` (of ``kind``) from ``expected`` (None: absent) to ``new`` (None: delete)."""

    name: str
    kind: str
    new: str | None
    expected: str | None


class Catalog(abc.ABC):
    """Mutable names over immutable commits."""

    @abc.abstractmethod
    def get_ref(self, name: str) -> Ref | None: ...

    @abc.abstractmethod
    def list_refs(self, kind: str | None = None) -> list[Ref]: ...

    @abc.abstractmethod
    def update_ref(self, name: str, kind: str, new: str | None, expected: str | None, message: str = "") -> None:
        """Point ``name`` at ``new`` (None deletes it) if it now points at ``expected`` (None: absent).

        Raises ConflictError when the ref moved.
        """

    @abc.abstractmethod
    def update_refs(self, updates: list[RefUpdate], message: str = "") -> None:
        """Apply every update (each a compare-and-swap like ``update_ref``) or none of them.

        Raises ConflictError, and changes nothing, when any ref moved.
        """

    @abc.abstractmethod
    def record_commit(self, oid: str, when: float, message: str) -> None: ...

    @abc.abstractmethod
    def find_commits(self, prefix: str) -> list[str]: ...

    @abc.abstractmethod
    def reflog(self, name: str, limit: int = 50) -> list[tuple[str | None, str | None, float, str]]: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class SqlCatalog(Catalog):
    """A catalog in any SQLAlchemy database: SQLite by default, PostgreSQL for shared repositories."""

    def __init__(self, url: str):
        self.url = url
        self.read_only = False  # True when a local SQLite file could only be opened for reading (a full disk)
        args = {"timeout": 60} if url.startswith("sqlite") else {}
        self.engine = sa.create_engine(url, connect_args=args, poolclass=sa.pool.NullPool)
        if url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            with self._damage():
                _meta.create_all(self.engine)
        except OperationalError as e:
            if not self._open_read_only(e):
                raise

    def _open_read_only(self, error: OperationalError) -> bool:
        """On a full disk SQLite cannot create the files that a WAL reader needs (``-shm``): open the file
        as immutable instead, so that read-only commands still work; writes then fail as a full disk."""
        path = self._sqlite_path()
        if path is None or not os.path.exists(path) or not any(
                m in str(error) for m in ("disk I/O error", "database or disk is full", "unable to open")):
            return False
        self.engine.dispose()
        self.engine = sa.create_engine(f"sqlite:///file:{path}?immutable=1&uri=true", poolclass=sa.pool.NullPool)
        self.read_only = True
        return True

    def _sqlite_path(self) -> str | None:
        prefix = "sqlite:///"
        if not self.url.startswith(prefix) or ":memory:" in self.url:
            return None
        return self.url[len(prefix):].split("?", 1)[0]

    def _writable(self) -> None:
        if self.read_only:
            raise out_of_space(self._sqlite_path() or self.url)

    @property
    def path(self) -> str | None:
        """The database file of a SQLite catalog (None for other databases or in memory)."""
        return self._sqlite_path()

    @contextlib.contextmanager
    def _damage(self) -> Iterator[None]:
        """Turn the database's "malformed" / "not a database" errors into CatalogDamaged."""
        try:
            yield
        except DatabaseError as e:
            if not any(d in str(e.orig).lower() for d in _DAMAGE):
                raise
            where = self.path or self.engine.url.render_as_string(hide_password=True)
            raise CatalogDamaged(
                f"the catalog {where} is damaged ({e.orig}); the branches and tags it holds cannot be read. "
                "Rebuild it from the commits in the object store with `assay fsck --rebuild-catalog` "
                "(which keeps the damaged file beside it, renamed)", where) from e

    def get_ref(self, name: str) -> Ref | None:
        with self._damage(), self.engine.connect() as c:
            row = c.execute(sa.select(refs_table).where(refs_table.c.name == name)).first()
        return Ref(row.name, row.kind, row.commit) if row else None

    def list_refs(self, kind: str | None = None) -> list[Ref]:
        q = sa.select(refs_table).order_by(refs_table.c.name)
        if kind:
            q = q.where(refs_table.c.kind == kind)
        with self._damage(), self.engine.connect() as c:
            return [Ref(r.name, r.kind, r.commit) for r in c.execute(q)]

    def update_ref(self, name: str, kind: str, new: str | None, expected: str | None, message: str = "") -> None:
        self.update_refs([RefUpdate(name, kind, new, expected)], message)

    def update_refs(self, updates: list[RefUpdate], message: str = "") -> None:
        self._writable()
        now = time.time()
        for attempt in range(50):
            try:
                with self._damage(), self.engine.begin() as c:  # one transaction: all refs move, or none
                    for u in updates:
                        self._swap(c, u.name, u.kind, u.new, u.expected, now)
                        c.execute(reflog_table.insert().values(name=u.name, old=u.expected, new=u.new, time=now,
                                                               message=message))
                return
            except OperationalError as e:  # database locked for longer than the timeout: try again
                if attempt == 49 or "locked" not in str(e):
                    raise
                time.sleep(0.05)

    def _swap(self, c: sa.Connection, name: str, kind: str, new: str | None, expected: str | None,
              now: float) -> None:
        t = refs_table
        if expected is None:
            if new is None:
                return
            try:
                c.execute(t.insert().values(name=name, kind=kind, commit=new, updated=now))
            except IntegrityError as e:
                raise ConflictError(f"{kind} {name!r} already exists") from e
            return
        where = (t.c.name == name) & (t.c.commit == expected)
        stmt = t.delete().where(where) if new is None else t.update().where(where).values(commit=new, updated=now)
        if c.execute(stmt).rowcount != 1:
            current = c.execute(sa.select(t.c.commit).where(t.c.name == name)).scalar()
            raise ConflictError(
                f"{kind} {name!r} moved to {str(current)[:12]} while this change was based on {expected[:12]}; "
                "another writer committed first. Look at `assay log`, then add your change again on top "
                "(or merge)."
            )

    def record_commit(self, oid: str, when: float, message: str) -> None:
        self._writable()
        try:
            with self._damage(), self.engine.begin() as c:
                c.execute(commits_table.insert().values(oid=oid, time=when, message=message[:1000]))
        except IntegrityError:
            pass

    def find_commits(self, prefix: str) -> list[str]:
        with self._damage(), self.engine.connect() as c:
            rows = c.execute(sa.select(commits_table.c.oid).where(commits_table.c.oid.like(prefix + "%")).limit(5))
            return [r.oid for r in rows]

    def reflog(self, name: str, limit: int = 50) -> list[tuple[str | None, str | None, float, str]]:
        t = reflog_table
        with self._damage(), self.engine.connect() as c:
            rows = c.execute(sa.select(t).where(t.c.name == name).order_by(t.c.seq.desc()).limit(limit))
            return [(r.old, r.new, r.time, r.message or "") for r in rows]

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.close()
