"""BLAKE3 addresses of bytes and files."""

from __future__ import annotations

import os
import re
from pathlib import Path

from blake3 import blake3

HASH_HEX_LEN = 64
_OID = re.compile(r"^[0-9a-f]{64}$")
_BLOCK = 16 << 20


def hash_bytes(data: bytes | memoryview) -> str:
    """The object address of ``data``: its BLAKE3 digest in lowercase hex."""
    return blake3(data).hexdigest()


def hash_file(path: str | os.PathLike[str]) -> str:
    """BLAKE3 of a file's bytes, read in blocks (bounded memory) and hashed with all cores."""
    path = Path(path)
    if path.stat().st_size < _BLOCK:
        return hash_bytes(path.read_bytes())
    hasher = blake3(max_threads=blake3.AUTO)
    buf = bytearray(_BLOCK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            hasher.update(view[:n])
    return hasher.hexdigest()


def is_oid(text: str) -> bool:
    """Whether ``text`` is a full object address."""
    return bool(_OID.match(text))
