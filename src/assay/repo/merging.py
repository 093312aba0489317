"""Ways out of a merge conflict: one side for every conflict (``prefer``), or the rows that settle them.

``resolve_conflicts`` takes a file or frame holding every conflicting sample of a dataset by its key, with
the values it should have after the merge, and upserts exactly those rows onto the merged version (which
took our side of each conflict first). Rows for samples that are not in conflict are refused, so that a
resolution file cannot slip other changes into a merge; a conflict the rows leave out is refused too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from assay.errors import InputError, MergeConflict

if TYPE_CHECKING:
    from assay.repo.repository import Repository as Repo
    from assay.table.merge import Conflict

PREFER = ("ours", "theirs")


def check_prefer(prefer: str | None) -> None:
    if prefer is not None and prefer not in PREFER:
        raise InputError(f"prefer must be 'ours' or 'theirs', not {prefer!r}")


def resolve_conflicts(repo: Repo, name: str, merged_oid: str, conflicts: Sequence[Conflict], rows: Any) -> str:
    """The manifest oid of ``name`` after upserting ``rows`` (a path or frame) onto the merged version."""
    import pyarrow as pa

    from assay.table.sources import load_source

    whole = [c for c in conflicts if c.id == "*"]
    if whole:
        raise MergeConflict(f"{name}: the conflict is about the whole dataset ({whole[0].ours} / {whole[0].theirs}), "
                            "not samples; rows cannot settle it. Merge with --ours or --theirs.", list(conflicts))
    manifest = repo.read_manifest(merged_oid)
    if not manifest.key:
        raise InputError(f"{name} has no key columns, so rows cannot name its samples; merge with --ours or --theirs")
    key = list(manifest.key)
    source = load_source(rows)
    table = pa.Table.from_batches(list(source.open()), schema=source.schema)
    missing = [c for c in key if c not in table.column_names]
    if missing:
        raise InputError(f"{source.description}: the resolution rows lack the key column(s) {missing} of {name}; "
                         f"give each conflicting sample's {', '.join(key)} and its final values")
    given = {tuple(str(v) for v in row.values()) for row in table.select(key).to_pylist()}
    wanted = {tuple(str(c.key[k]) for k in key) for c in conflicts if c.key}
    extra, left = sorted(given - wanted), sorted(wanted - given)
    if extra:
        raise InputError(f"{source.description}: {len(extra)} row(s) are not conflicts of this merge "
                         f"(first: {_key_text(key, extra[0])}); give only the conflicting samples, and change "
                         "the others with `assay add --mode upsert` after the merge")
    if left:
        raise MergeConflict(f"{source.description} settles {len(wanted) - len(left)} of {len(wanted)} conflict(s) "
                            f"of {name}; still in conflict: "
                            + ", ".join(_key_text(key, k) for k in left[:10]) + ("..." if len(left) > 10 else "")
                            + ". Add a row for each; nothing was merged.", list(conflicts))
    oid, _ = repo.build_version(name, table, base=merged_oid, mode="upsert")
    return oid


def _key_text(key: Sequence[str], values: tuple[str, ...]) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(key, values, strict=True))
