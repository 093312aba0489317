"""Questions over registered versions: how two versions differ, and which models were trained on some data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assay.models import registry
from assay.models.lineage import TrainedOn, resolve_data, trained_on
from assay.models.record import DataRef, ModelVersion
from assay.table import diff_manifests

if TYPE_CHECKING:
    from assay.repo.repository import Repository as Repo


@dataclass(frozen=True)
class ModelDiff:
    """How version ``b`` differs from ``a``: parameters and metrics (``{key: [a, b]}``), data (sample
    counts per role), signature, size and framework."""

    a: str
    b: str
    params: dict[str, list[Any]] = field(default_factory=dict)
    metrics: dict[str, list[Any]] = field(default_factory=dict)
    data: dict[str, dict[str, Any]] = field(default_factory=dict)
    signature: dict[str, Any] = field(default_factory=dict)
    size: tuple[int, int] = (0, 0)
    framework: tuple[str, str] = ("", "")

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "params": self.params, "metrics": self.metrics, "data": self.data,
                "signature": self.signature, "size": list(self.size), "framework": list(self.framework)}


def _changed(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[Any]]:
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _data_change(repo: Repo, a: DataRef | None, b: DataRef | None) -> dict[str, Any]:
    if a is None or b is None:
        return {"a": str(a) if a else None, "b": str(b) if b else None}
    out: dict[str, Any] = {"a": str(a), "b": str(b), "rows_a": a.rows, "rows_b": b.rows}
    if a.manifest == b.manifest:
        return {**out, "same": True}
    if a.dataset != b.dataset:
        return {**out, "same": False}
    with repo.store.cache_scope():
        d = diff_manifests(repo.store, a.dataset, repo.read_manifest(a.manifest), repo.read_manifest(b.manifest),
                           limit=0)
    return {**out, "same": False, "added": d.added, "removed": d.removed, "changed": d.changed,
            "unchanged": d.unchanged}


def diff(repo: Repo, a: str, b: str) -> ModelDiff:
    """How version ``b`` differs from ``a`` (each ``NAME[@VERSION|@ALIAS]``)."""
    va, vb = registry.get(repo, a), registry.get(repo, b)
    return _diff(repo, va, vb)


def _diff(repo: Repo, va: ModelVersion, vb: ModelVersion) -> ModelDiff:
    data = {role: _data_change(repo, getattr(va.lineage, role), getattr(vb.lineage, role))
            for role in ("train", "eval") if getattr(va.lineage, role) or getattr(vb.lineage, role)}
    sig = _changed(va.signature.to_dict(), vb.signature.to_dict())
    return ModelDiff(va.spec, vb.spec, _changed(va.params, vb.params), _changed(va.metrics, vb.metrics), data, sig,
                     (va.size, vb.size), (va.framework, vb.framework))


def find_trained_on(repo: Repo, spec: str, *, sample: str | None = None, rev: str | None = None) -> list[TrainedOn]:
    """Model versions (registered at ``rev``, default HEAD) whose training data holds version ``DATASET@REV``
    of a dataset (that version, or one holding all its samples), or, with ``sample``, that sample of it."""
    target, manifest = resolve_data(repo, spec, "dataset")
    return trained_on(repo, registry.indexes(repo, rev), target, manifest, sample)
