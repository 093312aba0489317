"""Differences between two versions of a dataset: added, removed and changed samples, schema changes,
and which columns changed. Rows in fragments that both versions share are never read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from assay.engines import Engine, default_engine
from assay.store import ObjectStore
from assay.table import ids
from assay.table.fragments import POSITION, empty_id_table, live_mask, read_fragment, read_ids
from assay.table.manifest import HASH_COLUMN, ID_COLUMN, FragmentRef, Manifest

FRAG = "_assay_frag"


@dataclass(frozen=True)
class SampleChange:
    """One added, removed or changed sample, with its key values (or None for content-keyed data)."""

    status: str
    id: str
    key: dict[str, Any] | None
    columns: tuple[str, ...] = ()  # for changed samples: the columns whose values differ
    values: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # changed samples: column -> (old, new)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "id": self.id, "key": self.key, "columns": list(self.columns),
                "values": {c: {"old": old, "new": new} for c, (old, new) in self.values.items()}}


@dataclass(frozen=True)
class DatasetDiff:
    """How dataset ``name`` differs between two versions ``a`` and ``b``."""

    name: str
    added: int
    removed: int
    changed: int
    unchanged: int
    rows_a: int
    rows_b: int
    schema_changes: dict[str, Any] = field(default_factory=dict)
    column_changes: dict[str, int] = field(default_factory=dict)
    samples: tuple[SampleChange, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.schema_changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.name, "added": self.added, "removed": self.removed, "changed": self.changed,
            "unchanged": self.unchanged, "rows_a": self.rows_a, "rows_b": self.rows_b,
            "schema_changes": self.schema_changes, "column_changes": self.column_changes,
            "samples": [s.to_dict() for s in self.samples],
        }


def diff_manifests(store: ObjectStore, name: str, a: Manifest | None, b: Manifest | None, *,
                   limit: int = 20, engine: Engine | None = None) -> DatasetDiff:
    """Compare versions ``a`` and ``b`` (either may be None: dataset absent); ``engine`` reads the fragments."""
    joined = id_level_diff(store, a, b)
    status = joined["status"]
    counts = {s: int((status == s).sum()) for s in ("added", "removed", "changed")}
    rows_a, rows_b = (a.rows if a else 0), (b.rows if b else 0)
    unchanged = rows_b - counts["added"] - counts["changed"]
    engine = engine or default_engine()
    compared = _compare_changed(store, a, b, joined, engine)
    samples = _listing(store, a, b, joined, compared, limit, engine)
    return DatasetDiff(name, counts["added"], counts["removed"], counts["changed"], unchanged, rows_a, rows_b,
                       schema_changes(a, b), compared.counts(), samples)


def schema_changes(a: Manifest | None, b: Manifest | None) -> dict[str, Any]:
    if a is None or b is None:
        return {}
    out: dict[str, Any] = {}
    added = [f.name for f in b.schema if f.name not in a.schema.names]
    removed = [f.name for f in a.schema if f.name not in b.schema.names]
    types = {f.name: [str(a.schema.field(f.name).type), str(f.type)] for f in b.schema
             if f.name in a.schema.names and a.schema.field(f.name).type != f.type}
    if added:
        out["added_columns"] = added
    if removed:
        out["removed_columns"] = removed
    if types:
        out["type_changes"] = types
    if a.key != b.key:
        out["key"] = [list(a.key) if a.key else None, list(b.key) if b.key else None]
    return out


def side_rows(store: ObjectStore, mine: Manifest | None, other: Manifest | None) -> pa.Table:
    """Live rows of ``mine`` that are not live in the same fragment of ``other``: id, hash, frag, pos."""
    if mine is None:
        return empty_id_table()
    theirs = {f.oid: f for f in (other.fragments if other else ())}
    parts = []
    for i, ref in enumerate(mine.fragments):
        t = read_fragment(store, ref, [ID_COLUMN, HASH_COLUMN], positions=True) if ref.oid not in theirs \
            else _only_here(store, ref, theirs[ref.oid])
        if t.num_rows:
            parts.append(t.append_column(FRAG, ids.numpy_array(np.full(t.num_rows, i, np.int32))))
    return pa.concat_tables(parts) if parts else empty_id_table()


def _only_here(store: ObjectStore, ref: FragmentRef, other: FragmentRef) -> pa.Table:
    if ref.deleted == other.deleted:
        return empty_id_table().drop_columns([FRAG])
    mask = live_mask(store, ref) & ~live_mask(store, other)
    if not mask.any():
        return empty_id_table().drop_columns([FRAG])
    at = np.flatnonzero(mask).astype(np.uint32)
    ids_, hashes = read_ids(store, ref, at)
    return pa.table({ID_COLUMN: ids_, HASH_COLUMN: hashes, POSITION: ids.numpy_array(at)})


def id_level_diff(store: ObjectStore, a: Manifest | None, b: Manifest | None) -> dict[str, np.ndarray]:
    """Per differing sample: id, status (added/removed/changed), and where it lives in a and b; added samples
    first, then removed, then changed, each in the order of their ids' bytes.

    The rows compared are only those not live in the same fragment on both sides (side_rows), so the outer
    join is a hash lookup of one side's ids in the other's.
    """
    import pyarrow.compute as pc

    left, right = side_rows(store, a, b), side_rows(store, b, a)
    at = pc.fill_null(pc.index_in(left.column(ID_COLUMN), value_set=ids.one_chunk(right.column(ID_COLUMN))), -1)
    at = at.to_numpy().astype(np.int64)  # per left row: the right row with its id, or -1
    lw, rw = ({c: ids.id_words(t.column(c)) for c in (ID_COLUMN, HASH_COLUMN)} for t in (left, right))
    matched = at >= 0
    in_left = np.zeros(right.num_rows, bool)
    in_left[at[matched]] = True
    added = np.flatnonzero(~in_left)
    same = np.zeros(left.num_rows, bool)
    same[matched] = (lw[HASH_COLUMN][matched] == rw[HASH_COLUMN][at[matched]]).all(axis=1)
    kept = np.flatnonzero(~same)  # left rows that are removed or changed
    li = np.concatenate([kept, np.full(len(added), -1)])  # per differing sample: its row on each side, or -1
    ri = np.concatenate([at[kept], added])
    rank = np.where(li < 0, 0, np.where(ri < 0, 1, 2))
    sample_id = _pick(lw[ID_COLUMN], li, 0)
    sample_id[li < 0] = rw[ID_COLUMN][ri[li < 0]]
    content = _pick(lw[HASH_COLUMN], li, 0)  # the newer side's hash where there is one
    content[ri >= 0] = rw[HASH_COLUMN][ri[ri >= 0]]
    big_endian = sample_id.byteswap()
    order = np.lexsort((big_endian[:, 1], big_endian[:, 0], rank))
    li, ri = li[order], ri[order]
    return {
        "status": np.array(["added", "removed", "changed"])[rank[order]],
        "fa": _pick(left.column(FRAG).to_numpy(), li, -1), "pa": _pick(left.column(POSITION).to_numpy(), li, 0),
        "fb": _pick(right.column(FRAG).to_numpy(), ri, -1), "pb": _pick(right.column(POSITION).to_numpy(), ri, 0),
        "id": _bytes_per_row(sample_id[order]), "hash": _bytes_per_row(content[order]),
        "ha": _pick(lw[HASH_COLUMN], li, 0), "hb": _pick(rw[HASH_COLUMN], ri, 0),
    }


def _bytes_per_row(words: np.ndarray) -> np.ndarray:
    """Each row of a (rows x words) array as one ``bytes`` (an object array)."""
    raw, width = np.ascontiguousarray(words).tobytes(), words.itemsize * (words.shape[1] if words.ndim > 1 else 1)
    return np.array([raw[i : i + width] for i in range(0, len(raw), width)] if width else [b""] * len(words),
                    dtype=object)


def _pick(values: np.ndarray, rows: np.ndarray, missing: int) -> np.ndarray:
    """``values[rows]`` (int64 for 1-D values), ``missing`` where a row is -1."""
    out = np.full((len(rows), *values.shape[1:]), missing, np.int64 if values.ndim == 1 else values.dtype)
    there = rows >= 0
    out[there] = values[rows[there]]
    return out


def rows_at(store: ObjectStore, m: Manifest, frags: np.ndarray, positions: np.ndarray,
            columns: Sequence[str] | None = None, engine: Engine | None = None) -> pa.Table:
    """Rows of ``m`` at (fragment index, position) pairs, in the order given; one fragment per engine task."""
    from assay.table.reader import conform

    names = list(columns) if columns is not None else m.schema.names
    schema = pa.schema([m.schema.field(c) for c in names if c in m.schema.names])
    groups = [np.flatnonzero(frags == fi) for fi in ids.sorted_unique(frags)]

    def pick(sel: np.ndarray) -> pa.Table:
        ref = m.fragments[int(frags[sel[0]])]
        whole = read_fragment(store, ref.whole(), schema.names)
        return conform(whole.take(ids.numpy_array(positions[sel])), schema)

    parts = list((engine or default_engine()).map(pick, groups))  # Parquet decoding releases the GIL
    order = groups
    if not parts:
        return schema.empty_table()
    table = pa.concat_tables(parts)
    return table.take(ids.numpy_array(np.argsort(np.concatenate(order), kind="stable")))


@dataclass
class _Compared:
    """The changed samples compared column by column: ``matrix[i, j]`` says whether column ``names[i]``
    differs in changed sample ``j`` (the j-th changed one of ``joined``); ``old`` and ``new`` hold the values
    that were read, per column, aligned with the changed samples."""

    names: list[str]
    matrix: np.ndarray
    old: dict[str, pa.ChunkedArray] = field(default_factory=dict)
    new: dict[str, pa.ChunkedArray] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {c: int(row.sum()) for c, row in zip(self.names, self.matrix, strict=True) if row.any()}


def _compare_changed(store: ObjectStore, a: Manifest | None, b: Manifest | None, joined: dict[str, np.ndarray],
                     engine: Engine) -> _Compared:
    """Which columns differ in each changed sample, reading as little of the data as it can.

    When both versions have the same columns (by name and logical type), one side's changed rows are read
    whole (the side whose fragments hold fewer rows) and the other side's one column at a time, the smallest
    columns first. After each column that differs somewhere, the rows it differs in are re-hashed with the
    other side's values put in for the columns read so far: a row whose hash then equals its stored content
    hash on the other side differs in no column not yet read (the same 128-bit content hash that decides
    whether a sample changed at all), so it is settled, and the reading stops once every row is. Relabelling
    1% of a 20-column table reads the label column and a few small ones, not the whole table. Otherwise (the
    columns changed) every common column is read on both sides.
    """
    changed = np.flatnonzero(joined["status"] == "changed")
    n = len(changed)
    if a is None or b is None or not n:
        return _Compared([], np.zeros((0, n), bool))
    sides = {"a": (a, joined["fa"][changed], joined["pa"][changed], joined["ha"][changed]),
             "b": (b, joined["fb"][changed], joined["pb"][changed], joined["hb"][changed])}
    if not _same_columns(a, b):
        return _compare_all(store, a, b, sides, engine)
    whole, probe = ("b", "a") if _rows_to_decode(sides["b"]) <= _rows_to_decode(sides["a"]) else ("a", "b")
    base_m, base_f, base_p, _ = sides[whole]
    probe_m, probe_f, probe_p, probe_hash = sides[probe]
    names = list(b.schema.names)
    base = rows_at(store, base_m, base_f, base_p, base_m.schema.names, engine)
    read: dict[str, pa.ChunkedArray] = {}
    differs = {c: np.zeros(n, bool) for c in names}
    settled = np.zeros(n, bool)
    order, size = _smallest_first(store, probe_m, probe_f, names)
    decoded, unread = _rows_to_decode(sides[probe]), sum(size.values())
    for c in order:
        if settled.all():
            break
        read[c] = rows_at(store, probe_m, probe_f, probe_p, [c], engine).column(c)
        differs[c] = _differs(read[c], base.column(c))
        unread -= size[c]
        check = np.flatnonzero(differs[c] & ~settled)
        # hashing a row costs about what decoding it twice does: worth it only while much is left to read
        if not len(check) or 2 * len(check) * sum(size.values()) > decoded * unread:
            continue
        take = ids.numpy_array(check)
        hybrid = pa.table({f.name: (read[f.name] if f.name in read else base.column(f.name)).take(take)
                           for f in probe_m.schema})
        got = ids.id_words(ids.row_hashes(hybrid, probe_m.schema.names))
        settled[check] = (got == probe_hash[check]).all(axis=1)
    full = {c: base.column(c) for c in base.column_names}
    old, new = (read, full) if probe == "a" else (full, read)
    return _Compared(names, _matrix([differs[c] for c in names], n), old, new)


def _matrix(rows: list[np.ndarray], n: int) -> np.ndarray:
    return np.vstack(rows) if rows else np.zeros((0, n), bool)


def _same_columns(a: Manifest, b: Manifest) -> bool:
    """Whether two versions have the same columns, by name and by the logical type hashes see."""
    if set(a.schema.names) != set(b.schema.names):
        return False
    return all(ids.logical_type(f.type) == ids.logical_type(b.schema.field(f.name).type) for f in a.schema)


def _rows_to_decode(side: tuple[Manifest, np.ndarray, np.ndarray, np.ndarray]) -> int:
    """How many rows the fragments holding one side's changed rows have (what reading a column decodes)."""
    m, frags = side[0], side[1]
    return sum(m.fragments[int(i)].rows for i in ids.sorted_unique(frags))


