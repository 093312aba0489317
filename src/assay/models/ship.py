"""Shipping a registered version: export, quantise, benchmark and package it, on the data it records.

Each function takes a repository and a version (``NAME[@VERSION|@ALIAS]``) and wires the pure ONNX functions
(:mod:`assay.models.onnx_export`, :mod:`~assay.models.quantize`, :mod:`~assay.models.benchmark`,
:mod:`~assay.models.package`) to the registry: the inputs are drawn from the feature columns of the version's
recorded evaluation (else training) data, and what they make is registered as a new version of the same
model whose parent is the version it came from (``derived_by`` says how), or attached to it (``bench``).

- :func:`export_version`: ONNX, verified against the original on recorded samples, or refused
  (:class:`~assay.errors.ExportMismatch`) with nothing registered.
- :func:`quantize_version`: INT8 within a budget of the fp32 metric on the evaluation data (labels from the
  record's label column), registered with both metrics, or refused
  (:class:`~assay.errors.QuantizationRefused`) with the report and nothing registered.
- :func:`bench_version`: latency, throughput, size, load time and memory, attached as ``bench``.
- :func:`package_version`: an edge package (model, signature, hashes, runner) in a folder or a zip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from assay.errors import InputError, ModelError
from assay.models import registry
from assay.models.benchmark import benchmark
from assay.models.lineage import check_eval, resolve_data
from assay.models.onnx_export import ExportResult, Verification, export_onnx, verify_export
from assay.models.package import PackageResult, package
from assay.models.quantize import QuantizeResult, quantize
from assay.models.record import DataRef, ModelVersion

if TYPE_CHECKING:
    from assay.repo.repository import Repository as Repo
    from assay.table import DatasetVersion

FORMATS = ("onnx",)
SAMPLES = 256  # rows drawn from the recorded data to verify an export
CALIBRATION = 128  # rows of training data to calibrate static quantisation
METRIC_KEYS = {"accuracy %": "accuracy", "mean absolute error": "mae", "mean cosine %": "cosine"}


@dataclass(frozen=True)
class ExportReport:
    """An export registered as ``version``, derived from ``parent``, and how it compared on ``samples_from``."""

    version: ModelVersion
    parent: ModelVersion
    verification: Verification
    export: ExportResult
    samples_from: str

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version.spec, "parent": self.parent.spec, "parent_size": self.parent.size,
                "size": self.version.size, "samples_from": self.samples_from,
                "verification": self.verification.to_dict(), "export": self.export.to_dict()}


@dataclass(frozen=True)
class QuantizeReport:
    """An INT8 version registered from ``parent``, with the fp32 and INT8 metrics side by side."""

    version: ModelVersion
    parent: ModelVersion
    result: QuantizeResult
    eval_from: str

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version.spec, "parent": self.parent.spec, "eval": self.eval_from,
                **self.result.to_dict()}


@dataclass(frozen=True)
class BenchReport:
    """Benchmark results of a version, attached to it as ``bench``."""

    version: ModelVersion
    results: dict[str, Any]
    inputs_from: str

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version.spec, "inputs_from": self.inputs_from, **self.results}


@dataclass(frozen=True)
class PackageReport:
    """An edge package of ``version`` written to ``result.path``."""

    version: ModelVersion
    result: PackageResult
    exported: bool  # whether the version was exported to ONNX for the package (it was not ONNX already)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version.spec, "exported": self.exported, **self.result.to_dict()}


# -- inputs from the recorded data -------------------------------------------------------------------------------


def task_of(version: ModelVersion) -> str:
    """``classification``, ``regression`` or ``embedding``: recorded in ``meta["task"]`` by an export, else
    told by its signature: classes, a ``label``/``probabilities`` output, or one [N, k > 1] output and a label
    column (a classifier's logits); an ``embeddings`` output; else regression."""
    recorded = version.meta.get("task")
    if isinstance(recorded, str):
        return recorded
    outputs = {t.name for t in version.signature.outputs}
    if version.signature.classes is not None or outputs & {"label", "probabilities"}:
        return "classification"
    if "embeddings" in outputs or "sentence" in version.model_class.lower():
        return "embedding"
    first = version.signature.outputs[0].shape if version.signature.outputs else None
    if version.signature.label and first and len(first) == 2 and isinstance(first[1], int) and first[1] > 1:
        return "classification"  # one score per class (logits), against a label column
    return "regression"


def classes_of(version: ModelVersion) -> list[Any] | None:
    """The classes of a classifier, in the order of its probability columns (from an export: from meta)."""
    if version.signature.classes is not None:
        return list(version.signature.classes)
    recorded = version.meta.get("classes")
    return list(recorded) if isinstance(recorded, list) else None


def _recorded(repo: Repo, version: ModelVersion, roles: Sequence[str]) -> tuple[DatasetVersion, DataRef]:
    for role in roles:
        found = registry.data(repo, version, role)
        ref = version.lineage.eval if role == "eval" else version.lineage.train
        if found is not None and ref is not None:
            return found, ref
    raise InputError(f"{version.spec} records no {' or '.join(roles)} data to draw inputs from: register it "
                     "with --train DATASET@REV and --eval DATASET@REV (train=, eval=), so that its inputs can "
                     "be drawn from the data it was made from")


def feature_matrix(table: pa.Table, columns: Sequence[str]) -> np.ndarray:
    """The feature columns of ``table`` as one float matrix, a row per sample (fixed-size lists flattened)."""
    parts = []
    for c in columns:
        col = table.column(c).combine_chunks()
        if pa.types.is_fixed_size_list(col.type):
            width = col.type.list_size
            parts.append(np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float64).reshape(-1, width))
        else:
            parts.append(np.asarray(col.to_numpy(zero_copy_only=False), np.float64).reshape(-1, 1))
    return np.hstack(parts) if parts else np.empty((table.num_rows, 0))


