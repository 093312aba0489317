"""The catalog, the same tests over each implementation (stdlib SQLite, SQLAlchemy over SQLite, PostgreSQL):
refs by compare-and-swap, the commit graph, locks, versioned schema with migrations, reopening from a URL."""

from __future__ import annotations

import pickle
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from assay.errors import ConflictError, FormatError, InputError, LockHeld
from assay.repo.catalog import ENV_URL, SCHEMA_VERSION, Catalog, RefUpdate, open_catalog
from tests.catalog_servers import IMPLEMENTATIONS, catalog_url, open_kind
from tests.catalog_servers import postgres_database as postgres_database  # the fixture

A, B, C, D = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)


@pytest.fixture(params=IMPLEMENTATIONS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return catalog_url(kind, tmp_path, request)


@pytest.fixture
def cat(kind: str, url: str) -> Any:
    c = open_kind(kind, url)
    yield c
    c.close()


def test_refs_move_by_compare_and_swap(cat: Catalog) -> None:
    cat.update_ref("main", "branch", A, None, "create")
    with pytest.raises(ConflictError, match="already exists"):
        cat.update_ref("main", "branch", B, None)
    with pytest.raises(ConflictError, match="moved to aaaaaaaaaaaa"):
        cat.update_ref("main", "branch", B, C)
    cat.update_ref("main", "branch", B, A, "move")
    cat.update_ref("v1", "tag", A, None)
    assert [(r.name, r.kind, r.commit) for r in cat.list_refs()] == [("main", "branch", B), ("v1", "tag", A)]
    assert [r.name for r in cat.list_refs("tag")] == ["v1"]
    cat.update_ref("v1", "tag", None, A, "deleted")
    assert cat.get_ref("v1") is None
    assert [(o, n, m) for o, n, _, m in cat.reflog("main")] == [(A, B, "move"), (None, A, "create")]


def test_several_refs_move_together_or_not_at_all(cat: Catalog) -> None:
    cat.update_refs([RefUpdate("x", "branch", A, None), RefUpdate("y", "branch", A, None)], "two")
    with pytest.raises(ConflictError):  # y is not at B: x must not move either
        cat.update_refs([RefUpdate("x", "branch", C, A), RefUpdate("y", "branch", C, B)])
    assert {r.name: r.commit for r in cat.list_refs()} == {"x": A, "y": A}
    cat.update_refs([RefUpdate("y", "branch", C, A), RefUpdate("x", "branch", C, A)])
    assert {r.name: r.commit for r in cat.list_refs()} == {"x": C, "y": C}


def test_concurrent_writers_all_land(kind: str, url: str, cat: Catalog) -> None:
    """Writers in parallel on crossing sets of refs (the order that deadlocks unsorted updates): all succeed."""
    names = [f"r{i}" for i in range(4)]
    cat.update_refs([RefUpdate(n, "branch", A, None) for n in names])
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        mine = open_kind(kind, url)
        try:
            for step in range(15):
                order = names if i % 2 else names[::-1]
                while True:
                    now = {r.name: r.commit for r in mine.list_refs()}
                    new = f"{i:02d}{step:02d}".ljust(64, "e")
                    try:
                        mine.update_refs([RefUpdate(n, "branch", new, now[n]) for n in order], f"w{i}")
                        break
                    except ConflictError:
                        continue
        except BaseException as e:
            errors.append(e)
        finally:
            mine.close()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({r.commit for r in cat.list_refs()}) == 1  # every update moved all four together
    assert len(cat.reflog("r0", limit=1000)) == 1 + 4 * 15


def test_commit_graph_comes_from_the_catalog(cat: Catalog) -> None:
    cat.record_commit(A, 1.0, "root", ())
    cat.record_commit(B, 2.0, "second", (A,))
    cat.record_commit(C, 3.0, "side", (A,))
    cat.record_commit(D, 4.0, "merge", (B, C))
    cat.record_commit(D, 4.0, "merge", (B, C))  # recorded twice: no harm
    graph = cat.ancestry(D)
    assert {o: (n.time, n.parents) for o, n in graph.items()} == {
        A: (1.0, ()), B: (2.0, (A,)), C: (3.0, (A,)), D: (4.0, (B, C))}
    assert set(cat.ancestry(B)) == {A, B}
    assert cat.find_commits("bbbb") == [B] and cat.find_commits("ffff") == []


def test_commits_without_known_parents_are_back_filled(cat: Catalog) -> None:
    cat.record_commit(A, 1.0, "root")  # as commits indexed before the catalog kept parents
    cat.record_commit(B, 2.0, "second")
    assert set(cat.unknown_parents()) == {A, B} and cat.ancestry(B) == {}
    cat.record_parents({A: (), B: (A,)})
    assert cat.unknown_parents() == [] and set(cat.ancestry(B)) == {A, B}


def test_a_lock_has_one_holder_until_it_expires(cat: Catalog) -> None:
    with cat.lock("gc", owner="host-1:10", ttl=60) as lease:
        with pytest.raises(LockHeld, match="host-1:10") as held, cat.lock("gc", owner="host-2:20"):
            pass
        assert held.value.owner == "host-1:10"
        lease.renew()
    with cat.lock("gc", owner="host-2:20"):  # released
        pass
    with cat.lock("gc", owner="dead:1", ttl=0.05):  # a holder that never releases (it died) ...
        time.sleep(0.1)
        with cat.lock("gc", owner="host-3:30"):  # ... loses the lock when it expires
            pass


def test_reopened_from_its_url_in_pickle(url: str, cat: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_URL, url)  # where the other process finds user and password
    cat.update_ref("main", "branch", A, None)
    data = pickle.dumps(cat)
    assert b"assay_test:assay_test" not in data and b"password" not in data  # the URL without credentials
    other = pickle.loads(data)
    try:
        assert other.url == cat.url and other.get_ref("main").commit == A
    finally:
        other.close()


def test_schema_is_versioned_and_opening_twice_migrates_once(kind: str, url: str, cat: Catalog) -> None:
    assert cat.version == SCHEMA_VERSION  # type: ignore[attr-defined]
    again = open_kind(kind, url)
    try:
        assert again.migrated_from is None  # already current: no upgrade, no DDL
    finally:
        again.close()
    assert _applied(cat) == list(range(1, SCHEMA_VERSION + 1))


def test_concurrent_first_opens_create_the_schema_once(kind: str, url: str) -> None:
    got: list[Any] = []
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            got.append(open_kind(kind, url))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(c.migrated_from is not None for c in got) == 1
    assert _applied(got[0]) == list(range(1, SCHEMA_VERSION + 1))
    for c in got:
        c.close()


def test_a_newer_schema_is_a_clear_error(kind: str, url: str, cat: Catalog) -> None:
    cat._write("applied", version=SCHEMA_VERSION + 1, now=0.0, what="from the future")  # type: ignore[attr-defined]
    with pytest.raises(FormatError, match=f"schema version {SCHEMA_VERSION + 1}, newer.*upgrade assay"):
        open_kind(kind, url)


def test_repositories_share_one_database_by_prefix(kind: str, url: str) -> None:
    sep = "&" if "?" in url else "?"
    one, two = open_kind(kind, url + sep + "prefix=one_"), open_kind(kind, url + sep + "prefix=two_")
    try:
        one.update_ref("main", "branch", A, None)
        two.update_ref("main", "branch", B, None)
        assert one.get_ref("main").commit == A and two.get_ref("main").commit == B
        assert "prefix=one_" in one.url
    finally:
        one.close()
        two.close()


# -- the SQLite file made before the schema was versioned ------------------------------------------------------

OLD_SCHEMA = """
CREATE TABLE refs (name VARCHAR(255) NOT NULL, kind VARCHAR(16) NOT NULL, "commit" VARCHAR(64) NOT NULL,
    updated FLOAT NOT NULL, PRIMARY KEY (name));
CREATE TABLE reflog (seq INTEGER NOT NULL, name VARCHAR(255) NOT NULL, old VARCHAR(64), new VARCHAR(64),
    time FLOAT NOT NULL, message TEXT, PRIMARY KEY (seq));
CREATE INDEX ix_reflog_name ON reflog (name);
CREATE TABLE commits (oid VARCHAR(64) NOT NULL, time FLOAT NOT NULL, message TEXT, PRIMARY KEY (oid));
"""  # what SQLAlchemy's create_all made for the catalog until schema version 1


def old_catalog(path: Path, refs: dict[str, str], commits: dict[str, float]) -> None:
    con = sqlite3.connect(path)
    con.executescript(OLD_SCHEMA)
    con.executemany("INSERT INTO refs VALUES (?, 'branch', ?, 0)", refs.items())
    con.executemany("INSERT INTO reflog (name, old, new, time, message) VALUES (?, NULL, ?, 0, 'old')", refs.items())
    con.executemany("INSERT INTO commits VALUES (?, ?, 'old')", commits.items())
    con.commit()
    con.close()


@pytest.mark.parametrize("impl", ["sqlite3", "sqlalchemy-sqlite"])
def test_a_catalog_made_before_versions_is_upgraded(tmp_path: Path, impl: str) -> None:
    old_catalog(tmp_path / "c.db", {"main": B}, {A: 1.0, B: 2.0})
    c = open_kind(impl, f"sqlite:///{tmp_path / 'c.db'}")
    try:
        assert c.migrated_from == 0 and _applied(c) == [1, 2]
        assert c.get_ref("main").commit == B and c.reflog("main")[0][3] == "old"
        assert set(c.unknown_parents()) == {A, B}  # to be back-filled from the commits in the store
        c.update_ref("main", "branch", C, B, "after the upgrade")
    finally:
        c.close()


def test_unknown_schemes_and_bad_names_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"unknown catalog URL scheme 'mysql'.*postgresql://"):
        open_catalog("mysql://db/x")
    with pytest.raises(InputError, match="not a plain name"):
        open_catalog(f"sqlite:///{tmp_path / 'c.db'}?prefix=x;drop")
    with pytest.raises(InputError, match="schema= is for PostgreSQL"):
        open_catalog(f"sqlite:///{tmp_path / 'c.db'}?schema=s")


