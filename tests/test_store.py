"""The local object store: addressing, codecs, packs, chunking, verification, deletion."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assay.errors import CorruptObject, ObjectNotFound
from assay.store import LocalObjectStore, hash_bytes, hash_file
from assay.store import local as local_mod


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "s")


def test_put_get_roundtrip_and_address(store: LocalObjectStore) -> None:
    data = b"hello world" * 100
    oid = store.put(data)
    assert oid == hash_bytes(data)
    assert store.get(oid) == data
    assert store.has(oid)
    assert store.stat(oid).stored < len(data)  # compressible data is compressed


def test_incompressible_data_is_stored_raw(store: LocalObjectStore) -> None:
    data = os.urandom(50_000)
    oid = store.put(data)
    assert store.stat(oid).stored == len(data) + 1


def test_ranges_of_raw_compressed_and_packed_objects(store: LocalObjectStore) -> None:
    data = b"abcdefgh" * 5000
    spans = [(0, 3), (100, 50), (len(data) - 5, 5), (len(data) - 2, 10)]
    wanted = [data[o : o + n] for o, n in spans]
    raw = store.put(data, compress=False)
    assert store.stat(raw).stored == len(data) + 1 and store.get_ranges(raw, spans) == wanted
    small = os.urandom(2000)
    packed = store.put_many([small])[0]
    assert store.stat(packed).location.startswith("pack:") and store.get_ranges(packed, [(5, 10)]) == [small[5:15]]
    big = os.urandom(300_000)  # a packed entry read as its codec byte and its payload, two ranges
    packed_big = store.put_many([big])[0]
    assert store.stat(packed_big).location.startswith("pack:")
    assert store.get(packed_big) == big and LocalObjectStore(store.root).get(packed_big) == big
    with store.cache_scope():
        store.get(raw)
        assert store.get_ranges(raw, spans) == wanted
    other = LocalObjectStore(store.root / "other")
    compressed = other.put(data)
    assert other.stat(compressed).stored < len(data) and other.get_ranges(compressed, spans) == wanted
    with pytest.raises(ObjectNotFound):
        other.get_ranges("0" * 64, spans)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=30))
def test_put_many_roundtrip(tmp_path_factory: pytest.TempPathFactory, items: list[bytes]) -> None:
    store = LocalObjectStore(tmp_path_factory.mktemp("s"))
    oids = store.put_many(items)
    assert oids == [hash_bytes(b) for b in items]
    assert all(store.get(o) == b for o, b in zip(oids, items, strict=True))
    assert set(oids) <= set(store.iter_oids())


def test_small_objects_share_a_pack(store: LocalObjectStore) -> None:
    oids = store.put_many([f"object {i}".encode() * 20 for i in range(2000)])
    files = list((store.root / "objects").rglob("*"))
    assert not [f for f in files if f.is_file()]
    assert len(list((store.root / "packs").glob("*.pack"))) == 1
    assert store.stat(oids[0]).location.startswith("pack:")
    reopened = LocalObjectStore(store.root)
    assert reopened.get(oids[1999]) == b"object 1999" * 20


def test_put_files_packs_and_dedups(store: LocalObjectStore, tmp_path: Path) -> None:
    paths = []
    for i in range(50):
        p = tmp_path / f"f{i}"
        p.write_bytes(b"same" if i % 2 else os.urandom(100))
        paths.append(p)
    oids = store.put_files(paths)
    assert oids == [hash_file(p) for p in paths]
    assert len(set(oids)) == 26


def test_large_object_is_chunked_and_changes_store_only_changed_chunks(
        store: LocalObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytearray(os.urandom(24 << 20))
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    oid = store.put_file(path)
    chunks = store.children(oid)
    assert len(chunks) > 5
    before = store.stored_bytes()
    data[12 << 20 : (12 << 20) + 100] = os.urandom(100)
    path.write_bytes(data)
    oid2 = store.put_file(path)
    assert oid2 != oid
    assert store.get(oid2) == bytes(data)
    grown = store.stored_bytes() - before
    assert grown < 10 << 20  # a few chunks, not the whole 24 MiB
    assert len(set(store.children(oid2)) - set(chunks)) <= 3


def test_missing_object(store: LocalObjectStore) -> None:
    with pytest.raises(ObjectNotFound, match="not in the store"):
        store.get("0" * 64)
    with pytest.raises(KeyError):
        store.get("0" * 64)


def test_flipped_byte_is_detected(store: LocalObjectStore) -> None:
    oid = store.put(os.urandom(1000))
    path = store.root / "objects" / oid[:2] / oid[2:]
    raw = bytearray(path.read_bytes())
    raw[500] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptObject, match="corrupt"):
        store.get(oid)


def test_a_view_of_a_large_loose_object_is_its_mapped_file_and_verified(store: LocalObjectStore) -> None:
    """``get_view`` maps a large raw loose object (no copy), checks its hash like ``get``, and a view taken
    stays readable after the file is gone; small, compressed and damaged objects come as ``get`` gives them."""
    big = os.urandom(3 << 20)
    oid = store.put(big, chunk=False)
    view = store.get_view(oid)
    assert isinstance(view, memoryview) and view.readonly and bytes(view) == big
    with store.cache_scope():  # inside a scope it is read once and remembered, as get does
        first = store.get_view(oid)
        assert isinstance(first, bytes) and first == big and store.get_view(oid) is first
    os.remove(store.root / "objects" / oid[:2] / oid[2:])
    assert bytes(view[:100]) == big[:100]  # the mapping keeps the removed file's pages
    small, text = os.urandom(1000), b"compressible " * 200_000
    for data in (small, text):
        o = store.put(data, chunk=False)
        got = store.get_view(o)
        assert isinstance(got, bytes) and got == data
    oid = store.put(big[::-1], chunk=False)
    path = store.root / "objects" / oid[:2] / oid[2:]
    raw = bytearray(path.read_bytes())
    raw[2 << 20] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptObject, match="corrupt"):
        store.get_view(oid)


def test_delete_respects_grace_and_repacks(store: LocalObjectStore) -> None:
    keep, drop = store.put_many([b"keep" * 10, b"drop" * 10])
    loose = store.put(os.urandom(2000))
    assert store.delete([drop, loose], older_than=time.time() - 3600) == 0  # too young
    assert store.delete([drop, loose], older_than=time.time() + 1) == 2
    assert not store.has(drop) and not store.has(loose)
    assert store.get(keep) == b"keep" * 10


def test_freshen_protects_reused_objects(store: LocalObjectStore) -> None:
    oid = store.put(b"x" * 1000)
    path = store.root / "objects" / oid[:2] / oid[2:]
    os.utime(path, (1, 1))
    store.put(b"x" * 1000)  # stored again: the existing copy is marked recent
    assert store.delete([oid], older_than=time.time() - 60) == 0


def test_crash_leftovers_in_tmp_are_ignored_and_cleaned(store: LocalObjectStore) -> None:
    (store.root / "tmp" / ".tmp-dead").write_bytes(b"partial")
    (store.root / "packs" / "deadbeef.pack").write_bytes(b"pack without index")
    assert list(store.iter_oids()) == []
    assert store.clean_tmp(older_than=time.time() + 1) == 2  # the temporary file and the index-less pack
    assert not (store.root / "packs" / "deadbeef.pack").exists()


def test_chunk_threshold_is_respected(store: LocalObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_mod, "CHUNK_FROM", 1 << 20)
    oid = store.put(os.urandom(3 << 20))
    assert store.children(oid)
    assert not store.children(store.put(os.urandom(3 << 20), chunk=False))


def test_damaged_pack_index_is_reported_not_fatal(store: LocalObjectStore) -> None:
    oids = store.put_many([b"a" * 100, b"b" * 100])
    idx = next((store.root / "packs").glob("*.idx"))
    raw = bytearray(idx.read_bytes())
    raw[0] ^= 0x01
    idx.write_bytes(bytes(raw))
    fresh = LocalObjectStore(store.root)
    assert list(fresh.iter_oids()) == []
    assert fresh.damaged_packs == {idx.stem}
    with pytest.raises(ObjectNotFound):
        fresh.get(oids[0])


def test_threads_reading_a_freshly_opened_store_all_find_packed_objects(tmp_path: Path) -> None:
    """Many threads miss the (still empty) pack index at once: a thread whose refresh finds nothing new because
    another thread's refresh loaded the pack meanwhile must still find the object (it once raised not-found)."""
    from concurrent.futures import ThreadPoolExecutor

    writer = LocalObjectStore(tmp_path / "s")
    oids = [oid for batch in range(20) for oid in writer.put_many([os.urandom(200) + bytes([batch, i])
                                                                  for i in range(50)])]
    for _ in range(10):
        reader = LocalObjectStore(tmp_path / "s")  # fresh: no pack index loaded yet
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(reader.get, oids))
        assert [hash_bytes(g) for g in got] == oids
        fresh = LocalObjectStore(tmp_path / "s")
        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(fresh.has, oids))
