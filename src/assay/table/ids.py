"""Sample ids and row content hashes, computed column-wise (spec: docs/ids.md).

A row's content hash is ``SHA-256(header || fixed fields || variable bytes)[:16]`` where the header is
``SHA-256(domain || schema tag)[:16]``; a sample id is the same over the key columns with another
domain, or, for datasets without key, derived from the row's content hash and its occurrence among
identical rows. The canonical bytes depend only on values and
logical types, never on Arrow widths, chunking, column order or the platform.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay.errors import InputError

ID_BYTES = 16
ID_TYPE = pa.binary(ID_BYTES)
ROW_DOMAIN = b"assay-row-v1\x00"
KEY_DOMAIN = b"assay-key-v1\x00"
OCCURRENCE_DOMAIN = b"assay-occ-v1\x00"
_local = threading.local()


def numpy_array(values: np.ndarray) -> pa.Array:
    """A 1-D NumPy array of numbers or booleans as an Arrow array; numbers that are contiguous and in the
    machine's byte order are not copied.

    ``pa.array(ndarray)`` asks whether it was given a masked array, which imports ``numpy.ma`` (10-15 ms of a
    command's start-up, for a module assay never uses)."""
    if values.dtype == np.bool_:
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])
    values = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("="))
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` for numbers, without the ``numpy.ma`` import that ``np.unique`` makes."""
    out = np.sort(values, kind="stable")
    if len(out) < 2:
        return out
    keep = np.empty(len(out), bool)
    keep[0] = True
    np.not_equal(out[1:], out[:-1], out=keep[1:])
    return out[keep]


HEX_TYPE = pa.string()  # how users see ids and hashes: 32 lowercase hex digits
_HEX_CHUNK = 1 << 25
_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)


def to_hex(ids: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Stored 16-byte ids (or hashes) as 32-digit lowercase hex strings, column-wise (the form users see)."""
    if isinstance(ids, pa.ChunkedArray):
        return pa.chunked_array([to_hex(c) for c in ids.chunks], HEX_TYPE)
    arr = ids.cast(ID_TYPE) if ids.type != ID_TYPE else ids
    n = len(arr)
    if n > _HEX_CHUNK:  # 32-bit string offsets: one chunk holds at most 2 GiB of digits
        return pa.chunked_array([to_hex(arr.slice(i, _HEX_CHUNK)) for i in range(0, n, _HEX_CHUNK)], HEX_TYPE)
    raw = np.frombuffer(arr.buffers()[1], np.uint8, count=ID_BYTES * n, offset=arr.offset * ID_BYTES) if n else \
        np.zeros(0, np.uint8)
    digits = np.empty((n * ID_BYTES, 2), np.uint8)
    digits[:, 0] = _HEX_DIGITS[raw >> 4]
    digits[:, 1] = _HEX_DIGITS[raw & 15]
    offsets = np.arange(0, 2 * ID_BYTES * n + 1, 2 * ID_BYTES, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(digits.tobytes()),
                                       arr.buffers()[0], arr.null_count)


def from_hex(ids: Sequence[str]) -> pa.Array:
    """Hex sample ids (as users see them) in their stored form, 16-byte binaries; a malformed one is an error."""
    try:
        return pa.array([bytes.fromhex(i) for i in ids], ID_TYPE)
    except (ValueError, TypeError, pa.ArrowInvalid) as e:
        raise InputError(f"sample ids are {2 * ID_BYTES} hex digits; got something else among {list(ids)[:3]}") from e


def row_hashes(table: pa.Table | pa.RecordBatch, columns: Sequence[str] | None = None) -> pa.Array:
    """Content hash of each row over ``columns`` (default: all), as 16-byte binaries."""
    return _digest(ROW_DOMAIN, table, columns)


def key_ids(table: pa.Table | pa.RecordBatch, key: Sequence[str]) -> pa.Array:
    """Sample ids of rows from their key columns."""
    return _digest(KEY_DOMAIN, table, key)


def content_ids(hashes: pa.Array, start_counts: dict[bytes, int] | None = None) -> pa.Array:
    """Ids for datasets without key: ``SHA-256(domain || row hash || u64 occurrence)[:16]``.

    The occurrence of a row is how many identical rows precede it (counting ``start_counts``, the rows
    already in the dataset), so identical rows get distinct, stable ids.
    """
    occurrence = _occurrences(hashes, start_counts or {})
    n = len(hashes)
    header = np.frombuffer(hashlib.sha256(OCCURRENCE_DOMAIN).digest()[:ID_BYTES], "<u8")
    own = np.frombuffer(hashes.buffers()[1], "<u8", count=2 * n, offset=hashes.offset * ID_BYTES)
    words = _interleave([np.full(n, header[0]), np.full(n, header[1]), own[0::2], own[1::2],
                         occurrence.astype("<u8")])
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(40), n, [None, pa.py_buffer(words)])
    return _sha_prefix([(fixed, [])])[0]


def schema_tag(schema: pa.Schema, columns: Sequence[str]) -> bytes:
    """The canonical description of ``columns``: sorted ``name:type`` pairs, NUL-separated."""
    parts = [f"{name}:{logical_type(schema.field(name).type)}" for name in sorted(columns)]
    return ("\x00".join(parts) + "\x00\x00").encode()


def logical_type(t: pa.DataType) -> str:
    """The type name that goes into hashes: widths and encodings that do not change values collapse."""
    if pa.types.is_dictionary(t):
        return logical_type(t.value_type)
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "uint64" if t == pa.uint64() else "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or _is_view(t, "string_view"):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "binary"
    if _is_view(t, "binary_view"):
        return "binary"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return f"timestamp[{t.tz or ''}]"
    if pa.types.is_time(t):
        return "time"
    if pa.types.is_duration(t):
        return "duration"
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_null(t):
        return "null"
    return f"json:{_nested(t)}"


def _nested(t: pa.DataType) -> str:
    """A nested type as its values see it: lists of any width or fixed size as ``list<T>``, structs by their
    field names and types, maps as ``map<K, V>``; never the name Arrow or Parquet gives a list's child (``item``
    or ``element``) nor its nullability, which change when a file is written and read back."""
    def inner(child: pa.DataType) -> str:
        kind = logical_type(child)
        return kind[len("json:"):] if kind.startswith("json:") else kind

    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or \
            str(t).startswith(("list_view<", "large_list_view<")):
        return f"list<{inner(t.value_type)}>"
    if pa.types.is_map(t):
        return f"map<{inner(t.key_type)}, {inner(t.item_type)}>"
    if pa.types.is_struct(t):
        return "struct<" + ", ".join(f"{t.field(i).name}: {inner(t.field(i).type)}" for i in range(t.num_fields)) + ">"
    return str(t)


def _is_view(t: pa.DataType, name: str) -> bool:
    return str(t) == name


def _digest(domain: bytes, table: pa.Table | pa.RecordBatch, columns: Sequence[str] | None) -> pa.Array:
    if table.num_rows == 0:
        return pa.array([], ID_TYPE)
    return _sha_prefix([_digest_input(domain, table, columns, {})])[0]


def row_hashes_and_key_ids(table: pa.Table | pa.RecordBatch, key: Sequence[str] | None,
                           columns: Sequence[str] | None = None) -> tuple[pa.Array, pa.Array | None]:
    """Content hashes (over ``columns``) and, when ``key`` is given, key ids: one pass, one encoding per column."""
    if table.num_rows == 0:
        empty = pa.array([], ID_TYPE)
        return empty, (empty if key else None)
    cache: dict[str, tuple[np.ndarray, np.ndarray, pa.Array | None]] = {}
    inputs = [_digest_input(ROW_DOMAIN, table, columns, cache)]
    if key:
        inputs.append(_digest_input(KEY_DOMAIN, table, key, cache))
    out = _sha_prefix(inputs)
    return out[0], (out[1] if key else None)


def _digest_input(domain: bytes, table: pa.Table | pa.RecordBatch, columns: Sequence[str] | None,
                  cache: dict[str, tuple[np.ndarray, np.ndarray, pa.Array | None]]) -> tuple[pa.Array, list[pa.Array]]:
    """The fixed-width part (one binary per row) and the variable-length parts of a digest's input."""
    cols = list(table.schema.names if columns is None else columns)
    missing = [c for c in cols if c not in table.schema.names]
    if missing:
        raise InputError(f"column(s) {missing} are not in the data; its columns are {table.schema.names}")
    n = table.num_rows
    header = np.frombuffer(hashlib.sha256(domain + schema_tag(table.schema, cols)).digest()[:16], "<u8")
    valid_words = np.zeros(((len(cols) + 63) // 64, n), "<u8")
    values: list[np.ndarray] = []
    varlen: list[pa.Array] = []
    for i, name in enumerate(sorted(cols)):
        if name not in cache:
            cache[name] = encode_column(one_chunk(table.column(name)))
        valid, value, tail = cache[name]
        valid_words[i // 64] |= valid.astype("<u8") << np.uint64(i % 64)
        values.append(value)
        if tail is not None:
            varlen.append(tail)
    words = _interleave([np.full(n, header[0]), np.full(n, header[1]), *valid_words, *values])
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(8 * words.shape[1]), n, [None, pa.py_buffer(words)])
    return fixed, varlen


def _interleave(columns: Sequence[np.ndarray], block: int = 4096) -> np.ndarray:
    """Row-major ``(n, k)`` u64 matrix from ``k`` columns, filled in cache-sized blocks of rows."""
    n = len(columns[0])
    out = np.empty((n, len(columns)), "<u8")
    for start in range(0, n, block):
        rows = out[start : start + block]
        for i, col in enumerate(columns):
            rows[:, i] = col[start : start + block]
    return out


def one_chunk(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A column as one array (no copy when it is one chunk already)."""
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


def encode_column(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, pa.Array | None]:
    """Canonical form of a column: validity, one u64 per row, and for variable-length types the bytes.

    The u64 is the value's 8 little-endian bytes for fixed types and the byte length for
    variable-length types; it is 0 for nulls, whose variable part is empty.
    """
    t = arr.type
    if pa.types.is_dictionary(t):
        return _encode_dictionary(arr)
    kind = logical_type(t)
    valid = _valid(arr)
    if kind == "null":
        return valid, np.zeros(len(arr), "<u8"), None
    if kind in ("string", "binary", "decimal") or kind.startswith("json"):
        as_binary = _as_binary(arr, kind)
        lengths = pc.binary_length(as_binary).fill_null(0).to_numpy().astype("<u8")
        return valid, lengths, as_binary.fill_null(b"")
    values = _as_8_bytes(arr, kind).view("<u8")
    return valid, np.where(valid, values, np.uint64(0)), None


def _as_8_bytes(arr: pa.Array, kind: str) -> np.ndarray:
    t = arr.type
    if kind == "bool":
        return arr.fill_null(False).cast(pa.uint8()).to_numpy(zero_copy_only=False).astype("<u8")
    if kind == "int":
        return arr.fill_null(0).cast(pa.int64()).to_numpy().astype("<i8", copy=False)
    if kind == "uint64":
        return arr.fill_null(0).to_numpy().astype("<u8", copy=False)
    if kind == "float":
        values = arr.cast(pa.float64()).fill_null(0.0).to_numpy().astype("<f8")
        values[np.isnan(values)] = np.nan  # one NaN bit pattern
        return values + 0.0  # no negative zero
    if kind == "date":
        return arr.cast(pa.date32()).cast(pa.int32()).fill_null(0).to_numpy().astype("<i8")
    if kind.startswith("timestamp"):
        ns = arr.cast(pa.timestamp("ns", t.tz)).cast(pa.int64())
    else:
        ns = arr.cast(pa.time64("ns") if kind == "time" else pa.duration("ns")).cast(pa.int64())
    return ns.fill_null(0).to_numpy().astype("<i8", copy=False)


def _as_binary(arr: pa.Array, kind: str) -> pa.Array:
    if kind == "string":
        return arr.cast(pa.large_string()).cast(pa.large_binary())
    if kind == "binary":
        return arr.cast(pa.large_binary())
    if kind == "decimal":
        return arr.cast(pa.string()).cast(pa.large_binary())
    texts = [None if v is None else json.dumps(v, sort_keys=True, default=str, separators=(",", ":"))
             for v in arr.to_pylist()]
    return pa.array(texts, pa.large_string()).cast(pa.large_binary())


def _encode_dictionary(arr: pa.DictionaryArray) -> tuple[np.ndarray, np.ndarray, pa.Array | None]:
    """Encode the (small) dictionary once, then pick per row: the same bytes as the decoded column."""
    valid = _valid(arr)
    if len(arr.dictionary) == 0:
        return valid, np.zeros(len(arr), "<u8"), _empty_tail(arr.dictionary, len(arr))
    dict_valid, dict_values, tail = encode_column(arr.dictionary)
    indices = arr.indices.fill_null(0).cast(pa.int64()).to_numpy()
    valid = valid & dict_valid[indices]
    values = np.where(valid, dict_values[indices], np.uint64(0))
    if tail is None:
        return valid, values, None
    empty = pa.scalar(b"", pa.large_binary())
    return valid, values, pc.if_else(numpy_array(valid), tail.take(numpy_array(indices)), empty)


def _empty_tail(dictionary: pa.Array, n: int) -> pa.Array | None:
    kind = logical_type(dictionary.type)
    if kind in ("string", "binary", "decimal") or kind.startswith("json"):
        return pa.array(np.full(n, b""), pa.large_binary())
    return None


def _valid(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.ones(len(arr), bool)
    return arr.is_valid().to_numpy(zero_copy_only=False)


# Up to this many rows, a process that has not loaded DuckDB hashes with hashlib (3 us a row) rather than pay
# DuckDB's import and connection (80 ms): a command line appending 10,000 rows does not start a database.
_HASHLIB_ROWS = 20_000


def _sha_prefix(inputs: list[tuple[pa.Array, list[pa.Array]]]) -> list[pa.Array]:
    """``SHA-256(fixed || varlen...)[:16]`` per row for each input, in one DuckDB query (vectorised, threaded),
    or with hashlib for a small input when DuckDB is not loaded (the same bytes either way)."""
    if "duckdb" not in sys.modules and all(
            len(fixed) <= _HASHLIB_ROWS and all(v.type == pa.large_binary() for v in varlen)
            for fixed, varlen in inputs):
        return [_sha_prefix_hashlib(fixed, varlen) for fixed, varlen in inputs]
    arrays, names, exprs = [], [], []
    for d, (fixed, varlen) in enumerate(inputs):
        parts = [f"f{d}", *(f"v{d}_{i}" for i in range(len(varlen)))]
        arrays.extend([fixed, *varlen])
        names.extend(parts)
        exprs.append(f"unhex(left(sha256({' || '.join(parts)}), {2 * ID_BYTES})) AS h{d}")
    con = _connection()
    con.register("assay_rows", pa.table(arrays, names=names))
    try:
        out = con.sql(f"SELECT {', '.join(exprs)} FROM assay_rows").to_arrow_table()
    finally:
        con.unregister("assay_rows")
    return [out.column(f"h{d}").combine_chunks().cast(ID_TYPE) for d in range(len(inputs))]


def _sha_prefix_hashlib(fixed: pa.FixedSizeBinaryArray, varlen: list[pa.Array]) -> pa.Array:
    """Each row's message (its fixed part, then its variable parts) joined into one buffer by Arrow, then one
    ``sha256`` call per row: half the Python work of updating a hash per part."""
    n = len(fixed)
    message = fixed.cast(pa.large_binary()) if not varlen else \
        pc.binary_join_element_wise(fixed.cast(pa.large_binary()), *varlen, pa.scalar(b"", pa.large_binary()))
    data = memoryview(message.buffers()[2] or b"")
    offsets = np.frombuffer(message.buffers()[1], "<i8", n + 1, message.offset * 8).tolist()
    sha, k = hashlib.sha256, ID_BYTES
    digests = [sha(data[a:b]).digest()[:k] for a, b in itertools.pairwise(offsets)]
    return pa.FixedSizeBinaryArray.from_buffers(ID_TYPE, n, [None, pa.py_buffer(b"".join(digests))])


def release() -> None:
    """Close this thread's DuckDB connection, returning the memory its buffer manager keeps."""
    con = getattr(_local, "con", None)
    if con is not None:
        con.close()
        _local.con = None


def _connection() -> Any:
    import duckdb  # imported on first use: it is not needed to open a repository

    con = getattr(_local, "con", None)
    if con is None:
        con = _local.con = duckdb.connect(config={"memory_limit": "1GB", "threads": os.cpu_count() or 1})
    return con


def id_words(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A column of 16-byte ids or hashes as an ``(n, 2)`` array of little-endian u64 (a view when it is one chunk);
    ``.byteswap()`` of it sorts as the bytes do."""
    arr = one_chunk(col)
    n = len(arr)
    return np.frombuffer(arr.buffers()[1], "<u8", count=2 * n, offset=arr.offset * ID_BYTES).reshape(n, 2)


def _occurrences(hashes: pa.Array, start: dict[bytes, int]) -> np.ndarray:
    """For each row, how many rows with the same hash precede it (plus those in ``start``)."""
    n = len(hashes)
    if n == 0:
        return np.zeros(0, np.uint64)
    keys = np.frombuffer(hashes.buffers()[1], dtype="V16", count=n, offset=hashes.offset * 16)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    new_group = np.ones(n, bool)
    new_group[1:] = sorted_keys[1:] != sorted_keys[:-1]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    occ = np.empty(n, np.uint64)
    occ[order] = np.arange(n) - group_start
    if start:
        firsts = np.flatnonzero(new_group)
        ends = np.append(firsts[1:], n)
        for i, end in zip(firsts.tolist(), ends.tolist(), strict=True):
            base = start.get(bytes(sorted_keys[i]), 0)
            if base:
                occ[order[i:end]] += np.uint64(base)
    return occ
