"""How far a classifier's confidence can be trusted: its scores calibrated on its evaluation version, once.

``calibration(repo, "digits")`` runs the model version on the rows of the dataset version it was evaluated on
(ONNX versions with ONNX Runtime, scikit-learn ones with the estimator), decodes the outputs exactly as the
prediction log is decoded (``assay.monitor.window``), and fits isotonic regressions (scikit-learn):

- ``per_class``: each class's probability -> the chance that the label is that class (one-vs-rest, normalised to
  sum to one: NannyML's CBPE). The chance that a prediction is right is then its class's calibrated probability
  (mode ``score``: CBPE's assumption that it does not move with the inputs once the scores are known);
- ``inputs``: where it predicts being right better out of fold on the evaluation rows (lower Brier score over 3
  folds), a small gradient-boosted model of being right given the numeric features and the score, recalibrated
  by ``top`` (mode ``inputs``): under a covariate shift the chance of being right given the inputs stays put
  while that given the scores alone need not, which is where CBPE goes wrong;
- ``top``: the confidence (the calibrated chance in mode ``score``, the inputs model's output in mode
  ``inputs``) -> the chance of being right;
- ``boot``: ``top`` fitted again on bootstrap resamples of the evaluation rows, whose spread is the part of the
  estimate's interval that comes from a finite evaluation set.

The trees are kept as their public arrays (``tree_``) and evaluated here, so nothing is unpickled. The result
is attached to the model version (``registry.attach(..., "calibration", ...)``, one commit), so it is
computed once per version and evaluation data; an isotonic fit is stored as its thresholds, which
``numpy.interp`` evaluates exactly as scikit-learn's ``IsotonicRegression.predict`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from assay.errors import FormatError, InputError, MissingExtra
from assay.monitor.window import _predictions, feature_names  # the log's decoding, shared on purpose

FORMAT = 1
KEY = "calibration"
BOOTSTRAPS = 30
FOLDS = 3
MIN_ROWS_FOR_INPUTS = 500  # fewer evaluation rows: the score alone
_CHUNK = 8192


@dataclass(frozen=True)
class Curve:
    """A monotone map [0, 1] -> [0, 1]: an isotonic regression's thresholds."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return np.interp(values, self.x, self.y)

    @classmethod
    def fit(cls, values: np.ndarray, hits: np.ndarray) -> Curve:
        from sklearn.isotonic import IsotonicRegression

        if len(np.unique(values)) < 2:  # nothing to order by: the mean hit rate everywhere
            rate = float(np.mean(hits)) if len(hits) else 0.0
            return cls((0.0, 1.0), (rate, rate))
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(values, hits)
        return cls(tuple(float(v) for v in iso.X_thresholds_), tuple(float(v) for v in iso.y_thresholds_))

    def to_dict(self) -> dict[str, Any]:
        return {"x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Curve:
        return cls(tuple(d["x"]), tuple(d["y"]))


@dataclass(frozen=True)
class Trees:
    """A gradient-boosted model of being right (scikit-learn's ``GradientBoostingClassifier``) as arrays."""

    columns: tuple[str, ...]  # the numeric features, then "score"
    init: float
    rate: float
    trees: tuple[dict[str, list[float]], ...]  # feature, threshold, left, right, value per node

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.nan_to_num(np.asarray(x, dtype=np.float32)).astype(np.float64)  # as the trees were fitted
        raw = np.full(len(x), self.init)
        for t in self.trees:
            feature, threshold = np.asarray(t["feature"], int), np.asarray(t["threshold"])
            left, right, value = np.asarray(t["left"], int), np.asarray(t["right"], int), np.asarray(t["value"])
            node = np.zeros(len(x), dtype=int)
            for _ in range(64):
                inner = left[node] >= 0
                if not inner.any():
                    break
                go_left = x[np.arange(len(x)), np.maximum(feature[node], 0)] <= threshold[node]
                node = np.where(inner, np.where(go_left, left[node], right[node]), node)
            raw += self.rate * value[node]
        return 1.0 / (1.0 + np.exp(-raw))

    @classmethod
    def fit(cls, x: np.ndarray, hits: np.ndarray, columns: Sequence[str], *, seed: int = 0) -> Trees:
        from sklearn.ensemble import GradientBoostingClassifier

        gb = GradientBoostingClassifier(n_estimators=80, max_depth=3, subsample=0.8, random_state=seed)
        x = np.nan_to_num(x.astype(np.float32))  # a missing value counts as 0
        gb.fit(x, hits.astype(int))
        rate = float(gb.learning_rate)
        trees = tuple({"feature": t.tree_.feature.tolist(), "threshold": t.tree_.threshold.tolist(),
                       "left": t.tree_.children_left.tolist(), "right": t.tree_.children_right.tolist(),
                       "value": t.tree_.value[:, 0, 0].tolist()} for t in gb.estimators_[:, 0])
        first = x[:1]
        init = float(gb.decision_function(first)[0]) - rate * sum(float(t.predict(first)[0])
                                                                   for t in gb.estimators_[:, 0])
        return cls(tuple(columns), init, rate, trees)

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "init": self.init, "rate": self.rate, "trees": list(self.trees)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trees:
        return cls(tuple(d["columns"]), d["init"], d["rate"], tuple(d["trees"]))


@dataclass(frozen=True)
class Calibration:
    """A classifier version's calibration on its evaluation rows (see the module docstring)."""

    model: str
    version: int
    eval: str  # the evaluation data: ``dataset@commit``
    manifest: str  # its manifest, which says whether a stored calibration is still the one asked for
    rows: int
    classes: tuple[Any, ...]  # the class of each probability column
    top: Curve
    per_class: tuple[Curve, ...]
    boot: tuple[Curve, ...]
    accuracy: float  # the version's accuracy on the evaluation rows
    mean_score: float  # its mean confidence there: the gap is how over-confident it is
    inputs: Trees | None = None  # the confidence is this model's of the inputs and score (None: the score)

    @property
    def mode(self) -> str:
        return "score" if self.inputs is None else "inputs"

    def confidence(self, rows: pa.Table) -> np.ndarray:
        """What ``top`` and ``boot`` map to the chance of being right (see the module docstring)."""
        if self.inputs is None:
            proba = self.probabilities(matrix(rows.column("proba")))
            return proba[np.arange(len(proba)), self.indices(rows.column("prediction").to_pylist())]
        score = np.asarray(rows.column("score").to_numpy(zero_copy_only=False), dtype=np.float64)
        return self.inputs(np.column_stack([*[_numbers(rows.column(c)) for c in self.inputs.columns[:-1]], score]))

    def correct(self, confidence: np.ndarray) -> np.ndarray:
        """The chance that each prediction is right, from its confidence (in mode ``score`` it is one)."""
        return confidence if self.inputs is None else self.top(confidence)

    def indices(self, predictions: Sequence[Any]) -> np.ndarray:
        """The probability column of each prediction (the arg-max column where the class is unknown)."""
        index = {c: k for k, c in enumerate(self.classes)}
        return np.array([index.get(v, 0) for v in predictions], dtype=int)

    def spread(self, confidence: np.ndarray) -> np.ndarray:
        """The chance of being right under each bootstrap calibration (rows: calibrations)."""
        return np.stack([b(confidence) for b in self.boot]) if self.boot else confidence[None, :]

    def probabilities(self, proba: np.ndarray) -> np.ndarray:
        """Class probabilities calibrated one-vs-rest and normalised to sum to one."""
        return _normalised(np.stack([c(proba[:, k]) for k, c in enumerate(self.per_class)], axis=1))

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "model": self.model, "version": self.version, "eval": self.eval,
                "manifest": self.manifest, "rows": self.rows, "classes": list(self.classes),
                "top": self.top.to_dict(), "per_class": [c.to_dict() for c in self.per_class],
                "boot": [c.to_dict() for c in self.boot], "accuracy": self.accuracy, "mean_score": self.mean_score,
                "inputs": self.inputs.to_dict() if self.inputs is not None else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        if d.get("format", 0) > FORMAT:
            raise FormatError(f"the calibration of {d.get('model')}@{d.get('version')} has format {d['format']}, "
                              f"newer than this assay reads ({FORMAT}); upgrade assay")
        return cls(d["model"], d["version"], d["eval"], d["manifest"], d["rows"], tuple(d["classes"]),
                   Curve.from_dict(d["top"]), tuple(Curve.from_dict(c) for c in d["per_class"]),
                   tuple(Curve.from_dict(c) for c in d["boot"]), d["accuracy"], d["mean_score"],
                   Trees.from_dict(d["inputs"]) if d.get("inputs") else None)


def calibration(repo: Any, model: str, *, version: int | str | None = None, eval: str | None = None,
                store: bool = True) -> Calibration:
    """The calibration of ``model`` (``version``, default the latest) on its evaluation version, or on
    ``eval`` (``dataset@rev``); read from the version's attachment when one was made on the same data, else
    fitted and (``store``) attached: the calibration on the recorded evaluation version, or on ``eval`` for a
    version that has none recorded (one on another ``eval`` is fitted each time, so that the two do not
    replace each other)."""
    from assay.models import registry

    mv = registry.get(repo, model if version is None else f"{model}@{version}")
    data = _eval_data(repo, mv, eval)
    stored = registry.attachments(repo, mv.spec).get(KEY)
    if stored is not None and stored.get("manifest") == manifest_id(data):
        return Calibration.from_dict(stored)
    fitted = fit(repo, mv, data)
    recorded = mv.lineage.eval is None or eval is None  # an --eval for a version that has one: not kept
    if store and recorded and repo.branch is not None:
        registry.attach(repo, mv.spec, KEY, fitted.to_dict())
    return fitted


def _eval_data(repo: Any, mv: Any, eval: str | None) -> Any:
    from assay.models import registry
    from assay.repo.revisions import split_dataset_rev

    if eval is not None:
        name, rev = split_dataset_rev(eval)
        return repo.dataset(name, rev)
    data = registry.data(repo, mv, "eval")
    if data is None:
        raise InputError(f"{mv.spec} was registered without an evaluation dataset version, which estimating its "
                         f"performance calibrates its confidence on: name one with --eval DATASET@REV (Python: "
                         f"eval='DATASET@REV'), or register the model with --eval DATASET@REV; the data needs the "
                         f"feature columns and the label column")
    return data


def fit(repo: Any, mv: Any, data: Any, *, seed: int = 0) -> Calibration:
    """Run ``mv`` on the rows of ``data`` and fit the calibration (see the module docstring)."""
    features = feature_names(mv)
    label = mv.signature.label or "label"
    missing = [c for c in (*features, label) if c not in data.schema.names]
    if missing:
        raise InputError(f"the evaluation data {data.name} has no column {missing[0]!r}, which calibrating "
                         f"{mv.spec} needs (its features and its label {label!r}): name a dataset version with "
                         "them with --eval DATASET@REV")
    table = data.to_arrow([*features, label])
    if table.num_rows < 2:
        raise InputError(f"the evaluation data {data.name} has {table.num_rows} row(s); calibrating {mv.spec} needs "
                         "labelled rows (hundreds at least): name a larger one with --eval DATASET@REV")
    predicted, score, probabilities = _predictions(run(repo, mv, table, features), mv.signature.classes)
    if probabilities is None:
        raise InputError(f"{mv.spec} gives no class probabilities, so its confidence cannot be calibrated and its "
                         "performance is not estimated (realised metrics need labels: `assay predictions label`)")
    proba = matrix(probabilities)
    prediction = predicted.to_pylist()
    truth = same_type(table.column(label).to_pylist(), prediction)
    classes = classes_of(mv.signature.classes, proba.shape[1], [*truth, *prediction])
    numeric = [f for f in features if _is_number(table.schema.field(f).type)]
    x = np.column_stack([_numbers(table.column(f)) for f in numeric]) if numeric else np.zeros((table.num_rows, 0))
    return _fit(mv, data, classes, proba, np.asarray(score.to_numpy(zero_copy_only=False)), prediction, truth,
                (x, tuple(numeric)), seed)


def _fit(mv: Any, data: Any, classes: Sequence[Any], proba: np.ndarray, score: np.ndarray,
         prediction: list[Any], truth: list[Any], numeric: tuple[np.ndarray, tuple[str, ...]],
         seed: int) -> Calibration:
    hits = np.array([p == t for p, t in zip(prediction, truth, strict=True)], dtype=np.float64)
    per_class = tuple(Curve.fit(proba[:, k], np.array([t == c for t in truth], dtype=np.float64))
                      for k, c in enumerate(classes))
    cbpe = _normalised(np.stack([c(proba[:, k]) for k, c in enumerate(per_class)], axis=1))
    chosen = cbpe[np.arange(len(hits)), _columns(classes, prediction)]
    inputs, confidence = _inputs_model(numeric, score, hits, chosen, (proba, truth, classes, prediction), seed)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(BOOTSTRAPS):
        pick = rng.integers(0, len(hits), len(hits))
        boot.append(Curve.fit(confidence[pick], hits[pick]))
    spec = f"{data.name}@{data.commit[:12]}" if getattr(data, "commit", None) else data.name
    return Calibration(mv.name, mv.version, spec, manifest_id(data), len(hits), tuple(classes),
                       Curve.fit(confidence, hits), per_class, tuple(boot), float(hits.mean()), float(score.mean()),
                       inputs)


def _normalised(p: np.ndarray) -> np.ndarray:
    total = p.sum(axis=1, keepdims=True)
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / p.shape[1])


