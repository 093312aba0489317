"""Fragment statistics: per-column summaries computed when a fragment is written, and its byte layout.

A fragment's statistics object holds, for each column, the row and null counts, NaN and infinity
counts, the range (NaN left out), the count, mean and sum of squared deviations (M2) of the numbers,
the range of string lengths, and the distinct values with their counts when there are few. Summaries
of fragments combine exactly (counts, ranges, value counts) or to rounding (means and M2, by Chan's
parallel formula), so a dataset's summary is the combination of its fragments'.

The same object records the layout of the fragment's Parquet file: the byte ranges of each column's
chunks and of the footer, each group with its BLAKE3 digest, so that a read of a few columns fetches
and verifies only those bytes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from blake3 import blake3

from assay.errors import CorruptObject, FormatError

STATS_FORMAT = 1
SMALL = 256  # distinct values kept with their counts, at most
_SAMPLE = 4096  # rows looked at first: more distinct values than SMALL there and the counts are skipped
_INT64_SAFE = 1 << 62


@dataclass(frozen=True)
class ColumnStats:
    """A summary of one column over some rows. ``None`` fields are unknown or empty (see each)."""

    type: str  # the Arrow type the summary was computed on
    rows: int
    nulls: int
    nans: int = 0
    infs: int = 0  # +inf and -inf values (counted in ``count``, ``min`` and ``max``)
    min: int | float | None = None  # numbers, NaN left out; None: no numbers (or not a numeric column)
    max: int | float | None = None
    sum: int | None = None  # integers: the exact sum
    mean: float | None = None  # numbers: None when there are none, or when some are infinite
    m2: float | None = None  # sum of squared deviations from the mean, as ``mean``
    min_length: int | None = None  # strings: in code points; None: no strings (or not a string column)
    max_length: int | None = None
    values: tuple[tuple[Any, int], ...] | None = None  # distinct non-null values and counts, when few

    @property
    def count(self) -> int:
        """Values that are neither null nor NaN."""
        return self.rows - self.nulls - self.nans

    @classmethod
    def all_null(cls, type: str, rows: int) -> ColumnStats:
        """A column of ``rows`` nulls (a column that a fragment written before it existed lacks)."""
        return cls(type, rows, rows, sum=0, values=())

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "rows": self.rows, "nulls": self.nulls}
        if self.nans:
            d["nans"] = self.nans
        if self.infs:
            d["infs"] = self.infs
        for name in ("min", "max", "sum", "mean", "m2", "min_length", "max_length"):
            value = getattr(self, name)
            if value is not None:
                d[name] = _number_out(value)
        if self.values is not None:
            d["values"] = [[v, n] for v, n in self.values]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnStats:
        values = d.get("values")
        return cls(d["type"], d["rows"], d["nulls"], d.get("nans", 0), d.get("infs", 0), _number_in(d.get("min")),
                   _number_in(d.get("max")), d.get("sum"), _number_in(d.get("mean")), _number_in(d.get("m2")),
                   d.get("min_length"), d.get("max_length"),
                   None if values is None else tuple((v, int(n)) for v, n in values))


def _number_out(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "-inf", "nan": JSON has no literal for them
    return value


def _number_in(value: Any) -> Any:
    return float(value) if isinstance(value, str) else value


def combine(a: ColumnStats, b: ColumnStats) -> ColumnStats | None:
    """The summary of the rows of ``a`` and ``b`` together; None when they describe different types."""
    if a.type != b.type:
        return None
    mean, m2 = _moments(a, b)
    return ColumnStats(
        a.type, a.rows + b.rows, a.nulls + b.nulls, a.nans + b.nans, a.infs + b.infs,
        _pick(min, a.min, b.min), _pick(max, a.max, b.max),
        a.sum + b.sum if a.sum is not None and b.sum is not None else None, mean, m2,
        _pick(min, a.min_length, b.min_length), _pick(max, a.max_length, b.max_length),
        _merge_values(a.values, b.values),
    )


def _pick(how: Any, x: Any, y: Any) -> Any:
    if x is None:
        return y
    return x if y is None else how(x, y)


def _moments(a: ColumnStats, b: ColumnStats) -> tuple[float | None, float | None]:
    """Mean and M2 of both (Chan et al.'s parallel update); integers take the mean from the exact sum."""
    if b.count == 0:
        return a.mean, a.m2
    if a.count == 0:
        return b.mean, b.m2
    if a.mean is None or b.mean is None or a.m2 is None or b.m2 is None:
        return None, None
    n = a.count + b.count
    delta = b.mean - a.mean
    m2 = a.m2 + b.m2 + delta * delta * (a.count * b.count / n)
    if a.sum is not None and b.sum is not None:
        return (a.sum + b.sum) / n, m2
    return a.mean + delta * (b.count / n), m2


def _merge_values(x: tuple[tuple[Any, int], ...] | None,
                  y: tuple[tuple[Any, int], ...] | None) -> tuple[tuple[Any, int], ...] | None:
    if x is None or y is None:
        return None
    counts = dict(x)
    for v, n in y:
        counts[v] = counts.get(v, 0) + n
    return tuple(sorted(counts.items(), key=_order)) if len(counts) <= SMALL else None


def _order(item: tuple[Any, int]) -> tuple[str, Any]:
    return (type(item[0]).__name__, item[0])


# -- computing ---------------------------------------------------------------------------------------------


def column_stats(column: pa.Array | pa.ChunkedArray) -> ColumnStats:
    """The summary of one column (all its rows)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    t = arr.type
    if pa.types.is_dictionary(t):
        return replace(_plain_stats(arr.dictionary_decode(), _dictionary_values(arr)), type=str(t))
    return _plain_stats(arr, _small_values(arr) if _countable(t) else None)


def _countable(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_large_string(t)


def _plain_stats(arr: pa.Array, values: tuple[tuple[Any, int], ...] | None) -> ColumnStats:
    t = arr.type
    base = ColumnStats(str(t), len(arr), arr.null_count, values=values)
    if pa.types.is_integer(t):
        return _integer_stats(arr, base)
    if pa.types.is_floating(t):
        return _float_stats(arr.cast(pa.float32()) if t == pa.float16() else arr, base)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        low, high = _min_max(pc.utf8_length(arr))
        return replace(base, min_length=low, max_length=high)
    return base


def _min_max(arr: pa.Array) -> tuple[Any, Any]:
    mm = pc.min_max(arr)
    return mm["min"].as_py(), mm["max"].as_py()


def _integer_stats(arr: pa.Array, base: ColumnStats) -> ColumnStats:
    if base.count == 0:
        return replace(base, sum=0)
    low, high = _min_max(arr)
    if max(abs(low), abs(high)) < _INT64_SAFE // base.count:
        total = int(pc.sum(arr.cast(pa.int64())).as_py())
    else:  # a sum that could overflow 64 bits: add the high and low 32-bit halves apart
        values = arr.drop_null().to_numpy()
        total = int(np.sum(values >> 32, dtype=values.dtype)) * (1 << 32) + int(np.sum(values & 0xFFFFFFFF))
    return replace(base, min=low, max=high, sum=total, mean=total / base.count, m2=_m2(arr, base.count))


def _float_stats(arr: pa.Array, base: ColumnStats) -> ColumnStats:
    nans = int(pc.sum(pc.is_nan(arr)).as_py() or 0)
    numbers = arr.filter(pc.invert(pc.is_nan(arr))) if nans else arr
    base = replace(base, nans=nans)
    if base.count == 0:
        return base
    low, high = _min_max(numbers)
    infs = int(pc.sum(pc.is_inf(numbers)).as_py() or 0)
    if infs:
        return replace(base, infs=infs, min=low, max=high)
    mean = pc.mean(numbers).as_py()
    return replace(base, min=low, max=high, mean=mean, m2=_m2(numbers, base.count))


def _m2(arr: pa.Array, count: int) -> float:
    variance = pc.variance(arr.cast(pa.float64(), safe=False), ddof=0).as_py()
    return float(variance) * count


def _small_values(arr: pa.Array) -> tuple[tuple[Any, int], ...] | None:
    """Distinct non-null values with their counts, when there are at most SMALL of them."""
    if arr.null_count == len(arr):
        return ()
    if pc.count_distinct(arr.slice(0, _SAMPLE)).as_py() > SMALL:
        return None
    return _counted(pc.value_counts(arr))


def _dictionary_values(arr: pa.DictionaryArray) -> tuple[tuple[Any, int], ...] | None:
    """Value counts of a dictionary-encoded column, counted on its indices."""
    if not _countable(arr.type.value_type):
        return None
    counts = pc.value_counts(arr.indices)
    used = counts.field("values")
    if len(used) > SMALL + 1:
        return None
    present = pc.is_valid(used)
    decoded = arr.dictionary.take(used.filter(present))
    return _counted(pa.StructArray.from_arrays([decoded, counts.field("counts").filter(present)],
                                               ["values", "counts"]))


def _counted(counts: pa.StructArray) -> tuple[tuple[Any, int], ...] | None:
    pairs: dict[Any, int] = {}
    for v, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True):
        if v is not None:
            pairs[v] = pairs.get(v, 0) + n
    return tuple(sorted(pairs.items(), key=_order)) if len(pairs) <= SMALL else None


# -- the stored object -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ByteRanges:
    """Byte ranges of a file, in order, and the BLAKE3 digest of their bytes put together."""

    ranges: tuple[tuple[int, int], ...]  # (offset, length)
    digest: str

    @property
    def size(self) -> int:
        return sum(n for _, n in self.ranges)

    def to_dict(self) -> dict[str, Any]:
        return {"ranges": [list(r) for r in self.ranges], "blake3": self.digest}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ByteRanges:
        return cls(tuple((int(o), int(n)) for o, n in d["ranges"]), d["blake3"])

    def verified(self, parts: list[bytes], where: str) -> list[bytes]:
        """``parts`` (the bytes of the ranges), checked against the digest."""
        hasher = blake3()
        for (_, n), part in zip(self.ranges, parts, strict=True):
            if len(part) != n:
                raise CorruptObject(f"{where} is truncated; run `assay fsck`")
            hasher.update(part)
        if hasher.hexdigest() != self.digest:
            raise CorruptObject(f"{where} is corrupt: its bytes no longer match their hash. Run `assay fsck` "
                                "to list every damaged object; restore it from a copy of the repository.")
        return parts


@dataclass(frozen=True)
class Layout:
    """Where a Parquet file keeps what: its footer (with the leading magic) and each column's chunks."""

    size: int
    footer: ByteRanges
    columns: dict[str, ByteRanges]

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "footer": self.footer.to_dict(),
                "columns": {k: v.to_dict() for k, v in self.columns.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Layout:
        return cls(d["size"], ByteRanges.from_dict(d["footer"]),
                   {k: ByteRanges.from_dict(v) for k, v in d["columns"].items()})


@dataclass(frozen=True)
class FragmentStats:
    """The statistics object of a fragment: a summary per column of all its rows, and its layout."""

    rows: int
    columns: dict[str, ColumnStats]
    layout: Layout | None = None
    format: int = STATS_FORMAT

    def to_bytes(self) -> bytes:
        d = {"type": "fragment-stats", "format": self.format, "rows": self.rows,
             "columns": {k: v.to_dict() for k, v in self.columns.items()},
             "layout": self.layout.to_dict() if self.layout else None}
        return json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes, oid: str = "?") -> FragmentStats:
        d = json.loads(data)
        if d.get("type") != "fragment-stats":
            raise FormatError(f"object {oid} is not a fragment's statistics")
        if d.get("format", 0) > STATS_FORMAT:
            raise FormatError(f"fragment statistics {oid} have format {d['format']}, newer than this assay reads "
                              f"({STATS_FORMAT}); upgrade assay")
        layout = Layout.from_dict(d["layout"]) if d.get("layout") else None
        return cls(d["rows"], {k: ColumnStats.from_dict(v) for k, v in d["columns"].items()}, layout, d["format"])


def fragment_stats(table: pa.Table, parquet: pa.Buffer) -> FragmentStats:
    """Statistics of ``table`` (the data columns of a fragment) and the layout of its Parquet bytes."""
    columns = {name: column_stats(table.column(name)) for name in table.column_names}
    return FragmentStats(table.num_rows, columns, parquet_layout(table.schema, parquet))


def parquet_layout(schema: pa.Schema, data: pa.Buffer) -> Layout:
    """The byte ranges of the footer and of each column's chunks in a Parquet file, with digests."""
    view = memoryview(data)
    size = len(view)
    meta_len = int.from_bytes(bytes(view[size - 8 : size - 4]), "little")
    footer = _ranges(view, [(0, 4), (size - 8 - meta_len, meta_len + 8)])
    md = pq.read_metadata(pa.BufferReader(data))
    leaves = _leaf_columns(schema)
    columns = {}
    for name, (first, n) in leaves.items():
        spans = []
        for g in range(md.num_row_groups):
            for j in range(first, first + n):
                chunk = md.row_group(g).column(j)
                start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
                spans.append((int(start), int(chunk.total_compressed_size)))
        columns[name] = _ranges(view, spans)
    return Layout(size, footer, columns)


def _ranges(view: memoryview, spans: list[tuple[int, int]]) -> ByteRanges:
    hasher = blake3()
    for o, n in spans:
        hasher.update(view[o : o + n])
    return ByteRanges(tuple(spans), hasher.hexdigest())


def _leaf_columns(schema: pa.Schema) -> dict[str, tuple[int, int]]:
    """For each top-level column, its first Parquet leaf column and how many leaves it has."""
    out, first = {}, 0
    for f in schema:
        n = _leaves(f.type)
        out[f.name] = (first, n)
        first += n
    return out


def _leaves(t: pa.DataType) -> int:
    if pa.types.is_struct(t):
        return sum(_leaves(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_map(t):
        return _leaves(t.key_type) + _leaves(t.item_type)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _leaves(t.value_type)
    if pa.types.is_dictionary(t):
        return _leaves(t.value_type)
    return 1
