"""The stored formats of the registry: a model version's record and a model's index (spec: docs/models.md).

Both are canonical JSON objects in the object store, addressed by their hash, each with its ``format``. A
record is immutable: a version's artifacts, signature, parameters, metrics and lineage. The index of a model
lists its versions (version N is entry N-1; older ones in pages of 256) and its aliases; a commit's ``models``
maps a model name to the oid of its index, so a registration or an alias move is one new commit. All declare
what they reference in ``refs`` (by type of object), which gc, fsck and push follow (``assay.repo.graph``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from assay.errors import FormatError

RECORD_FORMAT = 1
INDEX_FORMAT = 1


def _dumps(d: dict[str, Any]) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), default=str).encode()


def _load(data: bytes, oid: str, kind: str, newest: int) -> dict[str, Any]:
    try:
        d = json.loads(data)
    except ValueError as e:
        raise FormatError(f"object {oid} is not a {kind}") from e
    if not isinstance(d, dict) or d.get("type") != kind:
        raise FormatError(f"object {oid} is not a {kind}")
    if d.get("format", 0) > newest:
        raise FormatError(f"{kind} {oid} has format {d['format']}, newer than this assay reads ({newest}); "
                          "upgrade assay")
    return d


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: its name, dtype (numpy's name) and shape, a dimension of any size given as None or
    by its axis name ("batch", "sequence"). The one spec of the models layer: records and ONNX exports use it."""

    name: str
    dtype: str
    shape: tuple[int | str | None, ...] | None = None  # None: not known

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape) if self.shape is not None else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(d["name"], d["dtype"], tuple(d["shape"]) if d.get("shape") is not None else None)

    def __str__(self) -> str:
        dims = "?" if self.shape is None else "x".join("N" if s is None else str(s) for s in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


@dataclass(frozen=True)
class Signature:
    """What a model takes and gives; ``features`` are the dataset columns its inputs are made of, in order."""

    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    features: tuple[str, ...] = ()
    label: str | None = None
    classes: tuple[Any, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs],
                "features": list(self.features), "label": self.label,
                "classes": list(self.classes) if self.classes is not None else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Signature:
        return cls(tuple(TensorSpec.from_dict(t) for t in d.get("inputs", ())),
                   tuple(TensorSpec.from_dict(t) for t in d.get("outputs", ())), tuple(d.get("features", ())),
                   d.get("label"), tuple(d["classes"]) if d.get("classes") is not None else None)


@dataclass(frozen=True)
class Artifact:
    """A file of a model version: ``model.pkl``, ``model.onnx``, ``model.pt``, ``example_input.npy``..."""

    name: str
    oid: str
    bytes: int
    media: str  # what the bytes are: "sklearn-pickle", "onnx", "torch-export", "npy", "json"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "oid": self.oid, "bytes": self.bytes, "media": self.media}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Artifact:
        return cls(d["name"], d["oid"], d["bytes"], d["media"])


@dataclass(frozen=True)
class DataRef:
    """A dataset version a model was trained or evaluated on: the exact sample set (its manifest)."""

    dataset: str
    commit: str
    manifest: str
    rows: int
    rev: str = ""  # the revision as the user gave it ("v3")

    @property
    def spec(self) -> str:
        """``dataset@commit-prefix``: names this version whatever the revision it was given by does later."""
        return f"{self.dataset}@{self.commit[:12]}"

    def __str__(self) -> str:
        return f"{self.dataset}@{self.rev} ({self.commit[:12]})" if self.rev else self.spec

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "commit": self.commit, "manifest": self.manifest, "rows": self.rows,
                "rev": self.rev}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataRef:
        return cls(d["dataset"], d["commit"], d["manifest"], d["rows"], d.get("rev", ""))


@dataclass(frozen=True)
class ParentRef:
    """The model version another was derived from (exported, quantised, fine-tuned)."""

    name: str
    version: int
    record: str

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "record": self.record}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParentRef:
        return cls(d["name"], d["version"], d["record"])


