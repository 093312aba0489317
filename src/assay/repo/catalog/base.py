"""The catalog's interface, and its one implementation over SQL text that both databases run.

``Catalog`` is the boundary: refs moved by compare-and-swap, a reflog, an index of commits with their parents,
and named locks with an owner and an expiry. ``SqlTextCatalog`` implements all of it once over a small
connection interface (``Cursor``); ``SqliteCatalog`` (stdlib sqlite3, the default repository) and ``SqlCatalog``
(SQLAlchemy, for PostgreSQL) only say how to connect, how to begin a write, and which errors mean what.
"""

from __future__ import annotations

import abc
import contextlib
import os
import random
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

from assay.errors import ConflictError, FormatError, LockHeld
from assay.repo.catalog.migrations import LATEST, MIGRATIONS, render

History = list[tuple[str | None, str | None, float, str]]


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


@dataclass(frozen=True)
class CommitNode:
    """A commit as the catalog knows it: its time and parents."""

    time: float
    parents: tuple[str, ...]


class Catalog(abc.ABC):
    """Mutable names over immutable commits. ``url`` reopens the same catalog in another process."""

    url: str = ""

    @abc.abstractmethod
    def get_ref(self, name: str) -> Ref | None: ...

    @abc.abstractmethod
    def list_refs(self, kind: str | None = None) -> list[Ref]: ...

    def update_ref(self, name: str, kind: str, new: str | None, expected: str | None, message: str = "") -> None:
        """Point ``name`` at ``new`` (None deletes it) if it now points at ``expected`` (None: absent).

        Raises ConflictError when the ref moved.
        """
        self.update_refs([RefUpdate(name, kind, new, expected)], message)

    @abc.abstractmethod
    def update_refs(self, updates: list[RefUpdate], message: str = "") -> None:
        """Apply every update (each a compare-and-swap like ``update_ref``) or none of them.

        Raises ConflictError, and changes nothing, when any ref moved.
        """

    @abc.abstractmethod
    def record_commit(self, oid: str, when: float, message: str, parents: Sequence[str] | None = None) -> None:
        """Index a commit; ``parents`` None: not known (the walkers read the commit and record them)."""

    @abc.abstractmethod
    def record_parents(self, known: Mapping[str, Sequence[str]]) -> None:
        """Record the parents of commits already indexed (the back-fill of catalogs made before they were kept)."""

    @abc.abstractmethod
    def find_commits(self, prefix: str) -> list[str]: ...

    @abc.abstractmethod
    def reflog(self, name: str, limit: int = 50) -> History: ...

    @abc.abstractmethod
    def ancestry(self, start: str) -> dict[str, CommitNode]:
        """``start`` and its ancestors, as far as their parents are recorded (an unknown commit ends a path)."""

    @abc.abstractmethod
    def unknown_parents(self) -> list[str]:
        """Indexed commits whose parents are not recorded yet (made before the catalog kept them)."""

    @abc.abstractmethod
    def lock(self, name: str, *, ttl: float = 3600.0,
             owner: str | None = None) -> contextlib.AbstractContextManager[Lease]:
        """Hold the lock ``name`` (one holder in all processes that share the catalog) until ``ttl`` runs out.

        Raises LockHeld when another owner holds it and it has not expired.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickled as its URL (without credentials): another process (a Ray worker) reopens it from there."""
        from assay.repo.catalog.urls import open_catalog

        if not self.url:
            raise TypeError(f"{type(self).__name__} has no URL to reopen it from; pass its URL, not the catalog")
        return open_catalog, (self.url,)


class Lease:
    """A held catalog lock; ``renew`` pushes its expiry back (long work renews before the lock runs out)."""

    def __init__(self, catalog: SqlTextCatalog, name: str, owner: str, ttl: float):
        self.catalog, self.name, self.owner, self.ttl = catalog, name, owner, ttl

    def renew(self) -> None:
        if not self.catalog._write("renew_lock", name=self.name, owner=self.owner, expires=time.time() + self.ttl):
            raise LockHeld(f"the lock {self.name!r} expired and was taken by another process; stop and start again",
                           self.owner)


