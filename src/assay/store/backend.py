"""Raw backends: named blobs of bytes, with the few operations every storage offers.

A backend knows nothing of objects, codecs, chunks or packs (``assay.store.packing`` does that once, for every
backend). Keys are ``/``-separated names (``objects/ab/cdef…``, ``packs/<name>.idx``); each key is written
whole and at once, and never changed in place:

=================  =====================================================================================
operation          meaning
=================  =====================================================================================
put                publish a key whole (one buffer, or parts in order: a multipart upload); readers see
                   the old value or the whole new one. ``sync=False`` defers durability to ``sync(keys)``
put_if_absent      publish only if the key does not exist (an atomic, conditional create); True if written
get, get_split     the whole value (``get_split``: the first bytes apart from the rest, without a copy)
get_range(s)       bytes at offsets (short at the end of the value)
stat, exists       an ``Entry`` (size and creation time, as a LIST or HEAD reports them) or None
list, scan         keys (``scan``: entries) beginning with a prefix, in no particular order
delete             remove a key; True if it was there
=================  =====================================================================================

There is no rename and no touch: a key's creation time (a file's mtime, an S3 object's LastModified) changes
only when it is written again. The packing store's gc rules rely on nothing else (see docs/storage.md).

``LocalBackend`` keeps keys as files under a folder (atomic writes through ``assay.store.fs``), and
``MemoryBackend`` in a dict (for tests of the store's rules, with a clock that tests can move).
"""

from __future__ import annotations

import abc
import contextlib
import mmap
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from assay.errors import ObjectNotFound
from assay.store.fs import WholeWriter, atomic_file, fsync_dir, is_full, out_of_space, write_all

Buffer = bytes | bytearray | memoryview
_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$")
_MAP_FROM = 1 << 20  # get_mapped maps files from this size on
_WRITEV_GROUP = 1024  # buffers per writev call (IOV_MAX is 1024 on Linux)


@dataclass(frozen=True)
class Entry:
    """A stored key: its size in bytes and when it was written (seconds since the epoch)."""

    key: str
    size: int
    created: float


