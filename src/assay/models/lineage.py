"""Lineage both ways: the data a model version was trained and evaluated on (resolved, and checked against its
signature) and the versions derived from it; and the reverse, the models whose training data holds a dataset
version or one sample (``trained_on``), answered from the models' indexes and the id indexes of fragments."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assay.errors import InputError, RefNotFound, SignatureMismatch
from assay.models.adapters import input_width
from assay.models.record import DataRef, IndexEntry, ModelIndex, ModelVersion, Signature
from assay.repo import revisions

if TYPE_CHECKING:
    import pyarrow as pa

    from assay.repo.repository import Repository as Repo
    from assay.table.manifest import FragmentRef, Manifest

# Arrow, NumPy and the table layer are imported by the functions that read data (resolving training data,
# trained-on), not at import: showing a version's lineage needs none of them.
ID_HEX = 32  # characters of a sample id in hex (assay.table.ids.ID_BYTES bytes)

LABEL = "label"  # the label column when none is named and the training data has one of that name


def resolve_data(repo: Repo, spec: str, role: str) -> tuple[DataRef, Manifest]:
    """The committed dataset version ``DATASET[@REV]`` names (REV defaults to HEAD), for ``role`` (train, eval)."""
    name, rev = revisions.split_dataset_rev(spec)
    revisions.check_dataset_name(name)
    tail = " Nothing was registered." if role in ("training", "evaluation") else ""
    try:
        commit = repo.resolve(rev or "HEAD")
    except RefNotFound as e:
        raise RefNotFound(f"{role} data {spec!r}: {e}.{tail}") from e
    datasets = repo.read_commit(commit).datasets
    if name not in datasets:
        raise RefNotFound(f"{role} data {spec!r}: there is no dataset {name!r} at {rev or 'HEAD'} "
                          f"({commit[:12]}); datasets there: {sorted(datasets) or 'none'}.{tail}")
    manifest = repo.read_manifest(datasets[name])
    return DataRef(name, commit, datasets[name], manifest.rows, rev or "HEAD"), manifest


def _width(field_type: pa.DataType) -> int | None:
    """Feature values in one cell of a column: 1 for a number, N for a fixed-size list, None otherwise."""
    import pyarrow as pa

    if pa.types.is_integer(field_type) or pa.types.is_floating(field_type) or pa.types.is_boolean(field_type):
        return 1
    if pa.types.is_dictionary(field_type):
        return _width(field_type.value_type)
    if pa.types.is_fixed_size_list(field_type):
        inner = _width(field_type.value_type)
        return field_type.list_size * inner if inner else None
    return None


def feature_columns(signature: Signature, manifest: Manifest, spec: str, *, label: str | None,
                    features: Sequence[str] | None) -> tuple[str, ...]:
    """The columns of the training data that a model's inputs are made of; SignatureMismatch when the model's
    inputs do not fit them (by name where the model knows its feature names, else by count)."""
    names = manifest.schema.names
    wanted = tuple(features) if features else signature.features
    if wanted:
        missing = [c for c in wanted if c not in names]
        if missing:
            raise SignatureMismatch(f"the model takes column(s) {missing[:10]} that {spec} does not have (its columns: "
                                    f"{names[:20]}); train it on {spec}, or name the data it was trained on. Nothing "
                                    "was registered.")
        _check_width(signature, manifest, wanted, spec)
        return wanted
    skip = set(manifest.key or ()) | set(manifest.blob_columns) | ({label} if label else set())
    numeric = tuple(c for c in names if c not in skip and _width(manifest.schema.field(c).type))
    _check_width(signature, manifest, numeric, spec)
    return numeric


def _check_width(signature: Signature, manifest: Manifest, columns: Sequence[str], spec: str) -> None:
    takes = input_width(signature)
    widths = [_width(manifest.schema.field(c).type) for c in columns]
    if takes is None or any(w is None for w in widths):
        return
    has = sum(w for w in widths if w is not None)
    if has != takes:
        shown = ", ".join(columns[:8]) + (", ..." if len(columns) > 8 else "")
        raise SignatureMismatch(f"the model takes {takes} feature value(s) per sample but the feature columns of "
                                f"{spec} hold {has} ({shown}); give features=[...] (the columns it was trained on, "
                                "in order; --features on the command line), the label column if it is not "
                                "'label' (label=..., --label), or the dataset it was trained on. Nothing was "
                                "registered.")


def check_eval(manifest: Manifest, spec: str, features: Sequence[str], label: str | None) -> None:
    """An evaluation version must hold the model's feature columns and the label column."""
    names = manifest.schema.names
    if label is None or label not in names:
        which = f"label column {label!r}" if label else "label column"
        raise SignatureMismatch(f"evaluation data {spec} has no {which} (its columns: {names[:20]}); an "
                                "evaluation needs labels: pick a version that has them, or name the label column "
                                "(label=...). Nothing was registered.")
    missing = [c for c in features if c not in names]
    if missing:
        raise SignatureMismatch(f"evaluation data {spec} lacks the model's feature column(s) {missing[:10]}; "
                                "evaluate on data with the columns it was trained on. Nothing was registered.")