@dataclass(frozen=True)
class Lineage:
    """Where a version came from: data (train, eval), code (git commit and dirty flag) and parent version."""

    train: DataRef | None = None
    eval: DataRef | None = None
    code: dict[str, Any] | None = None  # {"git_commit", "dirty", "path"}, as commits record it
    parent: ParentRef | None = None
    derived_by: str | None = None  # how it was derived from the parent: "export onnx", "quantize int8"...

    def to_dict(self) -> dict[str, Any]:
        return {"train": self.train.to_dict() if self.train else None,
                "eval": self.eval.to_dict() if self.eval else None, "code": self.code,
                "parent": self.parent.to_dict() if self.parent else None, "derived_by": self.derived_by}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Lineage:
        return cls(DataRef.from_dict(d["train"]) if d.get("train") else None,
                   DataRef.from_dict(d["eval"]) if d.get("eval") else None, d.get("code"),
                   ParentRef.from_dict(d["parent"]) if d.get("parent") else None, d.get("derived_by"))


@dataclass(frozen=True)
class ModelVersion:
    """One immutable version of a model, as stored (``to_bytes``) and shown (``to_dict``)."""

    name: str
    version: int
    framework: str  # "sklearn", "torch" or "onnx"
    model_class: str  # e.g. "sklearn.pipeline.Pipeline"
    artifacts: tuple[Artifact, ...]
    signature: Signature
    libraries: dict[str, str] = field(default_factory=dict)  # library -> version it was saved with
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    lineage: Lineage = field(default_factory=Lineage)
    created: float = 0.0  # seconds since the epoch, UTC
    author: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # anything else the caller records
    format: int = RECORD_FORMAT

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def size(self) -> int:
        """Bytes of its artifacts."""
        return sum(a.bytes for a in self.artifacts)

    def artifact(self, name: str | None = None) -> Artifact:
        """The artifact ``name``; by default the model file itself (the first artifact)."""
        if name is None:
            return self.artifacts[0]
        for a in self.artifacts:
            if a.name == name:
                return a
        raise KeyError(f"{self.spec} has no artifact {name!r}; it has {[a.name for a in self.artifacts]}")

    def renumbered(self, version: int) -> ModelVersion:
        return replace(self, version=version)

    def to_dict(self) -> dict[str, Any]:
        lineage = self.lineage
        manifests = [d.manifest for d in (lineage.train, lineage.eval) if d is not None]
        return {
            "format": self.format, "type": "model", "name": self.name, "version": self.version,
            "framework": self.framework, "model_class": self.model_class, "libraries": self.libraries,
            "artifacts": [a.to_dict() for a in self.artifacts], "signature": self.signature.to_dict(),
            "params": self.params, "metrics": self.metrics, "lineage": lineage.to_dict(), "size": self.size,
            "created": self.created, "author": self.author, "meta": self.meta,
            "refs": {"object": [a.oid for a in self.artifacts], "manifest": sorted(set(manifests)),
                     "model": [lineage.parent.record] if lineage.parent else []},
        }

    def to_bytes(self) -> bytes:
        return _dumps(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes, oid: str = "?") -> ModelVersion:
        d = _load(data, oid, "model", RECORD_FORMAT)
        return cls(d["name"], d["version"], d["framework"], d["model_class"],
                   tuple(Artifact.from_dict(a) for a in d["artifacts"]), Signature.from_dict(d["signature"]),
                   dict(d.get("libraries", {})), dict(d.get("params", {})), dict(d.get("metrics", {})),
                   Lineage.from_dict(d.get("lineage", {})), d.get("created", 0.0), d.get("author", ""),
                   dict(d.get("meta", {})), d["format"])


@dataclass(frozen=True)
class IndexEntry:
    """A version in a model's index: its record, and what queries over many versions need without reading it."""

    record: str
    train: tuple[str, str] | None = None  # (dataset, manifest oid) it was trained on
    parent: str | None = None  # record oid of the version it was derived from

    def to_dict(self) -> dict[str, Any]:
        return {"record": self.record, "train": list(self.train) if self.train else None, "parent": self.parent}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IndexEntry:
        return cls(d["record"], (d["train"][0], d["train"][1]) if d.get("train") else None, d.get("parent"))


