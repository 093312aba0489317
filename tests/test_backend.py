"""The packing store's rules over every raw backend, and the backend contract itself.

Every test takes ``case``: a backend (local folder, memory, S3 on moto's server in its own process), a store over
it, and ``tick()``, which lets the backend's clock move past the resolution of its creation times (S3: whole
seconds). Times are read
from the backend (``stat().created``), never from this machine's clock, so the tests hold on object storage.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from assay.errors import CorruptObject, ObjectNotFound
from assay.store import LocalObjectStore, hash_bytes
from assay.store.backend import Backend, Buffer, Entry, LocalBackend, MemoryBackend, check_key
from assay.store.packing import PackingStore, loose_key
from assay.store.s3 import S3Backend


class CountingBackend(Backend):
    """A backend that passes every call on and counts them, by operation and key prefix."""

    def __init__(self, inner: Backend):
        self.inner = inner
        self.location = inner.location
        self.calls: Counter[tuple[str, str]] = Counter()
        self.read_bytes = 0

    def _count(self, op: str, key: str) -> None:
        self.calls[op, key.split("/")[0]] += 1

    def put(self, key: str, data: Buffer | Sequence[Buffer], *, sync: bool = True) -> None:
        self._count("put", key)
        self.inner.put(key, data, sync=sync)

    def put_if_absent(self, key: str, data: Buffer) -> bool:
        self._count("put_if_absent", key)
        return self.inner.put_if_absent(key, data)

    def get(self, key: str) -> bytes:
        self._count("get", key)
        data = self.inner.get(key)
        self.read_bytes += len(data)
        return data

    def get_split(self, key: str, head: int) -> tuple[bytes, bytes]:
        self._count("get", key)
        a, b = self.inner.get_split(key, head)
        self.read_bytes += len(a) + len(b)
        return a, b

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        self._count("get_range", key)
        data = self.inner.get_range(key, offset, length)
        self.read_bytes += len(data)
        return data

    def stat(self, key: str) -> Entry | None:
        self._count("stat", key)
        return self.inner.stat(key)

    def exists(self, key: str) -> bool:
        self._count("stat", key)
        return self.inner.exists(key)

    def list(self, prefix: str) -> Iterator[str]:
        self._count("list", prefix)
        return self.inner.list(prefix)

    def scan(self, prefix: str) -> Iterator[Entry]:
        self._count("list", prefix)
        return self.inner.scan(prefix)

    def delete(self, key: str) -> bool:
        self._count("delete", key)
        return self.inner.delete(key)

    def sync(self, keys: Iterable[str]) -> None:
        self.inner.sync(keys)

    def clean(self, older_than: float) -> int:
        return self.inner.clean(older_than)


@dataclass
class Case:
    backend: CountingBackend
    tick: Callable[[], None]
    many: int = 1000  # calls in a row for the tests that count requests (fewer on a server: each is a request)

    def store(self, **kw: float) -> PackingStore:
        return PackingStore(self.backend, **kw)  # type: ignore[arg-type]

    def created(self, key: str) -> float:
        entry = self.backend.inner.stat(key)
        assert entry is not None, key
        return entry.created


def _local(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    return Case(CountingBackend(LocalBackend(tmp_path / "store")), lambda: time.sleep(0.02))


def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    now = [1_000_000.0]

    def tick() -> None:
        now[0] += 1.0

    return Case(CountingBackend(MemoryBackend(clock=lambda: now[0])), tick)


def _s3(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    """A fresh prefix in the session's bucket; parts of 5 MiB, so that the larger packs here are multipart."""
    request.getfixturevalue("s3_env")
    server, bucket = request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket")
    backend = S3Backend(bucket, f"t-{uuid.uuid4().hex[:12]}", endpoint_url=server.url, multipart_from=5 << 20,
                        part_size=5 << 20)
    return Case(CountingBackend(backend), lambda: time.sleep(1.1), many=100)  # LastModified: whole seconds


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Case]] = {"local": _local, "memory": _memory, "s3": _s3}


@pytest.fixture(params=sorted(BACKENDS))
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    return BACKENDS[request.param](request, tmp_path)


