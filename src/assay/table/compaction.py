"""Rewriting fragments into fewer: the live rows of several fragments into full ones (``rewrite``), and the small
fragments that a stream of appends leaves at a dataset's end, merged in tiers as they come (``merge_tail``).

A sample keeps its id and content hash through a rewrite, and the rows keep their order: the version holds the
same samples, in fewer fragments. The fragments a rewrite replaces stay stored for the versions that name them.

``merge_tail`` is what keeps a log appended to every second (the prediction log of ``assay serve``) readable
after a million appends. Each append adds a small fragment at the end; once the last ``fan_in`` small fragments
are together at least as large as the first of them is alone, they are rewritten as one (and again, while the
new end qualifies). Like a counter in base ``fan_in``: the end holds fewer than ``fan_in`` fragments of each
size class, so a version has about ``rows / FRAGMENT_ROWS + fan_in x log_fan_in(FRAGMENT_ROWS / rows_per_append)``
fragments, and a row is rewritten about ``log_fan_in(FRAGMENT_ROWS / rows_per_append)`` times.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from assay._types import Progress
from assay.store import ObjectStore
from assay.table.fragments import FRAGMENT_ROWS, read_fragment, write_fragment
from assay.table.manifest import HASH_COLUMN, ID_COLUMN, FragmentRef, Manifest

FAN_IN = 16  # small fragments at the end merged at once


def rewrite(store: ObjectStore, m: Manifest, fragments: Sequence[FragmentRef], *,
            progress: Progress | None = None) -> list[FragmentRef]:
    """The live rows of ``fragments`` (of ``m``), in their order, written again as fragments of ``FRAGMENT_ROWS``
    rows (the last one the rest), each sample with its id and content hash."""
    from assay.table.reader import conform

    schema = _schema(m)
    cols = schema.names
    pending: list[pa.Table] = []
    rows, out = 0, []
    for f in fragments:
        t = conform(read_fragment(store, f, cols), schema)
        pending.append(t)
        rows += t.num_rows
        while rows >= FRAGMENT_ROWS:
            table = pa.concat_tables(pending)
            out.append(write_fragment(store, table.slice(0, FRAGMENT_ROWS)))
            rest = table.slice(FRAGMENT_ROWS)
            pending, rows = [rest], rest.num_rows
        if progress:
            progress(f"compacting {m.name}", len(out), 0)
    if rows:
        out.append(write_fragment(store, pa.concat_tables(pending)))
    return out


def merge_tail(store: ObjectStore, m: Manifest, *, fan_in: int = FAN_IN) -> Manifest:
    """``m`` with the small fragments at its end merged in tiers (see the module docstring); ``m`` itself when
    nothing qualifies. The end is the run of last fragments that are short of ``FRAGMENT_ROWS`` and have no row
    deleted (a fragment with deletions stops it: it is left for ``assay compact``)."""
    if fan_in < 2:
        raise ValueError("fan_in must be 2 or more")
    fragments = list(m.fragments)
    changed = False
    while True:
        start = len(fragments)
        while start > 0 and _small(fragments[start - 1]):
            start -= 1
        if len(fragments) - start < fan_in:
            break
        group = fragments[-fan_in:]
        if group[0].rows > sum(f.rows for f in group[1:]):
            break  # the first is still the larger: wait for more behind it
        fragments[-fan_in:] = rewrite(store, m, group)
        changed = True
    return m.with_fragments(fragments) if changed else m


def _small(f: FragmentRef) -> bool:
    return f.rows < FRAGMENT_ROWS and f.deleted is None


def _schema(m: Manifest) -> pa.Schema:
    from assay.table.ids import ID_TYPE

    return pa.schema([pa.field(ID_COLUMN, ID_TYPE), pa.field(HASH_COLUMN, ID_TYPE), *m.schema])
