"""Objects in a local folder: the packing store over a ``LocalBackend``.

Layout under the store root (the keys of ``assay.store.packing``, as files)::

    objects/ab/cdef…        one loose object (codec byte + payload), named by its address
    packs/<name>.pack       many small objects back to back
    packs/<name>.idx        sorted index of a pack: address, offset, length; written last
    keep/<ms>-<random>      addresses found stored and reused by a writer, read by gc
    tmp/                    temporary files, renamed into place when complete
"""

from __future__ import annotations

import os
from pathlib import Path

from assay.store import packing
from assay.store.backend import LocalBackend
from assay.store.packing import CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, PACK_OBJECT_MAX, PACK_TARGET, PackingStore

CHUNK_FROM = packing.CHUNK_FROM  # objects larger than this are chunked; read at each put (tests lower it)

__all__ = ["CHUNK_AVG", "CHUNK_FROM", "CHUNK_MAX", "CHUNK_MIN", "PACK_OBJECT_MAX", "PACK_TARGET", "LocalObjectStore"]


class LocalObjectStore(PackingStore):
    """An object store in a local folder."""

    def __init__(self, root: str | os.PathLike[str], *, durable: bool = True, threads: int | None = None):
        self.root = Path(root)
        self.durable = durable
        for sub in ("objects", "packs", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        super().__init__(LocalBackend(self.root, durable=durable), threads=threads)

    def chunk_from(self) -> int:
        return CHUNK_FROM