class SmallChunks(PackingStore):
    def chunk_from(self) -> int:
        return 1 << 20


# -- the backend contract --------------------------------------------------------------------------------


def test_backend_put_get_ranges_stat_list_delete(case: Case) -> None:
    b = case.backend
    b.put("a/x/1", b"hello world")
    b.put("a/x/2", [b"he", memoryview(b"llo"), bytearray(b"!")])  # parts, in order
    b.put("b/3", b"other")
    assert b.get("a/x/1") == b"hello world" and b.get("a/x/2") == b"hello!"
    assert b.get_split("a/x/1", 1) == (b"h", b"ello world")
    assert b.get_range("a/x/1", 6, 100) == b"world"  # short at the end
    assert b.get_ranges("a/x/1", [(0, 2), (4, 3)]) == [b"he", b"o w"]
    entry = b.stat("a/x/1")
    assert entry is not None and entry.size == 11 and entry.key == "a/x/1"
    assert b.stat("a/x/9") is None and not b.exists("a/x/9") and b.exists("b/3")
    assert sorted(b.list("a/")) == ["a/x/1", "a/x/2"] and sorted(b.list("a/x/1")) == ["a/x/1"]
    assert {e.key: e.size for e in b.scan("b/")} == {"b/3": 5}
    assert b.delete("b/3") and not b.delete("b/3")
    with pytest.raises(ObjectNotFound):
        b.get("b/3")
    with pytest.raises(ObjectNotFound):
        b.get_range("b/3", 0, 1)


def test_put_if_absent_publishes_once(case: Case) -> None:
    b = case.backend
    assert b.put_if_absent("locks/gc", b"first")
    assert not b.put_if_absent("locks/gc", b"second")
    assert b.get("locks/gc") == b"first"


@pytest.mark.parametrize("bad", ["../x", "a/../b", "/abs", ".tmp-1", "a//b", "a/", "", "a/.hidden", "a\\b"])
def test_keys_never_leave_the_backend(bad: str) -> None:
    with pytest.raises(ValueError, match="not a storage key"):
        check_key(bad)


# -- the packing store over every backend ----------------------------------------------------------------


def test_roundtrip_codecs_and_stat(case: Case) -> None:
    store = case.store()
    text, noise = b"hello world " * 1000, os.urandom(5000)
    a, b = store.put(text), store.put(noise)
    assert (a, b) == (hash_bytes(text), hash_bytes(noise))
    assert store.get(a) == text and store.get(b) == noise and store.has(a)
    sa, sb = store.stat(a), store.stat(b)
    assert sa.size == len(text) and sa.stored < len(text) // 10 and sa.location == "loose"
    assert sb.size == len(noise) and sb.stored == len(noise) + 1


def test_stat_reads_the_head_not_the_object(case: Case) -> None:
    store = case.store()
    data = b"compressible " * 200_000  # 2.6 MB, stored zstd
    big = SmallChunks(case.backend).put(os.urandom(3 << 20))  # chunked
    oid = store.put(data)
    store.stat(oid)  # loads the keep records once
    case.backend.read_bytes = 0
    assert store.stat(oid).size == len(data)
    assert case.backend.read_bytes <= 19  # codec byte and zstd frame header
    assert store.stat(big).size == 3 << 20


def test_small_objects_share_a_pack_and_are_found_by_another_store(case: Case) -> None:
    items = [f"object {i}".encode() * 20 for i in range(500)]
    oids = case.store().put_many(items)
    assert len([k for k in case.backend.inner.list("packs/") if k.endswith(".pack")]) == 1
    assert not list(case.backend.inner.list("objects/"))
    other = case.store()
    assert other.get(oids[499]) == items[499] and other.stat(oids[0]).location.startswith("pack:")
    assert set(other.iter_oids()) == set(oids)


def test_ranges_of_raw_packed_and_compressed_objects(case: Case) -> None:
    store = case.store()
    data = b"abcdefgh" * 5000
    spans = [(0, 3), (100, 50), (len(data) - 2, 10)]
    wanted = [data[o : o + n] for o, n in spans]
    assert store.get_ranges(store.put(data, compress=False), spans) == wanted
    assert store.get_ranges(store.put(data + b"!"), spans) == [(data + b"!")[o : o + n] for o, n in spans]
    small = [os.urandom(2000), os.urandom(2000)]
    packed = store.put_many(small)
    assert store.get_ranges(packed[0], [(1990, 50)]) == [small[0][1990:]]  # not into the next object


