"""Exports: an existing file is replaced only with --force (a non-empty folder is always refused), and what is
written gets the usual permissions under the user's umask, not the temporary files' 0600."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import assay
from assay.errors import InputError
from tests.conftest import make_table


@pytest.fixture
def work(repo: assay.Repo, tmp_path: Path) -> assay.Repo:
    """Two versions of a table 't' and a folder dataset 'imgs' (two sub-folders)."""
    folder = tmp_path / "images"
    for rel in ("cat/a.png", "dog/b.png", "dog/c.png"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(rel.encode() * 10)
    repo.add("t", make_table(30), key="id")
    repo.add("imgs", folder)
    repo.commit("first")
    repo.add("t", make_table(10, seed=1, start=30), mode="append")
    repo.commit("second")
    return repo


@pytest.fixture(params=[0o022, 0o027, 0o002], ids=["022", "027", "002"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_existing_file_is_replaced_only_with_force(work: assay.Repo, tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"out{suffix}"
    work.export("t@HEAD~1", target)
    first = target.read_bytes()
    with pytest.raises(InputError, match=r"already exists.*--force"):
        work.export("t", target)
    assert target.read_bytes() == first  # untouched
    assert not list(tmp_path.glob(".tmp-export*"))
    work.export("t", target, force=True)
    assert target.read_bytes() != first
    if suffix == ".parquet":
        assert pq.read_table(target).num_rows == 40


def test_file_export_has_the_usual_permissions(work: assay.Repo, tmp_path: Path, umask: int) -> None:
    for name in ("a.parquet", "a.csv", "a.jsonl"):
        assert _mode(work.export("t", tmp_path / name)) == 0o666 & ~umask
        assert _mode(work.export("t", tmp_path / name, force=True)) == 0o666 & ~umask


def test_folder_export_has_the_usual_permissions(work: assay.Repo, tmp_path: Path, umask: int) -> None:
    out = work.export("imgs", tmp_path / "out")
    files = [p for p in out.rglob("*") if p.is_file()]
    assert sorted(p.relative_to(out).as_posix() for p in files) == ["_labels.csv", "cat/a.png", "dog/b.png",
                                                                    "dog/c.png"]
    assert {_mode(p) for p in files} == {0o666 & ~umask}
    assert {_mode(p) for p in [out, *(p for p in out.rglob("*") if p.is_dir())]} == {0o777 & ~umask}


def test_folder_export_refuses_a_non_empty_folder_or_a_file(work: assay.Repo, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        work.export("imgs", tmp_path / "full", force=True)  # --force replaces files, never a folder's contents
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(InputError, match="is a file"):
        work.export("imgs", tmp_path / "afile")
    assert (tmp_path / "afile").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    assert (work.export("imgs", tmp_path / "empty") / "cat" / "a.png").exists()


def test_cli_asks_for_force(work: assay.Repo, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "assay.cli", "-C", str(work.root), "export", *args],
                              capture_output=True, text=True, timeout=120)

    target = tmp_path / "t.parquet"
    assert run("t@HEAD~1", "--to", str(target)).returncode == 0
    r = run("t", "--to", str(target))
    assert r.returncode == 1 and r.stderr.startswith("error:") and "--force" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and pq.read_table(target).num_rows == 30
    assert run("t", "--to", str(target), "--force").returncode == 0
    assert pq.read_table(target).num_rows == 40
