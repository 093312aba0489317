"""Objects in a local folder: loose files in sharded folders, small objects packed together.

Layout under the store root::

    objects/ab/cdef…        one loose object (codec byte + payload), named by its address
    packs/<name>.pack       many small objects back to back
    packs/<name>.idx        sorted index of a pack: address, offset, length; written last
    tmp/                    temporary files, renamed into place when complete

A pack counts only once its index exists, and the index is renamed into place after the pack, so a
crash at any point leaves either no trace or a whole pack. Every read is verified against its address.
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
from typing import TYPE_CHECKING, Any, BinaryIO

import fastcdc

from assay.errors import CorruptObject, ObjectNotFound, OutOfSpace
from assay.store import codec
from assay.store.base import ObjectStore, StoredObject
from assay.store.fs import atomic_file, fsync_dir, is_full, out_of_space, write_all
from assay.store.hashing import hash_bytes, hash_file

CHUNK_FROM = 8 << 20  # objects larger than this are split into content-defined chunks
CHUNK_AVG, CHUNK_MIN, CHUNK_MAX = 1 << 20, 256 << 10, 4 << 20
PACK_OBJECT_MAX = 1 << 20  # objects up to this size go into packs when stored with put_many / put_files
PACK_TARGET = 64 << 20
_GROUP = 64  # files read per task in put_files
_IDX_MAGIC = b"ASSAYIDX1\n"
_CODEC_BYTE = [bytes([k]) for k in range(256)]
_IDX_ENTRY = 48  # bytes per pack index entry: oid (32), offset and length (8 each)

if TYPE_CHECKING:
    import numpy as np


@cache
def _idx_dtype() -> Any:
    """The pack index entry as a NumPy dtype; NumPy is imported only when a pack is written or read."""
    import numpy as np

    return np.dtype([("oid", "V32"), ("off", "<u8"), ("len", "<u8")])
Encoded = tuple[str, int, bytes | memoryview]  # oid, codec, payload


class LocalObjectStore(ObjectStore):
    """An object store in a local folder."""

    def __init__(self, root: str | os.PathLike[str], *, durable: bool = True, threads: int | None = None):
        self.root = Path(root)
        self.durable = durable
        self.threads = threads or min(4, os.cpu_count() or 1)
        for sub in ("objects", "packs", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._objects = str(self.root / "objects")
        self._packs: dict[str, tuple[str, int, int]] = {}
        self._loaded_packs: set[str] = set()
        self._pending_packs: set[str] = set()  # written by this process, index not yet on disk
        self.damaged_packs: set[str] = set()  # packs whose index cannot be read
        self._lock = threading.Lock()
        self._cache: dict[str, bytes] | None = None
        self._cache_budget = 0

    # -- writing -------------------------------------------------------------------------------------

    def put(self, data: bytes, *, chunk: bool = True, compress: bool = True) -> str:
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

    def _write(self, oid: str, data: bytes, *, chunk: bool, compress: bool, heal_chunks: bool = False) -> None:
        if chunk and len(data) > CHUNK_FROM:
            self._write_loose(oid, codec.CHUNKS, self._store_chunks(memoryview(data), heal=heal_chunks))
        else:
            self._write_loose(oid, *(codec.encode(data) if compress else (codec.RAW, data)))

    def _whole(self, oid: str, size: int) -> bool:
        """Whether the stored ``oid`` can be trusted to be whole: a loose object of the right length with its
        chunks present (packed objects are published only after their pack is synced, and checked on read).

        Costs a stat for raw objects, a decompression for compressed ones (at most CHUNK_FROM bytes) and a
        look-up per chunk for chunked ones; the full hash check is left to reads and fsck.
        """
        path = self._loose_str(oid)
        try:
            stored = os.stat(path).st_size
        except FileNotFoundError:
            return True  # packed
        try:
            if stored == 1 + size and self._codec_of(path) == codec.RAW:
                return True
            kind, payload = self._read_stored(oid)
            if kind == codec.CHUNKS:
                chunks = codec.decode_chunk_list(payload)
                return sum(n for _, n in chunks) == size and not self.missing(c for c, _ in chunks)
            return kind != codec.RAW and len(codec.decode(kind, payload, oid)) == size
        except (CorruptObject, OSError):
            return False

    @staticmethod
    def _codec_of(path: str) -> int | None:
        with open(path, "rb") as f:
            head = f.read(1)
        return head[0] if head else None

    def put_many(self, items: Iterable[bytes]) -> list[str]:
        self._refresh_packs()
        oids: list[str] = []
        with ThreadPoolExecutor(self.threads) as pool, _PackWriter(self) as packer:
            for data, encoded in pool.map(lambda d: (d, self._prepare(d)), items):
                if encoded is None:
                    oids.append(self.put(data))
                else:
                    oids.append(encoded[0])
                    packer.add(encoded)
        return oids

    def put_file(self, path: str | os.PathLike[str]) -> str:
        path = Path(path)
        size = path.stat().st_size
        if size <= CHUNK_FROM:
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

    def _prepare(self, data: bytes) -> Encoded | None:
        """Hash and encode a small object (worker thread); codec -1 when already stored; None when large."""
        if len(data) > PACK_OBJECT_MAX:
            return None
        oid = hash_bytes(data)
        if self._has_known(oid):
            if not self._whole(oid, len(data)):
                return None  # stored damaged: written again by put, which replaces it
            return oid, -1, b""
        return (oid, *codec.encode(data))

    def _store_chunks(self, view: memoryview, *, heal: bool = False) -> bytes:
        """Split a large object into content-defined chunks, store them in packs; the chunk list payload.

        With ``heal`` every chunk is written again (repair of a damaged object)."""
        chunks: list[tuple[str, int]] = []
        with _PackWriter(self) as packer:
            for c in fastcdc.fastcdc(view, min_size=CHUNK_MIN, avg_size=CHUNK_AVG, max_size=CHUNK_MAX):
                part = view[c.offset : c.offset + c.length]
                coid = hash_bytes(part)
                if not self._has_known(coid):
                    packer.add((coid, *codec.encode(part)))
                elif heal or not self._whole(coid, len(part)):  # a loose copy is read before a packed one
                    self._write_loose(coid, *codec.encode(part))
                chunks.append((coid, c.length))
        return codec.encode_chunk_list(chunks)

    def _write_loose(self, oid: str, kind: int, payload: bytes | memoryview) -> None:
        path = self._loose_path(oid)
        try:
            path.parent.mkdir(exist_ok=True)
        except OSError as e:
            raise (out_of_space(path.parent) if is_full(e) else e) from e
        with atomic_file(path, durable=self.durable, tmp_dir=self.root / "tmp") as f:
            f.write(bytes([kind]))
            f.write(payload)

    def _write_pack(self, entries: list[Encoded]) -> tuple[str, bytes]:
        """Write (and sync) a pack file and index it in memory; returns its index.

        The pack becomes visible to other processes when ``_publish_packs`` writes its index.
        """
        import numpy as np

        entries.sort(key=lambda e: e[0])
        index = np.zeros(len(entries), dtype=_idx_dtype())
        index["oid"] = np.frombuffer(b"".join(bytes.fromhex(e[0]) for e in entries), "V32")
        lengths = np.array([1 + len(e[2]) for e in entries], np.uint64)
        index["len"] = lengths
        index["off"] = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.uint64)
        idx_bytes = _IDX_MAGIC + index.tobytes()
        name = hash_bytes(idx_bytes)[:40]
        with atomic_file(self.root / "packs" / f"{name}.pack", durable=False, tmp_dir=self.root / "tmp") as f:
            buffers = [b for _, kind, payload in entries for b in (_CODEC_BYTE[kind], payload)]
            for i in range(0, len(buffers), 1024):
                write_all(f.fileno(), buffers[i : i + 1024])
            if self.durable and hasattr(os, "posix_fadvise"):  # start writing back now; synced when published
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        with self._lock:
            self._pending_packs.add(name)
        self._add_index(name, index)
        return name, idx_bytes

    def _publish_packs(self, written: list[tuple[str, bytes]]) -> None:
        """Make written packs visible: write their indexes (synced), then sync the folder once.

        The folder is synced once per batch, not once per pack; a crash before the indexes are written
        leaves packs without index, which are ignored and removed by gc.
        """
        packs = self.root / "packs"
        if self.durable:
            for name, _ in written:
                fd = os.open(packs / f"{name}.pack", os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        for name, idx_bytes in written:
            with atomic_file(packs / f"{name}.idx", durable=self.durable, sync_folder=False,
                             tmp_dir=self.root / "tmp") as f:
                f.write(idx_bytes)
        if self.durable and written:
            fsync_dir(packs)
        with self._lock:
            self._pending_packs.difference_update(name for name, _ in written)

    def _discard_packs(self, names: list[str]) -> None:
        """Forget and remove packs written by this process whose index was never published (a failed batch):
        their objects must not count as stored."""
        for name in names:
            self._forget_pack(name)
            with self._lock:
                self._pending_packs.discard(name)
            if not (self.root / "packs" / f"{name}.idx").exists():
                (self.root / "packs" / f"{name}.pack").unlink(missing_ok=True)

    def freshen(self, oids: Iterable[str]) -> None:
        wanted = set(oids)
        packed = wanted & self._packs.keys()
        packs: set[str] = {self._packs[o][0] for o in packed}
        for oid in wanted - packed:
            try:
                os.utime(self._loose_str(oid))
            except FileNotFoundError:
                entry = self._pack_entry(oid)
                if entry is not None:
                    packs.add(entry[0])
        for name in packs:
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.root / "packs" / f"{name}.idx")

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

    def _get(self, oid: str) -> bytes:
        kind, payload = self._read_stored(oid)
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

    def get_ranges(self, oid: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        cache = self._cache
        if cache is not None and oid in cache:
            return [cache[oid][o : o + n] for o, n in ranges]
        path, start = self._loose_str(oid), 0
        if not os.path.exists(path) and (entry := self._pack_entry(oid)) is not None:
            path, start = str(self.root / "packs" / f"{entry[0]}.pack"), entry[1]
        try:
            with open(path, "rb") as f:
                f.seek(start)
                if f.read(1) == bytes([codec.RAW]):
                    return [_read_at(f, start + 1 + o, n) for o, n in ranges]
        except OSError:
            pass
        return super().get_ranges(oid, ranges)  # compressed, chunked or missing: read whole

    def has(self, oid: str) -> bool:
        return self._has_known(oid) or self._pack_entry(oid) is not None

    def missing(self, oids: Iterable[str]) -> set[str]:
        self._refresh_packs()
        unpacked = set(oids) - self._packs.keys()
        return {o for o in unpacked if not os.path.exists(self._loose_str(o))}

    def _has_known(self, oid: str) -> bool:
        """Whether ``oid`` is loose or in a pack already indexed (no look for new packs)."""
        return oid in self._packs or os.path.exists(self._loose_str(oid))

    def stat(self, oid: str) -> StoredObject:
        path = self._loose_path(oid)
        try:
            st = path.stat()
            return StoredObject(oid, self._logical_size(oid), st.st_size, st.st_mtime, "loose")
        except FileNotFoundError:
            pass
        entry = self._pack_entry(oid)
        if entry is None:
            raise self._not_found(oid)
        name, _, length = entry
        mtime = (self.root / "packs" / f"{name}.idx").stat().st_mtime
        return StoredObject(oid, self._logical_size(oid), length, mtime, f"pack:{name}")

    def iter_oids(self) -> Iterator[str]:
        objects = self.root / "objects"
        for shard in sorted(objects.iterdir()):
            for f in shard.iterdir():
                if not f.name.startswith(".tmp"):
                    yield shard.name + f.name
        self._refresh_packs()
        yield from list(self._packs)

    def children(self, oid: str) -> list[str]:
        kind, payload = self._read_stored(oid)
        if kind == codec.CHUNKS:
            return [c for c, _ in codec.decode_chunk_list(payload)]
        return []

    def stored_bytes(self) -> int:
        total = 0
        for folder in ("objects", "packs"):
            for dirpath, _, files in os.walk(self.root / folder):
                total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
        return total

    def _logical_size(self, oid: str) -> int:
        kind, payload = self._read_stored(oid)
        if kind == codec.CHUNKS:
            return sum(n for _, n in codec.decode_chunk_list(payload))
        return len(codec.decode(kind, payload, oid))

    def _read_stored(self, oid: str) -> tuple[int, bytes]:
        """The codec byte and the payload of a stored object, read without copying the payload."""
        try:
            with open(self._loose_str(oid), "rb") as f:
                return _split(f.read(1), f.read(), oid)
        except FileNotFoundError:
            pass
        except IsADirectoryError as e:
            raise self._not_found(oid) from e
        for _ in range(2):  # a pack may be rewritten by gc between lookup and read
            entry = self._pack_entry(oid)
            if entry is None:
                break
            name, off, length = entry
            try:
                with open(self.root / "packs" / f"{name}.pack", "rb") as f:
                    f.seek(off)
                    head, payload = f.read(1), f.read(length - 1)
            except FileNotFoundError:
                self._forget_pack(name)
                continue
            if len(payload) != length - 1:
                raise CorruptObject(f"pack {name} is truncated at object {oid}; run `assay fsck`")
            return _split(head, payload, oid)
        raise self._not_found(oid)

    def _not_found(self, oid: str) -> ObjectNotFound:
        return ObjectNotFound(
            f"object {oid} is not in the store at {self.root}. It may have been removed by gc or never "
            "written; run `assay fsck` to check the repository."
        )

    def _loose_path(self, oid: str) -> Path:
        return Path(self._loose_str(oid))

    def _loose_str(self, oid: str) -> str:
        return f"{self._objects}/{oid[:2]}/{oid[2:]}"

    # -- pack index ----------------------------------------------------------------------------------

    def _pack_entry(self, oid: str) -> tuple[str, int, int] | None:
        entry = self._packs.get(oid)
        if entry is None and self._refresh_packs():
            entry = self._packs.get(oid)
        return entry

    def _refresh_packs(self) -> bool:
        """Load indexes of packs written since the last look; True when any was new."""
        names = {p.stem for p in (self.root / "packs").glob("*.idx")}
        new = names - self._loaded_packs - self.damaged_packs
        for gone in self._loaded_packs - names - self._pending_packs:
            self._forget_pack(gone)
        for name in new:
            try:
                raw = (self.root / "packs" / f"{name}.idx").read_bytes()
            except FileNotFoundError:
                continue
            body = raw[len(_IDX_MAGIC):]
            if not raw.startswith(_IDX_MAGIC) or len(body) % _IDX_ENTRY:
                self.damaged_packs.add(name)  # its objects read as missing; fsck reports the index
                continue
            import numpy as np

            self._add_index(name, np.frombuffer(body, dtype=_idx_dtype()))
        return bool(new)

    def _add_index(self, name: str, index: np.ndarray) -> None:
        oids = index["oid"].tobytes().hex()
        offs, lens = index["off"].tolist(), index["len"].tolist()
        with self._lock:
            for i in range(len(index)):
                self._packs[oids[64 * i : 64 * i + 64]] = (name, offs[i], lens[i])
            self._loaded_packs.add(name)

    def _forget_pack(self, name: str) -> None:
        with self._lock:
            self._packs = {k: v for k, v in self._packs.items() if v[0] != name}
            self._loaded_packs.discard(name)

    # -- removal -------------------------------------------------------------------------------------

    def delete(self, oids: Iterable[str], *, older_than: float) -> int:
        removed = 0
        by_pack: dict[str, set[str]] = {}
        for oid in oids:
            path = self._loose_path(oid)
            try:
                if path.stat().st_mtime < older_than:
                    path.unlink()
                    removed += 1
                continue
            except FileNotFoundError:
                pass
            entry = self._pack_entry(oid)
            if entry is not None:
                by_pack.setdefault(entry[0], set()).add(oid)
        for name, dead in by_pack.items():
            try:
                removed += self._repack_without(name, dead, older_than)
            except OutOfSpace:  # no room to rewrite what this pack keeps: leave it whole for a later gc
                continue
        return removed

    def _repack_without(self, name: str, dead: set[str], older_than: float) -> int:
        idx_path = self.root / "packs" / f"{name}.idx"
        if idx_path.stat().st_mtime >= older_than:
            return 0
        keep = [oid for oid, e in list(self._packs.items()) if e[0] == name and oid not in dead]
        if keep:
            self._publish_packs([self._write_pack([(oid, *self._read_stored(oid)) for oid in keep])])
        idx_path.unlink()  # the index goes first: a pack without index is ignored
        (self.root / "packs" / f"{name}.pack").unlink(missing_ok=True)
        self._forget_pack(name)
        return len(dead)

    def clean_tmp(self, older_than: float | None = None) -> int:
        """Remove temporary files and index-less packs left by writers that died (older than ``older_than``)."""
        limit = older_than if older_than is not None else time.time() - 3600
        leftovers = list((self.root / "tmp").iterdir())
        leftovers += [p for p in (self.root / "packs").glob("*.pack")
                      if not p.with_suffix(".idx").exists() and p.stem not in self._pending_packs]
        n = 0
        for f in leftovers:
            with contextlib.suppress(FileNotFoundError):
                if f.stat().st_mtime < limit:
                    f.unlink()
                    n += 1
        return n


class _PackWriter:
    """Collects new small objects and writes them as packs of about PACK_TARGET bytes.

    Packs are written by a background thread (one at a time), so that reading the next objects overlaps
    with writing the previous pack; at most two packs are held in memory. When the batch ends, all
    packs are synced and published together.
    """

    def __init__(self, store: LocalObjectStore):
        self.store = store
        self.entries: list[Encoded] = []
        self.size = 0
        self.oids: set[str] = set()
        self.known: list[str] = []
        self.written: list[tuple[str, bytes]] = []
        self._pool = ThreadPoolExecutor(1)
        self._writing: Future[tuple[str, bytes]] | None = None

    def add(self, encoded: Encoded) -> None:
        oid, kind, payload = encoded
        if kind < 0:  # already stored: marked recent when the batch is done
            self.known.append(oid)
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
        if self.known:
            self.store.freshen(self.known)
        self.entries, self.size, self.oids, self.known = [], 0, set(), []

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
        finally:
            self._pool.shutdown(wait=True)
            if not published:
                self.store._discard_packs([name for name, _ in self.written])


def _read_at(f: BinaryIO, offset: int, length: int) -> bytes:
    f.seek(offset)
    return bytes(f.read(length))


def _split(head: bytes, payload: bytes, oid: str) -> tuple[int, bytes]:
    if not head:
        raise CorruptObject(f"object {oid} is empty on storage; run `assay fsck`")
    return head[0], payload
