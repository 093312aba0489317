"""Inputs to a dataset: files (Parquet, CSV, JSONL, Arrow IPC) and in-memory frames, as record batches."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from assay.errors import InputError
from assay.store.hashing import hash_file

BATCH_ROWS = 1 << 18
_READ_BUFFER = 1 << 20  # bytes read at a time from each column chunk of a Parquet file
FORMATS = {
    ".parquet": "parquet", ".pq": "parquet",
    ".csv": "csv", ".tsv": "tsv",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow",
}


@dataclass(frozen=True)
class Source:
    """Rows to add: a schema, a way to stream them (more than once), and a digest of the input."""

    description: str
    schema: pa.Schema
    open: Callable[[], Iterator[pa.RecordBatch]]
    digest: str | None = None  # content digest of a file input; None for frames
    size: int | None = None  # bytes of the input (the file, or the table in memory); None when not known


def load_source(obj: Any, *, format: str | None = None) -> Source:
    """A Source from a path or an Arrow / pandas / polars object."""
    if isinstance(obj, str | os.PathLike):
        return _file_source(Path(obj), format)
    table = _to_arrow(obj)
    return Source(f"<{type(obj).__name__}>", table.schema, lambda: iter(table.to_batches(BATCH_ROWS)),
                  size=table.nbytes)


def _to_arrow(obj: Any) -> pa.Table:
    if isinstance(obj, pa.Table):
        return obj
    if isinstance(obj, pa.RecordBatch):
        return pa.Table.from_batches([obj])
    if isinstance(obj, pa.RecordBatchReader):
        return obj.read_all()
    module = type(obj).__module__.split(".")[0]
    if module == "pandas":
        try:
            return pa.Table.from_pandas(obj, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise InputError(f"the DataFrame cannot be converted to Arrow: {e}. Give each column one type.") from e
    if module == "polars":
        return obj.to_arrow()
    if hasattr(obj, "__arrow_c_stream__"):
        return pa.table(obj)
    raise InputError(
        f"cannot add a {type(obj).__name__}: give a path (Parquet, CSV, JSONL, Arrow), a folder of files, "
        "or a pyarrow Table, pandas or polars DataFrame"
    )


def _file_source(path: Path, format: str | None) -> Source:
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        raise InputError(f"{path} is a folder; add it as a folder dataset")
    fmt = format or FORMATS.get(path.suffix.lower())
    if fmt not in _OPENERS:
        raise InputError(
            f"{path}: unknown file type {fmt or path.suffix!r}; use .parquet, .csv, .tsv, .jsonl or .arrow, "
            "or pass the format explicitly (--format)"
        )
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path} is empty (0 bytes): there are no rows to add; check that it was written "
                         "completely, or give the file that holds the data")
    if fmt in ("csv", "tsv", "jsonl"):
        with path.open("rb") as f:
            if f.read(2) in (b"\xff\xfe", b"\xfe\xff"):
                raise InputError(f"{path}: text is UTF-16, not UTF-8. Re-encode the file as UTF-8, for example "
                                 f"`iconv -f utf-16 -t utf-8 {path.name}`")
    opener = _OPENERS[fmt]

    def open_batches() -> Iterator[pa.RecordBatch]:
        return _guarded(path, fmt, opener(path))

    first = _peek_schema(path, fmt, opener)
    return Source(str(path), first, open_batches, digest=f"{fmt}:{hash_file(path)}", size=size)


def _peek_schema(path: Path, fmt: str, opener: Callable[[Path], Iterator[pa.RecordBatch]]) -> pa.Schema:
    if fmt == "parquet":
        try:
            return pq.read_schema(path)
        except (pa.ArrowInvalid, OSError) as e:
            raise InputError(f"{path} is not a readable Parquet file: {e}. Check that it was written "
                             "completely, or re-export it.") from e
    for batch in _guarded(path, fmt, opener(path)):
        return batch.schema
    raise InputError(f"{path} has no rows (at most a header): there is nothing to add; add rows to it, "
                     "or give the file that holds the data")


def _guarded(path: Path, fmt: str, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Turn reader errors into InputErrors that name the file and say what to do."""
    rows = 0
    try:
        for batch in batches:
            if fmt in ("csv", "tsv", "jsonl"):
                _check_utf8(path, fmt, batch, rows)
            rows += batch.num_rows
            yield batch
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError, UnicodeDecodeError) as e:
        raise InputError(_explain(path, fmt, e)) from e