def model_inputs(version: ModelVersion, x: np.ndarray) -> np.ndarray:
    """Feature rows shaped and typed as the version's first input takes them ([N, 1, 8, 8] for a CNN)."""
    spec = version.signature.inputs[0] if version.signature.inputs else None
    wide = spec is not None and spec.dtype in ("float64", "double") and version.framework != "sklearn"
    dtype = np.dtype(np.float64 if wide else np.float32)
    dims = spec.shape[1:] if spec is not None and spec.shape is not None else ()
    if dims and all(isinstance(d, int) and d > 0 for d in dims):
        return x.astype(dtype).reshape((len(x), *(int(d) for d in dims if isinstance(d, int))))
    return x.astype(dtype)


def _features(version: ModelVersion) -> tuple[str, ...]:
    if not version.signature.features:
        raise InputError(f"{version.spec} records no feature columns: register it with --train DATASET@REV "
                         "(or --features COLUMNS), so that inputs can be drawn from its data")
    return version.signature.features


def draw_inputs(repo: Repo, version: ModelVersion, *, roles: Sequence[str] = ("eval", "train"),
                rows: int | None = SAMPLES, seed: int = 0) -> tuple[np.ndarray, str]:
    """Up to ``rows`` samples (all with None; drawn with ``seed``) of the version's recorded data, as model
    inputs, and the data they came from (``dataset@commit``)."""
    data, ref = _recorded(repo, version, roles)
    table = data.to_arrow(list(_features(version)))
    if rows is not None and table.num_rows > rows:
        pick = np.sort(np.random.default_rng(seed).choice(table.num_rows, rows, replace=False))
        table = table.take(pa.array(pick))
    if table.num_rows == 0:
        raise InputError(f"{ref} holds no samples to draw inputs from; register the version with data that has some")
    return model_inputs(version, feature_matrix(table, _features(version))), str(ref)


# -- export --------------------------------------------------------------------------------------------------------


def _original(repo: Repo, version: ModelVersion) -> Any:
    if version.framework == "onnx":
        return registry.read_artifact(repo, version.spec)
    return registry.load(repo, version.spec)


