"""Partial clones (``clone --datasets``, ``--lazy``): what is fetched at once, what on first read (verified),
and that fetch, push, gc and fsck keep working on a repository that holds only part of its objects."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import assay
from assay.errors import CorruptObject, RefNotFound
from assay.remote import clone, fetch, push
from assay.remote.partial import PartialStore
from assay.repo.graph import COMMIT, Edge, walk
from tests.conftest import make_table, write_images


@pytest.fixture
def origin(tmp_path: Path) -> assay.Repo:
    """Three datasets: a table, a bigger table, and a folder of images (its files are blobs)."""
    r = assay.init(tmp_path / "origin")
    r.add("small", make_table(100), key="id")
    r.add("big", make_table(5000, seed=1), key="id")
    write_images(tmp_path / "imgs", {"dark": 20, "light": 180}, per_label=6)
    r.add("imgs", tmp_path / "imgs")
    r.commit("first")
    r.add("big", make_table(50, seed=2, start=10_000), mode="append")
    r.commit("more big")
    return r


def _objects_of(repo: assay.Repo, dataset: str) -> set[str]:
    """Every object below the manifest of ``dataset`` at HEAD (fragments, their parts, blobs)."""
    from assay.repo.graph import MANIFEST

    oid = repo.read_commit(repo.head()).datasets[dataset]  # type: ignore[arg-type]
    return {o for o, _ in walk(repo.store, [Edge(oid, MANIFEST, dataset)])} - {oid}


def test_clone_of_some_datasets_fetches_their_data_and_reads_the_rest_on_first_use(origin: assay.Repo,
                                                                                   tmp_path: Path) -> None:
    big = _objects_of(origin, "big")
    copy = clone(str(origin.root), tmp_path / "copy", datasets=["small,imgs"])
    assert isinstance(copy.store, PartialStore)
    here = set(copy.store.iter_oids())
    assert _objects_of(origin, "small") <= here and _objects_of(origin, "imgs") <= here
    assert not big & here  # none of big's fragments came
    history = [Edge(c, COMMIT, "all") for c in (origin.head(),)]
    every = {o for o, _ in walk(origin.store, history)}
    assert every - here == big - _objects_of(origin, "small") - _objects_of(origin, "imgs")  # only big's data left out
    assert [c.message for _, c in copy.log()] == ["more big", "first"]  # the whole history is here
    assert copy.dataset("big").num_rows == 5050  # from the manifest: nothing fetched
    assert copy.store.fetched.objects == 0

    assert copy.dataset("big").to_arrow().equals(origin.dataset("big").to_arrow())  # read: fetched now
    came = set(copy.store.iter_oids()) - here
    assert came and came <= big and len(came) == copy.store.fetched.objects  # what the read needed, of big only
    again = copy.store.fetched.objects
    copy.dataset("big").to_arrow()
    assert copy.store.fetched.objects == again  # each object crosses once
    assert copy.fsck().ok


def test_a_lazy_clone_fetches_only_history_and_manifests(origin: assay.Repo, tmp_path: Path) -> None:
    copy = clone(str(origin.root), tmp_path / "copy", lazy=True)
    data = _objects_of(origin, "small") | _objects_of(origin, "big") | _objects_of(origin, "imgs")
    here = set(copy.store.iter_oids())
    assert not data & here
    manifests = set(origin.read_commit(origin.head()).datasets.values())  # type: ignore[arg-type]
    assert manifests <= here
    report = copy.fsck()  # the absent objects are held by origin: not fetched, not missing
    assert report.ok and report.not_fetched > 0 and report.promisor == "origin"

    version = copy.dataset("imgs")
    (blob_col,) = version.manifest.blob_columns
    first = version.to_arrow().column(blob_col)[0].as_py()
    assert version.read_blob(first) == origin.dataset("imgs").read_blob(first)  # a blob: fetched, verified


def test_a_later_fetch_keeps_the_filter_and_push_sends_only_the_change(origin: assay.Repo, tmp_path: Path) -> None:
    copy = clone(str(origin.root), tmp_path / "copy", datasets=["small"])
    origin.add("big", make_table(20, seed=3, start=20_000), mode="append")
    origin.add("small", make_table(5, seed=4, start=5_000), mode="append")
    origin.commit("upstream")
    fetch(copy, "origin")
    here = set(copy.store.iter_oids())
    assert not _objects_of(origin, "big") & here  # big still not fetched
    assert _objects_of(origin, "small") <= here  # small's new fragment came
    copy.merge("origin/main")

    copy.add("big", make_table(3, seed=5, start=30_000), mode="append")  # a change to data not fetched
    copy.commit("three more")
    before = set(origin.store.iter_oids())
    sent = push(copy, "origin").sent
    assert origin.head() == copy.head() and origin.fsck().ok
    assert origin.dataset("big").num_rows == 5073
    assert len(set(origin.store.iter_oids()) - before) == sent.objects <= 8  # the change, not big's data


def test_gc_reads_nothing_from_the_remote_and_keeps_what_was_fetched(origin: assay.Repo, tmp_path: Path) -> None:
    copy = clone(str(origin.root), tmp_path / "copy", lazy=True)
    copy.dataset("small").to_arrow()
    fetched = copy.store.fetched.objects
    held = set(copy.store.iter_oids())
    report = copy.gc(grace=0)
    assert report.removed == 0 and copy.store.fetched.objects == fetched
    assert set(copy.store.iter_oids()) == held
    assert copy.dataset("small").to_arrow().equals(origin.dataset("small").to_arrow())
    assert copy.store.fetched.objects == fetched  # still here after gc


def test_corrupt_bytes_read_on_demand_are_refused_and_not_stored(origin: assay.Repo, tmp_path: Path) -> None:
    copy = clone(str(origin.root), tmp_path / "copy", lazy=True)
    store = copy.store
    assert isinstance(store, PartialStore)
    remote = store._promisor().store
    real = remote.get_many

    def damaged(oids: list[str]) -> list[bytes]:
        return [d[:-1] + bytes([d[-1] ^ 1]) for d in real(oids)]

    remote.get_many = damaged  # type: ignore[method-assign]  # the remote's copy went bad
    with pytest.raises(CorruptObject, match="damaged"):
        copy.dataset("small").to_arrow()
    assert not _objects_of(origin, "small") & set(store.local.iter_oids())  # nothing bad kept
    remote.get_many = real  # type: ignore[method-assign]
    assert copy.dataset("small").to_arrow().num_rows == 100


def test_fsck_tells_objects_lost_from_objects_not_fetched(origin: assay.Repo, tmp_path: Path) -> None:
    copy = clone(str(origin.root), tmp_path / "copy", datasets=["small"])
    copy.close()
    gone = sorted(_objects_of(origin, "big"))[0]
    origin.store.delete([gone], older_than=float("inf"))  # origin lost it too
    copy = assay.Repo(tmp_path / "copy")
    report = copy.fsck()
    assert not report.ok and [o for o, _ in report.missing] == [gone] and report.not_fetched > 0


def test_bad_partial_clone_input_says_what_to_do(origin: assay.Repo, tmp_path: Path) -> None:
    with pytest.raises(RefNotFound, match=r"no dataset 'nope'.*big, imgs, small"):
        clone(str(origin.root), tmp_path / "typo", datasets=["small,nope"])
    assert not (tmp_path / "typo").exists()  # nothing half-made is left
    copy = clone(str(origin.root), tmp_path / "copy", lazy=True)
    copy.close()
    remotes = copy.dir / "remotes.json"
    remotes.write_text(json.dumps({"format": 1, "remotes": {}}))
    with assay.Repo(tmp_path / "copy") as again, pytest.raises(RefNotFound, match="remote add origin"):
        again.dataset("big").to_arrow()


def test_partial_clone_at_the_cli(origin: assay.Repo, tmp_path: Path) -> None:
    def run(*args: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "assay.cli", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=120)

    done = run("clone", str(origin.root), "copy", "--datasets", "small")
    assert done.returncode == 0, done.stderr
    assert "partial clone: fetched the data of small" in done.stdout
    shown = run("fsck", "--json", cwd=tmp_path / "copy")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["not_fetched"] > 0
    exported = run("export", "big", "--to", str(tmp_path / "big.parquet"), cwd=tmp_path / "copy")
    assert exported.returncode == 0, exported.stderr
    import pyarrow.parquet as pq

    assert np.array_equal(pq.read_table(tmp_path / "big.parquet").column("x").to_numpy(),
                          origin.dataset("big").to_arrow().column("x").to_numpy())
    lazy = run("clone", str(origin.root), "lazy", "--lazy")
    assert lazy.returncode == 0 and "fetched no data" in lazy.stdout
    restored = run("export", "imgs", "--to", str(tmp_path / "imgs-out"), cwd=tmp_path / "lazy")
    assert restored.returncode == 0, restored.stderr  # the files of a folder dataset: blobs read on demand
    assert sorted(p.name for p in (tmp_path / "imgs-out" / "dark").iterdir()) == [f"{i}.png" for i in range(6)]
    original = (tmp_path / "imgs" / "dark" / "0.png").read_bytes()
    assert (tmp_path / "imgs-out" / "dark" / "0.png").read_bytes() == original


def test_a_full_clone_of_a_partial_clone_reads_through_it_to_the_first_remote(origin: assay.Repo,
                                                                               tmp_path: Path) -> None:
    lazy = clone(str(origin.root), tmp_path / "lazy", lazy=True)
    lazy.close()
    full = assay.clone(str(tmp_path / "lazy"), tmp_path / "full")
    assert not isinstance(full.store, PartialStore) and full.fsck().ok
    every = {o for o, _ in walk(origin.store, [Edge(origin.head(), COMMIT, "tip")])}  # type: ignore[arg-type]
    assert every <= set(full.store.iter_oids())
    assert full.dataset("big").to_arrow().equals(origin.dataset("big").to_arrow())
