"""Integrity: a flipped byte in any stored object is reported by fsck and by every read that touches it.

Objects are flipped where they lie on disk: loose files under ``.assay/objects/``, or a range of a pack
found through its ``.idx`` (see ``docs/storage.md``). Corrupt data is never returned: reads raise
``CorruptObject`` (or another ``AssayError`` where the damage makes the object unreadable in other ways,
e.g. a damaged codec byte), and exports leave no output behind.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import assay
from assay.repo.upkeep import FsckReport
from assay.store.local import CHUNK_FROM

IDX_MAGIC = b"ASSAYIDX1\n"
IDX_RECORD = np.dtype([("oid", "V32"), ("off", "<u8"), ("len", "<u8")])
SMALL_FILES = 30


@dataclass(frozen=True)
class Template:
    root: Path
    table: pa.Table  # the train dataset at HEAD, sorted by id
    files: dict[str, bytes]  # the images dataset at HEAD
    oids: dict[str, str]  # what each kind of object is, at HEAD


def _table(ids: np.ndarray, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"id": pa.array(ids, pa.int64()), "x": rng.random(len(ids)),
                     "name": [f"sample-{seed}-{i}" for i in ids]})


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """A repository with two commits: a table (with a deletion vector) and a folder (packed files, one large)."""
    base = tmp_path_factory.mktemp("corruption")
    rng = random.Random(7)
    files = {f"{rng.choice('ab')}/f{i:02d}.txt": f"file {i} ".encode() * rng.randrange(5, 200)
             for i in range(SMALL_FILES)}
    files["big/large.bin"] = np.random.default_rng(1).bytes(CHUNK_FROM + (1 << 20))
    folder = base / "images"
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    with assay.init(base / "repo") as repo:
        repo.add("train", _table(np.arange(3000), 0), key="id")
        repo.commit("first")
        repo.add("train", _table(np.arange(0, 3000, 3), 1), key="id", mode="upsert")
        repo.add("images", str(folder))
        head = repo.commit("second")
        commit = repo.read_commit(head)
        manifest = repo.read_manifest(commit.datasets["train"])
        fragments = [f for f in manifest.fragments if f.deleted]
        images = repo.dataset("images").to_arrow(["path", "blob"])
        blobs = dict(zip(images.column("path").to_pylist(), images.column("blob").to_pylist(), strict=True))
        large = blobs["big/large.bin"]
        chunks = repo.store.children(large)
        assert len(chunks) > 2, "the large file must be stored in chunks"
        oids = {
            "commit": head,
            "parent commit": commit.parents[0],
            "manifest": commit.datasets["train"],
            "fragment": fragments[0].oid,
            "deletion vector": str(fragments[0].deleted),
            "id index": fragments[0].ids,
            "folder fragment": repo.read_manifest(commit.datasets["images"]).fragments[0].oid,
            "packed file": blobs["a/f01.txt"] if "a/f01.txt" in blobs else blobs[sorted(blobs)[0]],
            "chunk": chunks[1],
            "chunk list": large,
        }
        table = repo.dataset("train").to_arrow().sort_by("id")
    assert repo.store.stat(oids["packed file"]).location.startswith("pack:")
    assert repo.store.stat(oids["chunk"]).location.startswith("pack:")  # chunks are packed too
    for kind in ("commit", "manifest", "fragment", "deletion vector", "id index", "folder fragment", "chunk list"):
        assert repo.store.stat(oids[kind]).location == "loose", kind
    return Template(base / "repo", table, files, oids)


@pytest.fixture
def copy(template: Template, tmp_path: Path) -> Iterator[Path]:
    """A fresh copy of the template repository, to damage."""
    root = tmp_path / "repo"
    shutil.copytree(template.root, root)
    yield root


# -- finding and flipping bytes -----------------------------------------------------------------------------


def locate(root: Path, oid: str) -> tuple[Path, int, int]:
    """File, offset and length of an object's stored form: a loose file, or a range of a pack."""
    loose = root / ".assay" / "objects" / oid[:2] / oid[2:]
    if loose.exists():
        return loose, 0, loose.stat().st_size
    for idx in sorted((root / ".assay" / "packs").glob("*.idx")):
        raw = idx.read_bytes()
        assert raw.startswith(IDX_MAGIC)
        records = np.frombuffer(raw[len(IDX_MAGIC):], dtype=IDX_RECORD)
        hit = np.flatnonzero(records["oid"] == np.void(bytes.fromhex(oid)))
        if len(hit):
            rec = records[hit[0]]
            return idx.with_suffix(".pack"), int(rec["off"]), int(rec["len"])
    raise AssertionError(f"object {oid} is neither loose nor packed")


