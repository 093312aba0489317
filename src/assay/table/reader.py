"""Reading a dataset version: Arrow, pandas, polars, DuckDB, streamed batches, and a PyTorch-ready view."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pyarrow as pa

from assay.errors import InputError
from assay.store import ObjectStore
from assay.table.fragments import live_stats, read_fragment, scan_fragment
from assay.table.ids import HEX_TYPE, to_hex
from assay.table.manifest import HASH_COLUMN, ID_COLUMN, INTERNAL_COLUMNS, Manifest
from assay.table.stats import ColumnStats, combine

T = TypeVar("T", pa.Table, pa.RecordBatch)


class DatasetVersion:
    """One dataset at one commit. Reads are verified against object hashes; nothing is cached."""

    def __init__(self, store: ObjectStore, manifest: Manifest, *, commit: str | None = None):
        self._store = store
        self.manifest = manifest
        self.commit = commit

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def schema(self) -> pa.Schema:
        return self.manifest.schema

    @property
    def key(self) -> tuple[str, ...] | None:
        return self.manifest.key

    @property
    def num_rows(self) -> int:
        return self.manifest.rows

    def __len__(self) -> int:
        return self.manifest.rows

    def __repr__(self) -> str:
        at = f" @ {self.commit[:12]}" if self.commit else ""
        return f"<DatasetVersion {self.name}{at}: {self.num_rows} rows, {len(self.schema)} columns>"

    def to_arrow(self, columns: Sequence[str] | None = None, *, with_ids: bool = False) -> pa.Table:
        """The whole version as an Arrow table (``with_ids`` adds ``_assay_id``, the sample id, and
        ``_assay_hash``, the row's content hash, as 32-digit hex strings: the form scores, quarantine and
        diff show, so that they join)."""
        wanted = self._columns(columns, with_ids)
        parts = [conform(_hex_ids(read_fragment(self._store, f, wanted)), self._out_schema(wanted))
                 for f in self.manifest.fragments]
        if not parts:
            return self._out_schema(wanted).empty_table()
        return pa.concat_tables(parts)

    def scan(self, columns: Sequence[str] | None = None, *, batch_size: int = 65536,
             with_ids: bool = False) -> Iterator[pa.RecordBatch]:
        """Record batches, one fragment at a time, for data larger than memory."""
        wanted = self._columns(columns, with_ids)
        schema = self._out_schema(wanted)
        for f in self.manifest.fragments:
            for batch in scan_fragment(self._store, f, wanted, batch_size):
                yield conform_batch(_hex_ids(batch), schema)

    def to_pandas(self, columns: Sequence[str] | None = None, *, with_ids: bool = False) -> Any:
        """A pandas frame (``with_ids``: the hex ``_assay_id`` and ``_assay_hash`` columns first)."""
        return self.to_arrow(columns, with_ids=with_ids).to_pandas()

    def to_polars(self, columns: Sequence[str] | None = None, *, with_ids: bool = False) -> Any:
        import polars as pl

        return pl.from_arrow(self.to_arrow(columns, with_ids=with_ids))

    def to_duckdb(self, connection: Any = None, columns: Sequence[str] | None = None) -> Any:
        """A DuckDB relation over the version, which can be queried any number of times.

        For data larger than memory, stream instead: ``con.from_arrow(version.reader())`` (one pass).
        """
        import duckdb

        con = connection or duckdb.connect()
        return con.from_arrow(self.to_arrow(columns))

    def reader(self, columns: Sequence[str] | None = None) -> pa.RecordBatchReader:
        """A one-pass Arrow stream of the version, for engines that consume readers (DuckDB, Polars)."""
        return pa.RecordBatchReader.from_batches(self._out_schema(self._columns(columns, False)),
                                                 self.scan(columns))

    def column_stats(self, columns: Sequence[str]) -> dict[str, ColumnStats | None]:
        """Summaries of ``columns`` over the live rows of the version, from the statistics kept with each
        fragment (a fragment with deleted rows is summarised from its live rows, read for the purpose).
        None for a column when a fragment has no statistics (written before they were kept) or holds the
        column with another type than the version's schema."""
        types = {c: str(self.schema.field(c).type) for c in self._columns(columns, False)}
        out: dict[str, ColumnStats | None] = {c: ColumnStats.all_null(t, 0) for c, t in types.items()}
        for f in self.manifest.fragments:
            types = {c: t for c, t in types.items() if out[c] is not None}
            if not types:
                break
            known = live_stats(self._store, f, list(types))
            for c, t in types.items():
                merged = out[c]
                part = known.get(c, ColumnStats.all_null(t, f.live_rows)) if known is not None else None
                out[c] = combine(merged, part) if merged is not None and part is not None else None
        return out

    def read_blob(self, oid: str) -> bytes:
        """The bytes of a blob referenced by this dataset (verified)."""
        return self._store.get(oid)

    def torch(self, columns: Sequence[str] | None = None, *, load_blobs: bool = True,
              transform: Callable[[dict[str, Any]], Any] | None = None) -> SampleView:
        """A map-style view (``len`` and indexing) that a PyTorch DataLoader consumes as it is."""
        return SampleView(self, columns, load_blobs=load_blobs, transform=transform)

    def _columns(self, columns: Sequence[str] | None, with_ids: bool) -> list[str]:
        names = list(columns) if columns is not None else list(self.schema.names)
        unknown = [c for c in names if c not in self.schema.names]
        if unknown:
            raise InputError(f"dataset {self.name!r} has no column(s) {unknown}; it has {self.schema.names}")
        return [ID_COLUMN, HASH_COLUMN, *names] if with_ids else names

    def _out_schema(self, columns: Sequence[str]) -> pa.Schema:
        fields = [pa.field(c, HEX_TYPE) if c in (ID_COLUMN, HASH_COLUMN) else self.schema.field(c) for c in columns]
        return pa.schema(fields)


class SampleView:
    """Samples as dicts by index, blobs loaded as bytes; works with ``torch.utils.data.DataLoader``.

    torch is never imported here: DataLoader needs only ``__len__`` and ``__getitem__``.
    """

    def __init__(self, version: DatasetVersion, columns: Sequence[str] | None, *, load_blobs: bool,
                 transform: Callable[[dict[str, Any]], Any] | None):
        self._version = version
        self._table = version.to_arrow(columns)
        self._load_blobs = load_blobs and bool(version.manifest.blob_columns)
        self._transform = transform

    def __len__(self) -> int:
        return self._table.num_rows

    def __getitem__(self, index: int) -> Any:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        row = {k: v[0] for k, v in self._table.slice(index, 1).to_pydict().items()}
        if self._load_blobs:
            for col in self._version.manifest.blob_columns:
                if col in row and row[col] is not None:
                    row["bytes" if col == "blob" else f"{col}_bytes"] = self._version.read_blob(row[col])
        return self._transform(row) if self._transform else row

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self)):
            yield self[i]


def _hex_ids(data: T) -> T:
    """``data`` with its stored 16-byte id and hash columns (where present) as hex strings."""
    for c in INTERNAL_COLUMNS:
        if c in data.schema.names:
            i = data.schema.get_field_index(c)
            data = data.set_column(i, pa.field(c, HEX_TYPE), to_hex(data.column(i)))
    return data


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns and types: missing columns as nulls (schema evolution)."""
    if table.schema.equals(schema):
        return table
    cols = [table.column(f.name).cast(f.type) if f.name in table.column_names
            else pa.nulls(table.num_rows, f.type) for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


def conform_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    if batch.schema.equals(schema):
        return batch
    return conform(pa.Table.from_batches([batch]), schema).combine_chunks().to_batches()[0]
