"""How one object's bytes are laid out on storage: a codec byte, then the payload.

=====  ==========================================================================
byte   payload
=====  ==========================================================================
0x00   the object's bytes as they are
0x01   the object's bytes, zstd-compressed (used only where it saves >= 10 %)
0x02   a chunk list: for each chunk, its 32-byte BLAKE3 digest and its size (u64 LE)
=====  ==========================================================================
"""

from __future__ import annotations

import struct

import zstandard

from assay.errors import CorruptObject, FormatError

RAW, ZSTD, CHUNKS = 0, 1, 2
_PROBE = 8 << 10
_MIN_COMPRESS = 256
_CHUNK_ENTRY = struct.Struct("<32sQ")


def encode(data: bytes | memoryview) -> bytes:
    """The stored form of ``data``: compressed where a probe of its head says it pays."""
    if len(data) >= _MIN_COMPRESS and _compressible(data):
        packed = zstandard.ZstdCompressor(level=3).compress(data)
        if len(packed) < 0.9 * len(data):
            return bytes([ZSTD]) + packed
    return bytes([RAW]) + bytes(data)


def decode(stored: bytes | memoryview, oid: str) -> bytes:
    """The object's bytes from its stored form (not for chunk lists)."""
    codec = stored[0]
    if codec == RAW:
        return bytes(stored[1:])
    if codec == ZSTD:
        try:
            return zstandard.ZstdDecompressor().decompress(stored[1:])
        except (zstandard.ZstdError, MemoryError) as e:  # MemoryError: a damaged header claiming a huge size
            raise CorruptObject(f"object {oid} is corrupt: its compressed bytes cannot be decompressed ({e}). "
                                "Run `assay fsck` to list every damaged object.") from e
    raise FormatError(f"object {oid} has codec {codec}, which this version of assay cannot read; upgrade assay")


def encode_chunk_list(chunks: list[tuple[str, int]]) -> bytes:
    """Stored form of a large object split into chunks ``(oid, size)``."""
    return bytes([CHUNKS]) + b"".join(_CHUNK_ENTRY.pack(bytes.fromhex(o), n) for o, n in chunks)


def decode_chunk_list(stored: bytes | memoryview) -> list[tuple[str, int]]:
    """The ``(oid, size)`` chunks of a chunk list."""
    body = bytes(stored[1:])
    if len(body) % _CHUNK_ENTRY.size:
        raise CorruptObject("a chunk list is corrupt (its length is not a whole number of entries); run `assay fsck`")
    return [(d.hex(), n) for d, n in _CHUNK_ENTRY.iter_unpack(body)]


def _compressible(data: bytes | memoryview) -> bool:
    head = data[:_PROBE]
    return len(zstandard.ZstdCompressor(level=1).compress(head)) < 0.9 * len(head)