def flip(root: Path, oid: str, position: int, mask: int = 0x01) -> Callable[[], None]:
    """Flip bits ``mask`` of byte ``position`` of the object's stored form; returns a function undoing it."""
    path, offset, length = locate(root, oid)
    assert 0 <= position < length and 0 < mask < 256
    with open(path, "r+b") as f:
        f.seek(offset + position)
        old = f.read(1)[0]
        f.seek(offset + position)
        f.write(bytes([old ^ mask]))

    def undo() -> None:
        with open(path, "r+b") as f:
            f.seek(offset + position)
            f.write(bytes([old]))

    return undo


def stored_length(root: Path, oid: str) -> int:
    return locate(root, oid)[2]


# -- what must fail ------------------------------------------------------------------------------------------


def reported(report: FsckReport) -> set[str]:
    """Every object fsck names: corrupt, missing or unreadable."""
    return set(report.corrupt) | {o for o, _ in report.missing} | {o for o, _ in report.unreadable}


def assert_detected(root: Path, kind: str, oids: dict[str, str], position: int, tmp: Path) -> None:
    """fsck names the object, and every read that touches it raises an AssayError."""
    oid = oids[kind]
    with assay.Repo(root) as repo:
        report = repo.fsck()
        assert not report.ok, f"{kind}: a flipped byte at {position} went unnoticed by fsck"
        assert oid in reported(report), (kind, report.to_dict())

        # the object itself: corrupt payloads are CorruptObject; a damaged codec byte or chunk address may
        # make the object unreadable in another way, still an AssayError
        expected: type[Exception] = assay.CorruptObject if position > 0 and kind != "chunk list" \
            else assay.AssayError
        with pytest.raises(expected):
            repo.store.get(oid)

        for name, read in reads_touching(repo, kind, oids, tmp).items():
            with pytest.raises(assay.AssayError):
                read()
                pytest.fail(f"{kind}: {name} returned data from a damaged object")
        assert not list(tmp.glob("export*")), "a failed export left output behind"
        assert not list(tmp.glob(".tmp-export*")), "a failed export left temporary files behind"


def reads_touching(repo: assay.Repo, kind: str, oids: dict[str, str], tmp: Path) -> dict[str, Callable[[], object]]:
    """Every way of reading that goes through an object of ``kind``."""
    if kind in ("commit", "parent commit"):
        reads: dict[str, Callable[[], object]] = {
            "log": repo.log,
            "dataset at the commit": lambda: repo.dataset("train", ref="main" if kind == "commit" else "main~1")
            .to_arrow(),
            "export": lambda: repo.export("train@main" if kind == "commit" else "train@main~1",
                                          tmp / "export.parquet"),
            "diff": lambda: repo.diff("main~1", "main"),
        }
        if kind == "commit":
            reads["working version"] = lambda: repo.dataset("train").to_arrow()
        return reads
    if kind in ("manifest", "fragment", "deletion vector"):
        return {
            "to_arrow": lambda: repo.dataset("train").to_arrow(),
            "to_pandas": lambda: repo.dataset("train").to_pandas(),
            "scan": lambda: list(repo.dataset("train").scan()),
            "export parquet": lambda: repo.export("train", tmp / "export.parquet"),
            "export csv": lambda: repo.export("train", tmp / "export.csv"),
            "diff": lambda: repo.diff("main~1", "main", dataset="train"),
        }
    if kind == "id index":  # read only where ids are: diffs, merges, updates, reads with ids
        return {
            "to_arrow with ids": lambda: repo.dataset("train").to_arrow(with_ids=True),
            "diff": lambda: repo.diff("main~1", "main", dataset="train"),
            "upsert": lambda: repo.add("train", repo.dataset("train").to_arrow().slice(0, 5), mode="upsert"),
        }
    if kind == "folder fragment":
        return {
            "to_arrow": lambda: repo.dataset("images").to_arrow(),
            "torch view": lambda: repo.dataset("images").torch(),
            "export folder": lambda: repo.export("images", tmp / "export-folder"),
        }
    version = repo.dataset("images")
    t = version.to_arrow(["path", "blob"])
    paths = t.column("path").to_pylist()
    row = paths.index("big/large.bin") if kind in ("chunk", "chunk list") else \
        t.column("blob").to_pylist().index(oids["packed file"])
    blob = t.column("blob")[row].as_py()
    return {
        "read_blob": lambda: version.read_blob(blob),
        "torch view": lambda: version.torch()[row],
        "export folder": lambda: repo.export("images", tmp / "export-folder"),
    }


KINDS = ["commit", "parent commit", "manifest", "fragment", "deletion vector", "id index", "folder fragment",
         "packed file",
         "chunk", "chunk list"]


