"""Apply new rows to a dataset version: replace, append, upsert or delete.

Storage grows with the change: rows that are already stored (same id, same content) are kept in their
fragments, removed rows are marked in deletion vectors, and only new or changed rows are written.
Nothing is stored before the input has been read and validated whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay._types import Progress
from assay.engines import Engine, default_engine
from assay.errors import InputError, KeyViolation, SchemaConflict
from assay.store import ObjectStore
from assay.table import ids
from assay.table.fragments import (
    FRAGMENT_ROWS,
    POSITION,
    empty_id_table,
    id_table,
    with_deletions,
    write_fragment,
)
from assay.table.manifest import HASH_COLUMN, ID_COLUMN, INTERNAL_COLUMNS, FragmentRef, Manifest
from assay.table.sources import Source

MODES = ("replace", "append", "upsert", "delete")
_KEEP_IN_MEMORY = 192 << 20  # inputs up to this size are kept between the two passes
_OVERLAP_BYTES = 64 << 20  # inputs up to this size are hashed while the base's ids are read, in another thread


@dataclass(frozen=True)
class UpdateResult:
    """What an update did: the new manifest and counts of samples."""

    manifest: Manifest
    added: int = 0
    removed: int = 0
    updated: int = 0
    unchanged: int = 0
    written_rows: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.updated) or self.notes != []


def apply_update(store: ObjectStore, name: str, base: Manifest | None, source: Source, *,
                 key: Sequence[str] | None = None, mode: str = "replace", kind: str = "table",
                 blob_columns: Sequence[str] = (), progress: Progress | None = None,
                 engine: Engine | None = None, fresh_keys: bool = False) -> UpdateResult:
    """The dataset ``name`` after applying ``source`` to ``base`` in ``mode``; ``engine`` encodes fragments.

    ``fresh_keys`` (an append by key only): the caller guarantees that no key of ``source`` is in ``base`` (the
    prediction log's request ids, made by the server and never committed before), so the base's ids are not read
    to refuse one: the cost of the append is then that of its own rows, however large the base."""
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if fresh_keys and (mode != "append" or not key):
        raise InputError("fresh_keys applies to an append by key only")
    if base is None and mode == "delete":
        raise InputError(f"dataset {name!r} does not exist yet, so there is nothing to delete from")
    if base is None:
        mode = "replace"
    key_cols = _resolve_key(name, base, key, mode)
    if mode == "replace" and base is not None and source.digest is not None and base.source == source.digest \
            and base.key == key_cols:
        return UpdateResult(base, unchanged=base.rows)
    schema = _target_schema(name, base, source.schema, key_cols, mode, source.description)
    hash_cols = [f.name for f in schema]
    pass1, base_rows = _hash_and_base_ids(store, None if fresh_keys else base, source, schema, key_cols, hash_cols,
                                          mode, progress)
    ids.release()  # give back the hashing pass's temporaries before joining and writing
    pa.default_memory_pool().release_unused()
    new_ids = _sample_ids(pass1, key_cols, base_rows, mode)
    plan = _plan(name, mode, key_cols, new_ids, pass1.hashes, base_rows, pass1)
    pa.default_memory_pool().release_unused()
    if base is not None and not (plan.added or plan.removed or plan.updated) and base.schema.equals(schema) \
            and base.key == key_cols:
        return UpdateResult(base, unchanged=base.rows)  # same samples: the version stays as it is
    new_refs = _write_rows(store, source, schema, pass1, new_ids, plan.write_mask, progress,
                           engine or default_engine())
    kept = _apply_deletions(store, base.fragments if base else (), base_rows, plan.delete_rows)
    manifest = Manifest(name=name, schema=schema, key=key_cols, fragments=(), kind=kind,
                        source=source.digest if mode == "replace" else None,
                        blob_columns=tuple(blob_columns) or (base.blob_columns if base else ()))
    manifest = manifest.with_fragments([*kept, *new_refs])
    notes = []
    if base is not None and not base.schema.equals(schema):
        notes.append("schema changed")
    # unchanged: samples of the new version the same in the old one, the definition diff uses too
    return UpdateResult(manifest, plan.added, plan.removed, plan.updated, manifest.rows - plan.added - plan.updated,
                        int(plan.write_mask.sum()), notes)


# -- schema and key --------------------------------------------------------------------------------------


def _resolve_key(name: str, base: Manifest | None, key: Sequence[str] | None, mode: str) -> tuple[str, ...] | None:
    wanted = tuple(key) if key else None
    if base is None or mode == "replace":
        return wanted if wanted is not None or base is None else base.key
    if wanted is not None and wanted != base.key:
        raise SchemaConflict(
            f"dataset {name!r} is keyed by {list(base.key) if base.key else 'row content'}, not {list(wanted)}; "
            "to change the key, add the whole dataset again with --mode replace"
        )
    return base.key


def _target_schema(name: str, base: Manifest | None, incoming: pa.Schema, key: tuple[str, ...] | None,
                   mode: str, description: str = "the input") -> pa.Schema:
    incoming = incoming.remove_metadata()
    reserved = [n for n in incoming.names if n in INTERNAL_COLUMNS or n == POSITION]
    if reserved:
        raise SchemaConflict(f"column name(s) {reserved} are reserved by assay; rename them")
    if len(set(incoming.names)) != len(incoming.names):
        dup = sorted({n for n in incoming.names if incoming.names.count(n) > 1})
        raise SchemaConflict(f"the input has duplicate column names {dup}; give each column a unique name")
    missing_key = [k for k in key or () if k not in incoming.names]
    if missing_key:
        raise SchemaConflict(f"{description}: key column(s) {missing_key} are missing from the input; it "
                             f"has {incoming.names}. Add the key column(s) to the input, or check the key")
    if base is None or mode == "replace":
        return pa.schema([_plain_field(f) for f in incoming])
    if mode == "delete":
        return base.schema
    missing = [n for n in base.schema.names if n not in incoming.names]
    extra = [n for n in incoming.names if n not in base.schema.names]
    if missing or extra:
        raise SchemaConflict(
            f"{description}: the columns do not match dataset {name!r}: missing {missing}, new {extra}. "
            f"{mode} needs the same columns; to change the schema, add the whole dataset with --mode replace"
        )
    for f in base.schema:
        if not _castable(incoming.field(f.name).type, f.type):
            raise SchemaConflict(
                f"{description}: column {f.name!r} is {incoming.field(f.name).type} in the input but "
                f"{f.type} in dataset {name!r}; convert it, or add the whole dataset with --mode replace to "
                "change its type"
            )
    return base.schema


def _plain_field(f: pa.Field) -> pa.Field:
    return pa.field(f.name, f.type, nullable=True)


def _castable(src: pa.DataType, dst: pa.DataType) -> bool:
    if src == dst:
        return True
    return ids.logical_type(src) == ids.logical_type(dst) or (
        pa.types.is_integer(src) and pa.types.is_floating(dst)) or pa.types.is_null(src)


def _conform(batch: pa.RecordBatch, schema: pa.Schema, description: str) -> pa.RecordBatch:
    """``batch`` with the columns of ``schema`` in its order and types."""
    columns = []
    for f in schema:
        col = batch.column(f.name)
        if col.type != f.type:
            try:
                col = col.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise SchemaConflict(f"{description}: column {f.name!r} cannot be converted from {col.type} to "
                                     f"{f.type}: {e}") from e
        columns.append(col)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


# -- pass 1: hashes and ids --------------------------------------------------------------------------------


def _hash_and_base_ids(store: ObjectStore, base: Manifest | None, source: Source, schema: pa.Schema,
                       key: tuple[str, ...] | None, hash_cols: list[str], mode: str,
                       progress: Progress | None) -> tuple[_Pass1, pa.Table]:
    """The hashing pass over ``source`` and the id table of ``base``. For a small input (an append, a
    relabel) the base's ids are read in another thread while the input is hashed: reading and verifying them
    mostly waits on the disk and releases the GIL, and hashing a few thousand rows does not; a large input is
    hashed first, so that its temporaries are given back before the base's ids are held."""
    if base is not None and source.size is not None and source.size <= _OVERLAP_BYTES:
        with ThreadPoolExecutor(1, thread_name_prefix="assay-base-ids") as pool:
            base_rows = pool.submit(id_table, store, base.fragments)
            pass1 = _hash_pass(source, schema, key, hash_cols, mode, progress)  # raises after the read is done
            return pass1, base_rows.result()
    pass1 = _hash_pass(source, schema, key, hash_cols, mode, progress)
    return pass1, id_table(store, base.fragments) if base is not None else empty_id_table()


@dataclass
class _Pass1:
    hashes: pa.Array
    key_ids: pa.Array | None
    rows: int
    batches: list[pa.RecordBatch] | None  # kept when small, to avoid reading the input twice
    key_sample: Callable[[int], str]
    description: str = ""


def _hash_pass(source: Source, schema: pa.Schema, key: tuple[str, ...] | None, hash_cols: list[str],
               mode: str, progress: Progress | None) -> _Pass1:
    hashes: list[pa.Array] = []
    key_ids: list[pa.Array] = []
    kept: list[pa.RecordBatch] | None = []
    rows, kept_bytes = 0, 0
    key_only = mode == "delete" and key is not None
    for raw in source.open():
        batch = _conform(raw, _delete_schema(schema, key) if key and key_only else schema, source.description)
        if key:
            _check_keys(batch, key, rows, source.description)
        if key and key_only:
            key_ids.append(ids.key_ids(batch, key))
        else:
            h, k = ids.row_hashes_and_key_ids(batch, key, hash_cols)
            hashes.append(h)
            if k is not None:
                key_ids.append(k)
        if kept is not None:
            kept.append(batch)
            kept_bytes += batch.nbytes
            if kept_bytes > _KEEP_IN_MEMORY:
                kept = None
        rows += batch.num_rows
        if progress:
            progress("hashing rows", rows, 0)
    if rows == 0:
        raise InputError(f"{source.description} has no rows; nothing to {mode}. Give an input with at least "
                         "one row (to empty a dataset, remove it with `assay rm`)")
    all_keys = _concat(key_ids) if key else None
    all_hashes = _concat(hashes) if hashes else pa.nulls(rows, ids.ID_TYPE)
    cached = kept

    def key_sample(i: int) -> str:
        batches = cached if cached is not None else list(source.open())
        table = pa.Table.from_batches(batches).slice(i, 1)
        return ", ".join(f"{k}={table.column(k)[0].as_py()!r}" for k in key or ())

    return _Pass1(all_hashes, all_keys, rows, kept, key_sample, source.description)


def _delete_schema(schema: pa.Schema, key: tuple[str, ...]) -> pa.Schema:
    return pa.schema([schema.field(k) for k in key])


def _check_keys(batch: pa.RecordBatch, key: tuple[str, ...], offset: int, description: str) -> None:
    for k in key:
        nulls = batch.column(k).null_count
        if nulls:
            row = offset + int(pc.index(batch.column(k).is_null(), True).as_py()) + 1
            raise KeyViolation(f"{description}: key column {k!r} is empty (null) in row {row}; every sample "
                               "needs a key. Fill it, or drop the row.")


def _concat(arrays: list[pa.Array]) -> pa.Array:
    return pa.concat_arrays(arrays) if arrays else pa.array([], ids.ID_TYPE)


def _sample_ids(p: _Pass1, key: tuple[str, ...] | None, base_rows: pa.Table, mode: str) -> pa.Array:
    if key:
        assert p.key_ids is not None
        return p.key_ids
    start: dict[bytes, int] = {}
    if mode in ("append",) and base_rows.num_rows:
        start = _counts_in_base(p.hashes, base_rows)
    return ids.content_ids(p.hashes, start)


def _counts_in_base(hashes: pa.Array, base_rows: pa.Table) -> dict[bytes, int]:
    base_hashes = base_rows.column(HASH_COLUMN)
    present = pc.is_in(base_hashes, value_set=hashes)
    counts = pc.value_counts(base_hashes.filter(present))
    return {v["values"].as_py(): v["counts"].as_py() for v in counts}


# -- plan ----------------------------------------------------------------------------------------------------


@dataclass
class _Plan:
    write_mask: np.ndarray
    delete_rows: np.ndarray  # indices into the base id table
    added: int = 0
    removed: int = 0
    updated: int = 0


def _plan(name: str, mode: str, key: tuple[str, ...] | None, new_ids: pa.Array, new_hashes: pa.Array,
          base_rows: pa.Table, p: _Pass1) -> _Plan:
    n = len(new_ids)
    if key and mode != "delete":
        _check_unique(new_ids, p)
    match = _match(new_ids, new_hashes, base_rows, compare_hash=mode != "delete")
    in_base = match.base_index >= 0
    if mode == "delete":
        hit = ids.sorted_unique(match.base_index[in_base])
        return _Plan(np.zeros(n, bool), hit, removed=len(hit))
    same = in_base & match.same_hash
    if mode == "append" and key and in_base.any():
        i = int(np.flatnonzero(in_base)[0])
        raise KeyViolation(
            f"{int(in_base.sum())} sample(s) of the input are already in dataset {name!r} (first: {p.key_sample(i)}); "
            "use --mode upsert to update existing samples, or --mode replace to replace the dataset"
        )
    if mode == "upsert" and not key:
        return _Plan(~in_base, np.zeros(0, np.int64), added=int((~in_base).sum()))
    write = ~same
    changed = in_base & ~same
    delete = match.base_index[changed]
    if mode == "replace":
        present = np.zeros(base_rows.num_rows, bool)
        present[match.base_index[same]] = True
        gone = np.flatnonzero(~present)
        removed_only = np.setdiff1d(gone, delete)
        return _Plan(write, gone, added=int((~in_base).sum()), removed=len(removed_only),
                     updated=int(changed.sum()))
    return _Plan(write, ids.sorted_unique(delete), added=int((~in_base).sum()), updated=int(changed.sum()))


def _check_unique(new_ids: pa.Array, p: _Pass1) -> None:
    """Refuse duplicate sample ids: sort by the first 8 bytes, then compare neighbours in full."""
    n = len(new_ids)
    if n < 2:
        return
    words = ids.id_words(new_ids)
    order = np.argsort(words[:, 0], kind="stable")
    first = words[order, 0]
    near = np.flatnonzero(first[1:] == first[:-1])
    dup = [i for i in near.tolist() if words[order[i], 1] == words[order[i + 1], 1]]
    if dup:
        first_row, second_row = sorted((int(order[dup[0]]), int(order[dup[0] + 1])))
        raise KeyViolation(
            f"{p.description}: the input has {len(dup)} duplicate key(s): rows {first_row + 1} and {second_row + 1} "
            f"both have {p.key_sample(first_row)}. Keys must be unique; drop or merge the duplicates."
        )


@dataclass
class _Match:
    base_index: np.ndarray  # per new row: row of the base id table with the same id, or -1
    same_hash: np.ndarray


def _match(new_ids: pa.Array, new_hashes: pa.Array, base_rows: pa.Table, *, compare_hash: bool) -> _Match:
    """Each new row's row in the base (same id) and whether its content hash is the base's.

    A hash table is built over the new ids (the small side: an append or relabel of 1% of a table) and the base
    ids are probed into it (1M probes: 12 ms); a new id given twice (a delete of the same key twice) matches
    through its first occurrence, as a join would match both.
    """
    n = len(new_ids)
    base_index = np.full(n, -1, np.int64)
    if base_rows.num_rows == 0 or n == 0:
        return _Match(base_index, np.zeros(n, bool))
    new_ids = ids.one_chunk(new_ids)
    at = pc.index_in(base_rows.column(ID_COLUMN), value_set=new_ids)  # per base row: its new row
    hit = pc.indices_nonzero(at.is_valid())
    base_index[pc.take(at, hit).to_numpy()] = hit.to_numpy()
    first = pc.index_in(new_ids, value_set=new_ids).to_numpy()
    base_index = base_index[first]
    same_hash = np.zeros(n, bool)
    if compare_hash:
        rows = np.flatnonzero(base_index >= 0)
        mine = ids.id_words(new_hashes)[rows]
        theirs = ids.id_words(base_rows.column(HASH_COLUMN).take(ids.numpy_array(base_index[rows])))  # no 1M concat
        same_hash[rows] = (mine == theirs).all(axis=1)
    else:
        same_hash[base_index >= 0] = True
    return _Match(base_index, same_hash)


# -- pass 2: write ---------------------------------------------------------------------------------------------


def _write_rows(store: ObjectStore, source: Source, schema: pa.Schema, p: _Pass1, new_ids: pa.Array,
                mask: np.ndarray, progress: Progress | None, engine: Engine) -> list[FragmentRef]:
    """Write the rows selected by ``mask`` into fragments, encoded by ``engine`` as they are gathered (the
    engine's window bounds how many wait in memory)."""
    if not mask.any():
        return []
    total = int(mask.sum())
    refs, written = [], 0
    tables = _fragment_tables(source, schema, p, new_ids, mask)
    for ref in engine.map(partial(write_fragment, store), tables):
        refs.append(ref)
        written += ref.rows
        if progress:
            progress("writing fragments", written, total)
    if progress:
        progress("writing fragments", total, total)
    return refs


def _fragment_tables(source: Source, schema: pa.Schema, p: _Pass1, new_ids: pa.Array,
                     mask: np.ndarray) -> Iterator[pa.Table]:
    """The rows selected by ``mask`` (with their ids and hashes) cut into tables of ``FRAGMENT_ROWS`` rows."""
    out_schema = pa.schema([pa.field(ID_COLUMN, ids.ID_TYPE), pa.field(HASH_COLUMN, ids.ID_TYPE), *schema])
    pending: list[pa.RecordBatch] = []
    pending_rows, offset = 0, 0
    for batch in _batches_again(source, schema, p):
        n = batch.num_rows
        keep = mask[offset : offset + n]
        kept = int(keep.sum())
        if kept == n:  # every row (a first commit, an append): slices, no copy of the batch
            cols = [new_ids.slice(offset, n), p.hashes.slice(offset, n), *batch.columns]
        elif kept:
            sel = ids.numpy_array(keep)
            cols = [new_ids.slice(offset, n).filter(sel), p.hashes.slice(offset, n).filter(sel),
                    *batch.filter(sel).columns]
        if kept:
            pending.append(pa.RecordBatch.from_arrays(cols, schema=out_schema))
            pending_rows += kept
        offset += n
        while pending_rows >= FRAGMENT_ROWS:
            table = pa.Table.from_batches(pending, out_schema)
            yield table.slice(0, FRAGMENT_ROWS)
            rest = table.slice(FRAGMENT_ROWS)
            pending, pending_rows = rest.to_batches(), rest.num_rows
    if pending_rows:
        yield pa.Table.from_batches(pending, out_schema)


def _batches_again(source: Source, schema: pa.Schema, p: _Pass1) -> Iterator[pa.RecordBatch]:
    if p.batches is not None:
        yield from p.batches
        return
    for raw in source.open():
        yield _conform(raw, schema, source.description)


def _apply_deletions(store: ObjectStore, fragments: Sequence[FragmentRef], base_rows: pa.Table,
                     delete_rows: np.ndarray) -> list[FragmentRef]:
    if len(delete_rows) == 0:
        return list(fragments)
    frag = base_rows.column("_assay_frag").to_numpy()[delete_rows]
    pos = base_rows.column(POSITION).to_numpy()[delete_rows]
    out = []
    for i, ref in enumerate(fragments):
        out.append(with_deletions(store, ref, pos[frag == i]))
    return out
