"""A repository over its catalog and store from URLs: no credentials in config.json, the upgrade of a repository
made before the catalog was versioned, log and merge-base from the catalog, gc's lock, reopening from URLs."""

from __future__ import annotations

import json
import pickle
import sqlite3
from pathlib import Path

import pytest

import assay
from assay.errors import CatalogUnavailable, InputError, LockHeld
from assay.repo.catalog import ENV_URL
from assay.repo.repository import Repository as LowRepo
from assay.store.urls import open_store
from tests.catalog_servers import catalog_url
from tests.catalog_servers import postgres_database as postgres_database  # the fixture
from tests.conftest import make_table
from tests.test_catalog import old_catalog


def _history(repo: assay.Repo) -> dict[str, str]:
    """main: first -> second -> merge(second, side); side from first."""
    repo.add("t", make_table(20), key="id")
    first = repo.commit("first")
    repo.add("t", make_table(5, seed=1, start=20), key="id", mode="append")
    second = repo.commit("second")
    repo.create_branch("side", first)
    repo.checkout("side")
    repo.add("u", make_table(5, seed=2), key="id")
    side = repo.commit("side")
    repo.checkout("main")
    merge = repo.merge("side").commit
    return {"first": first, "second": second, "side": side, "merge": merge}


def _count_reads(repo: LowRepo, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    original = repo.read_commit

    def counted(oid: str) -> assay.Commit:
        reads.append(oid)
        return original(oid)

    monkeypatch.setattr(repo, "read_commit", counted)
    return reads


@pytest.mark.parametrize("kind", ["sqlite3", "postgresql"])
def test_a_repository_on_each_catalog(tmp_path: Path, kind: str, request: pytest.FixtureRequest,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    url = catalog_url(kind, tmp_path, request) if kind == "postgresql" else None
    if url:
        monkeypatch.setenv(ENV_URL, url)  # the password, which config.json does not keep
    with assay.init(tmp_path / "r", catalog_url=url) as repo:
        oids = _history(repo)
        assert [m for _, c in repo.log() for m in [c.message]] == ["Merge side into main", "side", "second", "first"]
        assert repo.merge_base(oids["second"], oids["side"]) == oids["first"]
        assert repo.fsck().ok


def test_config_holds_no_password(tmp_path: Path, request: pytest.FixtureRequest,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    url = catalog_url("postgresql", tmp_path, request)
    assert ":assay_test@" in url
    monkeypatch.setenv(ENV_URL, url)
    assay.init(tmp_path / "r", catalog_url=url).close()
    config = (tmp_path / "r" / ".assay" / "config.json").read_text()
    assert "assay_test:assay_test" not in config and "@" not in config  # neither password nor user
    assert json.loads(config)["catalog"].startswith("postgresql+psycopg://127.0.0.1:5432/assay_test_")
    monkeypatch.delenv(ENV_URL)
    for var in ("PGUSER", "PGPASSWORD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    with pytest.raises(CatalogUnavailable, match=r"not kept in the repository's config.*ASSAY_CATALOG_URL"):
        assay.Repo(tmp_path / "r")
    monkeypatch.setenv("PGUSER", "assay_test")  # libpq's own variables work too
    monkeypatch.setenv("PGPASSWORD", "assay_test")
    with assay.Repo(tmp_path / "r") as repo:
        assert repo.branches() == {}


def test_an_assay_catalog_url_for_another_database_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from assay.repo.catalog.urls import parse_catalog_url, with_credentials

    monkeypatch.setenv(ENV_URL, "postgresql://u:p@db.example:5432/other")
    with pytest.raises(InputError, match=r"names postgresql://db.example:5432/other, but this"):
        with_credentials(parse_catalog_url("postgresql://db.example:5432/repo"))
    monkeypatch.setenv(ENV_URL, "postgresql+psycopg://u:p@db.example:5432/repo")
    got = with_credentials(parse_catalog_url("postgresql+psycopg://db.example:5432/repo"))
    assert (got.user, got.password) == ("u", "p") and "p@" not in got.public()


def test_a_repository_made_before_catalog_versions_is_upgraded(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with assay.init(tmp_path / "r") as repo:
        oids = _history(repo)
        refs = repo.branches()
        times = {o: repo.read_commit(o).time for o in oids.values()}
    db = tmp_path / "r" / ".assay" / "catalog.db"
    for p in db.parent.glob("catalog.db*"):
        p.unlink()
    old_catalog(db, refs, times)  # the catalog file as assay made it before its schema had versions
    config = tmp_path / "r" / ".assay" / "config.json"
    config.write_text(json.dumps({k: v for k, v in json.loads(config.read_text()).items() if k != "store"}))  # old
    with assay.Repo(tmp_path / "r") as repo:
        assert repo.catalog.unknown_parents() == []  # back-filled from the commits in the store on opening
        reads = _count_reads(repo, monkeypatch)
        assert repo.merge_base(oids["second"], oids["side"]) == oids["first"] and reads == []
        assert [o for o, _ in repo.log()] == [oids[k] for k in ("merge", "side", "second", "first")]
    con = sqlite3.connect(db)
    assert [v for (v,) in con.execute("SELECT version FROM schema_version ORDER BY version")] == [1, 2]
    con.close()


def test_log_and_merge_base_do_not_read_commits_one_by_one(repo: assay.Repo,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    oids = _history(repo)
    for i in range(10):
        repo.add("t", make_table(1, seed=i, start=100 + i), key="id", mode="append")
        repo.commit(f"more {i}")
    reads = _count_reads(repo, monkeypatch)
    assert repo.merge_base(repo.resolve("main"), oids["side"]) == oids["side"]
    assert oids["first"] in repo._ancestors(repo.resolve("main")) and reads == []
    assert [c.message for _, c in repo.log(limit=3)] == ["more 9", "more 8", "more 7"]
    assert len(reads) == 3  # the commits shown, nothing more


def test_gc_takes_the_catalog_lock(repo: assay.Repo) -> None:
    repo.add("t", make_table(10), key="id")
    repo.commit("one")
    with repo.catalog.lock("gc", owner="other-host:1"), pytest.raises(LockHeld, match="other-host:1"):
        repo.gc(grace=0)
    assert repo.gc(grace=0).removed == 0  # the lock was released


def test_store_and_catalog_reopen_from_their_urls(repo: assay.Repo) -> None:
    repo.add("t", make_table(10), key="id")
    oid = repo.commit("one")
    store, catalog = pickle.loads(pickle.dumps(repo.store)), pickle.loads(pickle.dumps(repo.catalog))
    try:
        assert store.url == repo.store.url and store.get(oid) == repo.store.get(oid)  # type: ignore[attr-defined]
        assert catalog.url == repo.catalog.url and catalog.get_ref("main").commit == oid
    finally:
        catalog.close()
    config = json.loads((repo.dir / "config.json").read_text())
    assert config["store"] == "file://{assay_dir}" and config["catalog"] == "sqlite:///{assay_dir}/catalog.db"


def test_unknown_store_scheme_is_a_clear_error() -> None:
    with pytest.raises(InputError, match=r"unknown object store URL scheme 'gs'.*file://, s3://"):
        open_store("gs://bucket/prefix")


def test_gc_runs_when_a_full_disk_leaves_the_catalog_read_only(repo: assay.Repo) -> None:
    repo.add("t", make_table(10), key="id")
    repo.commit("one")
    repo.add("t", make_table(10, seed=3), key="id")  # staged, then dropped: unreachable objects
    repo.reset()
    repo.catalog.read_only = True  # type: ignore[attr-defined]  # as SQLite is opened on a disk with no byte free
    assert repo.gc(grace=0).removed > 0  # gc is what frees the space: it runs without recording its lock
    assert repo.fsck().ok


def test_another_process_reopens_them_from_the_pickle(repo: assay.Repo, tmp_path: Path) -> None:
    """What a Ray worker gets: the URLs, from which it opens a store and a catalog of its own."""
    import subprocess
    import sys

    repo.add("t", make_table(10), key="id")
    oid = repo.commit("one")
    (tmp_path / "handles").write_bytes(pickle.dumps((repo.store, repo.catalog)))
    code = ("import pickle, sys\n"
            "store, catalog = pickle.loads(open(sys.argv[1], 'rb').read())\n"
            "tip = catalog.get_ref('main').commit\n"
            "print(tip, type(store).__name__, type(catalog).__name__, len(store.get(tip)) > 0)\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "handles")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [oid, "FileObjectStore", "SqliteCatalog", "True"]


def test_the_default_repository_opens_without_sqlalchemy(repo: assay.Repo) -> None:
    """The local catalog is stdlib sqlite3: SQLAlchemy is imported only for a server's catalog."""
    import subprocess
    import sys

    repo.add("t", make_table(10), key="id")
    repo.commit("one")
    code = ("import sys, assay\n"
            f"r = assay.Repo({str(repo.root)!r}); r.log(); r.branches(); r.close()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy'))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
