"""A damaged catalog: every command says so in one line; `assay fsck --rebuild-catalog` rebuilds the refs from
the commits in the object store (see docs/storage.md, "When the catalog is damaged")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import assay
from assay.repo.upkeep import rebuild_catalog
from tests.conftest import make_table


def _assay(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assay.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def _history(root: Path) -> dict[str, str]:
    """main: first -> second; feat (from first): side. Returns commit message -> oid."""
    with assay.init(root) as repo:
        repo.add("train", make_table(50), key="id")
        first = repo.commit("first")
        repo.add("train", make_table(20, seed=1, start=50), key="id", mode="append")
        second = repo.commit("second")
        repo.create_branch("feat", first)
        repo.checkout("feat")
        repo.add("other", make_table(10, seed=2), key="id")
        side = repo.commit("side")
        repo.checkout("main")
    return {"first": first, "second": second, "side": side}


def _damage(db: Path, how: str) -> None:
    if how == "truncated":
        os.truncate(db, db.stat().st_size // 2)
    else:
        db.write_bytes(b"\x8b garbage, not a database \x00" * 200)


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_damaged_catalog_is_one_line_error_and_rebuild_recovers(tmp_path: Path, how: str) -> None:
    root = tmp_path / "repo"
    oids = _history(root)
    assert _assay(root, "export", "train", "--to", str(tmp_path / "before.parquet")).returncode == 0
    db = root / ".assay" / "catalog.db"
    _damage(db, how)
    damaged = db.read_bytes()
    for args in (["status"], ["log"], ["fsck"], ["branch"]):
        r = _assay(root, *args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("error:") and r.stderr.count("\n") == 1, r.stderr
        assert str(db) in r.stderr and "damaged" in r.stderr and "--rebuild-catalog" in r.stderr
        assert "Traceback" not in r.stderr
    with pytest.raises(assay.CatalogDamaged) as e:
        assay.Repo(root).log()
    assert e.value.path == str(db)

    r = _assay(root, "fsck", "--rebuild-catalog")
    assert r.returncode == 0, r.stderr
    assert "catalog.db.damaged-" in r.stdout and f"{oids['second'][:12]}" in r.stdout
    (kept,) = [p for p in db.parent.iterdir() if p.name.startswith("catalog.db.damaged-") and "-wal" not in
               p.name and "-shm" not in p.name]
    assert kept.read_bytes() == damaged  # set aside, never deleted

    recovered = f"recovered/{oids['second'][:12]}"
    assert "side" in _assay(root, "log").stdout  # main: the newest head
    log = _assay(root, "log", recovered).stdout  # the other head: on a branch of its own
    assert "second" in log and "first" in log
    with assay.Repo(root) as repo:
        assert repo.head() == oids["side"]
        assert repo.resolve(oids["first"][:8]) == oids["first"]  # the commit index is rebuilt too
    assert _assay(root, "export", f"train@{recovered}", "--to", str(tmp_path / "after.parquet")).returncode == 0
    assert pq.read_table(tmp_path / "after.parquet").equals(pq.read_table(tmp_path / "before.parquet"))
    r = _assay(root, "fsck")
    assert r.returncode == 0 and "ok" in r.stdout


def test_newest_head_becomes_main_when_main_is_lost(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    oids = _history(root)  # "side" is newer than "second"
    for p in (root / ".assay").glob("catalog.db*"):
        p.unlink()
    report = rebuild_catalog(root)
    assert report.moved_to == [] and report.commits == 3 and report.heads == [oids["side"], oids["second"]]
    with assay.Repo(root) as repo:
        assert repo.branches() == {"main": oids["side"], f"recovered/{oids['second'][:12]}": oids["second"]}


def test_rebuild_of_a_readable_catalog_keeps_its_refs(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    oids = _history(root)
    with assay.Repo(root) as repo:
        repo.tag("v1", oids["first"])
        before = (repo.branches(), repo.tags())
    report = rebuild_catalog(root)
    assert {(k, n, h) for k, n, _, h in report.refs} == {("branch", "main", "kept"), ("branch", "feat", "kept"),
                                                         ("tag", "v1", "kept")}
    assert report.moved_to and all(Path(p).exists() for p in report.moved_to)
    with assay.Repo(root) as repo:
        assert (repo.branches(), repo.tags()) == before
        assert repo.fsck().ok
