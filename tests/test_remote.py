"""Remotes between repository folders: clone, fetch, push, pull; only missing objects move; refs by CAS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

import assay
from assay.errors import CorruptObject, InputError, NonFastForward, RefNotFound
from assay.remote import add_remote, clone, fetch, missing, pull, push, push_tags, read_remotes
from tests.conftest import make_table


@pytest.fixture
def origin(tmp_path: Path) -> assay.Repo:
    r = assay.init(tmp_path / "origin")
    r.add("t", make_table(200), key="id")
    r.commit("first")
    r.tag("v1")
    return r


def _rows(repo: assay.Repo, rev: str = "HEAD") -> int:
    return repo.dataset("t", rev).to_arrow().num_rows


def test_clone_copies_every_object_and_checks_out_the_branch(origin: assay.Repo, tmp_path: Path) -> None:
    copy = clone(str(origin.root), tmp_path / "copy")
    assert copy.branch == "main" and copy.head() == origin.head()
    assert _rows(copy) == 200 and copy.tags() == origin.tags()
    assert copy.resolve("origin/main") == origin.head()  # REMOTE/BRANCH is a revision
    assert copy.fsck().ok
    assert set(origin.store.iter_oids()) <= set(copy.store.iter_oids())
    assert read_remotes(copy) == {"origin": str(origin.root)}
    assert "password" not in (copy.dir / "remotes.json").read_text()


def test_push_sends_only_what_the_remote_lacks(origin: assay.Repo, tmp_path: Path) -> None:
    copy = clone(str(origin.root), tmp_path / "copy")
    assert push(copy, "origin").up_to_date
    copy.add("t", make_table(2, start=1000), mode="append")
    tip = copy.commit("two more")
    before, was = set(origin.store.iter_oids()), origin.head()
    result = push(copy, "origin")
    assert result.new == tip == origin.head() and result.old == was
    new_objects = set(origin.store.iter_oids()) - before
    assert 0 < result.sent.objects <= 8 and len(new_objects) <= result.sent.objects  # the change, not the data
    assert result.sent.skipped >= 1  # stopped at the commit the remote had
    assert push(copy, "origin").sent.objects == 0
    assert origin.fsck().ok and _rows(origin) == 202


def test_a_push_behind_the_remote_is_refused_unless_forced(origin: assay.Repo, tmp_path: Path) -> None:
    alice = clone(str(origin.root), tmp_path / "alice")
    bob = clone(str(origin.root), tmp_path / "bob")
    alice.add("t", make_table(1, start=500), mode="append")
    alice.commit("alice")
    push(alice, "origin")
    bob.add("t", make_table(1, start=600), mode="append")
    bob_tip = bob.commit("bob")
    with pytest.raises(NonFastForward, match="assay pull origin main"):
        push(bob, "origin")
    assert origin.head() == alice.head()  # nothing lost
    fetched, merged = pull(bob, "origin")
    assert fetched.branches["main"][1] == alice.head() and not merged.fast_forward
    push(bob, "origin")
    assert origin.head() == bob.head() and _rows(origin) == 202 and origin.fsck().ok
    bob.checkout(bob_tip, force=True)
    bob.create_branch("old", bob_tip)
    created = push(bob, "origin", "old")
    assert created.old is None and not created.forced  # a new branch there
    with pytest.raises(NonFastForward):
        push(alice, "origin")
    assert push(alice, "origin", force=True).forced and origin.head() == alice.head()


def test_fetch_moves_tracking_refs_and_brings_new_tags(origin: assay.Repo, tmp_path: Path) -> None:
    copy = clone(str(origin.root), tmp_path / "copy")
    origin.add("t", make_table(3, start=900), mode="append")
    origin.commit("upstream")
    origin.tag("v2")
    r = fetch(copy, "origin")
    assert r.branches == {"main": (copy.head(), origin.head())} and r.tags == {"v2": origin.head()}
    assert copy.resolve("origin/main") == origin.head() and copy.head() != origin.head()  # fetch merges nothing
    assert _rows(copy, "origin/main") == 203
    assert fetch(copy, "origin").received.objects == 0


def test_push_tags_and_a_tag_never_moves(origin: assay.Repo, tmp_path: Path) -> None:
    copy = clone(str(origin.root), tmp_path / "copy")
    copy.tag("release", "HEAD")
    assert push_tags(copy, "origin") == {"release": copy.head()}
    assert origin.tags()["release"] == copy.head()
    assert push_tags(copy, "origin") == {}


def test_corrupt_bytes_from_a_remote_are_refused_not_stored(origin: assay.Repo, tmp_path: Path) -> None:
    copy = assay.init(tmp_path / "copy")
    add_remote(copy, "origin", str(origin.root))
    manifest = origin.read_commit(origin.head()).datasets["t"]
    fragment = origin.read_manifest(manifest).fragments[0].oid
    real_get = origin.store.get

    class Lying:  # the remote's store answers one object with other bytes
        def __getattr__(self, name: str) -> object:
            return getattr(origin.store, name)

        def get(self, oid: str) -> bytes:
            data = real_get(oid)
            return data[:-1] + bytes([data[-1] ^ 1]) if oid == fragment else data

        def get_many_views(self, oids: list[str]) -> list[bytes]:  # the batch read a transfer makes
            return [self.get(o) for o in oids]

    from assay.remote import send

    with pytest.raises(CorruptObject, match="not stored"):
        send(Lying(), copy.store, [origin.head()])  # type: ignore[arg-type]
    assert not copy.store.has(fragment)
    assert copy.catalog.list_refs() == []  # no ref moved


def test_bad_remote_input_says_what_to_do(origin: assay.Repo, tmp_path: Path) -> None:
    copy = assay.init(tmp_path / "copy")
    with pytest.raises(RefNotFound, match="assay remote add nope URL"):
        fetch(copy, "nope")
    with pytest.raises(InputError, match="unsupported remote URL scheme 'ftp'"):
        add_remote(copy, "x", "ftp://host/repo")
    with pytest.raises(InputError, match="credentials do not go in a remote URL"):
        add_remote(copy, "x", "https://user:secret@host/repo")
    add_remote(copy, "empty", str(tmp_path / "nothing"))
    with pytest.raises(RefNotFound, match="no assay repository at"):
        fetch(copy, "empty")
    with pytest.raises(InputError, match="exists and is not empty"):
        clone(str(origin.root), origin.root)
    with pytest.raises(RefNotFound, match="has no branch 'nope'"):
        clone(str(origin.root), tmp_path / "c2", branch="nope")
    assert not (tmp_path / "c2").exists()  # nothing half-made is left


def test_missing_walks_children_before_parents(origin: assay.Repo, tmp_path: Path) -> None:
    origin.add("t", make_table(5, start=700), mode="append")
    tip = origin.commit("second")
    empty = assay.init(tmp_path / "empty")
    order, skipped = missing(origin.store, empty.store, [tip])
    assert skipped == 0 and order[-1] == tip
    position = {oid: i for i, oid in enumerate(order)}
    c = origin.read_commit(tip)
    assert position[c.parents[0]] < position[tip] and position[c.datasets["t"]] < position[tip]
    for f in origin.read_manifest(c.datasets["t"]).fragments:
        assert position[f.oid] < position[c.datasets["t"]]


CHILD = """
import sys, assay
from assay.remote import push
repo = assay.Repo(sys.argv[1])
push(repo, "origin")
"""


@pytest.mark.slow
def test_a_push_killed_midway_leaves_the_remote_whole_and_the_next_sends_the_rest(origin: assay.Repo,
                                                                                   tmp_path: Path) -> None:
    copy = clone(str(origin.root), tmp_path / "copy")
    for i in range(6):  # several commits of new fragments to push
        copy.add("t", make_table(3000, seed=i, start=10_000 * (i + 1)), mode="append")
        copy.commit(f"batch {i}")
    target = copy.head()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(assay.__file__).parents[1]), *sys.path])}
    for delay in (0.4, 0.8, 1.2):
        p = subprocess.Popen([sys.executable, "-c", CHILD, str(copy.root)], env=env)
        time.sleep(delay)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.wait()
        with assay.Repo(origin.root) as o:
            assert o.fsck().ok  # refs never point at missing objects
            assert o.head() in (origin.head(), target)
    result = push(copy, "origin")
    assert result.new == target or result.up_to_date
    with assay.Repo(origin.root) as o:
        assert o.head() == target and o.fsck().ok and o.dataset("t").to_arrow().num_rows == 200 + 6 * 3000


def test_remote_commands_at_the_cli(origin: assay.Repo, tmp_path: Path) -> None:
    def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "assay.cli", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=120)

    r = run(tmp_path, "clone", str(origin.root), "work")
    assert r.returncode == 0 and "on branch main" in r.stdout
    work = tmp_path / "work"
    listing = json.loads(run(work, "remote", "list", "--json").stdout)
    assert listing["origin"]["branches"]["main"] == origin.head()
    with assay.Repo(work) as w:
        w.add("t", pa.table({"id": [5000], "x": [0.5], "count": [1], "name": ["n"], "label": ["cat"]}),
              mode="append")
        w.commit("one more")
    r = run(work, "push")
    assert r.returncode == 0 and "pushed main to origin" in r.stdout
    assert "up to date" in run(work, "push").stdout
    bad = run(work, "push", "nope")
    assert bad.returncode == 1 and "no remote 'nope'" in bad.stderr


def test_a_copy_keeps_how_each_large_object_is_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fragment written whole stays whole on the remote (its columns read there by range, no re-chunking on
    the way), and a large file stored in chunks stays in chunks (a new version sends only the changed ones)."""
    from assay.store import local as local_mod

    monkeypatch.setattr(local_mod, "CHUNK_FROM", 256 << 10)
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "big.bin").write_bytes(os.urandom(3 << 20))
    r = assay.init(tmp_path / "origin")
    r.add("t", make_table(40_000), key="id")
    r.add("files", str(folder))
    r.commit("first")
    fragment = r.dataset("t").manifest.fragments[0].oid
    blob = r.dataset("files").to_arrow(["blob"]).column("blob")[0].as_py()
    assert r.store.stat(fragment).size > 256 << 10  # large: sent alone, as a fragment of real size is
    assert r.store.stored_as(fragment) == (False, False) and r.store.stored_as(blob)[0]
    copy = clone(str(r.root), tmp_path / "copy")
    bare = assay.init(tmp_path / "bare")
    add_remote(copy, "bare", str(bare.root))
    push(copy, "bare")
    for there in (copy, bare):
        assert there.store.stored_as(fragment) == (False, False), there
        assert there.store.stored_as(blob) == r.store.stored_as(blob), there
        assert there.store.children(blob) == r.store.children(blob)
    assert bare.fsck().ok and bare.dataset("t", "main").to_arrow().num_rows == 40_000


