"""Fragments: plain Parquet files of rows, id indexes (sample id and content hash per row), deletion vectors,
statistics."""

from __future__ import annotations

import mmap
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from assay.errors import CorruptObject, FormatError, ObjectNotFound
from assay.store import ObjectStore
from assay.table.ids import ID_BYTES, numpy_array, sorted_unique
from assay.table.manifest import HASH_COLUMN, ID_COLUMN, INTERNAL_COLUMNS, FragmentRef
from assay.table.stats import ColumnStats, FragmentStats, column_stats, fragment_stats

FRAGMENT_ROWS = 1 << 18  # rows per fragment
ROW_GROUP_ROWS = 1 << 16
POSITION = "_assay_pos"


def write_fragment(store: ObjectStore, table: pa.Table) -> FragmentRef:
    """Write ``table`` (id and hash columns first) as a Parquet object of its data, an id index and the
    statistics of its columns."""
    data_table = table.drop_columns([ID_COLUMN, HASH_COLUMN])
    sink = pa.BufferOutputStream()
    pq.write_table(data_table, sink, compression="zstd", row_group_size=ROW_GROUP_ROWS,
                   use_dictionary=_dictionary_columns(data_table.schema))
    data = sink.getvalue()
    index = _id_index(table.column(ID_COLUMN), table.column(HASH_COLUMN))
    ids = store.put(index, chunk=False)
    stats = store.put(fragment_stats(data_table, data).to_bytes())
    oid = store.put(memoryview(data), chunk=False, compress=False)  # stored as it is (no copy): its columns read apart
    return FragmentRef(oid, table.num_rows, data.size + len(index), ids, stats=stats)