class Backend(abc.ABC):
    """Named, immutable blobs of bytes (see the module docstring for the contract)."""

    location: str = ""  # where the keys live, for messages

    @abc.abstractmethod
    def put(self, key: str, data: Buffer | Sequence[Buffer], *, sync: bool = True) -> None:
        """Publish ``key`` with ``data`` (one buffer, or parts written in order), replacing any old value.

        Parts may be of any size (a codec byte, then a payload); a backend joins them as its storage needs
        (object storage: one upload for a small value, a multipart upload of parts of 5 MiB or more for a
        large one). With ``sync=False`` the value need not be durable until ``sync`` is called for it."""

    @abc.abstractmethod
    def put_if_absent(self, key: str, data: Buffer) -> bool:
        """Publish ``key`` only if it does not exist; whether it was written."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """The value of ``key``; raises ObjectNotFound."""

    def get_split(self, key: str, head: int) -> tuple[bytes, bytes]:
        """The first ``head`` bytes of ``key`` and the rest (backends override this to avoid a copy)."""
        data = self.get(key)
        return data[:head], data[head:]

    def get_mapped(self, key: str, head: int) -> tuple[bytes, Buffer]:
        """``get_split``, with the rest possibly a read-only mapping of the stored file rather than a copy (for a
        reader that takes what it needs from a large value and lets it go); by default ``get_split``."""
        return self.get_split(key, head)

    @abc.abstractmethod
    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes of ``key`` from ``offset`` (fewer at its end); raises ObjectNotFound."""

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """The bytes at each ``(offset, length)`` of ``key``."""
        return [self.get_range(key, o, n) for o, n in ranges]

    @abc.abstractmethod
    def stat(self, key: str) -> Entry | None:
        """Size and creation time of ``key``, or None when it does not exist."""

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Every key beginning with ``prefix``."""

    def scan(self, prefix: str) -> Iterator[Entry]:
        """An entry for every key beginning with ``prefix`` (object storage gets them from the LIST itself)."""
        for key in self.list(prefix):
            entry = self.stat(key)
            if entry is not None:
                yield entry

    @abc.abstractmethod
    def delete(self, key: str) -> bool:
        """Remove ``key``; whether it existed."""

    def sync(self, keys: Iterable[str]) -> None:  # noqa: B027 - object storage is durable when a put returns
        """Make keys written with ``sync=False`` durable (one barrier for a batch)."""

    def clean(self, older_than: float) -> int:
        """Remove leftovers of writers that died (temporary files) older than ``older_than``; how many."""
        return 0


def check_key(key: str) -> str:
    """``key`` if it is a well-formed key (no empty, ``.`` or ``..`` segment, no leading dot or slash)."""
    if not _KEY.match(key):
        raise ValueError(f"{key!r} is not a storage key: keys are names of letters, digits, '.', '_' and '-' "
                         "joined by '/', none starting with '.' or '-'")
    return key


class LocalBackend(Backend):
    """Keys as files under a folder; temporary files in ``tmp/``, renamed into place when complete."""

    def __init__(self, root: str | os.PathLike[str], *, durable: bool = True):
        self.root = Path(root)
        self.durable = durable
        self.location = str(self.root)
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._prefix = str(self.root) + "/"
        self._folders: set[str] = set()

    def path(self, key: str) -> str:
        return self._prefix + check_key(key)

    # -- writing ---------------------------------------------------------------------------------------

    def put(self, key: str, data: Buffer | Sequence[Buffer], *, sync: bool = True) -> None:
        path = Path(self.path(key))
        self._folder(path.parent)
        durable = self.durable and sync
        with atomic_file(path, durable=durable, tmp_dir=self._tmp) as f:
            if isinstance(data, bytes | bytearray | memoryview):
                f.write(data)
            else:
                parts = list(data)
                for i in range(0, len(parts), _WRITEV_GROUP):
                    write_all(f.fileno(), parts[i : i + _WRITEV_GROUP])
                if self.durable and not sync and hasattr(os, "posix_fadvise"):  # start writing back now
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

    def put_if_absent(self, key: str, data: Buffer) -> bool:
        path = Path(self.path(key))
        self._folder(path.parent)
        try:
            fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix=".tmp-")
        except OSError as e:
            raise (out_of_space(path) if is_full(e) else e) from e
        try:
            try:
                WholeWriter(fd).write(data)  # the whole value under a temporary name, then linked
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            if self.durable:
                fsync_dir(path.parent)
            return True
        except OSError as e:
            raise (out_of_space(path) if is_full(e) else e) from e
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _folder(self, folder: Path) -> None:
        name = str(folder)
        if name in self._folders:
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise (out_of_space(folder) if is_full(e) else e) from e
        self._folders.add(name)

    def sync(self, keys: Iterable[str]) -> None:
        if not self.durable:
            return
        folders: set[str] = set()
        for key in keys:
            path = self.path(key)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            folders.add(os.path.dirname(path))
        for folder in sorted(folders):
            fsync_dir(Path(folder))

    # -- reading ---------------------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        with self._open(key) as f:
            return f.read()

    def get_split(self, key: str, head: int) -> tuple[bytes, bytes]:
        with self._open(key) as f:
            return f.read(head), f.read()

    def get_mapped(self, key: str, head: int) -> tuple[bytes, Buffer]:
        """A file of 1 MiB or more is mapped, not read: its pages come from the page cache as they are
        touched, 16 to a fault, where a read copies them into fresh memory that faults page by page (32 MB of
        id indexes: 27 ms read and hashed against 11 ms mapped). The mapping is closed when the last view of
        it is let go; the file may be removed meanwhile (gc): the mapping keeps its pages."""
        with self._open(key) as f:
            size = os.fstat(f.fileno()).st_size
            if size < _MAP_FROM or size <= head:
                return f.read(head), f.read()
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return mapped[:head], memoryview(mapped)[head:]

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self.get_ranges(key, [(offset, length)])[0]

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        with self._open(key) as f:
            out = []
            for offset, length in ranges:
                f.seek(offset)
                out.append(f.read(length))
            return out

    @contextlib.contextmanager
    def _open(self, key: str) -> Iterator[BinaryIO]:
        path = self.path(key)
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below; errors of open alone mean "not there"
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            raise ObjectNotFound(f"{key} is not in {self.location}") from e
        with f:
            yield f

    def stat(self, key: str) -> Entry | None:
        try:
            st = os.stat(self.path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Entry(key, st.st_size, st.st_mtime)

    def exists(self, key: str) -> bool:
        return os.path.isfile(self.path(key))

    def list(self, prefix: str) -> Iterator[str]:
        folder, _, _ = prefix.rpartition("/")
        start = self.root / folder if folder else self.root
        for key in self._walk(start, f"{folder}/" if folder else ""):
            if key.startswith(prefix):
                yield key

    def _walk(self, folder: Path, rel: str) -> Iterator[str]:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        for e in entries:
            if e.name.startswith("."):  # temporary files, never keys
                continue
            if e.is_dir(follow_symlinks=False):
                if rel or e.name != "tmp":
                    yield from self._walk(Path(e.path), f"{rel}{e.name}/")
            elif e.is_file(follow_symlinks=False):
                yield rel + e.name

    def delete(self, key: str) -> bool:
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            return False
        return True

    def clean(self, older_than: float) -> int:
        n = 0
        for f in list(self._tmp.iterdir()):
            with contextlib.suppress(FileNotFoundError):
                if f.stat().st_mtime < older_than:
                    f.unlink()
                    n += 1
        return n


class MemoryBackend(Backend):
    """Keys in a dict, for tests; ``clock`` gives creation times (tests move it to age what is stored)."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.location = "memory"
        self.blobs: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: Buffer | Sequence[Buffer], *, sync: bool = True) -> None:
        value = bytes(data) if isinstance(data, bytes | bytearray | memoryview) else b"".join(bytes(p) for p in data)
        with self._lock:
            self.blobs[check_key(key)] = (value, self.clock())

    def put_if_absent(self, key: str, data: Buffer) -> bool:
        with self._lock:
            if check_key(key) in self.blobs:
                return False
            self.blobs[key] = (bytes(data), self.clock())
            return True

    def get(self, key: str) -> bytes:
        with self._lock:
            found = self.blobs.get(key)
        if found is None:
            raise ObjectNotFound(f"{key} is not in {self.location}")
        return found[0]

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        return self.get(key)[offset : offset + length]

    def stat(self, key: str) -> Entry | None:
        with self._lock:
            found = self.blobs.get(key)
        return None if found is None else Entry(key, len(found[0]), found[1])

    def list(self, prefix: str) -> Iterator[str]:
        with self._lock:
            keys = sorted(k for k in self.blobs if k.startswith(prefix))
        return iter(keys)

    def delete(self, key: str) -> bool:
        with self._lock:
            return self.blobs.pop(key, None) is not None

    def age(self, key: str, seconds: float) -> None:
        """Make ``key`` look written ``seconds`` earlier (for tests of grace periods)."""
        with self._lock:
            value, created = self.blobs[key]
            self.blobs[key] = (value, created - seconds)


__all__ = ["Backend", "Entry", "LocalBackend", "MemoryBackend", "check_key"]
