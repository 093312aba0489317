"""The model registry: versions registered in commits, aliases moved atomically, what is attached to versions.

A commit's ``models`` maps each model name to the oid of its index (``ModelIndex``), which lists the version
records. Registering a version, moving an alias or attaching results writes a new index and a child commit of
the branch tip, then moves the branch by compare-and-swap; when another writer moved it first, the change is
made again on the new tip. So two processes registering versions of one model get distinct numbers and
neither version is lost, and a reader sees an alias at its old version or its new one, never in between.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from assay.errors import ConflictError, InputError, ModelNotFound, SignatureMismatch
from assay.models import adapters
from assay.models.lineage import LABEL, LineageReport, check_eval, descendants, feature_columns, resolve_data
from assay.models.record import (
    Artifact,
    DataRef,
    IndexEntry,
    Lineage,
    ModelIndex,
    ModelVersion,
    ParentRef,
    attachment_bytes,
    attachment_data,
    read_index,
    write_index,
)
from assay.repo import Commit, RefUpdate, revisions
from assay.repo.gitinfo import code_reference, default_author

if TYPE_CHECKING:
    from assay.repo.repository import Repository as Repo
    from assay.table import DatasetVersion, Manifest

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]*$")
LATEST = "latest"  # every model's newest version; not an alias that can be set
ATTEMPTS = 200
T = TypeVar("T")


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise InputError(f"{name!r} is not a valid model name: use letters, digits, '.', '_' and '-', starting "
                         "with a letter or digit")


def check_alias(alias: str) -> None:
    if not ALIAS_RE.match(alias) or alias == LATEST:
        raise InputError(f"{alias!r} is not a valid alias: use letters, digits, '.', '_' and '-', starting with a "
                         f"letter (numbers name versions; {LATEST!r} always means the newest version)")


# -- reading --------------------------------------------------------------------------------------------------------


def indexes(repo: Repo, rev: str | None = None) -> dict[str, ModelIndex]:
    """Model name -> its index, at revision ``rev`` (default HEAD)."""
    oid = repo.resolve(rev) if rev is not None else repo.head()
    if oid is None:
        return {}
    return {n: read_index(repo.store.get, o) for n, o in repo.read_commit(oid).models.items()}


def _index(repo: Repo, name: str, rev: str | None) -> ModelIndex:
    oid = repo.resolve(rev) if rev is not None else repo.head()
    models = repo.read_commit(oid).models if oid else {}
    if name not in models:
        raise ModelNotFound(f"no model {name!r}{f' at {rev}' if rev else ''}; models: {sorted(models) or 'none'}. "
                            "Register one with `assay model register`")
    return read_index(repo.store.get, models[name])


def version_number(index: ModelIndex, which: str | None) -> int:
    """The version ``which`` names in ``index``: a number, an alias, or None / ``latest`` for the newest."""
    if which is None or which == LATEST:
        if not index.versions:
            raise ModelNotFound(f"model {index.name!r} has no versions")
        return index.latest
    if which.isdigit():
        n = int(which)
        if 1 <= n <= index.latest:
            return n
    elif which in index.aliases:
        return index.aliases[which]
    aliases = ", ".join(f"{a} -> {v}" for a, v in sorted(index.aliases.items())) or "none"
    raise ModelNotFound(f"model {index.name!r} has no version or alias {which!r}: it has versions 1 to "
                        f"{index.latest} and aliases {aliases}. See `assay model show {index.name}`")


def resolve(repo: Repo, spec: str, *, rev: str | None = None) -> tuple[ModelIndex, int]:
    """The index and version number that ``NAME[@VERSION|@ALIAS]`` names (parsed like ``DATASET@REV``)."""
    name, which = revisions.split_dataset_rev(spec)
    check_name(name)
    index = _index(repo, name, rev)
    return index, version_number(index, which)


def read_version(repo: Repo, oid: str) -> ModelVersion:
    return ModelVersion.from_bytes(repo.store.get(oid), oid)


def get(repo: Repo, spec: str, *, rev: str | None = None) -> ModelVersion:
    """The version record ``NAME[@VERSION|@ALIAS]`` names (newest by default)."""
    index, n = resolve(repo, spec, rev=rev)
    return read_version(repo, index.entry(n).record)


@dataclass(frozen=True)
class ModelSummary:
    """A model in the registry: how many versions, its aliases, and its newest version."""

    name: str
    versions: int
    aliases: dict[str, int]
    latest: ModelVersion

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "versions": self.versions, "aliases": self.aliases,
                "latest": self.latest.version, "framework": self.latest.framework, "created": self.latest.created,
                "metrics": self.latest.metrics}


@dataclass(frozen=True)
class ModelView:
    """A version as ``model show`` presents it: its record, the aliases that point at it, what is attached."""

    version: ModelVersion
    aliases: tuple[str, ...]
    attached: dict[str, Any]
    versions: int  # how many versions the model has

    def to_dict(self) -> dict[str, Any]:
        return {**self.version.to_dict(), "aliases": list(self.aliases), "attached": self.attached,
                "versions_of_model": self.versions}


def describe(repo: Repo, spec: str, *, rev: str | None = None) -> ModelView:
    """The version ``spec`` names, with its aliases and attachments."""
    index, n = resolve(repo, spec, rev=rev)
    attached = {k: attachment_data(repo.store.get(o), o) for k, o in sorted(index.attached.get(n, {}).items())}
    return ModelView(read_version(repo, index.entry(n).record), tuple(sorted(a for a, v in index.aliases.items()
                                                                              if v == n)), attached, index.latest)


def list_models(repo: Repo, *, rev: str | None = None) -> list[ModelSummary]:
    return [ModelSummary(n, i.latest, dict(i.aliases), read_version(repo, i.entry(i.latest).record))
            for n, i in sorted(indexes(repo, rev).items()) if i.versions]


def history(repo: Repo, name: str, *, rev: str | None = None) -> list[ModelVersion]:
    """Every version of model ``name``, oldest first."""
    return [read_version(repo, e.record) for e in _index(repo, name, rev).versions]


def attachments(repo: Repo, spec: str, *, rev: str | None = None) -> dict[str, Any]:
    """What was attached to a version after registration (e.g. ``bench``: benchmark results), by name."""
    return describe(repo, spec, rev=rev).attached


def read_artifact(repo: Repo, spec: str, name: str | None = None) -> bytes:
    """The bytes of an artifact of a version (by default its model file), verified against their hash."""
    return repo.store.get(get(repo, spec).artifact(name).oid)


def data(repo: Repo, spec: str | ModelVersion, role: str = "eval") -> DatasetVersion | None:
    """The dataset version a version was trained (``role="train"``) or evaluated on, read from its recorded
    manifest (kept alive by the record); None when none was recorded."""
    from assay.table import DatasetVersion

    version = spec if isinstance(spec, ModelVersion) else get(repo, spec)
    ref = {"train": version.lineage.train, "eval": version.lineage.eval}[role]
    if ref is None:
        return None
    return DatasetVersion(repo.store, repo.read_manifest(ref.manifest), commit=ref.commit)


def load(repo: Repo, spec: str) -> Any:
    """The live model of a version: a scikit-learn estimator, a torch module (of its exported program) or an
    ``onnx.ModelProto``."""
    return adapters.load(get(repo, spec), repo.store.get)


def lineage(repo: Repo, spec: str, *, rev: str | None = None) -> LineageReport:
    """Where a version came from (data, code, the versions it was derived from) and what was derived from it."""
    all_indexes = indexes(repo, rev)
    index, n = resolve(repo, spec, rev=rev)
    record = index.entry(n).record
    version = read_version(repo, record)
    chain: list[ModelVersion] = []
    parent = version.lineage.parent
    while parent is not None and len(chain) < 1000:
        chain.append(read_version(repo, parent.record))
        parent = chain[-1].lineage.parent
    return LineageReport(version, tuple(chain), descendants(all_indexes, record, lambda o: read_version(repo, o)))


# -- writing --------------------------------------------------------------------------------------------------------


def _update(repo: Repo, name: str, change: Callable[[ModelIndex], tuple[ModelIndex, T]], message: Callable[[T], str],
            *, branch: str | None = None, author: str | None = None, code: dict[str, Any] | None = None) -> T:
    """Apply ``change`` to model ``name``'s index at the tip of ``branch`` in a new commit, moved by
    compare-and-swap; made again on the new tip whenever another writer moved the branch first."""
    target = branch or repo.branch
    if target is None:
        raise InputError("HEAD is detached: models are registered on a branch; check one out (`assay checkout "
                         "main`) and try again")
    revisions.check_ref_name(target)
    who = author or default_author(repo.root)
    where = code if code is not None else code_reference(Path.cwd())
    for attempt in range(ATTEMPTS):
        ref = repo.catalog.get_ref(target)
        tip = ref.commit if ref else None
        before = repo.read_commit(tip) if tip else None
        models = dict(before.models) if before else {}
        index, result = change(read_index(repo.store.get, models[name]) if name in models else ModelIndex(name))
        models[name] = write_index(repo.store.put, index)
        text = message(result)
        c = Commit.child(parent=before, parents=(tip,) if tip else (), message=text, author=who, code=where,
                         models=models, meta={"model": {"name": name, "action": text}})
        oid = repo.store.put(c.to_bytes())
        repo.catalog.record_commit(oid, c.time, c.message)
        try:
            repo.move_refs([RefUpdate(target, "branch", oid, tip)], text)
            return result
        except ConflictError:
            time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 20)))
    raise ConflictError(f"branch {target!r} kept moving while changing model {name!r}; nothing changed, try again")


def _json_dict(value: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    out = dict(value or {})
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InputError(f"{what} must be JSON values (numbers, strings, lists, objects): {e}") from e
    return out


def _parent(repo: Repo, parent: str | ModelVersion | None) -> ParentRef | None:
    if parent is None:
        return None
    spec = parent.spec if isinstance(parent, ModelVersion) else parent
    index, n = resolve(repo, spec)
    return ParentRef(index.name, n, index.entry(n).record)


def register(repo: Repo, name: str, model: Any, *, train: str | DataRef | None = None,
             eval: str | DataRef | None = None,
             metrics: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None,
             example_input: Any = None, parent: str | ModelVersion | None = None, derived_by: str | None = None,
             features: Sequence[str] | None = None, label: str | None = None, meta: Mapping[str, Any] | None = None,
             branch: str | None = None, author: str | None = None) -> ModelVersion:
    """Register ``model`` as the next version of ``name``; returns its record. See docs/models.md.

    ``train``/``eval`` name the committed data (``DATASET@REV``); the model's inputs must fit the training
    data's columns (``features`` names them when the model does not know them), and the evaluation data must
    hold them and the label column. Nothing is registered when anything is wrong.

    A version derived from ``parent`` (an export, a quantised copy) takes the parent's training and
    evaluation data, feature columns and label unless given.
    """
    check_name(name)
    packed = adapters.pack(model, example_input=example_input)
    code = code_reference(Path.cwd())
    who = author or default_author(repo.root)
    parent_ref = _parent(repo, parent)
    if parent_ref is not None:
        origin = read_version(repo, parent_ref.record)
        train = train if train is not None else origin.lineage.train
        eval = eval if eval is not None else origin.lineage.eval
        features = features if features is not None else (origin.signature.features or None)
        label = label if label is not None else origin.signature.label
    lineage, signature = _lineage(repo, packed.signature, train, eval, features, label, code)
    lineage = replace(lineage, parent=parent_ref, derived_by=derived_by)
    artifacts = tuple(Artifact(n, repo.store.put(data), len(data), media) for n, data, media in packed.files)
    draft = ModelVersion(name, 0, packed.framework, packed.model_class, artifacts, signature, packed.libraries,
                         _json_dict(params, "params"), _json_dict(metrics, "metrics"), lineage, time.time(), who,
                         {**packed.meta, **_json_dict(meta, "meta")})

    def add(index: ModelIndex) -> tuple[ModelIndex, ModelVersion]:
        version = draft.renumbered(index.latest + 1)
        lin = version.lineage
        entry = IndexEntry(repo.store.put(version.to_bytes()), (lin.train.dataset, lin.train.manifest)
                           if lin.train else None, lin.parent.record if lin.parent else None)
        return replace(index, versions=(*index.versions, entry)), version

    return _update(repo, name, add, lambda v: f"model {name}: register version {v.version}", branch=branch,
                   author=who, code=code)


def _data(repo: Repo, data: str | DataRef, role: str) -> tuple[DataRef, Manifest]:
    if isinstance(data, DataRef):
        return data, repo.read_manifest(data.manifest)
    return resolve_data(repo, data, role)


def _shown(data: str | DataRef) -> str:
    return data if isinstance(data, str) else f"{data.dataset}@{data.rev} ({data.commit[:12]})"


def _lineage(repo: Repo, signature: Any, train: str | DataRef | None, eval: str | DataRef | None,
             features: Sequence[str] | None, label: str | None,
             code: dict[str, Any] | None) -> tuple[Lineage, Any]:
    train_ref = eval_ref = None
    chosen = label
    if train is not None:
        train_ref, manifest = _data(repo, train, "training")
        names = manifest.schema.names
        if label is not None and label not in names:
            raise SignatureMismatch(f"training data {_shown(train)} has no label column {label!r} (its columns: "
                                    f"{names[:20]}); name the column that holds the labels. Nothing was registered.")
        chosen = label or (LABEL if LABEL in names else None)
        cols = feature_columns(signature, manifest, _shown(train), label=chosen, features=features)
        signature = replace(signature, features=cols, label=chosen)
    elif features:
        signature = replace(signature, features=tuple(features), label=label)
    if eval is not None:
        eval_ref, eval_manifest = _data(repo, eval, "evaluation")
        chosen = chosen or LABEL
        check_eval(eval_manifest, _shown(eval), signature.features, chosen)
        signature = replace(signature, label=chosen)
    return Lineage(train_ref, eval_ref, code), signature


def set_alias(repo: Repo, name: str, version: int | str, alias: str, *, branch: str | None = None) -> int:
    """Point ``alias`` of model ``name`` at ``version`` (a number, or another alias), in one new commit."""
    check_name(name)
    check_alias(alias)

    def move(index: ModelIndex) -> tuple[ModelIndex, int]:
        if not index.versions:
            raise ModelNotFound(f"no model {name!r}; register it first with `assay model register`")
        n = version_number(index, str(version))
        return replace(index, aliases={**index.aliases, alias: n}), n

    return _update(repo, name, move, lambda n: f"model {name}: alias {alias} -> version {n}", branch=branch)


def remove_alias(repo: Repo, name: str, alias: str, *, branch: str | None = None) -> int:
    """Remove ``alias`` of model ``name``; returns the version it pointed at."""
    check_name(name)

    def drop(index: ModelIndex) -> tuple[ModelIndex, int]:
        if alias not in index.aliases:
            raise ModelNotFound(f"model {name!r} has no alias {alias!r}; aliases: {sorted(index.aliases) or 'none'}")
        return replace(index, aliases={a: v for a, v in index.aliases.items() if a != alias}), index.aliases[alias]

    return _update(repo, name, drop, lambda n: f"model {name}: remove alias {alias} (was version {n})", branch=branch)


def attach(repo: Repo, spec: str, key: str, data: Mapping[str, Any], *, objects: Sequence[str] = (),
           branch: str | None = None) -> int:
    """Attach ``data`` (JSON) to a version under ``key`` (e.g. ``bench``), replacing what was there; the
    version's record stays as it was. ``objects``: the stored objects ``data`` names (a monitor profile's
    sketches, say), kept by gc and moved by push and clone for as long as the attachment is. Returns the
    version number."""
    check_alias(key)
    name, which = revisions.split_dataset_rev(spec)
    missing = [o for o in objects if not repo.store.has(o)]
    if missing:
        raise InputError(f"cannot attach {key} to {spec}: object {missing[0]} is not in the store; put it first")
    oid = repo.store.put(attachment_bytes(name, key, _json_dict(data, key), objects))

    def put(index: ModelIndex) -> tuple[ModelIndex, int]:
        n = version_number(index, which) if index.versions else version_number(_index(repo, name, None), which)
        return replace(index, attached={**index.attached, n: {**index.attached.get(n, {}), key: oid}}), n

    return _update(repo, name, put, lambda n: f"model {name}: attach {key} to version {n}", branch=branch)