class Cursor(Protocol):
    """What the shared implementation needs of a connection: run one statement, get its rows and row count."""

    def run(self, key: str, params: Mapping[str, Any]) -> tuple[list[tuple[Any, ...]], int]: ...


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class SqlTextCatalog(Catalog):
    """Every behaviour of the catalog, once, over the statements of ``migrations``.

    Subclasses give ``_reading`` / ``_writing`` (a Cursor outside / inside one write transaction), classify
    errors (``_retryable``, ``_duplicate``, ``_raise_damage``) and take the migration lock.
    """

    dialect = "sqlite"
    read_only = False
    migrated_from: int | None = None  # the version this process upgraded the catalog from, if it did

    def _setup(self, url: str, schema: str | None, prefix: str) -> None:
        self.url = url
        self.schema, self.prefix = schema, prefix
        self.sql = render(self.dialect, schema, prefix)
        self.version = self._open_version()
        if self.version > LATEST:
            raise FormatError(f"the catalog {self.where} has schema version {self.version}, newer than this assay "
                              f"knows ({LATEST}); upgrade assay")
        if self.version < LATEST and not self.read_only:
            self._migrate()

    # -- what subclasses provide -------------------------------------------------------------------------------

    @property
    def where(self) -> str:
        return self.url

    @abc.abstractmethod
    def _reading(self) -> contextlib.AbstractContextManager[Cursor]: ...

    @abc.abstractmethod
    def _writing(self) -> contextlib.AbstractContextManager[Cursor]: ...

    @abc.abstractmethod
    def _retryable(self, error: Exception) -> bool:
        """Busy, locked, a serialization failure or a deadlock: the transaction can run again."""

    @abc.abstractmethod
    def _duplicate(self, error: Exception) -> bool:
        """A primary key that is already there."""

    @abc.abstractmethod
    def _missing_table(self, error: Exception) -> bool: ...

    def _raise_damage(self, error: Exception) -> None:
        """Raise CatalogDamaged when ``error`` says that the database file is damaged."""

    def _writable(self) -> None:
        """Raise when the catalog could only be opened for reading."""

    def _lock_migration(self, c: Cursor) -> None:
        """Make concurrent upgraders wait for each other (inside the migration's transaction)."""

    # -- running statements ------------------------------------------------------------------------------------

    def _read(self, key: str, **params: Any) -> list[tuple[Any, ...]]:
        try:
            with self._reading() as c:
                return c.run(key, params)[0]
        except Exception as e:
            self._raise_damage(e)
            raise

    def _transaction(self, work: Any) -> Any:
        """Run ``work(cursor)`` in one write transaction, again when the database asks for a retry."""
        self._writable()

        def attempt() -> Any:
            with self._writing() as c:
                return work(c)

        return self._retrying(attempt)

    def _retrying(self, attempt: Any) -> Any:
        """``attempt()``, again (with a growing, jittered pause) while the database says busy or locked."""
        for n in range(60):
            try:
                return attempt()
            except Exception as e:
                self._raise_damage(e)
                if n == 59 or not self._retryable(e):
                    raise
                time.sleep(min(0.5, 0.01 * 2 ** min(n, 6)) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def _write(self, key: str, **params: Any) -> int:
        """One statement in its own transaction; its row count."""
        return int(self._transaction(lambda c: c.run(key, params)[1]))

    # -- schema ------------------------------------------------------------------------------------------------

    def _open_version(self) -> int:
        # The first connections to a new SQLite file race to switch it to WAL, which can answer "locked" at
        # once (no busy wait): the first read is retried like a write.
        try:
            rows = self._retrying(lambda: self._read("version"))
        except Exception as e:
            if self._missing_table(e):
                return 0
            raise
        return int(rows[0][0] or 0) if rows else 0

    def _migrate(self) -> None:
        def upgrade(c: Cursor) -> int:
            self._lock_migration(c)
            if "create_schema" in self.sql:
                c.run("create_schema", {})
            c.run("create_version", {})
            (found,), = c.run("version", {})[0]
            current = int(found or 0)
            for m in MIGRATIONS:
                if m.version > current:
                    for i in range(len(m.statements)):
                        c.run(f"m{m.version}.{i}", {})
                    c.run("applied", {"version": m.version, "now": time.time(), "what": m.what})
            return current

        before = self.version
        found = self._transaction(upgrade)
        self.version = LATEST
        if found < LATEST:
            self.migrated_from = min(before, found)

    # -- refs --------------------------------------------------------------------------------------------------

    def get_ref(self, name: str) -> Ref | None:
        rows = self._read("get_ref", name=name)
        return Ref(*rows[0]) if rows else None

    def list_refs(self, kind: str | None = None) -> list[Ref]:
        rows = self._read("list_refs_kind", kind=kind) if kind else self._read("list_refs")
        return [Ref(*r) for r in rows]

    def update_refs(self, updates: list[RefUpdate], message: str = "") -> None:
        now = time.time()
        ordered = sorted(updates, key=lambda u: u.name)  # every writer locks rows in one order: no deadlock

        def move(c: Cursor) -> None:
            for u in ordered:
                self._swap(c, u, now)
                c.run("log_ref", {"name": u.name, "old": u.expected, "new": u.new, "now": now, "message": message})

        self._transaction(move)

    def _swap(self, c: Cursor, u: RefUpdate, now: float) -> None:
        if u.expected is None:
            if u.new is None:
                return
            try:
                c.run("insert_ref", {"name": u.name, "kind": u.kind, "new": u.new, "now": now})
            except Exception as e:
                if not self._duplicate(e):
                    raise
                raise ConflictError(f"{u.kind} {u.name!r} already exists") from e
            return
        params = {"name": u.name, "expected": u.expected, "new": u.new, "now": now}
        if c.run("delete_ref" if u.new is None else "move_ref", params)[1] != 1:
            current = c.run("ref_commit", {"name": u.name})[0]
            _moved(u, current[0][0] if current else None)

    def reflog(self, name: str, limit: int = 50) -> History:
        return [(o, n, t, m or "") for o, n, t, m in self._read("reflog", name=name, limit=limit)]

    # -- commits -----------------------------------------------------------------------------------------------

    def record_commit(self, oid: str, when: float, message: str, parents: Sequence[str] | None = None) -> None:
        n = None if parents is None else len(parents)

        def insert(c: Cursor) -> None:
            c.run("insert_commit", {"oid": oid, "time": when, "message": message[:1000], "n": n})
            if parents is not None:
                self._parents(c, oid, parents)

        self._transaction(insert)

    def record_parents(self, known: Mapping[str, Sequence[str]]) -> None:
        def fill(c: Cursor) -> None:
            for oid, parents in known.items():
                self._parents(c, oid, parents)

        if known and not self.read_only:
            self._transaction(fill)

    def _parents(self, c: Cursor, oid: str, parents: Sequence[str]) -> None:
        for pos, p in enumerate(parents):
            c.run("insert_parent", {"child": oid, "pos": pos, "parent": p})
        c.run("set_parents", {"oid": oid, "n": len(parents)})

    def find_commits(self, prefix: str) -> list[str]:
        escaped = prefix.replace("\\", "").replace("%", "").replace("_", "")
        return [r[0] for r in self._read("find_commits", pattern=escaped + "%")]

    def ancestry(self, start: str) -> dict[str, CommitNode]:
        if self.version < 2:
            return {}
        rows = self._read("ancestry", start=start)
        times: dict[str, float] = {}
        counts: dict[str, int] = {}
        parents: dict[str, dict[int, str]] = {}
        for oid, when, n, pos, parent in rows:
            times[oid], counts[oid] = float(when), int(n)
            if pos is not None:
                parents.setdefault(oid, {})[int(pos)] = parent
        out = {}
        for oid, when in times.items():
            got = parents.get(oid, {})
            if len(got) == counts[oid]:
                out[oid] = CommitNode(when, tuple(got[i] for i in sorted(got)))
        return out

    def unknown_parents(self) -> list[str]:
        return [r[0] for r in self._read("unknown_parents")] if self.version >= 2 else []

    # -- locks -------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str, *, ttl: float = 3600.0, owner: str | None = None) -> Iterator[Lease]:
        who = owner or default_owner()
        self._take(name, who, ttl)
        try:
            yield Lease(self, name, who, ttl)
        finally:
            self._write("release_lock", name=name, owner=who)

    def _take(self, name: str, owner: str, ttl: float) -> None:
        def take(c: Cursor) -> bool:
            now = time.time()
            params = {"name": name, "owner": owner, "expires": now + ttl, "now": now}
            return c.run("take_lock", params)[1] == 1 or c.run("steal_lock", params)[1] == 1

        if not self._transaction(take):
            rows = self._read("read_lock", name=name)
            holder, expires = rows[0] if rows else ("?", 0.0)
            left = max(0.0, float(expires) - time.time())
            raise LockHeld(f"{name} is already running ({holder} holds the catalog lock {name!r} for another "
                           f"{left:.0f} s); wait for it to finish. A holder that died loses the lock when it "
                           "expires.", str(holder), float(expires))


def _moved(u: RefUpdate, current: str | None) -> NoReturn:
    expected = u.expected or ""
    raise ConflictError(
        f"{u.kind} {u.name!r} moved to {str(current)[:12]} while this change was based on {expected[:12]}; "
        "another writer committed first. Look at `assay log`, then add your change again on top (or merge)."
    )