def test_template_is_whole(template: Template, copy: Path, tmp_path: Path) -> None:
    """The undamaged repository passes fsck and every read, so the failures below come from the flips."""
    with assay.Repo(copy) as repo:
        assert repo.fsck().ok
        assert repo.dataset("train").to_arrow().sort_by("id").equals(template.table)
        for kind in KINDS:
            for read in reads_touching(repo, kind, template.oids, tmp_path / kind).values():
                (tmp_path / kind).mkdir(exist_ok=True)
                read()
        version = repo.dataset("images")
        t = version.to_arrow(["path", "blob"])
        paths, blobs = t.column("path").to_pylist(), t.column("blob").to_pylist()
        got = {p: version.read_blob(b) for p, b in zip(paths, blobs, strict=True)}
        assert got == template.files


@pytest.mark.parametrize("kind", KINDS)
def test_flipped_byte_is_reported_and_never_read(template: Template, copy: Path, tmp_path: Path,
                                                kind: str) -> None:
    oid = template.oids[kind]
    length = stored_length(copy, oid)
    rng = random.Random(f"{kind}-positions")
    # the codec byte made raw <-> compressed (0x01) and unknown (0x80), then bytes of the payload
    flips = [(0, 0x01), (0, 0x80), *((p, 1 << rng.randrange(8)) for p in sorted(
        {1, length // 2, length - 1, *(rng.randrange(1, length) for _ in range(4))}))]
    for i, (position, mask) in enumerate(flips):
        undo = flip(copy, oid, position, mask)
        out = tmp_path / f"flip-{i}"
        out.mkdir()
        assert_detected(copy, kind, template.oids, position, out)
        undo()
    with assay.Repo(copy) as repo:
        assert repo.fsck().ok, "undoing the flips must restore the repository"


def test_damage_stays_local(template: Template, copy: Path) -> None:
    """A damaged file in a pack does not hide its neighbours, nor does a damaged chunk hide other files."""
    flip(copy, template.oids["packed file"], 3)
    flip(copy, template.oids["chunk"], 3)
    with assay.Repo(copy) as repo:
        report = repo.fsck()
        assert {template.oids["packed file"], template.oids["chunk"], template.oids["chunk list"]} <= reported(report)
        assert repo.dataset("train").to_arrow().sort_by("id").equals(template.table)
        version = repo.dataset("images")
        t = version.to_arrow(["path", "blob"])
        damaged = {template.oids["packed file"], template.oids["chunk list"]}
        intact = 0
        for path, blob in zip(t.column("path").to_pylist(), t.column("blob").to_pylist(), strict=True):
            if blob in damaged:
                with pytest.raises(assay.CorruptObject):
                    version.read_blob(blob)
            else:
                assert version.read_blob(blob) == template.files[path]
                intact += 1
        assert intact == len(template.files) - 2


@pytest.mark.parametrize("kind", ["commit", "parent commit", "manifest", "chunk list"])
def test_gc_deletes_nothing_when_an_object_that_refers_to_others_is_damaged(template: Template, copy: Path,
                                                                           kind: str) -> None:
    """What a damaged commit, manifest or chunk list refers to cannot be known, so it must not be taken for
    garbage: gc refuses and every object stays, to be saved by a repair."""
    undo = flip(copy, template.oids[kind], stored_length(copy, template.oids[kind]) // 2)
    with assay.Repo(copy) as repo:
        before = sorted(repo.store.iter_oids())
        with pytest.raises(assay.CorruptObject, match=r"gc deleted nothing.*assay fsck --repair"):
            repo.gc(grace=0)
        assert sorted(repo.store.iter_oids()) == before
    undo()
    with assay.Repo(copy) as repo:
        assert repo.fsck().ok and repo.dataset("train").to_arrow().sort_by("id").equals(template.table)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_flipped_byte_of_a_compressed_manifest(template: Template, copy: Path, tmp_path: Path,
                                                   data: st.DataObject) -> None:
    oid = template.oids["manifest"]
    length = stored_length(copy, oid)
    position = data.draw(st.integers(0, length - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="mask")
    undo = flip(copy, oid, position, mask)
    try:
        with assay.Repo(copy) as repo:
            report = repo.fsck()
            assert oid in reported(report)
            with pytest.raises(assay.CorruptObject if position > 0 else assay.AssayError):
                repo.store.get(oid)
            with pytest.raises(assay.AssayError):
                repo.dataset("train").to_arrow()
    finally:
        undo()


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_flipped_byte_of_a_chunk_list(template: Template, copy: Path, data: st.DataObject) -> None:
    """Chunk addresses and sizes are both checked: no byte of a large object's chunk list goes unnoticed."""
    oid = template.oids["chunk list"]
    length = stored_length(copy, oid)
    position = data.draw(st.integers(0, length - 1), label="position")
    undo = flip(copy, oid, position, 1 << data.draw(st.integers(0, 7), label="bit"))
    try:
        with assay.Repo(copy) as repo:
            assert oid in reported(repo.fsck())
            with pytest.raises(assay.AssayError):
                repo.store.get(oid)
    finally:
        undo()