def _export(repo: Repo, version: ModelVersion, atol: float, rtol: float) -> tuple[ExportResult, Verification, str]:
    x, source = draw_inputs(repo, version)
    original = _original(repo, version)
    kind = "torch" if version.framework == "torch" else None
    result = export_onnx(original, sample_inputs=x, framework=kind)
    check = verify_export(original, result.onnx, x, atol=atol, rtol=rtol, framework=kind)
    return result, check, source


def export_version(repo: Repo, spec: str, *, format: str = "onnx", atol: float = 1e-4, rtol: float = 1e-3,
                   branch: str | None = None) -> ExportReport:
    """Export version ``spec`` to ONNX, verify it on samples of its recorded evaluation (else training) data,
    and register it as the next version of the same model, with ``spec`` as its parent. Raises
    :class:`~assay.errors.ExportMismatch` (nothing registered) when the outputs differ beyond
    ``atol + rtol * |original|`` or a predicted label disagrees."""
    if format not in FORMATS:
        raise InputError(f"unknown export format {format!r}: assay exports to {', '.join(FORMATS)}")
    version = registry.get(repo, spec)
    if version.framework == "onnx":
        raise ModelError(f"{version.spec} is already an ONNX model; quantise it (`assay model quantize "
                         f"{version.spec}`), benchmark or package it as it is")
    result, check, source = _export(repo, version, atol, rtol)
    meta = {"task": task_of(version), "export": {**result.to_dict(), "verification": check.to_dict(),
                                                 "samples_from": source}}
    classes = classes_of(version)
    if classes is not None:
        meta["classes"] = classes
    metrics = {"max_abs_diff": check.max_abs_diff, **({"label_agreement": check.label_agreement}
                                                       if check.label_agreement is not None else {})}
    new = registry.register(repo, version.name, result.onnx, parent=version, derived_by=f"export {format}",
                            params=version.params, metrics=metrics, meta=meta, branch=branch)
    return ExportReport(new, version, check, result, source)


def _as_onnx(repo: Repo, version: ModelVersion) -> tuple[bytes, bool]:
    """The version's ONNX bytes: its own, or an export verified on its recorded data (not registered)."""
    if version.framework == "onnx":
        return registry.read_artifact(repo, version.spec), False
    return _export(repo, version, 1e-4, 1e-3)[0].onnx, True


# -- quantisation --------------------------------------------------------------------------------------------------


def _eval_data(repo: Repo, version: ModelVersion, eval: str | None) -> tuple[DatasetVersion, DataRef]:
    from assay.table import DatasetVersion

    label = version.signature.label
    if eval is None:
        if version.lineage.eval is None:
            raise InputError(f"{version.spec} records no evaluation data: give one with --eval DATASET@REV "
                             "(eval=...), a version holding its feature columns and the label column")
        data, ref = _recorded(repo, version, ("eval",))
        check_eval(repo.read_manifest(ref.manifest), str(ref), _features(version), label)
        return data, ref
    ref, manifest = resolve_data(repo, eval, "evaluation")
    check_eval(manifest, eval, _features(version), label)
    return DatasetVersion(repo.store, manifest, commit=ref.commit), ref


def _targets(version: ModelVersion, labels: np.ndarray, task: str) -> np.ndarray:
    """Labels as the model's output indexes them (a classifier's class positions), or values to regress."""
    if task != "classification":
        return labels.astype(np.float64)
    classes = classes_of(version)
    if classes is None:
        return labels
    position = {c: i for i, c in enumerate(classes)}
    return np.array([position.get(v, -1) for v in labels.tolist()])