def test_put_file_chunks_a_large_file_and_reuses_chunks(case: Case, tmp_path: Path) -> None:
    store = SmallChunks(case.backend)
    data = bytearray(os.urandom(6 << 20))
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    oid = store.put_file(path)
    chunks = store.children(oid)
    assert len(chunks) >= 3 and store.get(oid) == bytes(data)
    data[3 << 20 : (3 << 20) + 10] = b"0123456789"
    path.write_bytes(data)
    again = store.put_file(path)
    assert len(set(store.children(again)) - set(chunks)) <= 2 and store.get(again) == bytes(data)


def test_has_misses_do_not_list_the_packs_each_time(case: Case) -> None:
    store = case.store(pack_list_ttl=3600.0)
    store.put_many([b"packed %d" % i for i in range(10)])
    case.backend.calls.clear()
    misses = [hash_bytes(b"absent %d" % i) for i in range(case.many)]
    assert not any(store.has(o) for o in misses)
    assert case.backend.calls["list", "packs"] <= 1
    assert store.missing(misses) == set(misses)
    assert case.backend.calls["list", "packs"] <= 2  # one more for the whole batch


def test_pack_of_another_store_is_read_at_once_and_seen_by_has_after_the_ttl(case: Case) -> None:
    reader = case.store(pack_list_ttl=0.05)
    assert not reader.has(hash_bytes(b"x"))
    oid = case.store().put_many([b"x"])[0]
    assert reader.get(oid) == b"x"  # a read that misses always looks for new packs
    other = case.store().put_many([b"y"])[0]
    time.sleep(0.06)
    assert reader.has(other)


def _limit_between(case: Case, key: str) -> float:
    """A time after ``key`` was written and before anything written after the next tick."""
    before = case.created(key)
    case.tick()
    case.backend.put("probe/t", b"")
    after = case.created("probe/t")
    assert after > before
    return (before + after) / 2


def test_grace_by_creation_time_and_repack(case: Case) -> None:
    store = case.store()
    keep, drop = store.put_many([b"keep" * 10, b"drop" * 10])
    loose = store.put(os.urandom(2000))
    idx = next(k for k in case.backend.inner.list("packs/") if k.endswith(".idx"))
    assert store.delete([drop, loose], older_than=case.created(idx)) == 0  # neither is older than that
    limit = _limit_between(case, loose_key(loose))
    assert store.delete([drop, loose], older_than=limit) == 2
    assert not store.has(drop) and not store.has(loose)
    assert store.get(keep) == b"keep" * 10 and case.store().get(keep) == b"keep" * 10
    assert store.stat(keep).location.startswith("pack:")


@pytest.mark.parametrize("how", ["put", "put_many", "freshen"])
def test_reused_objects_are_kept_without_touching_them(case: Case, how: str) -> None:
    store = case.store()
    oid = store.put(b"x" * 1000) if how == "put" else store.put_many([b"x" * 1000])[0]
    key = loose_key(oid) if how == "put" else next(k for k in case.backend.inner.list("packs/") if k.endswith(".idx"))
    limit = _limit_between(case, key)
    first = case.created(key)
    if how == "freshen":
        store.freshen([oid])
    else:
        getattr(store, how)(b"x" * 1000 if how == "put" else [b"x" * 1000])
    assert case.created(key) == first  # nothing touched: its creation time is as it was
    assert store.stat(oid).mtime > limit  # recorded as reused
    assert store.delete([oid], older_than=limit) == 0
    assert store.get(oid) == b"x" * 1000


