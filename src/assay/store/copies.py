"""Local copies of small immutable objects of a store whose reads are requests over a network.

A repository on object storage reads its commits and manifests again at almost every command: the commit at
HEAD to know what is committed, the manifest of the dataset it works on. They never change (an address is the
hash of its bytes), so a copy kept in the working folder is as good as the stored object, and a command that
only needs them (an unchanged re-add, ``status``, ``log``) makes no request for them. Copies are kept only of
what the repository reads and writes as commits and manifests, never of data, and only reads use them: what
the store holds (``has``, ``missing``, ``fsck``, gc) is always asked of the store itself. Each copy is checked
against its address when read; a damaged one is dropped and read from the store again. The folder is a cache:
removing it at any time loses nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

from assay.store.fs import atomic_write
from assay.store.hashing import hash_bytes, is_oid

COPY_MAX = 4 << 20  # objects larger than this are read from the store each time (a manifest of ~10^9 rows)


class LocalCopies:
    """Verified copies of objects in ``folder`` (``ab/cdef…``, like a local store's loose objects)."""

    def __init__(self, folder: Path, *, limit: int = COPY_MAX):
        self.folder = folder
        self.limit = limit

    def _path(self, oid: str) -> Path:
        if not is_oid(oid):  # an address from a ref or a file: never a path out of the folder
            raise ValueError(f"not an object address: {oid!r}")
        return self.folder / oid[:2] / oid[2:]

    def get(self, oid: str) -> bytes | None:
        """The copy of ``oid``, or None when there is none (or it was damaged: then it is removed)."""
        path = self._path(oid)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if hash_bytes(data) != oid:
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return data

    def keep(self, oid: str, data: bytes) -> None:
        """Keep a copy of ``data``, the verified bytes of ``oid``. A failure (a full disk, a read-only folder)
        only means a request later: it is not an error."""
        if len(data) > self.limit:
            return
        path = self._path(oid)
        if path.exists():
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data, durable=False)  # whole or absent (a reader checks the hash anyway)
        except OSError:
            pass

    def drop(self, oids: Iterable[str]) -> None:
        """Remove the copies of ``oids`` (gc removed them from the store)."""
        for oid in oids:
            with contextlib.suppress(OSError, ValueError):
                self._path(oid).unlink()