def quantize_version(repo: Repo, spec: str, *, eval: str | None = None, budget: float = 0.5,
                     method: str = "dynamic", optimization: str = "basic", task: str | None = None,
                     branch: str | None = None) -> QuantizeReport:
    """Quantise version ``spec`` to INT8 and register it (parent ``spec``) with the fp32 and INT8 metrics, when
    the metric on ``eval`` (default: the recorded evaluation data) drops by at most ``budget`` points; else
    raise :class:`~assay.errors.QuantizationRefused` with the report, registering nothing. A version that is not
    ONNX yet is exported first (verified, not registered). ``method="static"`` calibrates on the training
    data (else the evaluation data). ``task`` overrides the task told by :func:`task_of`."""
    version = registry.get(repo, spec)
    task = task or task_of(version)
    data, ref = _eval_data(repo, version, eval)
    label = version.signature.label
    columns = [*_features(version), *([label] if label and task != "embedding" else [])]
    table = data.to_arrow(columns)
    x = model_inputs(version, feature_matrix(table, _features(version)))
    targets = _targets(version, table.column(label).to_numpy(zero_copy_only=False), task) \
        if label and task != "embedding" else None
    calibration = draw_inputs(repo, version, roles=("train", "eval"), rows=CALIBRATION)[0] \
        if method == "static" else None
    onnx_bytes, _ = _as_onnx(repo, version)
    result = quantize(onnx_bytes, eval_inputs=x, task=task, eval_targets=targets, budget=budget, method=method,
                      calibration_inputs=calibration, optimization=optimization)
    key = METRIC_KEYS.get(result.metric, "metric")
    metrics = {f"{key}_fp32": result.fp32_metric, f"{key}_int8": result.int8_metric,
               f"{key}_drop": result.drop}
    meta: dict[str, Any] = {"task": task, "quantization": result.to_dict()}
    classes = classes_of(version)
    if classes is not None:
        meta["classes"] = classes
    new = registry.register(repo, version.name, result.onnx, parent=version, eval=ref,
                            derived_by=f"quantize int8 {method}", metrics=metrics,
                            params={**version.params, "quantization": method, "budget": budget}, meta=meta,
                            branch=branch)
    return QuantizeReport(new, version, result, str(ref))


# -- benchmark and package -----------------------------------------------------------------------------------------


def _callable(repo: Repo, version: ModelVersion) -> Any:
    model = registry.load(repo, version.spec)
    if version.framework == "sklearn":
        return model.predict_proba if hasattr(model, "predict_proba") else model.predict
    import torch

    def run(x: np.ndarray) -> Any:
        with torch.no_grad():
            return model(torch.from_numpy(x))

    return run


def bench_version(repo: Repo, spec: str, *, batches: Sequence[int] = (1, 8, 64), threads: Sequence[int] = (1, 2),
                  warmup: int = 10, runs: int = 100, memory: bool = True,
                  branch: str | None = None) -> BenchReport:
    """Benchmark version ``spec`` on rows drawn from its recorded data (ONNX models with ONNX Runtime, others
    through their framework) and attach the results to it as ``bench`` (shown by ``assay model show``)."""
    version = registry.get(repo, spec)
    x, source = draw_inputs(repo, version, rows=max(64, max(batches, default=1)))
    if version.framework == "onnx":
        model: Any = registry.read_artifact(repo, version.spec)
    else:
        model = _callable(repo, version)
    results = benchmark(model, x, batches=batches, threads=threads, warmup=warmup, runs=runs, memory=memory)
    results = {**results, "inputs_from": source, "framework": version.framework}
    registry.attach(repo, version.spec, "bench", results, branch=branch)
    return BenchReport(version, results, source)


def package_version(repo: Repo, spec: str, dest: str | Path, *, overwrite: bool = False) -> PackageReport:
    """Write an edge package of version ``spec`` to ``dest`` (a folder, or a zip for ``*.zip``); a version that
    is not ONNX is exported first (verified on its recorded data, not registered)."""
    version = registry.get(repo, spec)
    onnx_bytes, exported = _as_onnx(repo, version)
    lin = version.lineage
    metadata = {"model": version.name, "version": version.version, "task": task_of(version),
                "features": list(version.signature.features), "label": version.signature.label,
                "classes": classes_of(version), "derived_by": lin.derived_by,
                "parent": lin.parent.spec if lin.parent else None,
                "train": lin.train.to_dict() if lin.train else None, "eval": lin.eval.to_dict() if lin.eval else None}
    result = package(onnx_bytes, None, dest, name=f"{version.name}-v{version.version}", metadata=metadata,
                     overwrite=overwrite)
    return PackageReport(version, result, exported)