def test_a_push_reads_large_objects_a_window_at_a_time_and_stores_them_before_what_references_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fragments are read a window of bytes at a time (not a batch of 512 whole ones in memory) and written
    several at once; a manifest is stored only once every fragment it names is there."""
    from assay.remote import transfer

    monkeypatch.setattr(transfer, "WINDOW", 1 << 20)
    folder = tmp_path / "files"
    folder.mkdir()
    for i in range(24):  # 24 plain objects of 300 KiB, each larger than transfer.SMALL
        (folder / f"f{i}.bin").write_bytes(os.urandom(300 << 10))
    r = assay.init(tmp_path / "origin")
    r.add("files", str(folder))
    tip = r.commit("files")
    bare = assay.init(tmp_path / "bare")
    reads: list[int] = []
    order: list[str] = []
    get_many, put, put_many = type(r.store).get_many_views, type(bare.store).put, type(bare.store).put_many

    def counted(self: object, oids: list[str]) -> list[bytes | memoryview]:
        datas = get_many(self, oids)  # type: ignore[arg-type]
        reads.append(sum(len(d) for d in datas))
        return datas

    def noted(self: object, data: bytes, **kw: bool) -> str:
        oid = put(self, data, **kw)  # type: ignore[arg-type]
        order.append(oid)  # once stored
        return oid

    def noted_many(self: object, items: list[bytes]) -> list[str]:
        oids = put_many(self, items)  # type: ignore[arg-type]
        order.extend(oids)
        return oids

    monkeypatch.setattr(type(r.store), "get_many_views", counted)
    monkeypatch.setattr(type(bare.store), "put", noted)
    monkeypatch.setattr(type(bare.store), "put_many", noted_many)
    add_remote(r, "bare", str(bare.root))
    push(r, "bare")
    assert len(reads) > 2 and max(reads[1:]) <= (1 << 20) + (300 << 10)  # a window, not all 7 MB at once
    blobs = set(r.dataset("files").to_arrow(["blob"]).column("blob").to_pylist())
    manifest = r.read_commit(tip).datasets["files"]
    assert len(blobs) == 24 and blobs <= set(order)
    assert max(order.index(b) for b in blobs) < order.index(manifest) < order.index(tip)
    with assay.Repo(bare.root) as b:
        assert b.fsck().ok and b.head() == tip and b.dataset("files").to_arrow().num_rows == 24
