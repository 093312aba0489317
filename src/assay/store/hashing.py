"""BLAKE3 addresses of bytes and files."""

from __future__ import annotations

import os
import re
from pathlib import Path

from blake3 import blake3

HASH_HEX_LEN = 64
_OID = re.compile(r"^[0-9a-f]{64}$")
_MMAP_FROM = 1 << 20


def hash_bytes(data: bytes | memoryview) -> str:
    """The object address of ``data``: its BLAKE3 digest in lowercase hex."""
    return blake3(data).hexdigest()


def hash_file(path: str | os.PathLike[str]) -> str:
    """BLAKE3 of a file's bytes, memory-mapped and multi-threaded for large files."""
    path = Path(path)
    if path.stat().st_size < _MMAP_FROM:
        return hash_bytes(path.read_bytes())
    return blake3(max_threads=blake3.AUTO).update_mmap(path).hexdigest()


def is_oid(text: str) -> bool:
    """Whether ``text`` is a full object address."""
    return bool(_OID.match(text))
