"""Three-way merge of dataset versions on sample sets.

Changes of both sides relative to their common base are combined sample by sample. A sample that the
two sides changed differently (different content, or changed on one side and removed on the other) is
a conflict, reported by sample with both sides' values and never resolved silently: only when the caller
says which side wins (``prefer="ours"`` or ``"theirs"``). Rows taken from the other side are not
copied: the merged version references the other side's fragments with deletion vectors.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from assay.errors import InputError
from assay.store import ObjectStore
from assay.table.diff import id_level_diff, rows_at
from assay.table.fragments import POSITION, id_table, with_deletions, with_only
from assay.table.manifest import ID_COLUMN, Manifest


@dataclass(frozen=True)
class Conflict:
    """A sample changed differently on both sides."""

    dataset: str
    id: str
    ours: str  # what our side did: added, changed, removed
    theirs: str
    key: dict[str, Any] | None = None
    values: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # column -> (ours, theirs), where they differ

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "id": self.id, "ours": self.ours, "theirs": self.theirs, "key": self.key,
                "values": {c: {"ours": o, "theirs": t} for c, (o, t) in self.values.items()}}

    def __str__(self) -> str:
        what = ", ".join(f"{k}={v!r}" for k, v in self.key.items()) if self.key else f"id {self.id[:16]}"
        values = "; ".join(f"{c}: ours {_short(o)}, theirs {_short(t)}" for c, (o, t) in self.values.items())
        return f"{self.dataset}: sample {what}: ours {self.ours}, theirs {self.theirs}" + (f" ({values})" if values
                                                                                          else "")


def _short(v: Any) -> str:
    if isinstance(v, bytes):
        return f"<{len(v):,} bytes>"
    text = f"{v:.6g}" if isinstance(v, float) else repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


PREFER = ("ours", "theirs")
VALUES_SHOWN = 200  # conflicts that get both sides' values read


def merge_manifests(store: ObjectStore, name: str, base: Manifest | None, ours: Manifest | None,
                    theirs: Manifest | None, base_oid: str | None, ours_oid: str | None,
                    theirs_oid: str | None, *, prefer: str | None = None) -> tuple[Manifest | None, list[Conflict]]:
    """The merged version of one dataset, and its conflicts. With conflicts the version is None, unless
    ``prefer`` names the side whose version of each conflicting sample (or of the whole dataset, when the
    conflict is about the dataset: deleted on one side, schema or key changed) is taken."""
    if prefer not in (None, *PREFER):
        raise InputError(f"prefer must be one of {PREFER}, not {prefer!r}")
    if ours_oid == theirs_oid or theirs_oid == base_oid:
        return ours, []
    if ours_oid == base_oid:
        return theirs, []
    if ours is None or theirs is None:  # deleted on one side, changed on the other
        side = "ours" if ours is None else "theirs"
        whole = [Conflict(name, "*", "deleted dataset" if side == "ours" else "changed",
                          "deleted dataset" if side == "theirs" else "changed")]
        return {"ours": ours, "theirs": theirs, None: None}[prefer], whole
    if (ours.key != theirs.key) or not _schemas_mergeable(base, ours, theirs):
        whole = [Conflict(name, "*", "schema/key " + _schema_text(ours), "schema/key " + _schema_text(theirs))]
        return {"ours": ours, "theirs": theirs, None: None}[prefer], whole
    d_ours, d_theirs = id_level_diff(store, base, ours), id_level_diff(store, base, theirs)
    conflicts = _conflicts(store, name, d_ours, d_theirs, ours, theirs)
    if conflicts and prefer is None:
        return None, conflicts
    schema = theirs.schema if base is not None and base.schema.equals(ours.schema) else ours.schema
    theirs_win = {bytes.fromhex(c.id) for c in conflicts} if prefer == "theirs" else set()
    return _combine(store, ours, theirs, d_ours, d_theirs, schema, theirs_win), conflicts


def _schema_text(m: Manifest) -> str:
    return f"{m.key or 'content'}: " + ", ".join(f"{f.name} {f.type}" for f in m.schema)


def _schemas_mergeable(base: Manifest | None, ours: Manifest, theirs: Manifest) -> bool:
    if ours.schema.equals(theirs.schema):
        return True
    return base is not None and (base.schema.equals(ours.schema) or base.schema.equals(theirs.schema))


def _by_id(d: dict[str, np.ndarray]) -> dict[bytes, int]:
    return {bytes(i): n for n, i in enumerate(d["id"])}


def _conflicts(store: ObjectStore, name: str, d_ours: dict[str, np.ndarray], d_theirs: dict[str, np.ndarray],
               ours: Manifest, theirs: Manifest) -> list[Conflict]:
    o, t = _by_id(d_ours), _by_id(d_theirs)
    out = []
    for sid in o.keys() & t.keys():
        i, j = o[sid], t[sid]
        so, st = str(d_ours["status"][i]), str(d_theirs["status"][j])
        if so == st == "removed":
            continue
        if so != "removed" and st != "removed" and d_ours["hash"][i] == d_theirs["hash"][j]:
            continue  # same change on both sides
        key = None
        if ours.key and so != "removed":
            key = rows_at(store, ours, d_ours["fb"][i:i + 1], d_ours["pb"][i:i + 1], ours.key).to_pylist()[0]
        elif theirs.key and st != "removed":
            key = rows_at(store, theirs, d_theirs["fb"][j:j + 1], d_theirs["pb"][j:j + 1], theirs.key).to_pylist()[0]
        out.append(Conflict(name, sid.hex(), so, st, key))
    out.sort(key=lambda c: (tuple(str(v) for v in c.key.values()) if c.key else (), c.id))
    return _with_values(store, out[:VALUES_SHOWN], d_ours, d_theirs, o, t, ours, theirs) + out[VALUES_SHOWN:]


def _with_values(store: ObjectStore, conflicts: list[Conflict], d_ours: dict[str, np.ndarray],
                 d_theirs: dict[str, np.ndarray], o: dict[bytes, int], t: dict[bytes, int], ours: Manifest,
                 theirs: Manifest) -> list[Conflict]:
    """Conflicts where both sides hold the sample, with the columns in which the two differ: (ours, theirs)."""
    both = [c for c in conflicts if c.ours != "removed" and c.theirs != "removed"]
    if not both:
        return conflicts
    i = np.array([o[bytes.fromhex(c.id)] for c in both])
    j = np.array([t[bytes.fromhex(c.id)] for c in both])
    common = [c for c in ours.schema.names if c in theirs.schema.names]
    mine = rows_at(store, ours, d_ours["fb"][i], d_ours["pb"][i], common).to_pylist()
    other = rows_at(store, theirs, d_theirs["fb"][j], d_theirs["pb"][j], common).to_pylist()
    values = {c.id: {col: (a[col], b[col]) for col in common if a[col] != b[col]}
              for c, a, b in zip(both, mine, other, strict=True)}
    return [replace(c, values=values[c.id]) if c.id in values else c for c in conflicts]


def _combine(store: ObjectStore, ours: Manifest, theirs: Manifest, d_ours: dict[str, np.ndarray],
             d_theirs: dict[str, np.ndarray], schema: pa.Schema,
             theirs_win: AbstractSet[bytes] = frozenset()) -> Manifest:
    """Ours with theirs' changes of the samples ours left as in base, and of the samples in ``theirs_win``."""
    done_by_ours = _by_id(d_ours)
    st = d_theirs["status"]
    won = np.array([bytes(i) in theirs_win for i in d_theirs["id"]], bool)
    take = np.array([bytes(i) not in done_by_ours for i in d_theirs["id"]], bool) | won
    # rows to remove from ours: samples theirs removed or changed (ours left them as in base), and ours' own
    # version of the conflicting samples theirs win
    drop_ids = [bytes(i) for i in d_theirs["id"][take & ((st != "added") | won)]]
    fragments = list(ours.fragments)
    if drop_ids:
        rows = id_table(store, ours.fragments)
        hit = np.flatnonzero(np.isin(np.array(rows.column(ID_COLUMN).to_pylist(), dtype=object),
                                     np.array(drop_ids, dtype=object)))
        frag = rows.column("_assay_frag").to_numpy()[hit]
        pos = rows.column(POSITION).to_numpy()[hit]
        fragments = [with_deletions(store, ref, pos[frag == k]) for k, ref in enumerate(fragments)]
    # rows to bring from theirs: samples theirs added or changed
    bring = take & (st != "removed")
    frags, poss = d_theirs["fb"][bring], d_theirs["pb"][bring]
    for k in np.unique(frags):
        fragments.append(with_only(store, theirs.fragments[int(k)], poss[frags == k]))
    return ours.with_fragments(fragments, schema=schema, source=None)
