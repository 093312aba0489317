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
import threading

import zstandard

from assay.errors import CorruptObject, FormatError

RAW, ZSTD, CHUNKS = 0, 1, 2
_PROBE = 4 << 10
_local = threading.local()
_MIN_COMPRESS = 256
_CHUNK_ENTRY = struct.Struct("<32sQ")


def encode(data: bytes | memoryview) -> tuple[int, bytes | memoryview]:
    """The codec and payload that store ``data``: compressed where a probe of its head says it pays."""
    if len(data) >= _MIN_COMPRESS and _compressible(data):
        packed = _compressor(3).compress(data)
        if len(packed) < 0.9 * len(data):
            return ZSTD, packed
    return RAW, data


def decode(codec: int, payload: bytes, oid: str) -> bytes:
    """The object's bytes from its codec and payload (not for chunk lists)."""
    if codec == RAW:
        return payload
    if codec == ZSTD:
        try:
            return zstandard.ZstdDecompressor().decompress(payload)
        except (zstandard.ZstdError, MemoryError) as e:  # MemoryError: a damaged header claiming a huge size
            raise CorruptObject(f"object {oid} is corrupt: its compressed bytes cannot be decompressed ({e}). "
                                "Run `assay fsck` to list every damaged object.") from e
    raise FormatError(f"object {oid} has codec {codec}, which this version of assay cannot read; upgrade assay")


def encode_chunk_list(chunks: list[tuple[str, int]]) -> bytes:
    """Payload of a large object split into chunks ``(oid, size)`` (codec CHUNKS)."""
    return b"".join(_CHUNK_ENTRY.pack(bytes.fromhex(o), n) for o, n in chunks)


def decode_chunk_list(body: bytes) -> list[tuple[str, int]]:
    """The ``(oid, size)`` chunks of a chunk list payload."""
    if len(body) % _CHUNK_ENTRY.size:
        raise CorruptObject("a chunk list is corrupt (its length is not a whole number of entries); run `assay fsck`")
    return [(d.hex(), n) for d, n in _CHUNK_ENTRY.iter_unpack(body)]


def _compressible(data: bytes | memoryview) -> bool:
    head = data[:_PROBE]
    return len(_compressor(1).compress(head)) < 0.9 * len(head)


def _compressor(level: int) -> zstandard.ZstdCompressor:
    """One compressor per thread and level: creating one costs more than compressing a small object."""
    cache: dict[int, zstandard.ZstdCompressor] = _local.__dict__.setdefault("compressors", {})
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level)
    return cache[level]
