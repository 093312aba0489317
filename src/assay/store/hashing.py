"""BLAKE3 addresses of bytes and files."""

from __future__ import annotations

import mmap
import os
import re
from pathlib import Path

from blake3 import blake3

HASH_HEX_LEN = 64
_OID = re.compile(r"^[0-9a-f]{64}$")
_WINDOW = 64 << 20  # a multiple of the page size


def hash_bytes(data: bytes | bytearray | memoryview) -> str:
    """The object address of ``data``: its BLAKE3 digest in lowercase hex."""
    return blake3(data).hexdigest()


def hash_file(path: str | os.PathLike[str]) -> str:
    """BLAKE3 of a file's bytes, hashed with all cores from memory-mapped windows (no copy; the
    mapping is released window by window, so memory stays bounded for files of any size)."""
    path = Path(path)
    size = path.stat().st_size
    if size < _WINDOW:
        return hash_bytes(path.read_bytes())
    hasher = blake3(max_threads=blake3.AUTO)
    with open(path, "rb") as f:
        for offset in range(0, size, _WINDOW):
            with mmap.mmap(f.fileno(), min(_WINDOW, size - offset), offset=offset, access=mmap.ACCESS_READ) as mm:
                hasher.update(mm)
    return hasher.hexdigest()


def is_oid(text: str) -> bool:
    """Whether ``text`` is a full object address."""
    return bool(_OID.match(text))