def _dictionary_columns(schema: pa.Schema) -> list[str] | bool:
    """Columns worth dictionary encoding: text and binary (numbers compress better plainly, and faster)."""
    names = [f.name for f in schema if pa.types.is_dictionary(f.type) or pa.types.is_string(f.type)
             or pa.types.is_large_string(f.type) or pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
    return names or False


def read_stats(store: ObjectStore, ref: FragmentRef) -> FragmentStats | None:
    """The statistics of all rows of a fragment (deleted rows included); None for fragments written before
    statistics were kept."""
    return FragmentStats.from_bytes(store.get(ref.stats), ref.stats) if ref.stats else None


def _id_index(ids: pa.ChunkedArray, hashes: pa.ChunkedArray) -> bytes:
    n = len(ids)
    out = np.empty((n, 2 * ID_BYTES), np.uint8)
    out[:, :ID_BYTES] = _fixed_bytes(ids)
    out[:, ID_BYTES:] = _fixed_bytes(hashes)
    return out.tobytes()


def _fixed_bytes(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return np.frombuffer(arr.buffers()[1], np.uint8, count=ID_BYTES * len(arr),
                         offset=arr.offset * ID_BYTES).reshape(-1, ID_BYTES)


def read_ids(store: ObjectStore, ref: FragmentRef, rows: np.ndarray | None = None) -> tuple[pa.Array, pa.Array]:
    """Sample ids and content hashes of every row of a fragment (deleted rows included), or of the rows that
    ``rows`` picks (positions, or a boolean mask of ``ref.rows``)."""
    raw = store.get_view(ref.ids)  # a view of the mapped file: the ids and hashes below are copied out of it
    if len(raw) != ref.rows * 2 * ID_BYTES:
        raise CorruptObject(f"id index {ref.ids} does not match its fragment ({ref.rows} rows); run `assay fsck`")
    # one 16-byte item per id and per hash: picking rows copies whole items, ~10x faster than picking them
    # from a (rows, 32) uint8 matrix or with Arrow's filter of fixed-size binary
    pairs = np.frombuffer(raw, f"V{ID_BYTES}").reshape(ref.rows, 2)
    if rows is not None:
        pairs = pairs[rows]
    return _as_ids(pairs[:, 0]), _as_ids(pairs[:, 1])


def _as_ids(items: np.ndarray) -> pa.Array:
    buf = pa.py_buffer(np.ascontiguousarray(items))
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(ID_BYTES), len(items), [None, buf])


def live_stats(store: ObjectStore, ref: FragmentRef, columns: Sequence[str]) -> dict[str, ColumnStats] | None:
    """Summaries of the live rows of a fragment, for those of ``columns`` it holds: its statistics when
    no row is deleted, else computed from the live rows (read). None when it has no statistics."""
    stats = read_stats(store, ref)
    if stats is None:
        return None
    present = [c for c in dict.fromkeys(columns) if c in stats.columns]
    if not ref.deleted:
        return {c: stats.columns[c] for c in present}
    table = read_fragment(store, ref, present)
    return {c: column_stats(table.column(c)) for c in present}


def read_fragment(store: ObjectStore, ref: FragmentRef, columns: Sequence[str] | None = None,
                  *, positions: bool = False) -> pa.Table:
    """The live rows of a fragment (deleted rows removed), optionally with their row positions.

    ``columns`` may name ``_assay_id`` and ``_assay_hash``; those come from the id index, and a read of
    only those never opens the Parquet file.
    """
    wanted = list(columns) if columns is not None else None
    data_cols = [c for c in wanted if c not in INTERNAL_COLUMNS] if wanted is not None else None
    if wanted and data_cols == []:
        return _read_internal(store, ref, wanted, positions=positions)
    table = _empty_rows(ref.rows) if data_cols == [] else _parquet(store, ref, data_cols).read(columns=data_cols)
    if wanted is not None and any(c in INTERNAL_COLUMNS for c in wanted):
        ids, hashes = read_ids(store, ref)
        extra = {ID_COLUMN: ids, HASH_COLUMN: hashes}
        for c in (ID_COLUMN, HASH_COLUMN):
            if c in wanted:
                table = table.append_column(c, extra[c])
        table = table.select(wanted)
    if positions:
        table = table.append_column(POSITION, numpy_array(np.arange(ref.rows, dtype=np.uint32)))
    return table.filter(live_mask(store, ref)) if ref.deleted else table


def _read_internal(store: ObjectStore, ref: FragmentRef, wanted: list[str], *, positions: bool) -> pa.Table:
    """``read_fragment`` of id and hash columns only: from the id index, the live rows picked in numpy."""
    live = live_mask(store, ref) if ref.deleted else None
    ids, hashes = read_ids(store, ref, live)
    extra = {ID_COLUMN: ids, HASH_COLUMN: hashes}
    table = pa.Table.from_arrays([extra[c] for c in wanted], names=wanted)
    if positions:
        at = np.flatnonzero(live).astype(np.uint32) if live is not None else np.arange(ref.rows, dtype=np.uint32)
        table = table.append_column(POSITION, numpy_array(at))
    return table


def _empty_rows(n: int) -> pa.Table:
    """A table of ``n`` rows and no columns."""
    return pa.table({"_": pa.nulls(n)}).drop_columns(["_"])


def scan_fragment(store: ObjectStore, ref: FragmentRef, columns: Sequence[str] | None,
                  batch_size: int) -> Iterator[pa.RecordBatch]:
    """Live rows of a fragment in record batches, reading one row group at a time."""
    wanted = list(columns) if columns is not None else None
    internal = [c for c in wanted or () if c in INTERNAL_COLUMNS]
    if internal:  # ids come from the index; read whole and slice
        table = read_fragment(store, ref, wanted)
        yield from (b for b in table.to_batches(batch_size) if b.num_rows)
        return
    pf = _parquet(store, ref, wanted)
    mask = live_mask(store, ref) if ref.deleted else None
    start = 0
    for batch in pf.iter_batches(batch_size=batch_size, columns=wanted):
        if mask is not None:
            batch = batch.filter(numpy_array(mask[start : start + batch.num_rows]))
        start += batch.num_rows
        if batch.num_rows:
            yield batch


def _parquet(store: ObjectStore, ref: FragmentRef, columns: Sequence[str] | None = None) -> pq.ParquetFile:
    """The fragment's Parquet file; when ``columns`` are a small part of it, only their bytes (and the
    footer's) are read, each verified against the digests its statistics keep."""
    data = None
    if columns is not None and ref.stats:
        try:
            data = _partial(store, ref, columns)
        except (CorruptObject, ObjectNotFound, FormatError):
            data = None  # read the whole object: its own check says what is damaged
    try:
        return pq.ParquetFile(pa.BufferReader(data if data is not None else store.get(ref.oid)))
    except pa.ArrowInvalid as e:
        raise CorruptObject(f"fragment {ref.oid} is not a readable Parquet file: {e}; run `assay fsck`") from e


def _partial(store: ObjectStore, ref: FragmentRef, columns: Sequence[str]) -> pa.Buffer | None:
    """A buffer the size of the fragment's Parquet file holding only the footer and ``columns`` (verified);
    None when reading the whole file is as good (or the layout is unknown)."""
    stats = read_stats(store, ref)
    layout = stats.layout if stats else None
    if layout is None or any(c not in layout.columns for c in columns):
        return None
    parts = [layout.footer, *(layout.columns[c] for c in dict.fromkeys(columns))]
    if sum(p.size for p in parts) > layout.size // 2:
        return None
    buffer = mmap.mmap(-1, layout.size)  # anonymous: pages never written stay unallocated
    spans = [span for p in parts for span in p.ranges]
    fetched = iter(store.get_ranges(ref.oid, spans))
    for p in parts:
        for (offset, _), piece in zip(p.ranges, p.verified([next(fetched) for _ in p.ranges], f"fragment {ref.oid}"),
                                      strict=True):
            buffer[offset : offset + len(piece)] = piece
    return pa.py_buffer(buffer)


def live_mask(store: ObjectStore, ref: FragmentRef) -> np.ndarray:
    mask = np.ones(ref.rows, bool)
    if ref.deleted:
        mask[deleted_positions(store, ref)] = False
    return mask


def deleted_positions(store: ObjectStore, ref: FragmentRef) -> np.ndarray:
    if not ref.deleted:
        return np.zeros(0, np.uint32)
    return np.frombuffer(store.get(ref.deleted), "<u4")


def with_deletions(store: ObjectStore, ref: FragmentRef, positions: np.ndarray) -> FragmentRef:
    """``ref`` with the rows at ``positions`` deleted as well."""
    if len(positions) == 0:
        return ref
    both = np.concatenate([deleted_positions(store, ref).astype(np.uint32), positions.astype(np.uint32)])
    merged = sorted_unique(both).astype("<u4")
    if len(merged) == 0:
        return ref.whole()
    oid = store.put(merged.tobytes())
    return replace(ref, deleted=oid, deleted_rows=len(merged))


def with_only(store: ObjectStore, ref: FragmentRef, keep: np.ndarray) -> FragmentRef:
    """``ref`` restricted to the rows at ``keep`` (all others deleted)."""
    mask = np.ones(ref.rows, bool)
    mask[keep] = False
    return with_deletions(store, ref.whole(), np.flatnonzero(mask))


def id_table(store: ObjectStore, fragments: Sequence[FragmentRef]) -> pa.Table:
    """Ids, hashes, fragment index and row position of every live row of ``fragments``."""
    parts = []
    for i, ref in enumerate(fragments):
        t = read_fragment(store, ref, [ID_COLUMN, HASH_COLUMN], positions=True)
        parts.append(t.append_column("_assay_frag", numpy_array(np.full(t.num_rows, i, np.int32))))
    if not parts:
        return empty_id_table()
    return pa.concat_tables(parts)


def empty_id_table() -> pa.Table:
    return pa.table({ID_COLUMN: pa.array([], pa.binary(16)), HASH_COLUMN: pa.array([], pa.binary(16)),
                     POSITION: pa.array([], pa.uint32()), "_assay_frag": pa.array([], pa.int32())})