@dataclass(frozen=True)
class ModelIndex:
    """Every version of one model (version N is ``versions[N-1]``), its aliases, and what is attached to
    versions after registration (e.g. benchmark results: version -> name -> oid of a JSON object).

    Stored as an index object holding the newest versions (fewer than ``PAGE``) and the oids of immutable
    pages of ``PAGE`` older ones, so that a registration writes a bounded amount however many versions
    there are (``write_index``, ``read_index``).
    """

    name: str
    versions: tuple[IndexEntry, ...] = ()
    aliases: dict[str, int] = field(default_factory=dict)
    attached: dict[int, dict[str, str]] = field(default_factory=dict)
    format: int = INDEX_FORMAT

    @property
    def latest(self) -> int:
        return len(self.versions)

    def entry(self, version: int) -> IndexEntry:
        return self.versions[version - 1]


PAGE = 256  # versions per page of an index


def _page_bytes(name: str, first: int, entries: tuple[IndexEntry, ...]) -> bytes:
    return _dumps({"format": INDEX_FORMAT, "type": "model-index-page", "name": name, "first": first,
                   "versions": [e.to_dict() for e in entries], "refs": {"model": [e.record for e in entries]}})


def attachment_bytes(name: str, key: str, data: dict[str, Any], objects: Sequence[str] = ()) -> bytes:
    """What ``registry.attach`` stores: ``data`` with the objects it names declared in ``refs``, so that the
    object graph (gc, fsck, push, clone) follows them as it follows a record's."""
    return _dumps({"type": "model-attachment", "format": 1, "name": name, "key": key, "data": data,
                   "refs": {"object": sorted(set(objects))}})


def attachment_data(raw: bytes, oid: str) -> Any:
    """The data of an attachment stored by ``attachment_bytes``, or by assay before it (the bare JSON)."""
    try:
        d = json.loads(raw)
    except ValueError as e:
        raise FormatError(f"object {oid} is not a model attachment") from e
    return d["data"] if isinstance(d, dict) and d.get("type") == "model-attachment" else d


def write_index(put: Callable[[bytes], str], index: ModelIndex) -> str:
    """Store ``index`` with ``put`` (an object store's); returns the oid of the index object. Full pages are
    content-addressed, so those that did not change are the objects already stored."""
    full = len(index.versions) // PAGE * PAGE
    pages = [put(_page_bytes(index.name, i + 1, index.versions[i:i + PAGE])) for i in range(0, full, PAGE)]
    tail = index.versions[full:]
    attached = {str(v): dict(sorted(a.items())) for v, a in sorted(index.attached.items())}
    return put(_dumps({
        "format": index.format, "type": "model-index", "name": index.name, "count": len(index.versions),
        "pages": pages, "versions": [e.to_dict() for e in tail], "aliases": dict(sorted(index.aliases.items())),
        "attached": attached,
        # attachments are followed like records: those that name objects declare them in their own refs
        "refs": {"model": [*pages, *(e.record for e in tail),
                           *sorted({o for a in index.attached.values() for o in a.values()})]}}))


def read_index(get: Callable[[str], bytes], oid: str) -> ModelIndex:
    """The index stored as ``oid`` (its pages read with ``get``)."""
    d = _load(get(oid), oid, "model-index", INDEX_FORMAT)
    entries: list[IndexEntry] = []
    for page in d.get("pages", ()):
        p = _load(get(page), page, "model-index-page", INDEX_FORMAT)
        entries.extend(IndexEntry.from_dict(e) for e in p["versions"])
    entries.extend(IndexEntry.from_dict(e) for e in d["versions"])
    if len(entries) != d.get("count", len(entries)):
        raise FormatError(f"model index {oid} lists {len(entries)} versions, not {d['count']}; run `assay fsck`")
    return ModelIndex(d["name"], tuple(entries), {k: int(v) for k, v in d.get("aliases", {}).items()},
                      {int(v): dict(a) for v, a in d.get("attached", {}).items()}, d["format"])