def _smallest_first(store: ObjectStore, m: Manifest, frags: np.ndarray,
                    names: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    """``names`` in the order of their stored size in the fragments ``frags`` of ``m``, and those sizes (schema
    order and equal sizes where a fragment's layout is unknown)."""
    from assay.table.fragments import read_stats

    size = dict.fromkeys(names, 0)
    for i in ids.sorted_unique(frags):
        stats = read_stats(store, m.fragments[int(i)])
        if stats is None or stats.layout is None:
            return list(names), dict.fromkeys(names, 1)
        for c in names:
            ranges = stats.layout.columns.get(c)
            size[c] += ranges.size if ranges is not None else 0
    return sorted(names, key=lambda c: size[c]), size


def _compare_all(store: ObjectStore, a: Manifest, b: Manifest,
                 sides: dict[str, tuple[Manifest, np.ndarray, np.ndarray, np.ndarray]], engine: Engine) -> _Compared:
    """Every common column read on both sides; a column on one side only differs in every sample."""
    common = [c for c in b.schema.names if c in a.schema.names]
    n = len(sides["a"][1])
    _, fa, pa_, _ = sides["a"]
    _, fb, pb, _ = sides["b"]
    left = rows_at(store, a, fa, pa_, common, engine)
    right = rows_at(store, b, fb, pb, common, engine)
    differs = [_differs(left.column(c), right.column(c)) for c in common]
    only_one_side = [c for c in b.schema.names if c not in common] + [c for c in a.schema.names if c not in common]
    differs += [np.ones(n, bool)] * len(only_one_side)  # an added or removed column changes every sample
    return _Compared(common + only_one_side, _matrix(differs, n),
                     {c: left.column(c) for c in common}, {c: right.column(c) for c in common})


def _differs(lc: pa.ChunkedArray, rc: pa.ChunkedArray) -> np.ndarray:
    """Per row, whether two columns differ (nulls equal nulls, NaN equals NaN)."""
    import pyarrow.compute as pc

    if lc.type != rc.type:
        rc = rc.cast(lc.type)
    t = lc.type
    if pa.types.is_nested(t):
        return np.array([x != y for x, y in zip(lc.to_pylist(), rc.to_pylist(), strict=True)], bool)
    same = pc.fill_null(pc.equal(lc, rc), False)
    same = pc.or_(same, pc.and_(pc.is_null(lc), pc.is_null(rc)))
    if pa.types.is_floating(t):
        same = pc.or_(same, pc.fill_null(pc.and_(pc.is_nan(lc), pc.is_nan(rc)), False))
    return ~same.to_numpy(zero_copy_only=False)


def _listing(store: ObjectStore, a: Manifest | None, b: Manifest | None, joined: dict[str, np.ndarray],
             compared: _Compared, limit: int, engine: Engine) -> tuple[SampleChange, ...]:
    """The first ``limit`` differing samples in the order of their key (of their id when content-keyed), each
    with its key, and for changed ones the columns that differ with their old and new values."""
    status = joined["status"]
    if limit <= 0:
        return ()
    changed_idx = np.flatnonzero(status == "changed")
    column_of = {int(i): j for j, i in enumerate(changed_idx)}
    key = b.key if b is not None and (a is None or a.key == b.key) else None
    keys: dict[int, dict[str, Any]] = {}
    if key and len(status):
        table = _keys_of(store, a, b, joined, np.arange(len(status)), key, engine)
        import pyarrow.compute as pc

        order = pc.sort_indices(table, sort_keys=[(c, "ascending") for c in key]).to_numpy()
        picked = order[:limit]
        rows = table.take(ids.numpy_array(picked)).to_pylist()
        keys = dict(zip(picked.tolist(), rows, strict=True))
    else:
        picked = np.argsort(np.array([bytes(i) for i in joined["id"]], dtype=object), kind="stable")[:limit] \
            if len(status) else np.zeros(0, np.int64)
    cols_of = {i: tuple(c for c, d in zip(compared.names, compared.matrix[:, column_of[i]], strict=True) if d)
               for i in picked.tolist() if i in column_of}
    values = _old_and_new(store, a, b, joined, cols_of, {i: column_of[i] for i in cols_of}, compared, engine)
    return tuple(SampleChange(str(status[i]), bytes(joined["id"][i]).hex(), keys.get(i), cols_of.get(i, ()),
                              values.get(i, {}))
                 for i in picked.tolist())


def _keys_of(store: ObjectStore, a: Manifest | None, b: Manifest | None, joined: dict[str, np.ndarray],
             rows: np.ndarray, key: Sequence[str], engine: Engine | None = None) -> pa.Table:
    """The key columns of differing samples ``rows`` (indices into ``joined``), in that order: removed samples
    read from ``a``, the others from ``b``."""
    from_a = joined["status"][rows] == "removed"
    parts, where = [], []
    for m, sel, f, p in ((a, rows[from_a], joined["fa"], joined["pa"]), (b, rows[~from_a], joined["fb"], joined["pb"])):
        if m is not None and len(sel):
            parts.append(rows_at(store, m, f[sel], p[sel], key, engine))
            where.append(np.flatnonzero(from_a) if m is a else np.flatnonzero(~from_a))
    if not parts:
        return pa.table({c: pa.array([]) for c in key})
    table = pa.concat_tables(parts, promote_options="permissive")
    return table.take(ids.numpy_array(np.argsort(np.concatenate(where), kind="stable")))


def _old_and_new(store: ObjectStore, a: Manifest | None, b: Manifest | None, joined: dict[str, np.ndarray],
                 cols_of: dict[int, tuple[str, ...]], position: dict[int, int], compared: _Compared,
                 engine: Engine | None = None) -> dict[int, dict[str, tuple[Any, Any]]]:
    """For changed samples (index -> their changed columns), each column's value in ``a`` and in ``b``: from
    what the comparison read (``position``: index -> its place among the changed samples), else read here."""
    if a is None or b is None or not cols_of:
        return {}
    idx = np.array(sorted(cols_of), dtype=np.int64)
    wanted = sorted({c for cols in cols_of.values() for c in cols})
    at = pa.array([position[int(i)] for i in idx], pa.int64())
    sides = []
    for m, have, f, p in ((a, compared.old, joined["fa"], joined["pa"]), (b, compared.new, joined["fb"], joined["pb"])):
        cols = [c for c in wanted if c in m.schema.names]
        rest = [c for c in cols if c not in have]
        more = rows_at(store, m, f[idx], p[idx], rest, engine) if rest else None
        sides.append({c: (have[c].take(at) if c in have else more.column(c)).to_pylist()  # type: ignore[union-attr]
                      for c in cols})
    olds, news = sides
    return {int(i): {c: (olds[c][n] if c in olds else None, news[c][n] if c in news else None) for c in cols_of[int(i)]}
            for n, i in enumerate(idx)}