def _columns(classes: Sequence[Any], prediction: Sequence[Any]) -> np.ndarray:
    index = {c: k for k, c in enumerate(classes)}
    return np.array([index.get(v, 0) for v in prediction], dtype=int)


def _inputs_model(numeric: tuple[np.ndarray, tuple[str, ...]], score: np.ndarray, hits: np.ndarray,
                  chosen: np.ndarray, scored: tuple[np.ndarray, list[Any], Sequence[Any], list[Any]],
                  seed: int) -> tuple[Trees | None, np.ndarray]:
    """The inputs model and its out-of-fold outputs, when they predict being right better than CBPE's
    calibration does out of fold; else None and CBPE's chances (``chosen``)."""
    x, names = numeric
    if not names or len(hits) < MIN_ROWS_FOR_INPUTS or hits.min() == hits.max():
        return None, chosen
    proba, truth, classes, prediction = scored
    x = np.column_stack([x, score])
    folds = np.random.default_rng(seed).integers(0, FOLDS, len(hits))
    by_inputs, by_scores = np.empty(len(hits)), np.empty(len(hits))
    columns = _columns(classes, prediction)
    for k in range(FOLDS):
        test, train = folds == k, folds != k
        if hits[train].min() == hits[train].max():
            return None, chosen
        by_inputs[test] = Trees.fit(x[train], hits[train], (*names, "score"), seed=seed)(x[test])
        curves = [Curve.fit(proba[train, j], np.array([t == c for t in np.asarray(truth, dtype=object)[train]],
                                                      dtype=np.float64)) for j, c in enumerate(classes)]
        p = _normalised(np.stack([c(proba[test, j]) for j, c in enumerate(curves)], axis=1))
        by_scores[test] = p[np.arange(len(p)), columns[test]]
    if np.mean((by_inputs - hits) ** 2) >= np.mean((by_scores - hits) ** 2):
        return None, chosen
    return Trees.fit(x, hits, (*names, "score"), seed=seed), by_inputs  # top maps out-of-fold outputs to hits


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _numbers(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def matrix(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A column of equal-length lists (the probabilities) as an n x k array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    flat = np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float64)
    return flat.reshape(n, -1) if n else np.zeros((0, 0))


def manifest_id(data: Any) -> str:
    """The address of a dataset version's manifest: what the stored calibration was fitted on."""
    from assay.store.hashing import hash_bytes

    return hash_bytes(data.manifest.to_bytes())


def classes_of(declared: Sequence[Any] | None, width: int, values: Sequence[Any]) -> tuple[Any, ...]:
    """The class of each probability column: the signature's classes (``declared``), else the sorted distinct
    labels and predictions when there are as many as columns (scikit-learn's order), else the column numbers."""
    if declared and len(declared) == width:
        return tuple(declared)
    seen = sorted({v for v in values if v is not None}, key=lambda v: (str(type(v)), v))
    if len(seen) == width:
        return tuple(seen)
    return tuple(range(width))


def same_type(labels: list[Any], like: list[Any]) -> list[Any]:
    """Labels as the type of the predictions (``"3"`` -> 3 for a model that predicts integers)."""
    sample = next((v for v in like if v is not None), None)
    if sample is None or isinstance(sample, str) or not labels:
        return [None if v is None else (str(v) if sample is not None else v) for v in labels]
    kind = type(sample)
    try:
        return [None if v is None else kind(v) for v in labels]
    except (TypeError, ValueError) as e:
        raise InputError(f"the labels are values like {labels[0]!r} but the model predicts {kind.__name__} values "
                         f"like {sample!r}: give labels of the kind the model predicts") from e


def run(repo: Any, mv: Any, table: pa.Table, features: Sequence[str]) -> list[dict[str, Any]]:
    """The outputs of ``mv`` on the feature columns of ``table``, one dict per row (as the log keeps them)."""
    from assay.monitor.profile import feature_rows

    x = feature_rows(table, features)  # an image (array) column spread over its values
    if mv.framework == "onnx":
        outputs = _run_onnx(repo, mv, x)
    elif mv.framework == "sklearn":
        from assay.models import registry
        from assay.models.onnx_export import reference_outputs

        outputs = reference_outputs(registry.load(repo, mv.spec), x, framework="sklearn")
    else:
        raise InputError(f"{mv.spec} is a {mv.framework} model; calibration runs ONNX and scikit-learn versions: "
                         f"export it (`assay model export {mv.spec}`) and monitor the exported version")
    names = list(outputs)
    columns = [np.asarray(outputs[n]).tolist() for n in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def _run_onnx(repo: Any, mv: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    from assay.models import registry

    try:
        from assay.models.onnx_export import run_onnx, session
    except ImportError as e:  # pragma: no cover - the serve extra brings onnxruntime
        raise MissingExtra("calibrating an ONNX model needs onnxruntime: pip install 'assay[serve]'") from e
    sess = session(registry.read_artifact(repo, mv.spec))
    spec = mv.signature.inputs[0] if mv.signature.inputs else None
    shape = spec.shape if spec is not None and spec.shape is not None else None
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(x), _CHUNK):
        chunk = x[start:start + _CHUNK]
        if shape is not None and all(isinstance(d, int) for d in shape[1:]) and len(shape) > 2:
            chunk = chunk.reshape((len(chunk), *[int(d) for d in shape[1:] if isinstance(d, int)]))
        for name, value in run_onnx(sess, chunk).items():
            parts.setdefault(name, []).append(np.asarray(value))
    return {name: np.concatenate(v) for name, v in parts.items()}