def _check_utf8(path: Path, fmt: str, batch: pa.RecordBatch, offset: int) -> None:
    """Refuse text that is not UTF-8: the CSV reader reads it as binary, the JSON reader lets it through."""
    for name, col in zip(batch.schema.names, batch.columns, strict=True):  # names raise on bad bytes
        if not (pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type)):
            if fmt != "jsonl":
                continue  # the CSV reader has checked its string columns
            try:
                col.validate(full=True)
                continue
            except pa.ArrowInvalid:
                pass
        row = None
        if not pa.types.is_nested(col.type):
            values = col.cast(pa.large_binary()).to_pylist()
            row = next((i for i, v in enumerate(values) if v is not None and not _is_utf8(v)), None)
        where = f"column {name!r}" + (f", row {offset + row + 1}" if row is not None else "")
        raise InputError(f"{path}: {where}: text is not valid UTF-8. Re-encode the file as UTF-8, for "
                         f"example `iconv -f latin1 -t utf-8 {path.name}`")


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _explain(path: Path, fmt: str, e: Exception) -> str:
    text = str(e)
    if "UTF8" in text or "utf-8" in text.lower() or isinstance(e, UnicodeDecodeError):
        return (f"{path}: text is not valid UTF-8 ({text}). Re-encode the file as UTF-8, for example "
                f"`iconv -f latin1 -t utf-8 {path.name}`")
    hint = {
        "csv": "check the delimiter, quoting and that every row has the same number of fields",
        "tsv": "check that fields are tab-separated and every row has the same number of fields",
        "jsonl": "each line must be one JSON object, with the same type per key",
        "parquet": "the file may be truncated or not Parquet; re-export it",
        "arrow": "the file must be an Arrow IPC file or stream",
    }[fmt]
    return f"{path}: cannot read as {fmt.upper()}: {text}. {hint}"


def _open_parquet(path: Path) -> Iterator[pa.RecordBatch]:
    # pre_buffer=False and a read buffer: each column chunk is read in 1 MiB pieces as it is decoded, not whole
    # (a file written with one row group of 1M rows otherwise holds all its compressed bytes at once: 2x memory)
    yield from pq.ParquetFile(path, pre_buffer=False, buffer_size=_READ_BUFFER).iter_batches(batch_size=BATCH_ROWS)


def _open_csv(path: Path, delimiter: str = ",") -> Iterator[pa.RecordBatch]:
    reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=32 << 20),
                            parse_options=pacsv.ParseOptions(delimiter=delimiter))
    yield from reader


def _open_tsv(path: Path) -> Iterator[pa.RecordBatch]:
    return _open_csv(path, "\t")


def _open_jsonl(path: Path) -> Iterator[pa.RecordBatch]:
    options = pajson.ReadOptions(block_size=32 << 20)
    if hasattr(pajson, "open_json"):
        yield from pajson.open_json(path, read_options=options)
    else:  # pragma: no cover - older pyarrow
        yield from pajson.read_json(path, read_options=options).to_batches(BATCH_ROWS)


def _open_arrow(path: Path) -> Iterator[pa.RecordBatch]:
    try:
        reader: Any = pa.ipc.open_file(path)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)
    except pa.ArrowInvalid:
        yield from pa.ipc.open_stream(path)


_OPENERS: dict[str, Callable[[Path], Iterator[pa.RecordBatch]]] = {
    "parquet": _open_parquet, "csv": _open_csv, "tsv": _open_tsv, "jsonl": _open_jsonl, "arrow": _open_arrow,
}
