"""Working folders: restore / checkout DATASET@REV --to DIR writes only the files that differ and removes only
inside DIR; status shows what changed in the folder a dataset was added from; ingested files survive a re-add."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import assay
from assay.cli.app import app
from assay.errors import InputError
from assay.repo import workdir
from tests.conftest import make_table

runner = CliRunner()


def _write(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def images(repo: assay.Repo, tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    _write(folder, {"cat/a.png": b"a" * 10, "dog/b.png": b"b" * 10, "dog/c.png": b"c" * 10})
    repo.add("imgs", folder)
    repo.commit("v1")
    repo.tag("v1")
    (folder / "dog/c.png").unlink()
    _write(folder, {"cat/a.png": b"A" * 12, "cat/d.png": b"d" * 5})
    repo.add("imgs", folder)
    repo.commit("v2")
    return folder


def test_status_shows_changes_in_the_folder_a_dataset_was_added_from(repo: assay.Repo, images: Path) -> None:
    assert workdir.working_folders(repo) == {"imgs": str(images.resolve())}
    (changes,) = workdir.folder_changes(repo)
    assert changes.clean
    _write(images, {"cat/a.png": b"edited", "new/e.png": b"e"})
    (images / "dog/b.png").unlink()
    (changes,) = workdir.folder_changes(repo)
    assert (changes.added, changes.modified, changes.deleted) == (("new/e.png",), ("cat/a.png",), ("dog/b.png",))
    r = runner.invoke(app, ["-C", str(repo.root), "status"])
    assert r.exit_code == 0 and "new:       new/e.png" in r.output and "modified:  cat/a.png" in r.output
    assert "deleted:   dog/b.png" in r.output
    r = runner.invoke(app, ["-C", str(repo.root), "status", "--json"])
    assert '"modified": [' in r.output


def test_restore_writes_only_what_differs_and_removes_inside_the_folder(repo: assay.Repo, images: Path,
                                                                       tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"keep me")
    (images / ".hidden").write_bytes(b"not a sample")
    untouched = (images / "dog/b.png").stat().st_mtime_ns
    result = workdir.restore(repo, "imgs@v1")
    assert _files(images) == {"cat/a.png": b"a" * 10, "dog/b.png": b"b" * 10, "dog/c.png": b"c" * 10,
                              ".hidden": b"not a sample"}
    assert set(result.written) == {"cat/a.png", "dog/c.png"} and result.removed == ("cat/d.png",)
    assert result.unchanged == 1 and (images / "dog/b.png").stat().st_mtime_ns == untouched
    assert outside.read_bytes() == b"keep me"
    again = workdir.restore(repo, "imgs@v1")
    assert not again.written and not again.removed
    (changes,) = workdir.folder_changes(repo)  # status compares with the working version (v2)
    assert changes.modified == ("cat/a.png",) and changes.deleted == ("cat/d.png",)
    assert changes.added == ("dog/c.png",)


def test_checkout_to_a_new_folder_then_back(repo: assay.Repo, images: Path, tmp_path: Path) -> None:
    target = tmp_path / "copy"
    r = runner.invoke(app, ["-C", str(repo.root), "checkout", "imgs@v1", "--to", str(target)])
    assert r.exit_code == 0 and "3 file(s) written" in r.output, r.output
    r = runner.invoke(app, ["-C", str(repo.root), "restore", "imgs@v1", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["unchanged"] == 3
    assert set(_files(target)) == {"cat/a.png", "dog/b.png", "dog/c.png"}
    assert repo.head() == repo.resolve("main")  # HEAD did not move
    r = runner.invoke(app, ["-C", str(repo.root), "restore", "imgs"])  # its working folder is now the copy
    assert r.exit_code == 0 and "1 removed" in r.output
    assert _files(target) == _files(images)
    r = runner.invoke(app, ["-C", str(repo.root), "checkout", "imgs@v1"])
    assert isinstance(r.exception, InputError) and "--to DIR" in str(r.exception)


def test_unsaved_changes_are_not_overwritten_without_force(repo: assay.Repo, images: Path) -> None:
    _write(images, {"cat/a.png": b"never added", "new.png": b"never added either"})
    with pytest.raises(InputError, match=r"does not have.*--force"):
        workdir.restore(repo, "imgs")
    assert (images / "new.png").exists()
    workdir.restore(repo, "imgs", force=True)
    assert not (images / "new.png").exists() and (images / "cat/a.png").read_bytes() == b"A" * 12


def test_paths_never_leave_the_folder(repo: assay.Repo, images: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = tmp_path / "linked"
    target.mkdir()
    os.symlink(elsewhere, target / "cat")  # a folder of the dataset that leads outside the target
    with pytest.raises(InputError):
        workdir.restore(repo, "imgs@v1", to=target, force=True)
    assert list(elsewhere.iterdir()) == []


def test_bad_input_is_clear(repo: assay.Repo, images: Path, tmp_path: Path) -> None:
    repo.add("t", make_table(5))
    repo.commit("table")
    with pytest.raises(InputError, match="not a folder dataset"):
        workdir.restore(repo, "t", to=tmp_path / "t")
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(InputError, match="is a file"):
        workdir.restore(repo, "imgs", to=file)
    with pytest.raises(InputError, match="names no revision"):
        workdir.restore(repo, "imgs@")


def test_ingested_files_survive_a_re_add_after_restore(repo: assay.Repo, images: Path, tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    _write(batch, {"cat/x.png": b"x" * 7})
    repo.add("imgs", batch, mode="append")  # as the gate publishes a batch: the working folder stays `images`
    repo.commit("published")
    assert workdir.working_folders(repo)["imgs"] == str(images.resolve())
    (changes,) = workdir.folder_changes(repo)
    assert changes.deleted == ("cat/x.png",)  # the folder lacks the published file
    workdir.restore(repo, "imgs")
    assert (images / "cat/x.png").read_bytes() == b"x" * 7
    result = repo.add("imgs", images)
    assert not result.changed and repo.dataset("imgs").num_rows == 4


def test_restore_after_ingest_then_re_add_keeps_what_the_gate_published(repo: assay.Repo, images: Path,
                                                                       tmp_path: Path) -> None:
    batch = tmp_path / "new"
    _write(batch, {"dog/z.png": b"z" * 9})
    (tmp_path / "gate.yaml").write_text("format: 1\nscreens: {}\n")
    report = repo.ingest(batch, into="imgs", policy=tmp_path / "gate.yaml")
    assert report.accepted == 1 and repo.dataset("imgs").num_rows == 4
    r = runner.invoke(app, ["-C", str(repo.root), "status"])
    assert "deleted:   dog/z.png" in r.output and "assay restore imgs" in r.output
    r = runner.invoke(app, ["-C", str(repo.root), "checkout", "imgs@HEAD", "--to", str(images)])
    assert r.exit_code == 0 and "1 file(s) written" in r.output
    assert not repo.add("imgs", images).changed and repo.dataset("imgs").num_rows == 4


def test_status_says_why_a_folder_cannot_be_compared(repo: assay.Repo, images: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("x")
    os.symlink(tmp_path / "secret", images / "link.png")
    r = runner.invoke(app, ["-C", str(repo.root), "status"])
    assert r.exit_code == 0 and "cannot be compared" in r.output and "outside the dataset folder" in r.output
    shutil.rmtree(images)
    r = runner.invoke(app, ["-C", str(repo.root), "status"])
    assert r.exit_code == 0 and "is gone" in r.output
