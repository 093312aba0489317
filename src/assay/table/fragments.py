"""Fragments: Parquet files of rows with their sample id and content hash; deletion vectors."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from assay.errors import CorruptObject
from assay.store import ObjectStore
from assay.table.manifest import HASH_COLUMN, ID_COLUMN, FragmentRef

FRAGMENT_ROWS = 1 << 18  # rows per fragment
ROW_GROUP_ROWS = 1 << 16
POSITION = "_assay_pos"


def write_fragment(store: ObjectStore, table: pa.Table) -> FragmentRef:
    """Write ``table`` (with id and hash columns) as one Parquet object."""
    sink = pa.BufferOutputStream()
    plain = [f.name for f in table.schema if f.name not in (ID_COLUMN, HASH_COLUMN)]
    pq.write_table(table, sink, compression={**{c: "zstd" for c in plain}, ID_COLUMN: "none", HASH_COLUMN: "none"},
                   use_dictionary=plain, row_group_size=ROW_GROUP_ROWS, write_statistics=plain)
    data = sink.getvalue().to_pybytes()
    return FragmentRef(store.put(data, chunk=False), table.num_rows, len(data))


def read_fragment(store: ObjectStore, ref: FragmentRef, columns: Sequence[str] | None = None,
                  *, positions: bool = False) -> pa.Table:
    """The live rows of a fragment (deleted rows removed), optionally with their row positions."""
    table = _parquet(store, ref).read(columns=list(columns) if columns is not None else None)
    if positions:
        table = table.append_column(POSITION, pa.array(np.arange(ref.rows, dtype=np.uint32)))
    return table.filter(live_mask(store, ref)) if ref.deleted else table


def scan_fragment(store: ObjectStore, ref: FragmentRef, columns: Sequence[str] | None,
                  batch_size: int) -> Iterator[pa.RecordBatch]:
    """Live rows of a fragment in record batches, reading one row group at a time."""
    pf = _parquet(store, ref)
    mask = live_mask(store, ref) if ref.deleted else None
    start = 0
    for batch in pf.iter_batches(batch_size=batch_size, columns=list(columns) if columns else None):
        if mask is not None:
            batch = batch.filter(pa.array(mask[start : start + batch.num_rows]))
        start += batch.num_rows
        if batch.num_rows:
            yield batch


def _parquet(store: ObjectStore, ref: FragmentRef) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(pa.BufferReader(store.get(ref.oid)))
    except pa.ArrowInvalid as e:
        raise CorruptObject(f"fragment {ref.oid} is not a readable Parquet file: {e}; run `assay fsck`") from e


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
    merged = np.union1d(deleted_positions(store, ref), positions.astype(np.uint32)).astype("<u4")
    if len(merged) == 0:
        return FragmentRef(ref.oid, ref.rows, ref.bytes)
    oid = store.put(merged.tobytes())
    return FragmentRef(ref.oid, ref.rows, ref.bytes, oid, len(merged))


def with_only(store: ObjectStore, ref: FragmentRef, keep: np.ndarray) -> FragmentRef:
    """``ref`` restricted to the rows at ``keep`` (all others deleted)."""
    mask = np.ones(ref.rows, bool)
    mask[keep] = False
    return with_deletions(store, FragmentRef(ref.oid, ref.rows, ref.bytes), np.flatnonzero(mask))


def id_table(store: ObjectStore, fragments: Sequence[FragmentRef]) -> pa.Table:
    """Ids, hashes, fragment index and row position of every live row of ``fragments``."""
    parts = []
    for i, ref in enumerate(fragments):
        t = read_fragment(store, ref, [ID_COLUMN, HASH_COLUMN], positions=True)
        parts.append(t.append_column("_assay_frag", pa.array(np.full(t.num_rows, i, np.int32))))
    if not parts:
        return empty_id_table()
    return pa.concat_tables(parts)


def empty_id_table() -> pa.Table:
    return pa.table({ID_COLUMN: pa.array([], pa.binary(16)), HASH_COLUMN: pa.array([], pa.binary(16)),
                     POSITION: pa.array([], pa.uint32()), "_assay_frag": pa.array([], pa.int32())})