# -- lineage of one version ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineageReport:
    """A version, the chain of versions it was derived from (nearest first), and those derived from it
    (``(depth, "name@N", derived_by)``, depth 1 for its children)."""

    version: ModelVersion
    ancestors: tuple[ModelVersion, ...] = ()
    descendants: tuple[tuple[int, str, str | None], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        lin = self.version.lineage
        return {"model": self.version.spec, "train": lin.train.to_dict() if lin.train else None,
                "eval": lin.eval.to_dict() if lin.eval else None, "code": lin.code,
                "ancestors": [{"model": a.spec, "derived_by": a.lineage.derived_by,
                               "train": a.lineage.train.to_dict() if a.lineage.train else None}
                              for a in self.ancestors],
                "descendants": [{"depth": d, "model": s, "derived_by": how} for d, s, how in self.descendants]}


def descendants(indexes: dict[str, ModelIndex], record: str,
                read: Any) -> tuple[tuple[int, str, str | None], ...]:
    """Versions derived from the version stored as ``record``, depth-first, from the indexes alone (the
    derivation of each is read from its record)."""
    children: dict[str, list[tuple[str, str]]] = {}
    for name, index in sorted(indexes.items()):
        for n, e in enumerate(index.versions, 1):
            if e.parent:
                children.setdefault(e.parent, []).append((f"{name}@{n}", e.record))
    out: list[tuple[int, str, str | None]] = []
    stack = [(1, c) for c in reversed(children.get(record, []))]
    seen = {record}
    while stack:
        depth, (spec, oid) = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        out.append((depth, spec, read(oid).lineage.derived_by))
        stack.extend((depth + 1, c) for c in reversed(children.get(oid, [])))
    return tuple(out)


# -- trained-on: the reverse query -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainedOn:
    """A model version whose training data holds the version (or sample) asked about; ``match`` says how:
    ``exact`` (that very version), ``contains`` (a version holding all its samples), ``sample``."""

    model: str
    version: int
    match: str
    manifest: str

    @property
    def spec(self) -> str:
        return f"{self.model}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.spec, "name": self.model, "version": self.version, "match": self.match,
                "manifest": self.manifest}


@dataclass
class _Ids:
    """Sample ids of fragments, each read once (fragments are shared by the versions of a dataset)."""

    repo: Repo
    raw: dict[str, bytes] = field(default_factory=dict)
    deleted: dict[str, set[int]] = field(default_factory=dict)
    live: dict[str, pa.Array] = field(default_factory=dict)

    def has_sample(self, manifest: Manifest, sid: bytes) -> bool:
        return any(self._in_fragment(f, sid) for f in manifest.fragments)

    def _in_fragment(self, ref: FragmentRef, sid: bytes) -> bool:
        from assay.table.fragments import deleted_positions
        from assay.table.ids import ID_BYTES

        raw = self.raw.get(ref.ids)
        if raw is None:
            raw = self.raw[ref.ids] = self.repo.store.get(ref.ids)
        step = 2 * ID_BYTES
        at = raw.find(sid)
        while at >= 0 and at % step:
            at = raw.find(sid, at + 1)
        if at < 0:
            return False
        if not ref.deleted:
            return True
        if ref.deleted not in self.deleted:
            self.deleted[ref.deleted] = set(deleted_positions(self.repo.store, ref).tolist())
        return at // step not in self.deleted[ref.deleted]

    def ids(self, oid: str, manifest: Manifest) -> pa.Array:
        if oid not in self.live:
            from assay.table.fragments import id_table
            from assay.table.manifest import ID_COLUMN

            self.live[oid] = id_table(self.repo.store, manifest.fragments).column(ID_COLUMN).combine_chunks()
        return self.live[oid]


