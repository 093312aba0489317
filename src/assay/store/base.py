"""The object store interface: immutable bytes addressed by their BLAKE3 hash.

A store is a small base class so that the layers above never see where objects live. The one implementation,
``assay.store.packing.PackingStore``, does addressing, codecs, chunking and packs over any raw
``assay.store.backend.Backend`` (a local folder, memory; object storage next). Implementations verify the hash
of every object they return.
"""

from __future__ import annotations

import abc
import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class StoredObject:
    """Where and how an object is kept, as reported by ``ObjectStore.stat``."""

    oid: str
    size: int  # logical size in bytes
    stored: int  # bytes on storage (after compression), chunks excluded
    mtime: float  # when it was written or last recorded as reused (``freshen``), seconds since the epoch
    location: str  # "loose", "pack:<name>"


class ObjectStore(abc.ABC):
    """Immutable, content-addressed bytes.

    A store goes to another process (a Ray worker) as its URL, and the worker opens its own: stores opened
    from a URL (``assay.store.urls``) pickle so. A store without a URL (in memory, or built from a backend by
    hand) refuses to be pickled (``NotPortable``) rather than travel as a silent copy.
    """

    #: whether a read is a request over a network: a repository then keeps local copies of its commits and
    #: manifests (``assay.store.copies``)
    remote = False

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        url = getattr(self, "url", None)
        if not url:
            from assay.errors import NotPortable

            raise NotPortable(f"{type(self).__name__} has no URL, so it cannot be sent to another process (a Ray "
                              "worker): it would arrive as a copy that writes go to and are lost; open the store "
                              "from a URL (file:///path or s3://bucket/prefix) with assay.store.urls.open_store")
        from assay.store.urls import open_store

        return open_store, (url,)

    @abc.abstractmethod
    def put(self, data: bytes | memoryview, *, chunk: bool = True, compress: bool = True) -> str:
        """Store ``data`` and return its address. Large data is split into content-defined chunks
        (so that a changed large file stores only the changed chunks) unless ``chunk`` is False; with
        ``compress=False`` the bytes are kept as they are (for data compressed already, whose byte
        ranges are then read directly by ``get_ranges``)."""

    @abc.abstractmethod
    def put_many(self, items: Iterable[bytes]) -> list[str]:
        """Store many objects at once; small ones are packed together. Returns their addresses."""

    def put_file(self, path: str | os.PathLike[str]) -> str:
        """Store the bytes of a file and return their address."""
        return self.put(Path(path).read_bytes())

    def put_files(self, paths: Sequence[str | os.PathLike[str]],
                  callback: Callable[[int], None] | None = None) -> list[str]:
        """Store many files (small ones packed); ``callback(n)`` reports files done."""
        oids = []
        for p in paths:
            oids.append(self.put_file(p))
            if callback:
                callback(1)
        return oids

    @abc.abstractmethod
    def get(self, oid: str) -> bytes:
        """The verified bytes of ``oid``; raises ObjectNotFound or CorruptObject."""

    def get_view(self, oid: str) -> bytes | memoryview:
        """The verified bytes of ``oid``, possibly a read-only view of the stored file rather than a copy: for a
        reader that takes what it needs from a large object and lets it go. By default ``get``."""
        return self.get(oid)

    def get_many(self, oids: Sequence[str]) -> list[bytes]:
        """The verified bytes of each of ``oids``, in order (stores that can read many at once override it)."""
        return [self.get(o) for o in oids]

    def get_many_views(self, oids: Sequence[str]) -> list[bytes | memoryview]:
        """``get_many``, but a large object may come as ``get_view`` gives it (a view of its stored file, not a
        copy): for a reader that passes them on and lets them go (a transfer). By default ``get_view`` each."""
        return [self.get_view(o) for o in oids]

    def get_ranges(self, oid: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """The bytes at ``(offset, length)`` ranges of ``oid``, NOT verified: for partial reads of large
        objects by a caller that keeps digests of those ranges and checks them. By default, slices of the
        whole object (verified); stores that can read ranges directly override this."""
        data = self.get(oid)
        return [data[o : o + n] for o, n in ranges]

    @abc.abstractmethod
    def has(self, oid: str) -> bool:
        """Whether the store holds ``oid``."""

    @abc.abstractmethod
    def stat(self, oid: str) -> StoredObject:
        """Where and how ``oid`` is stored."""

    @abc.abstractmethod
    def iter_oids(self) -> Iterator[str]:
        """Every address the store holds."""

    @abc.abstractmethod
    def children(self, oid: str) -> list[str]:
        """Objects that ``oid`` is made of (chunks of a large object); empty for plain objects."""

    @abc.abstractmethod
    def delete(self, oids: Iterable[str], *, older_than: float) -> int:
        """Remove ``oids`` written before the time ``older_than`` and not recorded as reused since (``freshen``);
        returns how many were removed."""

    @contextlib.contextmanager
    def cache_scope(self) -> Iterator[None]:
        """Within the block, objects read more than once may be served from memory (no-op by default)."""
        yield

    def repair(self, data: bytes) -> str:
        """Store ``data`` even where something is stored under its address (a damaged copy); its address.

        By default a ``put``: stores whose ``put`` trusts an existing address override this."""
        return self.put(data)

    def missing(self, oids: Iterable[str]) -> set[str]:
        """Those of ``oids`` that the store does not hold."""
        return {o for o in oids if not self.has(o)}

    def freshen(self, oids: Iterable[str]) -> None:  # noqa: B027 - optional for stores without gc races
        """Record that existing objects are used again, so that a concurrent gc keeps them for its grace period
        (without touching them: see docs/storage.md, "Packs and gc on object storage")."""

    def stored_as(self, oid: str) -> tuple[bool, bool]:
        """How ``oid`` is stored, as the ``chunk`` and ``compress`` arguments of ``put``, so that a copy into
        another store (a push, a fetch) keeps the layout its writer chose: a fragment written whole stays whole
        and can be read by column ranges there too. By default the defaults of ``put``."""
        return True, True

    def verify(self, oid: str) -> None:
        """Raise CorruptObject when the stored bytes do not hash to ``oid``."""
        self.get(oid)

    def stored_bytes(self) -> int:
        """Total bytes the store occupies."""
        return sum(self.stat(oid).stored for oid in self.iter_oids())
