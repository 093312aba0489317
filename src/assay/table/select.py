"""Versions made of some samples of others, without copying rows: deletion vectors select, fragments unite."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay.errors import InputError, KeyViolation
from assay.store import ObjectStore
from assay.table.fragments import POSITION, id_table, with_only
from assay.table.manifest import ID_COLUMN, FragmentRef, Manifest


def select_rows(store: ObjectStore, manifest: Manifest, keep: np.ndarray) -> Manifest:
    """``manifest`` with only the live rows where ``keep`` is true (in the version's row order)."""
    keep = np.asarray(keep, bool)
    if len(keep) != manifest.rows:
        raise InputError(f"a selection of {len(keep)} rows for a version of {manifest.rows}")
    rows = id_table(store, manifest.fragments)
    frag = rows.column("_assay_frag").to_numpy()
    positions = rows.column(POSITION).to_numpy()
    out: list[FragmentRef] = []
    for i, ref in enumerate(manifest.fragments):
        mine = frag == i
        kept = positions[mine & keep]
        if len(kept) == int(mine.sum()):
            out.append(ref)
        elif len(kept):
            out.append(with_only(store, ref, kept))
    return manifest.with_fragments(out)


def select_ids(store: ObjectStore, manifest: Manifest, ids: set[bytes], *, keep: bool = True) -> Manifest:
    """``manifest`` with only (``keep``) or without the samples whose id is in ``ids``."""
    column = id_table(store, manifest.fragments).column(ID_COLUMN)
    wanted = pa.array(sorted(ids), pa.binary(16))
    present = pc.is_in(column, value_set=wanted).to_numpy(zero_copy_only=False).astype(bool)
    return select_rows(store, manifest, present if keep else ~present)


def unite(store: ObjectStore, a: Manifest, b: Manifest) -> Manifest:
    """The samples of ``a`` and of ``b`` (same schema, no sample id in both)."""
    if not a.schema.equals(b.schema) or a.key != b.key:
        raise InputError(f"dataset {a.name!r}: the versions to unite differ in schema or key; add the samples "
                         "again with `assay ingest` instead")
    left = id_table(store, a.fragments).column(ID_COLUMN)
    right = id_table(store, b.fragments).column(ID_COLUMN)
    both = pc.is_in(right, value_set=pa.chunked_array(left.chunks, pa.binary(16)).combine_chunks())
    clashes = int(pc.sum(both).as_py() or 0)
    if clashes:
        raise KeyViolation(f"dataset {a.name!r}: {clashes} sample(s) are already there (same sample id); "
                           "drop them first, or update them with an upsert")
    return a.with_fragments([*a.fragments, *b.fragments])
