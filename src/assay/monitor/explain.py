"""From an alert to the samples: the slices of production data that explain a drifted feature or a drop in
(estimated) performance, and for one slice the production samples behind it beside their nearest training
samples.

Slices are the values of categorical columns (and of the prediction) and the ranges of numeric ones, cut at
the deciles of the reference (quantile bins; nulls and values the reference never had are slices of their
own). Each slice gets an ``effect``, what changed inside it less what changed outside it, so that a slice of
all rows explains nothing and a change confined to a slice puts that slice on top:

- **drift** of feature F: the total variation distance between F's binned distribution in production and in
  the reference among the rows of the slice (``inside``), less the same among the other rows (``outside``). A
  slice of F itself has the change of its share as effect; so does every slice when no feature is named (``*``).
  For ``null_share`` the "distribution" of F is whether it is null.
- **performance**: the change of error inside the slice (production less reference) less the change outside it.
  Errors are wrong predictions (or absolute errors of a regressor) where labels have been joined, and ``1 -
  confidence`` for the estimate before labels. The reference errors come from running the model on its
  evaluation data (its training data when it has none).

A slice is ranked when it holds ``min_rows`` rows and leaves as many outside it, in the window and in the
reference. The counting is vectorised (Arrow dictionary encoding, numpy bins and counts; see ``_slices``),
never a Python loop over rows. Nearest training samples come from scikit-learn's NearestNeighbors on the
features standardised by the reference (mean and standard deviation; a constant column is centred only),
categories one-hot, text through the screens' text features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from assay.errors import InputError
from assay.monitor._nearest import embed, neighbours_of
from assay.monitor._slices import Codes, Slice, codes_of, drift_slices, floats, is_array, null_codes, performance_slices
from assay.monitor.window import Window, feature_names, parse_time, production

__all__ = ["Explanation", "Neighbour", "Sample", "Slice", "embed", "explain"]

MAX_REFERENCE = 200_000  # reference rows the slices are counted on (a random sample of a larger reference)
WINDOW_METRICS = ("psi", "ks", "wasserstein", "chi2", "js", "embedding", "multivariate", "rows", "null_share")
PERFORMANCE = ("accuracy", "f1", "auc", "mae", "rmse", "precision", "recall")


@dataclass(frozen=True)
class Neighbour:
    """A training sample near a production sample: its row in the reference, sample id, key, label, distance
    (in the standardised feature space), feature values and blobs (``column -> object id``, for thumbnails)."""

    row: int
    sample_id: str
    key: dict[str, Any]
    label: Any
    distance: float
    values: dict[str, Any]
    blobs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "sample_id": self.sample_id, "key": self.key, "label": self.label,
                "distance": self.distance, "values": self.values, "blobs": self.blobs}


@dataclass(frozen=True)
class Sample:
    """A production sample of the chosen slice, with its nearest training samples."""

    request_id: str
    time: float
    prediction: Any
    score: float | None
    label: Any
    values: dict[str, Any]
    neighbours: list[Neighbour]

    def to_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "time": self.time, "prediction": self.prediction,
                "score": self.score, "label": self.label, "values": self.values,
                "neighbours": [n.to_dict() for n in self.neighbours]}


@dataclass(frozen=True)
class Explanation:
    """What ``explain`` found: the slices ranked by effect, and the samples of the chosen one (``chosen``, an
    index into ``slices``)."""

    model: str
    version: int
    mode: str  # "drift" or "performance"
    feature: str | None
    metric: str | None
    alert: str | None
    since: float | None
    until: float | None
    production_rows: int
    reference: str
    reference_rows: int
    slices: list[Slice]
    chosen: int | None
    samples: list[Sample]
    training: str
    blob_columns: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    @property
    def slice(self) -> Slice | None:
        return self.slices[self.chosen] if self.chosen is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "mode": self.mode, "feature": self.feature,
                "metric": self.metric, "alert": self.alert, "since": self.since, "until": self.until,
                "production_rows": self.production_rows, "reference": self.reference,
                "reference_rows": self.reference_rows, "slices": [s.to_dict() for s in self.slices],
                "chosen": self.chosen, "samples": [s.to_dict() for s in self.samples], "training": self.training,
                "blob_columns": list(self.blob_columns), "notes": list(self.notes)}


def with_thumbnails(repo: Any, found: Explanation) -> dict[str, Any]:
    """``found`` as JSON with thumbnails (PNG data URIs, under ``thumbnails``: column -> URI) of the images of
    each production sample and of its nearest training samples: image files (blobs) and images held as arrays
    (the model's input, drawn in its shape). None where Pillow is missing or values make no image."""
    from assay.models import registry
    from assay.screens.thumbnails import array_thumbnail, image_thumbnail

    data = found.to_dict()
    inputs = registry.get(repo, f"{found.model}@{found.version}").signature.inputs
    shape = inputs[0].shape if len(inputs) == 1 else None

    def arrays(values: dict[str, Any]) -> dict[str, str | None]:
        return {c: array_thumbnail(v, shape) for c, v in values.items() if isinstance(v, list)}

    for sample in data["samples"]:
        sample["thumbnails"] = arrays(sample["values"])
        for near in sample["neighbours"]:
            near["thumbnails"] = {**arrays(near["values"]),
                                  **{c: image_thumbnail(repo.store.get(oid)) for c, oid in near["blobs"].items()}}
    return data


# -- the request: an alert, a feature or a metric ------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    mode: str
    feature: str | None
    metric: str | None
    since: float | None
    until: float | None
    alert: str | None


def _target(repo: Any, model: str, feature: str | None, metric: str | None, since: Any,
            alert: str | None) -> _Target:
    start = parse_time(since)
    until = None
    if alert is not None:
        try:
            from assay.monitor.alerts import get_alert  # type: ignore[attr-defined,unused-ignore]
        except ImportError:
            raise InputError(f"alert {alert!r}: this assay has no alerts (assay.monitor.alerts is missing); "
                             "name what to explain with --feature F or --metric M") from None
        found = get_alert(repo, model, alert)
        feature = feature or (None if found.feature in (None, "*") else found.feature)
        metric = metric or found.metric
        start = float(found.window_start) if found.window_start is not None else start
        until = float(found.window_end) + 1e-6 if found.window_end is not None else None
    elif metric is not None and not _is_performance(metric) and metric not in WINDOW_METRICS:
        raise InputError(f"unknown metric {metric!r}: explain a drift metric ({', '.join(WINDOW_METRICS)}) or a "
                         f"performance one ({', '.join(PERFORMANCE)}, or estimated_accuracy before labels)")
    if feature is None and metric is None:
        raise InputError("name what to explain: --alert ID, --feature F (a drifted feature) or --metric M "
                         "(accuracy, estimated_accuracy, ...)")
    if metric is not None and _is_performance(metric):
        return _Target("performance", feature, metric, start, until, alert)
    return _Target("drift", feature, metric, start, until, alert)


def _is_performance(metric: str) -> bool:
    base = metric.removeprefix("estimated_")
    base = base.removesuffix("_low").removesuffix("_high")
    return base in PERFORMANCE


# -- the model on the reference ---------------------------------------------------------------------------------


def _predict(repo: Any, mv: Any, table: pa.Table, features: Sequence[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """The model's predictions and confidences on reference rows, as the log decodes them; None when the model
    cannot be run here (not ONNX, several inputs, non-numeric features)."""
    from assay.models.onnx_export import run_onnx
    from assay.models.registry import read_artifact
    from assay.monitor.profile import feature_rows

    try:
        inputs = mv.signature.inputs
        x = feature_rows(table, features, inputs[0].shape if len(inputs) == 1 else None)  # images in their shape
        outputs = run_onnx(read_artifact(repo, mv.spec, "model.onnx"), x.astype(np.float32))
    except Exception:  # onnxruntime raises its own types: explained without the reference predictions
        return None
    names = list(outputs)
    label_key = next((k for k in names if k.lower() in ("label", "labels", "output_label")), None)
    proba_key = next((k for k in names if k != label_key and np.ndim(outputs[k]) == 2
                      and np.shape(outputs[k])[1] > 1), None)
    if proba_key is None:
        value = np.asarray(outputs[label_key or names[0]]).reshape(table.num_rows, -1)[:, 0]
        return value, np.full(table.num_rows, np.nan)
    p = np.asarray(outputs[proba_key], np.float64)
    if p.min() < 0 or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        e = np.exp(p - p.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
    if label_key is not None:
        prediction = np.asarray(outputs[label_key]).ravel()
    else:
        classes = mv.signature.classes
        prediction = np.asarray(classes, dtype=object)[p.argmax(axis=1)] if classes else p.argmax(axis=1)
    return prediction, p.max(axis=1)


def _errors(prediction: Any, label: Any, score: np.ndarray, estimated: bool, classifier: bool) -> np.ndarray:
    if estimated:
        return 1.0 - np.nan_to_num(np.asarray(score, np.float64), nan=1.0)
    if classifier:
        return (np.asarray(prediction, dtype=object) != np.asarray(label, dtype=object)).astype(np.float64)
    return np.abs(np.asarray(prediction, np.float64) - np.asarray(label, np.float64))


# -- nearest training samples -----------------------------------------------------------------------------------


# -- explain ----------------------------------------------------------------------------------------------------


def explain(repo: Any, model: str, *, feature: str | None = None, metric: str | None = None,
            window: Window | str | None = None, since: float | str | None = None, alert: str | None = None,
            reference: str | None = None, slice_rank: int = 1, top: int = 10, samples: int = 10,
            neighbours: int = 3, min_rows: int = 20) -> Explanation:
    """The slices that explain a drifted ``feature`` or a drop in a performance ``metric`` (or what ``alert``
    fired on) in the production window, ranked by effect; then for the ``slice_rank``-th slice (1: the top one) up
    to ``samples`` production samples, each with its ``neighbours`` nearest training samples.

    A slice is ranked when it holds at least ``min_rows`` rows, and leaves as many outside it, in the window and
    in the reference (a slice of the drifted feature itself, or with no feature, needs only one row)."""
    from assay.models import registry

    target = _target(repo, model, feature, metric, since, alert)
    mv = registry.get(repo, model)
    features = list(feature_names(mv))
    rows = _window(repo, mv, target, features, window)
    train_version, train = _reference_data(repo, mv, reference, "train")
    notes: list[str] = []
    if target.mode == "drift" or reference:
        ref_version, ref = train_version, train
    else:
        ref_version, ref = _reference_data(repo, mv, None, "eval")
    ref = _with_predictions(repo, mv, _sampled(ref, notes), features, notes)
    # an image (an array per sample) is no slice of its own: what explains its drift are the slices of the other
    # columns (the predictions first) whose share moved, and its samples beside their nearest training images
    codes = [codes_of(c, ref.column(c), rows.column(c)) for c in [*features, "prediction"]
             if c in ref.column_names and not is_array(ref.schema.field(c).type)]
    tcodes = next((c for c in codes if c.column == target.feature), None)
    if tcodes is not None and target.metric == "null_share":  # where the nulls are: F null or not, by slice
        tcodes = null_codes(tcodes.column, ref.column(tcodes.column), rows.column(tcodes.column))
        codes = [c for c in codes if c.column != tcodes.column] + [tcodes]
    if target.mode == "drift":
        found, excess = drift_slices(codes, tcodes, min_rows)
    else:
        rows, found, err_prod = _performance(target, rows, ref, codes, notes, min_rows)
    found.sort(key=lambda s: -s.effect)
    if not found:
        raise InputError(f"no slice of the {rows.num_rows} production rows has {min_rows} rows inside it and outside "
                         "it, on both sides: widen the window (--window, --since) or lower min_rows")
    if not 1 <= slice_rank <= len(found):
        raise InputError(f"slice {slice_rank} does not exist: there are {len(found)} slices (1 is the top one)")
    chosen = found[slice_rank - 1]
    codes_of_chosen = next(c for c in codes if c.column == chosen.column)
    code = next(i for i, d in enumerate(codes_of_chosen.defs) if d["name"] == chosen.name)
    members = np.flatnonzero(codes_of_chosen.prod == code)
    if target.mode == "drift":  # the rows whose value of F is the most over-represented in the slice first
        own = tcodes is None or tcodes.column == chosen.column
        bins = np.zeros(rows.num_rows, np.int64) if own or tcodes is None else tcodes.prod
        badness = excess[chosen.column][code, bins[members]]
    else:  # the worst errors first
        badness = err_prod[members]
    picked = members[np.lexsort((-floats(rows.column("time"))[members], -badness))][:samples]
    shown = found[:top] if slice_rank <= top else [*found[:top], chosen]
    return Explanation(model, mv.version, target.mode, target.feature, target.metric, target.alert, target.since,
                       target.until, rows.num_rows, _spec(ref_version), ref.num_rows, shown,
                       shown.index(chosen), _samples(rows.take(pa.array(picked, pa.int64())), train, features,
                                                     train_version, neighbours),
                       _spec(train_version), tuple(train_version.manifest.blob_columns), notes)


def _window(repo: Any, mv: Any, target: _Target, features: list[str], window: Window | str | None) -> pa.Table:
    """The production rows to explain, with their labels; errors for an unknown or all-null feature, no rows."""
    if target.feature is not None and target.feature not in (*features, "prediction"):
        raise InputError(f"{mv.spec} has no feature {target.feature!r}; its features are {_listed(features)} "
                         "(and 'prediction')")
    rows = production(repo, mv.name, window=window, since=target.since, until=target.until, labels=True)
    if rows.num_rows == 0:
        asked = ", ".join(part for part in (f"window {window}" if window else "",
                                            f"since {_iso(target.since)}" if target.since is not None else "",
                                            f"until {_iso(target.until)}" if target.until is not None else "") if part)
        raise InputError(f"no production rows of {mv.name!r} in the window asked for ({asked or 'the whole log'}): "
                         "widen --window or --since, or serve some traffic first")
    if target.feature is not None and rows.column(target.feature).null_count == rows.num_rows:
        raise InputError(f"feature {target.feature!r} is null in all {rows.num_rows} production rows of the window: "
                         "there is no distribution to explain; check that clients send it (its null share is "
                         "the alert to follow)")
    return rows


def _iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sampled(ref: pa.Table, notes: list[str]) -> pa.Table:
    """At most ``MAX_REFERENCE`` rows of the reference, drawn at random (seed 0), to count the slices on."""
    if ref.num_rows <= MAX_REFERENCE:
        return ref
    notes.append(f"slices counted on {MAX_REFERENCE:,} rows of the reference's {ref.num_rows:,}, drawn at random "
                 "(seed 0); the nearest training samples are searched among all the training rows")
    keep = np.sort(np.random.default_rng(0).choice(ref.num_rows, MAX_REFERENCE, replace=False))
    return ref.take(pa.array(keep))


def _performance(target: _Target, rows: pa.Table, ref: pa.Table, codes: list[Codes], notes: list[str],
                 min_rows: int) -> tuple[pa.Table, list[Slice], np.ndarray]:
    assert target.metric is not None
    estimated = target.metric.startswith("estimated_")
    classifier = rows.column("score").null_count < rows.num_rows
    if estimated and not classifier:
        raise InputError(f"{target.metric}: a regressor gives no confidence to estimate its error from; explain a "
                         "realised metric (mae, rmse) once labels are joined")
    keep = np.ones(rows.num_rows, bool)
    if not estimated:
        keep = ~np.asarray(rows.column("label").is_null().to_numpy(zero_copy_only=False), bool)
        if not keep.any():
            raise InputError(f"{target.metric}: none of the {rows.num_rows} production rows of the window has a label "
                             "joined yet (assay predictions label ...); explain the estimate instead: --metric "
                             "estimated_accuracy")
    rows = rows.filter(pa.array(keep))
    codes[:] = [Codes(c.column, c.ref, c.prod[keep], c.defs) for c in codes]
    err_prod = _errors(rows.column("prediction").to_numpy(zero_copy_only=False),
                       rows.column("label").to_numpy(zero_copy_only=False),
                       floats(rows.column("score")), estimated, classifier)
    if "prediction" in ref.column_names and (estimated or "label" in ref.column_names):
        err_ref = _errors(ref.column("prediction").to_numpy(zero_copy_only=False),
                          ref.column("label").to_numpy(zero_copy_only=False) if "label" in ref.column_names
                          else None, floats(ref.column("score")), estimated, classifier)
    else:
        err_ref = np.full(ref.num_rows, float(err_prod.mean()))
        notes.append("the reference has no errors of the model (it could not be run on it, or the reference has no "
                     "labels): each slice is compared with the window's overall error")
    return rows, performance_slices(codes, err_ref, err_prod, min_rows), err_prod


def _with_predictions(repo: Any, mv: Any, ref: pa.Table, features: list[str], notes: list[str]) -> pa.Table:
    got = _predict(repo, mv, ref, features)
    if got is None:
        notes.append(f"{mv.spec} could not be run on the reference here: no slices of the prediction, and no "
                     "reference errors")
        return ref
    prediction, score = got
    try:
        pred = pa.array(prediction.tolist())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pred = pa.array([str(v) for v in prediction])
    return ref.append_column("prediction", pred).append_column("score", pa.array(score, pa.float64()))


def _reference_data(repo: Any, mv: Any, reference: str | None, role: str) -> tuple[Any, pa.Table]:
    """The dataset version and its rows (features, label, key, blobs, sample ids) to compare with."""
    from assay.models import registry
    from assay.repo.revisions import split_dataset_rev

    if reference is not None:
        name, rev = split_dataset_rev(reference)
        data = repo.dataset(name, rev)
    else:
        data = registry.data(repo, mv, role)
        if data is None and role == "eval":
            data = registry.data(repo, mv, "train")
        if data is None:
            raise InputError(f"{mv.spec} was registered without a {role} dataset version, so there is nothing to "
                             f"compare production with: name a reference with --reference DATASET@REV, or register "
                             f"the model with --{role} DATASET@REV")
    features = list(feature_names(mv))
    missing = [f for f in features if f not in data.schema.names]
    if missing:
        raise InputError(f"the reference {data.name} has no column {missing[0]!r} of the features {mv.spec} takes; "
                         "name a dataset version with those columns")
    label = mv.signature.label
    extra = [c for c in (*(data.key or ()), *data.manifest.blob_columns) if c not in features]
    if label and label in data.schema.names and label not in features:
        extra.append(label)
    table = data.to_arrow(list(dict.fromkeys([*features, *extra])), with_ids=True)
    if label and label in table.column_names and label != "label":
        table = table.rename_columns(["label" if c == label else c for c in table.column_names])
    return data, table


def _spec(data: Any) -> str:
    return f"{data.name}@{data.commit[:12]}" if data.commit else data.name


def _samples(picked: pa.Table, train: pa.Table, features: list[str], version: Any, k: int) -> list[Sample]:
    dist, idx = neighbours_of(train, picked, features, k)
    key = [c for c in (version.key or ()) if c in train.column_names]
    blobs = [c for c in version.manifest.blob_columns if c in train.column_names]
    wanted = np.unique(idx.ravel()).astype(np.int64)
    train_rows = dict(zip(wanted.tolist(), train.take(pa.array(wanted)).to_pylist(), strict=True))
    out = []
    for i, row in enumerate(picked.to_pylist()):
        near = []
        for d, j in zip(dist[i], idx[i], strict=True):
            t = train_rows[int(j)]
            near.append(Neighbour(int(j), str(t.get("_assay_id", "")), {c: t[c] for c in key}, t.get("label"),
                                  float(d), {f: t[f] for f in features}, {c: t[c] for c in blobs if t[c]}))
        out.append(Sample(str(row["request_id"]), float(row["time"]), row["prediction"], row.get("score"),
                          row.get("label"), {f: row[f] for f in features}, near))
    return out


def _listed(names: Sequence[str], most: int = 12) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