def test_plain_paths_and_file_urls_open_sqlite(tmp_path: Path) -> None:
    for spelling in (str(tmp_path / "a.db"), f"file://{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'a.db'}"):
        c = open_catalog(spelling)
        try:
            assert c.path == str(tmp_path / "a.db")  # type: ignore[attr-defined]
        finally:
            c.close()


def _applied(c: Any) -> list[int]:
    return sorted(int(v) for (v,) in c._read("select_versions"))


def test_a_deadlock_on_postgresql_is_retried(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Two transactions taking two refs in opposite orders: the server kills one (40P01); that error is one the
    catalog runs its transaction again for."""
    import sqlalchemy as sa

    cat = open_kind("postgresql", catalog_url("postgresql", tmp_path, request))
    try:
        cat.update_refs([RefUpdate("x", "branch", A, None), RefUpdate("y", "branch", A, None)])
        move = sa.text(cat.sql["move_ref"])
        one, two = cat.engine.connect(), cat.engine.connect()
        errors: list[BaseException] = []

        def second_step(con: sa.Connection, name: str) -> None:
            try:
                con.execute(move, {"name": name, "new": B, "expected": A, "now": 1.0})
            except sa.exc.DBAPIError as e:
                errors.append(e)

        with one.begin(), two.begin():
            second_step(one, "x")
            second_step(two, "y")
            waiting = threading.Thread(target=second_step, args=(one, "y"))
            waiting.start()
            time.sleep(0.3)
            second_step(two, "x")  # one of the two is chosen as the deadlock victim (after deadlock_timeout)
            waiting.join()
            (deadlock,) = errors
            assert cat._retryable(deadlock) and not cat._duplicate(deadlock)
        one.close()
        two.close()
        calls: list[int] = []

        def work(c: Any) -> str:
            calls.append(1)
            if len(calls) == 1:
                raise deadlock
            return "done"

        assert cat._transaction(work) == "done" and len(calls) == 2
    finally:
        cat.close()