def test_deletions_come_after_a_second_check(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    store = case.store()
    reused, rewritten, dead = (store.put(os.urandom(3000)) for _ in range(3))
    limit = _limit_between(case, loose_key(dead))
    writer, scan = case.store(), case.backend.scan

    def concurrent_writer(prefix: str) -> Iterator[Entry]:
        if prefix == "keep/":  # gc chose its candidates; now a writer reuses one and writes another anew
            writer.freshen([reused])
            case.backend.inner.put(loose_key(rewritten), case.backend.inner.get(loose_key(rewritten)))
        return scan(prefix)

    monkeypatch.setattr(case.backend, "scan", concurrent_writer)
    assert store.delete([reused, rewritten, dead], older_than=limit) == 1
    assert store.get(reused) and store.get(rewritten) and not store.has(dead)


def test_reused_chunks_of_a_large_object_are_kept(case: Case, tmp_path: Path) -> None:
    store = SmallChunks(case.backend)
    data = bytearray(os.urandom(4 << 20))
    first = store.put(bytes(data))
    chunks = store.children(first)
    idx = next(k for k in case.backend.inner.list("packs/") if k.endswith(".idx"))
    limit = _limit_between(case, idx)
    data[:10] = b"0123456789"
    second = store.put(bytes(data))  # most chunks reused
    assert store.delete([first, *chunks], older_than=limit) == 1 + 1  # the old chunk list and its first chunk
    assert store.get(second) == bytes(data)
    with pytest.raises(ObjectNotFound):
        store.get(first)


def test_gc_leftovers_index_less_packs_and_old_keep_records(case: Case) -> None:
    store = case.store()
    case.backend.put("packs/deadbeef.pack", b"pack without index")
    limit = _limit_between(case, "packs/deadbeef.pack")
    oid = store.put_many([b"indexed"])[0]
    store.freshen([oid])
    assert store.clean_tmp(older_than=limit) == 1  # the index-less pack; the indexed one stays
    assert not case.backend.exists("packs/deadbeef.pack") and store.get(oid) == b"indexed"
    assert list(case.backend.inner.list("keep/"))  # younger than the limit
    later = _limit_between(case, next(case.backend.inner.list("keep/")))
    assert store.clean_tmp(older_than=later) == 0
    assert not list(case.backend.inner.list("keep/")) and list(store.iter_oids()) == [oid]


def test_damage_is_detected_and_a_damaged_index_reported(case: Case) -> None:
    store = case.store()
    oid = store.put(os.urandom(1000))
    raw = bytearray(case.backend.get(loose_key(oid)))
    raw[500] ^= 0xFF
    case.backend.put(loose_key(oid), bytes(raw))
    with pytest.raises(CorruptObject, match="corrupt"):
        store.get(oid)
    packed = store.put_many([b"a" * 100])[0]
    idx = next(k for k in case.backend.inner.list("packs/") if k.endswith(".idx"))
    case.backend.put(idx, b"garbage")
    fresh = case.store()
    assert packed not in set(fresh.iter_oids()) and fresh.damaged_packs == {idx[len("packs/"):-len(".idx")]}
    with pytest.raises(ObjectNotFound, match="not in the store"):
        fresh.get(packed)


def test_repair_shadows_a_damaged_packed_copy(case: Case) -> None:
    store = case.store()
    data = os.urandom(3000)
    oid = store.put_many([data])[0]
    pack = next(k for k in case.backend.inner.list("packs/") if k.endswith(".pack"))
    raw = bytearray(case.backend.get(pack))
    raw[100] ^= 0x01
    case.backend.put(pack, bytes(raw))
    with pytest.raises(CorruptObject):
        case.store().get(oid)
    store.repair(data)
    assert case.store().get(oid) == data


# -- the local backend keeps today's layout ----------------------------------------------------------------


def test_local_store_is_the_packing_store_over_a_folder(tmp_path: Path) -> None:
    old = LocalObjectStore(tmp_path / "s")
    loose, packed = old.put(os.urandom(3000)), old.put_many([b"small"])[0]
    assert (tmp_path / "s" / "objects" / loose[:2] / loose[2:]).is_file()
    idx = next((tmp_path / "s" / "packs").glob("*.idx"))
    assert idx.read_bytes()[:10] == b"ASSAYIDX1\n" and len(idx.read_bytes()) == 10 + 48
    over = PackingStore(LocalBackend(tmp_path / "s"))
    assert over.get(packed) == b"small" and set(over.iter_oids()) == {loose, packed}
