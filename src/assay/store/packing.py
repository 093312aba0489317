"""The object store over any raw backend: addressing, codecs, chunking, packs, verification, repair and gc.

Keys on the backend (the same names as the files of a local store)::

    objects/ab/cdef…        one loose object (codec byte + payload), named by its address
    packs/<name>.pack       many small objects back to back
    packs/<name>.idx        sorted index of a pack: address, offset, length; written after the pack
    keep/<ms>-<random>      addresses that a writer found stored and reused (see ``freshen``)

A pack counts only once its index exists, and the index is written after the pack is durable, so a crash at
any point leaves either no trace or a whole pack. Every read is verified against its address. Nothing is
ever renamed or touched: the rules for packs and gc (docs/storage.md, "Packs and gc on object storage")
use only creation times, as a LIST reports them.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import zstandard

from assay.errors import CorruptObject, ObjectNotFound, OutOfSpace
from assay.store import codec
from assay.store.backend import Backend
from assay.store.base import ObjectStore, StoredObject
from assay.store.hashing import hash_bytes, hash_file

CHUNK_FROM = 8 << 20  # objects larger than this are split into content-defined chunks
CHUNK_AVG, CHUNK_MIN, CHUNK_MAX = 1 << 20, 256 << 10, 4 << 20
PACK_OBJECT_MAX = 1 << 20  # objects up to this size go into packs when stored with put_many / put_files
PACK_TARGET = 64 << 20
PACK_LIST_TTL = 1.0  # seconds: a miss of has() lists the pack indexes again only when the last list is older
_GROUP = 64  # files read per task in put_files
_IDX_MAGIC = b"ASSAYIDX1\n"
_KEEP_MAGIC = b"ASSAYKEEP1\n"
_CODEC_BYTE = [bytes([k]) for k in range(256)]
_IDX_ENTRY = 48  # bytes per pack index entry: oid (32), offset and length (8 each)

if TYPE_CHECKING:
    import numpy as np


@cache
def _idx_dtype() -> Any:
    """The pack index entry as a NumPy dtype; NumPy is imported only when a pack is written or read."""
    import numpy as np

    return np.dtype([("oid", "V32"), ("off", "<u8"), ("len", "<u8")])
_HEAD = 1 + 18  # codec byte + the longest zstd frame header (which holds the content size)
Encoded = tuple[str, int, bytes | memoryview]  # oid, codec, payload


_SPAN = 16 << 20  # get_many reads at most this many bytes of a pack in one request
_GAP = 1 << 20  # ... and over gaps (objects it was not asked for) of at most this


def loose_key(oid: str) -> str:
    return f"objects/{oid[:2]}/{oid[2:]}"


class PackingStore(ObjectStore):
    """Content-addressed objects over a raw ``Backend``."""

    def __init__(self, backend: Backend, *, threads: int | None = None, pack_list_ttl: float = PACK_LIST_TTL):
        self.backend = backend
        self.threads = threads or min(4, os.cpu_count() or 1)
        self.pack_list_ttl = pack_list_ttl
        self._packs: dict[str, tuple[str, int, int]] = {}
        self._pack_created: dict[str, float] = {}  # loaded pack -> when its index was written
        self._pending_packs: set[str] = set()  # written by this process, index not yet published
        self._listed_at = float("-inf")  # monotonic time of the last list of pack indexes
        self.damaged_packs: set[str] = set()  # packs whose index cannot be read
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._cache: dict[str, bytes] | None = None
        self._cache_budget = 0
        self._kept: dict[str, float] | None = None  # oid -> newest keep record naming it (loaded for stat)
        self._kept_at = float("-inf")

    def chunk_from(self) -> int:
        """Objects larger than this are chunked (a method, so that a store can be given another threshold)."""
        return CHUNK_FROM

    # -- writing -------------------------------------------------------------------------------------

    def put(self, data: bytes | memoryview, *, chunk: bool = True, compress: bool = True) -> str:
        oid = hash_bytes(data)
        if self.has(oid) and self._whole(oid, len(data)):
            self.freshen([oid])
        else:  # absent, or stored damaged (a short file, a lost chunk): the good bytes replace it
            self._write(oid, data, chunk=chunk, compress=compress)
        return oid

    def repair(self, data: bytes) -> str:
        """Store ``data`` as a loose object whatever is stored under its address now (damaged or not).

        A loose object is read before a packed copy, so this also shadows a damaged entry in a pack.
        """
        oid = hash_bytes(data)
        self._write(oid, data, chunk=True, compress=True, heal_chunks=True)
        return oid

    def _write(self, oid: str, data: bytes | memoryview, *, chunk: bool, compress: bool,
               heal_chunks: bool = False) -> None:
        if chunk and len(data) > self.chunk_from():
            self._write_loose(oid, codec.CHUNKS, self._store_chunks(memoryview(data), heal=heal_chunks))
        else:
            self._write_loose(oid, *(codec.encode(data) if compress else (codec.RAW, data)))

    def _whole(self, oid: str, size: int) -> bool:
        """Whether the stored ``oid`` can be trusted to be whole: a loose object of the right length with its
        chunks present (packed objects are published only after their pack is durable, and checked on read).

        Costs a stat for raw objects, a decompression for compressed ones (at most CHUNK_FROM bytes) and a
        look-up per chunk for chunked ones; the full hash check is left to reads and fsck.
        """
        key = loose_key(oid)
        entry = self.backend.stat(key)
        if entry is None:
            return True  # packed
        try:
            if entry.size == 1 + size and self.backend.get_range(key, 0, 1) == _CODEC_BYTE[codec.RAW]:
                return True
            kind, payload = self._read_stored(oid)
            if kind == codec.CHUNKS:
                chunks = codec.decode_chunk_list(payload)
                return sum(n for _, n in chunks) == size and not self.missing(c for c, _ in chunks)
            return kind != codec.RAW and len(codec.decode(kind, payload, oid)) == size
        except (CorruptObject, ObjectNotFound, OSError):
            return False

    def put_many(self, items: Iterable[bytes]) -> list[str]:
        self._refresh_packs()
        batch = items if isinstance(items, list) else list(items)
        present: set[str] | None = None
        if getattr(self.backend, "list_page", 0) and len(batch) >= 32:  # object storage: one listing, not a look each
            oids = [hash_bytes(d) for d in batch]
            present = set(oids) - self.missing(oids)
        oids = []
        with ThreadPoolExecutor(self.threads) as pool, _PackWriter(self) as packer:
            for data, encoded in pool.map(lambda d: (d, self._prepare(d, present)), batch):
                if encoded is None:
                    oids.append(self.put(data))
                else:
                    oids.append(encoded[0])
                    packer.add(encoded)
        return oids

    def put_file(self, path: str | os.PathLike[str]) -> str:
        """Store a file; a large one is hashed and chunked from a memory map, never read whole into memory."""
        path = Path(path)
        size = path.stat().st_size
        if size <= self.chunk_from():
            return self.put(path.read_bytes())
        oid = hash_file(path)
        if self.has(oid) and self._whole(oid, size):
            self.freshen([oid])
            return oid
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                chunk_list = self._store_chunks(memoryview(mm))
            finally:
                with contextlib.suppress(BufferError):  # views held by a failure's traceback: freed with it
                    mm.close()
        self._write_loose(oid, codec.CHUNKS, chunk_list)
        return oid

    def put_files(self, paths: Sequence[str | os.PathLike[str]],
                  callback: Callable[[int], None] | None = None) -> list[str]:
        """Read, hash and encode files in worker threads, in groups; pack the small ones in this thread."""
        self._refresh_packs()
        oids: list[str] = []
        groups = [paths[i : i + _GROUP] for i in range(0, len(paths), _GROUP)]
        window: deque[tuple[Sequence[str | os.PathLike[str]], Future[list[Encoded | None]]]] = deque()
        # One reader thread: on the machines measured, concurrent small reads were slower than one reader
        # (kernel contention), while reading overlaps well with writing packs in this thread.
        with ThreadPoolExecutor(1) as pool, _PackWriter(self) as packer:
            pending = iter(groups)
            while True:
                while len(window) < 8:
                    group = next(pending, None)
                    if group is None:
                        break
                    window.append((group, pool.submit(self._prepare_files, group)))
                if not window:
                    break
                group, future = window.popleft()
                for path, encoded in zip(group, future.result(), strict=True):
                    if encoded is None:  # large file: chunked, in this thread
                        oids.append(self.put_file(path))
                    else:
                        oids.append(encoded[0])
                        packer.add(encoded)
                if callback:
                    callback(len(group))
        return oids

    def _prepare_files(self, paths: Sequence[str | os.PathLike[str]]) -> list[Encoded | None]:
        """Read, hash and encode small files (worker thread); None for each large file."""
        out: list[Encoded | None] = []
        for path in paths:
            with open(path, "rb", buffering=0) as f:
                # sized by fstat: reading into an oversized buffer and shrinking it costs more than the read
                out.append(None if os.fstat(f.fileno()).st_size > PACK_OBJECT_MAX else self._prepare(f.read()))
        return out

    def _prepare(self, data: bytes, present: set[str] | None = None) -> Encoded | None:
        """Hash and encode a small object (worker thread); codec -1 when already stored; None when large.
        ``present``: the objects of the batch known to be stored (else each is looked up)."""
        if len(data) > PACK_OBJECT_MAX:
            return None
        oid = hash_bytes(data)
        if oid in present if present is not None else self._has_known(oid):
            if not self._whole(oid, len(data)):
                return None  # stored damaged: written again by put, which replaces it
            return oid, -1, b""
        return (oid, *codec.encode(data))

    def _store_chunks(self, view: memoryview, *, heal: bool = False) -> bytes:
        """Split a large object into content-defined chunks, store them in packs; the chunk list payload.

        With ``heal`` every chunk is written again (repair of a damaged object)."""
        import fastcdc  # its package imports click (12 ms): loaded when a large object is first chunked

        chunks: list[tuple[str, int]] = []
        with _PackWriter(self) as packer:
            for c in fastcdc.fastcdc(view, min_size=CHUNK_MIN, avg_size=CHUNK_AVG, max_size=CHUNK_MAX):
                part = view[c.offset : c.offset + c.length]
                coid = hash_bytes(part)
                if not self._has_known(coid):
                    packer.add((coid, *codec.encode(part)))
                elif heal or not self._whole(coid, len(part)):  # a loose copy is read before a packed one
                    self._write_loose(coid, *codec.encode(part))
                else:
                    packer.add((coid, -1, b""))  # reused: recorded as kept when the batch is done
                chunks.append((coid, c.length))
        return codec.encode_chunk_list(chunks)

    def _write_loose(self, oid: str, kind: int, payload: bytes | memoryview) -> None:
        self.backend.put(loose_key(oid), [_CODEC_BYTE[kind], payload])

    def _write_pack(self, entries: list[Encoded]) -> tuple[str, bytes]:
        """Write a pack (durability deferred to ``_publish_packs``) and index it in memory; returns its index.

        The pack becomes visible to other processes when ``_publish_packs`` writes its index.
        """
        entries.sort(key=lambda e: e[0])
        import numpy as np

        index = np.zeros(len(entries), dtype=_idx_dtype())
        index["oid"] = np.frombuffer(b"".join(bytes.fromhex(e[0]) for e in entries), "V32")
        lengths = np.array([1 + len(e[2]) for e in entries], np.uint64)
        index["len"] = lengths
        index["off"] = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.uint64)
        idx_bytes = _IDX_MAGIC + index.tobytes()
        name = hash_bytes(idx_bytes)[:40]
        self.backend.put(f"packs/{name}.pack", [b for _, kind, payload in entries
                                                for b in (_CODEC_BYTE[kind], payload)], sync=False)
        with self._lock:
            self._pending_packs.add(name)
        self._add_index(name, index, time.time())
        return name, idx_bytes

    def _publish_packs(self, written: list[tuple[str, bytes]]) -> None:
        """Make written packs visible: make them durable, then write their indexes and make those durable.

        One barrier per batch, not one per pack; a crash before the indexes are written leaves packs without
        index, which are ignored and removed by gc.
        """
        if not written:
            return
        self.backend.sync(f"packs/{name}.pack" for name, _ in written)
        for name, idx_bytes in written:
            self.backend.put(f"packs/{name}.idx", idx_bytes, sync=False)
        self.backend.sync(f"packs/{name}.idx" for name, _ in written)
        with self._lock:
            self._pending_packs.difference_update(name for name, _ in written)

    def _discard_packs(self, names: list[str]) -> None:
        """Forget and remove packs written by this process whose index was never published (a failed batch):
        their objects must not count as stored."""
        for name in names:
            self._forget_pack(name)
            with self._lock:
                self._pending_packs.discard(name)
            if not self.backend.exists(f"packs/{name}.idx"):
                self.backend.delete(f"packs/{name}.pack")

    def freshen(self, oids: Iterable[str]) -> None:
        """Record that ``oids``, found stored, are used again: one keep record, which gc reads before deleting.

        Nothing is touched: on object storage a key's time changes only when it is written."""
        wanted = sorted(set(oids))
        if not wanted:
            return
        key = f"keep/{int(time.time() * 1000):013d}-{os.urandom(8).hex()}"
        self.backend.put(key, _KEEP_MAGIC + b"".join(bytes.fromhex(o) for o in wanted))

    # -- reading -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def cache_scope(self, budget: int = 512 << 20) -> Iterator[None]:
        """Keep verified objects in memory (up to ``budget`` bytes) until the block ends."""
        if self._cache is not None:  # nested: the outer scope owns the cache
            yield
            return
        self._cache, self._cache_budget = {}, budget
        try:
            yield
        finally:
            self._cache = None

    def get(self, oid: str) -> bytes:
        cache = self._cache
        if cache is not None and oid in cache:
            return cache[oid]
        data = self._get(oid)
        if cache is not None and len(data) <= self._cache_budget:
            cache[oid] = data
            self._cache_budget -= len(data)
        return data

    def get_view(self, oid: str) -> bytes | memoryview:
        """A large object stored loose and uncompressed (an id index, a fragment) is verified and returned as a
        view of its mapped file; anything else, or a loose copy that fails its check, as ``get`` reads it, and
        so is everything inside a ``cache_scope`` (a diff or merge reads the same id index more than once)."""
        if self._cache is not None or oid in self._packs:
            return self.get(oid)
        try:
            head, payload = self.backend.get_mapped(loose_key(oid), 1)
        except ObjectNotFound:
            return self.get(oid)
        if head != _CODEC_BYTE[codec.RAW] or hash_bytes(payload) != oid:  # compressed, chunked or damaged
            return self.get(oid)
        return payload if isinstance(payload, memoryview) else bytes(payload)

    def _get(self, oid: str) -> bytes:
        try:
            return self._decoded(oid, loose_first=False)
        except CorruptObject:
            if oid not in self._packs:
                raise
            # the pack's copy was read first (no look for a loose one): a loose copy written by repair shadows
            # a damaged packed entry, so it is read before giving up
            return self._decoded(oid, loose_first=True)

    def _decoded(self, oid: str, *, loose_first: bool) -> bytes:
        kind, payload = self._read_stored(oid, loose_first=loose_first)
        if kind == codec.CHUNKS:
            chunks = codec.decode_chunk_list(payload)
            parts = [self.get(c) for c, _ in chunks]
            if [len(p) for p in parts] != [n for _, n in chunks]:  # the sizes are part of the object too
                raise CorruptObject(f"object {oid} is corrupt: its chunk sizes do not match its chunks. "
                                    "Run `assay fsck` to list every damaged object.")
            data = b"".join(parts)
        else:
            data = codec.decode(kind, payload, oid)
        if hash_bytes(data) != oid:
            raise CorruptObject(
                f"object {oid} is corrupt: its bytes no longer match their hash. "
                "Run `assay fsck` to list every damaged object; restore it from a copy of the repository."
            )
        return data

    def get_many(self, oids: Sequence[str]) -> list[bytes]:
        """Each of ``oids``, verified, in order: objects that lie near each other in one indexed pack are read
        in one ranged request (at most ``_SPAN`` bytes; on object storage, one request instead of one each);
        the others, chunked ones, and any whose pack moved meanwhile, as ``get`` reads them."""
        return cast(list[bytes], self._get_many(oids, self.get))  # ``get`` gives bytes only

    def get_many_views(self, oids: Sequence[str]) -> list[bytes | memoryview]:
        """``get_many``, with the objects outside packs read by ``get_view`` (a large raw one: a view of its
        mapped file, neither copied into fresh memory nor faulted in page by page)."""
        return self._get_many(oids, self.get_view)

    def _get_many(self, oids: Sequence[str], one: Callable[[str], bytes | memoryview]) -> list[bytes | memoryview]:
        found: dict[int, bytes | memoryview] = {}
        spans: list[tuple[str, list[tuple[int, int, int]]]] = []  # (pack, [(index in oids, offset, length)])
        for i, oid in sorted(((i, o) for i, o in enumerate(oids) if o in self._packs),
                             key=lambda io: self._packs[io[1]][:2]):
            name, off, length = self._packs[oid]
            last = spans[-1] if spans else None
            if last is None or last[0] != name or off - (last[1][-1][1] + last[1][-1][2]) > _GAP \
                    or off + length - last[1][0][1] > _SPAN:
                spans.append((name, []))
            spans[-1][1].append((i, off, length))
        with ThreadPoolExecutor(self.threads) as pool:
            for part in pool.map(lambda span: self._read_span(oids, *span), spans):
                found.update(part)
            rest = [i for i in range(len(oids)) if i not in found]
            found.update(zip(rest, pool.map(lambda i: one(oids[i]), rest), strict=True))
        return [found[i] for i in range(len(oids))]

    def _read_span(self, oids: Sequence[str], name: str, entries: list[tuple[int, int, int]]) -> dict[int, bytes]:
        """The objects at ``entries`` (index in ``oids``, offset, length) of pack ``name``, read in one request;
        none when the pack is gone (rewritten by gc: they are read one by one), chunked ones left out."""
        start = entries[0][1]
        try:
            body = self.backend.get_range(f"packs/{name}.pack", start, entries[-1][1] + entries[-1][2] - start)
        except ObjectNotFound:
            return {}
        found: dict[int, bytes] = {}
        for i, off, length in entries:
            stored = body[off - start : off - start + length]
            if len(stored) == length and stored[:1] != _CODEC_BYTE[codec.CHUNKS]:
                with contextlib.suppress(CorruptObject):  # damaged here: `get` reads it (a repaired loose copy)
                    found[i] = self._verified(oids[i], codec.decode(stored[0], stored[1:], oids[i]))
        return found

    def _verified(self, oid: str, data: bytes) -> bytes:
        if hash_bytes(data) != oid:
            raise CorruptObject(
                f"object {oid} is corrupt: its bytes no longer match their hash. "
                "Run `assay fsck` to list every damaged object; restore it from a copy of the repository."
            )
        return data

    def get_ranges(self, oid: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        cache = self._cache
        if cache is not None and oid in cache:
            return [cache[oid][o : o + n] for o, n in ranges]
        try:
            key, start, length = self._locate(oid)
            if length is not None:  # packed: never past the object's end, into the next one
                ranges = [(o, max(0, min(n, length - 1 - o))) for o, n in ranges]
            head, *parts = self.backend.get_ranges(key, [(start, 1), *((start + 1 + o, n) for o, n in ranges)])
            if head == _CODEC_BYTE[codec.RAW]:
                return parts
        except ObjectNotFound:
            pass
        return super().get_ranges(oid, ranges)  # compressed, chunked or missing: read whole

    def _locate(self, oid: str) -> tuple[str, int, int | None]:
        """Key, offset and stored length (None: to the end) of the stored form of ``oid``."""
        key = loose_key(oid)
        if self.backend.exists(key):
            return key, 0, None
        entry = self._pack_entry(oid)
        if entry is None:
            raise self._not_found(oid)
        return f"packs/{entry[0]}.pack", entry[1], entry[2]

    def stored_as(self, oid: str) -> tuple[bool, bool]:
        key, start, _ = self._locate(oid)
        head = self.backend.get_range(key, start, 1)  # the codec byte
        return head == _CODEC_BYTE[codec.CHUNKS], head != _CODEC_BYTE[codec.RAW]

    def has(self, oid: str) -> bool:
        if self._has_known(oid):
            return True
        # A miss lists the pack indexes again only if the last list is older than pack_list_ttl: a has() that
        # misses a pack published by another process this very second costs a duplicate write, never a loss.
        self._refresh_packs(stale_after=self.pack_list_ttl)
        return oid in self._packs  # also when another thread's refresh loaded it meanwhile

    def missing(self, oids: Iterable[str]) -> set[str]:
        self._refresh_packs()  # one list for the whole batch
        unpacked = set(oids) - self._packs.keys()
        return unpacked - self._loose_among(unpacked)

    def _loose_among(self, oids: set[str]) -> set[str]:
        """Which of ``oids`` are stored loose: from one listing of ``objects/`` when that is likely to take fewer
        requests than a look at each (on a backend whose ``list_page`` says how many keys a listing request
        returns: object storage); the listing is abandoned for the looks once it has read more keys than that
        would pay for; fewer, it looks at each, several at once. A folder's backend looks at each (a stat is cheaper
        than a walk)."""
        page = int(getattr(self.backend, "list_page", 0))
        if page and len(oids) >= 32:
            limit = len(oids) // 2 * page
            found: set[str] = set()
            for i, key in enumerate(self.backend.list("objects/")):
                if i >= limit:
                    break
                found.add(key[len("objects/"):].replace("/", "", 1))
            else:
                return oids & found
        if page and len(oids) > 1:  # object storage: the looks in flight together, not one round trip after another
            wanted = sorted(oids)
            with ThreadPoolExecutor(min(8, len(wanted))) as pool:
                hits = list(pool.map(lambda o: self.backend.exists(loose_key(o)), wanted))
            return {o for o, hit in zip(wanted, hits, strict=True) if hit}
        return {o for o in oids if self.backend.exists(loose_key(o))}

    def _has_known(self, oid: str) -> bool:
        """Whether ``oid`` is loose or in a pack already indexed (no look for new packs)."""
        return oid in self._packs or self.backend.exists(loose_key(oid))

    def stat(self, oid: str) -> StoredObject:
        """Where ``oid`` is, its stored and logical sizes: read from the head of its stored form (the codec byte
        and the zstd frame header, which records the content size), not by decompressing it."""
        key = loose_key(oid)
        entry = self.backend.stat(key)
        if entry is not None:
            return StoredObject(oid, self._logical_size(oid, key, 0, entry.size), entry.size,
                                self._recent(oid, entry.created), "loose")
        packed = self._pack_entry(oid)
        if packed is None:
            raise self._not_found(oid)
        name, off, length = packed
        size = self._logical_size(oid, f"packs/{name}.pack", off, length)
        return StoredObject(oid, size, length, self._recent(oid, self._pack_created.get(name, 0.0)), f"pack:{name}")

    def _logical_size(self, oid: str, key: str, off: int, length: int) -> int:
        try:
            head = self.backend.get_range(key, off, min(length, _HEAD))
        except ObjectNotFound as e:
            raise self._not_found(oid) from e
        if head[:1] == _CODEC_BYTE[codec.RAW]:
            return length - 1
        if head[:1] == _CODEC_BYTE[codec.ZSTD]:
            with contextlib.suppress(zstandard.ZstdError):
                size = zstandard.frame_content_size(head[1:])
                if size >= 0:
                    return int(size)
        kind, payload = self._read_stored(oid)  # chunk lists (small), frames without a size, damage
        if kind == codec.CHUNKS:
            return sum(n for _, n in codec.decode_chunk_list(payload))
        return len(codec.decode(kind, payload, oid))

    def _recent(self, oid: str, created: float) -> float:
        """When ``oid`` was last written or recorded as reused (the keep records are read once, for gc)."""
        if self._kept is None or time.monotonic() - self._kept_at > self.pack_list_ttl:
            self._kept = self._read_keep_records(float("-inf"))
            self._kept_at = time.monotonic()
        return max(created, self._kept.get(oid, created))

    def iter_oids(self) -> Iterator[str]:
        for key in self.backend.list("objects/"):
            shard, _, rest = key[len("objects/"):].partition("/")
            if len(shard) == 2 and rest and "/" not in rest:
                yield shard + rest
        self._refresh_packs()
        yield from list(self._packs)

    def children(self, oid: str) -> list[str]:
        kind, payload = self._read_stored(oid)
        if kind == codec.CHUNKS:
            return [c for c, _ in codec.decode_chunk_list(payload)]
        return []

    def stored_bytes(self) -> int:
        return sum(e.size for prefix in ("objects/", "packs/") for e in self.backend.scan(prefix))

    def _read_stored(self, oid: str, *, loose_first: bool = False) -> tuple[int, bytes]:
        """The codec byte and the payload of a stored object, read without copying the payload."""
        known = None if loose_first else self._packs.get(oid)
        if known is not None:  # in a pack already indexed: one ranged read, no look for a loose copy first
            name, off, length = known
            with contextlib.suppress(ObjectNotFound):  # rewritten by gc meanwhile: the usual path below
                head, payload = self._packed(name, off, length)
                if len(head) + len(payload) == length:
                    return _split(head, payload, oid)
        try:
            return _split(*self.backend.get_split(loose_key(oid), 1), oid)
        except ObjectNotFound:
            pass
        for _ in range(2):  # a pack may be rewritten by gc between lookup and read
            entry = self._pack_entry(oid)
            if entry is None:
                break
            name, off, length = entry
            try:
                head, payload = self._packed(name, off, length)
            except ObjectNotFound:
                self._forget_pack(name)
                continue
            if len(head) + len(payload) != length:
                raise CorruptObject(f"pack {name} is truncated at object {oid}; run `assay fsck`")
            return _split(head, payload, oid)
        raise self._not_found(oid)

    def _packed(self, name: str, off: int, length: int) -> tuple[bytes, bytes]:
        """The codec byte and the payload of a packed entry, read as two ranges: slicing the payload off one
        read would copy it (30 ms for a 30 MB fragment here)."""
        if length < 1 << 16:
            stored = self.backend.get_range(f"packs/{name}.pack", off, length)
            return stored[:1], stored[1:]
        head, payload = self.backend.get_ranges(f"packs/{name}.pack", [(off, 1), (off + 1, length - 1)])
        return head, payload

    def _not_found(self, oid: str) -> ObjectNotFound:
        return ObjectNotFound(
            f"object {oid} is not in the store at {self.backend.location}. It may have been removed by gc or "
            "never written; run `assay fsck` to check the repository."
        )

    # -- pack index ----------------------------------------------------------------------------------

    def _pack_entry(self, oid: str) -> tuple[str, int, int] | None:
        entry = self._packs.get(oid)
        if entry is None:
            # look again after the refresh even when it found no new pack: another thread's refresh may have
            # loaded the one holding ``oid`` between the miss above and this refresh's listing
            self._refresh_packs()
            entry = self._packs.get(oid)
        return entry

    def _refresh_packs(self, stale_after: float = 0.0) -> bool:
        """List the pack indexes (one LIST) and load those written since the last look; True when any was new.

        With ``stale_after`` nothing is listed if the last list is more recent than that many seconds."""
        with self._refresh_lock:  # one refresh at a time: a thread that misses waits for the load under way
            return self._refresh_packs_locked(stale_after)

    def _refresh_packs_locked(self, stale_after: float) -> bool:
        now = time.monotonic()
        if stale_after and now - self._listed_at < stale_after:
            return False
        self._listed_at = now
        listed = {e.key[len("packs/"):-len(".idx")]: e.created
                  for e in self.backend.scan("packs/") if e.key.endswith(".idx")}
        with self._lock:  # packs are also indexed by the thread writing them
            known, pending = set(self._pack_created), set(self._pending_packs)
        new = listed.keys() - known - self.damaged_packs
        for gone in known - listed.keys() - pending:
            self._forget_pack(gone)
        for name in new:
            try:
                raw = self.backend.get(f"packs/{name}.idx")
            except ObjectNotFound:
                continue
            body = raw[len(_IDX_MAGIC):]
            if not raw.startswith(_IDX_MAGIC) or len(body) % _IDX_ENTRY:
                self.damaged_packs.add(name)  # its objects read as missing; fsck reports the index
                continue
            import numpy as np

            self._add_index(name, np.frombuffer(body, dtype=_idx_dtype()), listed[name])
        with self._lock:  # own packs: from now on, the time their index was published
            for name in listed.keys() & known:
                if name in self._pack_created:
                    self._pack_created[name] = listed[name]
        return bool(new)

    def _add_index(self, name: str, index: np.ndarray, created: float) -> None:
        oids = index["oid"].tobytes().hex()
        offs, lens = index["off"].tolist(), index["len"].tolist()
        with self._lock:
            for i in range(len(index)):
                self._packs[oids[64 * i : 64 * i + 64]] = (name, offs[i], lens[i])
            self._pack_created[name] = created

    def _forget_pack(self, name: str) -> None:
        with self._lock:
            self._packs = {k: v for k, v in self._packs.items() if v[0] != name}
            self._pack_created.pop(name, None)

    # -- removal -------------------------------------------------------------------------------------

    def delete(self, oids: Iterable[str], *, older_than: float) -> int:
        """Remove those of ``oids`` written before ``older_than`` and not recorded as reused since.

        The candidates are chosen by creation time first; then the keep records are read (a LIST made after
        the caller's mark phase, so it sees every reuse recorded until now) and each loose candidate's
        creation time is read again just before it is deleted (a writer that found it missing wrote it anew).
        """
        loose: list[str] = []
        by_pack: dict[str, set[str]] = {}
        self._refresh_packs()
        for oid in oids:
            entry = self.backend.stat(loose_key(oid))
            if entry is not None:
                if entry.created < older_than:
                    loose.append(oid)
                continue
            packed = self._packs.get(oid)
            if packed is not None and self._pack_created.get(packed[0], older_than) < older_than:
                by_pack.setdefault(packed[0], set()).add(oid)
        kept = self._read_keep_records(older_than)  # the second check
        removed = 0
        for oid in loose:
            entry = self.backend.stat(loose_key(oid))
            if oid not in kept and entry is not None and entry.created < older_than:
                removed += self.backend.delete(loose_key(oid))
        for name, dead in by_pack.items():
            try:
                removed += self._repack_without(name, dead - kept.keys())
            except OutOfSpace:  # no room to rewrite what this pack keeps: leave it whole for a later gc
                continue
        return removed

    def _repack_without(self, name: str, dead: set[str]) -> int:
        """Write the objects of pack ``name`` but ``dead`` into a new pack, then delete the old one."""
        if not dead:
            return 0
        keep = [oid for oid, e in list(self._packs.items()) if e[0] == name and oid not in dead]
        if keep:
            self._publish_packs([self._write_pack([(oid, *self._read_stored(oid)) for oid in keep])])
        self.backend.delete(f"packs/{name}.idx")  # the index goes first: a pack without index is ignored
        self.backend.delete(f"packs/{name}.pack")
        self._forget_pack(name)
        return len(dead)

    def _read_keep_records(self, since: float) -> dict[str, float]:
        """Every address named by a keep record written at ``since`` or later, with the newest such time."""
        kept: dict[str, float] = {}
        for entry in sorted(self.backend.scan("keep/"), key=lambda e: e.created):
            if entry.created < since:
                continue
            try:
                raw = self.backend.get(entry.key)
            except ObjectNotFound:  # expired and removed by another gc
                continue
            body = raw[len(_KEEP_MAGIC):] if raw.startswith(_KEEP_MAGIC) else b""
            for i in range(0, len(body) - len(body) % 32, 32):
                kept[body[i : i + 32].hex()] = entry.created
        return kept

    def clean_tmp(self, older_than: float | None = None) -> int:
        """Remove what writers that died left behind, older than ``older_than``: temporary files and packs
        without index; and keep records older than that (gc with that grace no longer needs them).
        Returns how many temporary files and packs were removed."""
        limit = older_than if older_than is not None else time.time() - 3600
        n = self.backend.clean(limit)
        entries = {e.key: e for e in self.backend.scan("packs/")}
        for key, e in entries.items():
            name = key[len("packs/"):-len(".pack")]
            if (key.endswith(".pack") and f"packs/{name}.idx" not in entries and name not in self._pending_packs
                    and e.created < limit):
                n += self.backend.delete(key)
        for e in list(self.backend.scan("keep/")):
            if e.created < limit:
                self.backend.delete(e.key)
        self._kept = None
        return n


class _PackWriter:
    """Collects new small objects and writes them as packs of about PACK_TARGET bytes.

    Packs are written by a background thread (one at a time), so that reading the next objects overlaps
    with writing the previous pack; at most two packs are held in memory. When the batch ends, all
    packs are made durable and published together, and the objects found stored are recorded as kept.
    """

    def __init__(self, store: PackingStore):
        self.store = store
        self.entries: list[Encoded] = []
        self.size = 0
        self.oids: set[str] = set()
        self.known: set[str] = set()
        self.written: list[tuple[str, bytes]] = []
        self._pool = ThreadPoolExecutor(1)
        self._writing: Future[tuple[str, bytes]] | None = None

    def add(self, encoded: Encoded) -> None:
        oid, kind, payload = encoded
        if kind < 0:  # already stored: recorded as kept when the batch is done
            self.known.add(oid)
            return
        if oid in self.oids:
            return
        self.oids.add(oid)
        self.entries.append(encoded)
        self.size += len(payload) + 1
        if self.size >= PACK_TARGET:
            self.flush()

    def flush(self) -> None:
        self._wait()
        if self.entries:
            self._writing = self._pool.submit(self.store._write_pack, self.entries)
        self.entries, self.size, self.oids = [], 0, set()

    def _wait(self) -> None:
        if self._writing is not None:
            self.written.append(self._writing.result())
            self._writing = None

    def __enter__(self) -> _PackWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        published = False
        try:
            if exc_type is None:
                self.flush()
            self._wait()
            if exc_type is None:
                self.store._publish_packs(self.written)
                published = True
                self.store.freshen(self.known)
        finally:
            self._pool.shutdown(wait=True)
            if not published:
                self.store._discard_packs([name for name, _ in self.written])


def _split(head: bytes, payload: bytes, oid: str) -> tuple[int, bytes]:
    if not head:
        raise CorruptObject(f"object {oid} is empty on storage; run `assay fsck`")
    return head[0], payload
