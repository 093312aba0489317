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
from pathlib import Path

import fastcdc
import numpy as np

from assay.errors import CorruptObject, ObjectNotFound
from assay.store import codec
from assay.store.base import ObjectStore, StoredObject
from assay.store.fs import atomic_write
from assay.store.hashing import hash_bytes, hash_file

CHUNK_FROM = 8 << 20  # objects larger than this are split into content-defined chunks
CHUNK_AVG, CHUNK_MIN, CHUNK_MAX = 1 << 20, 256 << 10, 4 << 20
PACK_OBJECT_MAX = 1 << 20  # objects up to this size go into packs when stored with put_many
PACK_TARGET = 64 << 20
_IDX_MAGIC = b"ASSAYIDX1\n"
_IDX_DTYPE = np.dtype([("oid", "V32"), ("off", "<u8"), ("len", "<u8")])


class LocalObjectStore(ObjectStore):
    """An object store in a local folder."""

    def __init__(self, root: str | os.PathLike[str], *, durable: bool = True, threads: int | None = None):
        self.root = Path(root)
        self.durable = durable
        self.threads = threads or min(4, os.cpu_count() or 1)
        for sub in ("objects", "packs", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._packs: dict[str, tuple[str, int, int]] = {}
        self._loaded_packs: set[str] = set()
        self.damaged_packs: set[str] = set()  # packs whose index cannot be read
        self._lock = threading.Lock()

    # -- writing -------------------------------------------------------------------------------------

    def put(self, data: bytes, *, chunk: bool = True) -> str:
        oid = hash_bytes(data)
        if self.has(oid):
            self.freshen([oid])
        else:
            stored = self._encode_large(data) if chunk and len(data) > CHUNK_FROM else codec.encode(data)
            self._write_loose(oid, stored)
        return oid

    def put_many(self, items: Iterable[bytes]) -> list[str]:
        oids: list[str] = []
        pack: list[tuple[str, bytes]] = []
        pack_bytes = 0
        pending: set[str] = set()
        with ThreadPoolExecutor(self.threads) as pool:
            for oid, data, stored in pool.map(self._prepare, items):
                oids.append(oid)
                if stored is None:  # already stored
                    continue
                if len(data) > PACK_OBJECT_MAX:
                    self.put(data)
                    continue
                if oid in pending:
                    continue
                pending.add(oid)
                pack.append((oid, stored))
                pack_bytes += len(stored)
                if pack_bytes >= PACK_TARGET:
                    self._write_pack(pack)
                    pack, pack_bytes, pending = [], 0, set()
        if pack:
            self._write_pack(pack)
        return oids

    def put_file(self, path: str | os.PathLike[str]) -> str:
        path = Path(path)
        size = path.stat().st_size
        if size <= CHUNK_FROM:
            return self.put(path.read_bytes())
        oid = hash_file(path)
        if self.has(oid):
            self.freshen([oid])
        else:
            with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                stored = self._encode_large(mm)
            self._write_loose(oid, stored)
        return oid

    def put_files(self, paths: Sequence[str | os.PathLike[str]],
                  callback: Callable[[int], None] | None = None) -> list[str]:
        """Read, hash and encode files in worker threads; pack the small ones in this thread."""
        oids: list[str] = []
        pack: list[tuple[str, bytes]] = []
        pack_bytes = 0
        pending: set[str] = set()
        window: deque[tuple[str | os.PathLike[str], Future[tuple[str, bytes | None] | None]]] = deque()
        with ThreadPoolExecutor(self.threads) as pool:
            items = iter(paths)
            while True:
                while len(window) < 8 * self.threads:
                    p = next(items, None)
                    if p is None:
                        break
                    window.append((p, pool.submit(self._prepare_file, p)))
                if not window:
                    break
                path, future = window.popleft()
                result = future.result()
                if result is None:  # large file: chunked, in this thread
                    oids.append(self.put_file(path))
                else:
                    oid, stored = result
                    oids.append(oid)
                    if stored is not None and oid not in pending:
                        pending.add(oid)
                        pack.append((oid, stored))
                        pack_bytes += len(stored)
                if pack_bytes >= PACK_TARGET:
                    self._write_pack(pack)
                    pack, pack_bytes, pending = [], 0, set()
                if callback:
                    callback(1)
        if pack:
            self._write_pack(pack)
        return oids

    def _prepare_file(self, path: str | os.PathLike[str]) -> tuple[str, bytes | None] | None:
        with open(path, "rb") as f:
            data = f.read(PACK_OBJECT_MAX + 1)
        if len(data) > PACK_OBJECT_MAX:
            return None
        oid = hash_bytes(data)
        if self.has(oid):
            self.freshen([oid])
            return oid, None
        return oid, codec.encode(data)

    def _prepare(self, data: bytes) -> tuple[str, bytes, bytes | None]:
        """Hash and encode one object (runs in worker threads); None when already stored."""
        oid = hash_bytes(data)
        if self.has(oid):
            self.freshen([oid])
            return oid, data, None
        return oid, data, b"" if len(data) > PACK_OBJECT_MAX else codec.encode(data)

    def _encode_large(self, data: bytes | mmap.mmap) -> bytes:
        view = memoryview(data)
        chunks: list[tuple[str, int]] = []
        for c in fastcdc.fastcdc(view, min_size=CHUNK_MIN, avg_size=CHUNK_AVG, max_size=CHUNK_MAX):
            part = view[c.offset : c.offset + c.length]
            coid = hash_bytes(part)
            if not self.has(coid):
                self._write_loose(coid, codec.encode(part))
            chunks.append((coid, c.length))
        return codec.encode_chunk_list(chunks)

    def _write_loose(self, oid: str, stored: bytes) -> None:
        path = self._loose_path(oid)
        path.parent.mkdir(exist_ok=True)
        atomic_write(path, stored, durable=self.durable, tmp_dir=self.root / "tmp")

    def _write_pack(self, entries: list[tuple[str, bytes]]) -> None:
        entries.sort(key=lambda e: e[0])
        index = np.zeros(len(entries), dtype=_IDX_DTYPE)
        offset = 0
        for i, (oid, stored) in enumerate(entries):
            index[i] = (bytes.fromhex(oid), offset, len(stored))
            offset += len(stored)
        idx_bytes = _IDX_MAGIC + index.tobytes()
        name = hash_bytes(idx_bytes)[:40]
        packs = self.root / "packs"
        atomic_write(packs / f"{name}.pack", b"".join(s for _, s in entries), durable=self.durable,
                     tmp_dir=self.root / "tmp")
        atomic_write(packs / f"{name}.idx", idx_bytes, durable=self.durable, tmp_dir=self.root / "tmp")
        self._add_index(name, index)

    def freshen(self, oids: Iterable[str]) -> None:
        packs: set[str] = set()
        for oid in oids:
            entry = self._packs.get(oid)
            if entry is not None:
                packs.add(entry[0])
                continue
            try:
                os.utime(self._loose_path(oid))
            except FileNotFoundError:
                entry = self._pack_entry(oid)
                if entry is not None:
                    packs.add(entry[0])
        for name in packs:
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.root / "packs" / f"{name}.idx")

    # -- reading -------------------------------------------------------------------------------------

    def get(self, oid: str) -> bytes:
        stored = self._read_stored(oid)
        if stored[0] == codec.CHUNKS:
            chunks = codec.decode_chunk_list(stored)
            parts = [self.get(c) for c, _ in chunks]
            if [len(p) for p in parts] != [n for _, n in chunks]:  # the sizes are part of the object too
                raise CorruptObject(f"object {oid} is corrupt: its chunk sizes do not match its chunks. "
                                    "Run `assay fsck` to list every damaged object.")
            data = b"".join(parts)
        else:
            data = codec.decode(stored, oid)
        if hash_bytes(data) != oid:
            raise CorruptObject(
                f"object {oid} is corrupt: its bytes no longer match their hash. "
                "Run `assay fsck` to list every damaged object; restore it from a copy of the repository."
            )
        return data

    def has(self, oid: str) -> bool:
        return self._loose_path(oid).exists() or self._pack_entry(oid) is not None

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
        stored = self._read_stored(oid)
        if stored[0] == codec.CHUNKS:
            return [c for c, _ in codec.decode_chunk_list(stored)]
        return []

    def stored_bytes(self) -> int:
        total = 0
        for folder in ("objects", "packs"):
            for dirpath, _, files in os.walk(self.root / folder):
                total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
        return total

    def _logical_size(self, oid: str) -> int:
        stored = self._read_stored(oid)
        if stored[0] == codec.CHUNKS:
            return sum(n for _, n in codec.decode_chunk_list(stored))
        return len(codec.decode(stored, oid))

    def _read_stored(self, oid: str) -> bytes:
        try:
            return self._loose_path(oid).read_bytes()
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
                    data = f.read(length)
            except FileNotFoundError:
                self._forget_pack(name)
                continue
            if len(data) != length:
                raise CorruptObject(f"pack {name} is truncated at object {oid}; run `assay fsck`")
            return data
        raise self._not_found(oid)

    def _not_found(self, oid: str) -> ObjectNotFound:
        return ObjectNotFound(
            f"object {oid} is not in the store at {self.root}. It may have been removed by gc or never "
            "written; run `assay fsck` to check the repository."
        )

    def _loose_path(self, oid: str) -> Path:
        return self.root / "objects" / oid[:2] / oid[2:]

    # -- pack index ----------------------------------------------------------------------------------

    def _pack_entry(self, oid: str) -> tuple[str, int, int] | None:
        entry = self._packs.get(oid)
        if entry is None and self._refresh_packs():
            entry = self._packs.get(oid)
        return entry

    def _refresh_packs(self) -> bool:
        """Load indexes of packs written since the last look; True when any was new."""
        names = {p.stem for p in (self.root / "packs").glob("*.idx")}
        new = names - self._loaded_packs
        for gone in self._loaded_packs - names:
            self._forget_pack(gone)
        for name in new:
            try:
                raw = (self.root / "packs" / f"{name}.idx").read_bytes()
            except FileNotFoundError:
                continue
            body = raw[len(_IDX_MAGIC):]
            if not raw.startswith(_IDX_MAGIC) or len(body) % _IDX_DTYPE.itemsize:
                self.damaged_packs.add(name)  # its objects read as missing; fsck reports the index
                continue
            self._add_index(name, np.frombuffer(body, dtype=_IDX_DTYPE))
        return bool(new)

    def _add_index(self, name: str, index: np.ndarray) -> None:
        oids = index["oid"].tobytes()
        offs, lens = index["off"].tolist(), index["len"].tolist()
        with self._lock:
            for i in range(len(index)):
                self._packs[oids[32 * i : 32 * i + 32].hex()] = (name, offs[i], lens[i])
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
            removed += self._repack_without(name, dead, older_than)
        return removed

    def _repack_without(self, name: str, dead: set[str], older_than: float) -> int:
        idx_path = self.root / "packs" / f"{name}.idx"
        if idx_path.stat().st_mtime >= older_than:
            return 0
        keep = [oid for oid, e in list(self._packs.items()) if e[0] == name and oid not in dead]
        if keep:
            self._write_pack([(oid, self._read_stored(oid)) for oid in keep])
        idx_path.unlink()  # the index goes first: a pack without index is ignored
        (self.root / "packs" / f"{name}.pack").unlink(missing_ok=True)
        self._forget_pack(name)
        return len(dead)

    def clean_tmp(self, older_than: float | None = None) -> int:
        """Remove temporary files left by writers that died (older than ``older_than``)."""
        limit = older_than if older_than is not None else time.time() - 3600
        n = 0
        for f in (self.root / "tmp").iterdir():
            if f.stat().st_mtime < limit:
                f.unlink(missing_ok=True)
                n += 1
        return n