def sample_id(manifest: Manifest, sample: str, spec: str) -> bytes:
    """A sample's 16-byte id from its hex id (as assay prints it) or, for a dataset with one key column, its key."""
    import pyarrow as pa

    from assay.table.ids import key_ids

    text = sample.strip()
    if len(text) == ID_HEX and all(c in "0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text)
    key = manifest.key or ()
    if len(key) != 1:
        raise InputError(f"{sample!r} is not a sample id of {spec}: give the 32-hex-digit id that assay shows "
                         "(e.g. in `assay diff` or `assay scores`)" + (f", or a value of its key {key}" if key else ""))
    column = key[0]
    try:
        value = pa.array([text]).cast(manifest.schema.field(column).type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise InputError(f"{sample!r} is neither a sample id nor a value of {spec}'s key column {column!r}") from e
    return bytes(key_ids(pa.table({column: value}), [column])[0].as_py())


def trained_on(repo: Repo, indexes: dict[str, ModelIndex], target: DataRef, manifest: Manifest,
               sample: str | None = None) -> list[TrainedOn]:
    """Model versions (of ``indexes``) whose training data holds version ``target`` of a dataset, or (with
    ``sample``) that sample of it. Each distinct training version is looked at once."""
    entries = [(name, n, e) for name, index in sorted(indexes.items()) for n, e in enumerate(index.versions, 1)
               if e.train is not None and e.train[0] == target.dataset]
    ids = _Ids(repo)
    manifests: dict[str, Manifest] = {target.manifest: manifest}
    found: dict[str, str] = {}  # training manifest -> how it holds what was asked ("" if it does not)
    if sample is not None:
        sid = sample_id(manifest, sample, target.spec)
        if not ids.has_sample(manifest, sid):
            raise RefNotFound(f"{target.dataset}@{target.rev} has no sample {sample!r}; see its samples with "
                              f"`assay scores` or `assay diff`")

        def how(oid: str) -> str:
            return "sample" if ids.has_sample(manifests[oid], sid) else ""
    else:
        def how(oid: str) -> str:
            return _holds(ids, target.manifest, manifest, oid, manifests[oid])
    out = []
    for name, n, m in _with_manifests(repo, entries, manifests):
        if m not in found:
            found[m] = how(m)
        if found[m]:
            out.append(TrainedOn(name, n, found[m], m))
    return out


def _with_manifests(repo: Repo, entries: Iterable[tuple[str, int, IndexEntry]],
                    manifests: dict[str, Manifest]) -> list[tuple[str, int, str]]:
    out = []
    for name, n, e in entries:
        assert e.train is not None
        oid = e.train[1]
        if oid not in manifests:
            manifests[oid] = repo.read_manifest(oid)
        out.append((name, n, oid))
    return out


def _holds(ids: _Ids, q_oid: str, q: Manifest, t_oid: str, t: Manifest) -> str:
    """``exact`` when the training version is the one asked about, ``contains`` when it holds all its samples."""
    if t_oid == q_oid:
        return "exact"
    if t.rows < q.rows or not q.rows:
        return ""
    if {(f.oid, f.deleted) for f in q.fragments} <= {(f.oid, f.deleted) for f in t.fragments}:
        return "contains"
    import numpy as np
    import pyarrow.compute as pc

    wanted = ids.ids(q_oid, q)
    present = pc.is_in(wanted, value_set=ids.ids(t_oid, t)).to_numpy(zero_copy_only=False)
    return "contains" if bool(np.all(present)) else ""
