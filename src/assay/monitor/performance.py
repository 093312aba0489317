"""A served model's performance per window: realised once labels have arrived, estimated before they do.

``performance(repo, "digits", window="1h")`` reads the prediction log with its labels joined
(``window.production(..., labels=True)``; labels come from ``assay predictions label``) and gives, per window:

- realised metrics over the rows that have a label: ``accuracy``, ``f1`` (macro) and ``auc`` (one-vs-rest,
  macro, from the logged probabilities; two classes: the usual AUC) for classifiers, ``mae`` and ``rmse`` for
  regressors (scikit-learn's metrics);
- for classifiers that give probabilities, the estimate from the model's confidence calibrated on its
  evaluation version (``assay.monitor.calibration``; confidence-based performance estimation, as NannyML's
  CBPE): ``estimated_accuracy``, the mean calibrated chance that each prediction is right, and
  ``estimated_f1``, macro F1 from expected confusion counts of the calibrated class probabilities; each with a
  95% interval (``_low``/``_high``). The accuracy interval adds the variance of the realised accuracy given the
  calibrated chances (a sum of Bernoulli variances) to the spread of the estimate over bootstrap calibrations
  (a finite evaluation set); the F1 interval is the spread of F1 over labels drawn from the calibrated
  probabilities.

The estimate needs no labels; where both exist they are side by side in a row. Regressors get realised
metrics only. ``performance_values`` gives the same numbers for one window, as the alerts read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay.errors import InputError
from assay.monitor.calibration import Calibration, calibration, classes_of, matrix, same_type
from assay.monitor.window import Window, production, split

REALISED = ("accuracy", "f1", "auc", "mae", "rmse")
ESTIMATED = ("estimated_accuracy", "estimated_accuracy_low", "estimated_accuracy_high",
             "estimated_f1", "estimated_f1_low", "estimated_f1_high")
PERFORMANCE_METRICS = (*REALISED, *ESTIMATED)
Z95 = 1.959964
DRAWS = 100


@dataclass(frozen=True)
class WindowPerformance:
    """One window: its time span, how many rows and labels it holds, and its metrics by name."""

    start: float
    end: float
    rows: int
    labelled: int
    metrics: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "rows": self.rows, "labelled": self.labelled,
                "metrics": dict(self.metrics)}


@dataclass(frozen=True)
class PerformanceReport:
    """``performance``'s result: the model, its kind, the calibration behind the estimates, the windows."""

    model: str
    kind: str  # "classifier" or "regressor"
    windows: tuple[WindowPerformance, ...]
    calibrations: tuple[dict[str, Any], ...] = ()  # per version: the evaluation data and its accuracy there
    window: str | None = None
    metrics: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "kind": self.kind, "window": self.window, "metrics": list(self.metrics),
                "calibrations": [dict(c) for c in self.calibrations], "windows": [w.to_dict() for w in self.windows]}


def performance(repo: Any, model: str, *, window: Window | str | int | None = None, since: float | str | None = None,
                until: float | str | None = None, version: int | str | None = None, eval: str | None = None,
                seed: int = 0) -> PerformanceReport:
    """Realised and estimated metrics of ``model``'s logged predictions since ``since``, cut into consecutive
    ``window``\\ s (one window of all the rows when None); ``eval`` (``dataset@rev``) replaces the evaluation
    version the estimate is calibrated on."""
    rows = production(repo, model, since=since, until=until, version=version, labels=True)
    if rows.num_rows == 0:
        raise InputError(f"no logged predictions of {model!r} in the rows asked for"
                         f"{f' (since {since})' if since is not None else ''}: widen --since or --window, or serve "
                         "the model so that it logs some")
    kind = kind_of(rows)
    cals = _calibrations(repo, model, rows, eval) if kind == "classifier" and "proba" in rows.column_names else {}
    rows = _labels_as_predictions(rows, kind)
    parts = split(rows, Window.parse(window)) if window is not None else \
        [(_time(rows, 0), _time(rows, -1), rows)]
    out = tuple(WindowPerformance(start, end, part.num_rows, _labelled(part), _values(repo, model, part, kind, cals,
                                                                                    seed))
                for start, end, part in parts)
    names = tuple(m for m in PERFORMANCE_METRICS if any(m in w.metrics for w in out))
    return PerformanceReport(model, kind, out, tuple(_calibration_summary(c) for c in cals.values()),
                             str(Window.parse(window)) if window is not None else None, names)


def performance_values(repo: Any, model: str, rows: pa.Table, *, eval: str | None = None,
                       seed: int = 0) -> dict[str, dict[str, float]]:
    """``{metric: {"*": value}}`` for one window of decoded rows (``label`` joined, possibly all null); no rows,
    no values."""
    if rows.num_rows == 0:
        return {}
    kind = kind_of(rows)
    cals = _calibrations(repo, model, rows, eval) if kind == "classifier" and "proba" in rows.column_names else {}
    values = _values(repo, model, _labels_as_predictions(rows, kind), kind, cals, seed)
    return {name: {"*": value} for name, value in values.items()}


def kind_of(rows: pa.Table) -> str:
    """``classifier`` when the model gives probabilities or predicts integers, strings or booleans."""
    if "proba" in rows.column_names:
        return "classifier"
    t = rows.column("prediction").type
    return "regressor" if pa.types.is_floating(t) or pa.types.is_null(t) else "classifier"


def _time(rows: pa.Table, i: int) -> float:
    return float(rows.column("time")[i].as_py())


def _labelled(rows: pa.Table) -> int:
    return 0 if "label" not in rows.column_names else rows.num_rows - rows.column("label").null_count


def _calibrations(repo: Any, model: str, rows: pa.Table, eval: str | None) -> dict[int, Calibration]:
    versions = pc.unique(rows.column("version")).to_pylist()
    return {int(v): calibration(repo, model, version=int(v), eval=eval) for v in versions if v is not None}


def _calibration_summary(c: Calibration) -> dict[str, Any]:
    return {"version": c.version, "eval": c.eval, "rows": c.rows, "accuracy": c.accuracy, "mean_score": c.mean_score,
            "confidence": c.mode}


def _labels_as_predictions(rows: pa.Table, kind: str) -> pa.Table:
    """The ``label`` column as the type of the predictions; a clear error for labels that cannot be."""
    if "label" not in rows.column_names or rows.column("label").null_count == rows.num_rows:
        return rows
    labels = rows.column("label").to_pylist()
    if kind == "regressor":
        try:
            fixed = pa.array([None if v is None else float(v) for v in labels], pa.float64())
        except (TypeError, ValueError) as e:
            sample = next(v for v in labels if v is not None)
            raise InputError(f"the model is a regressor (it predicts numbers) but its labels are values like "
                             f"{sample!r}: label its predictions with numbers") from e
    else:
        fixed = pa.array(same_type(labels, rows.column("prediction").to_pylist()))
    return rows.set_column(rows.column_names.index("label"), "label", fixed)


def _values(repo: Any, model: str, rows: pa.Table, kind: str, cals: dict[int, Calibration],
            seed: int) -> dict[str, float]:
    if rows.num_rows == 0:
        return {}
    out = realised(rows, kind, cals)
    if cals:
        out.update(estimated(rows, cals, seed=seed))
    return out


# -- realised ---------------------------------------------------------------------------------------------------


def realised(rows: pa.Table, kind: str, cals: dict[int, Calibration] | None = None) -> dict[str, float]:
    """Metrics over the rows whose label has arrived (none: an empty dict)."""
    if "label" not in rows.column_names:
        return {}
    have = rows.filter(pc.invert(pc.is_null(rows.column("label"))))
    if have.num_rows == 0:
        return {}
    truth = have.column("label").to_pylist()
    predicted = have.column("prediction").to_pylist()
    if kind == "regressor":
        from sklearn.metrics import mean_absolute_error, mean_squared_error

        y, p = np.asarray(truth, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
        return {"mae": float(mean_absolute_error(y, p)), "rmse": float(np.sqrt(mean_squared_error(y, p)))}
    from sklearn.metrics import f1_score

    out = {"accuracy": float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)])),
           "f1": float(f1_score(_codes(truth, predicted), _codes(predicted, truth), average="macro"))}
    if "proba" in have.column_names:
        auc = _auc(have, truth, cals or {})
        if auc is not None:
            out["auc"] = auc
    return out


def _codes(values: Sequence[Any], other: Sequence[Any]) -> np.ndarray:
    """Values as integer codes over the values of both lists (F1 of mixed types, nulls as their own class)."""
    order = {v: i for i, v in enumerate(sorted({*map(repr, values), *map(repr, other)}))}
    return np.array([order[repr(v)] for v in values])


def _auc(rows: pa.Table, truth: list[Any], cals: dict[int, Calibration]) -> float | None:
    """One-vs-rest AUC, averaged over the classes with both positives and negatives among the labels."""
    from sklearn.metrics import roc_auc_score

    proba = matrix(rows.column("proba"))
    versions = rows.column("version").to_pylist()
    first = cals.get(int(versions[0])) if versions and versions[0] is not None else None
    classes = first.classes if first is not None else \
        classes_of(None, proba.shape[1], [*truth, *rows.column("prediction").to_pylist()])
    positives = [np.array([t == c for t in truth]) for c in classes]
    if len(classes) == 2:
        return float(roc_auc_score(positives[1], proba[:, 1])) if 0 < positives[1].sum() < len(truth) else None
    scores = [roc_auc_score(pos, proba[:, k]) for k, pos in enumerate(positives) if 0 < pos.sum() < len(truth)]
    return float(np.mean(scores)) if scores else None


# -- estimated --------------------------------------------------------------------------------------------------


def estimated(rows: pa.Table, cals: dict[int, Calibration], *, seed: int = 0) -> dict[str, float]:
    """``estimated_accuracy`` and ``estimated_f1`` with their 95% intervals (see the module docstring)."""
    versions = np.asarray(rows.column("version").to_numpy(zero_copy_only=False))
    n = rows.num_rows
    right = np.empty(n)
    spread = np.zeros((min(max(len(c.boot), 1) for c in cals.values()), n))
    for v, cal in cals.items():
        mine = versions == v
        confidence = cal.confidence(rows.filter(pa.array(mine)))
        right[mine] = cal.correct(confidence)
        spread[:, mine] = cal.spread(confidence)[: spread.shape[0]]
    acc = float(right.mean())
    between = float(np.var(spread.mean(axis=1), ddof=1)) if spread.shape[0] > 1 else 0.0
    width = Z95 * float(np.sqrt(float(np.sum(right * (1 - right))) / n**2 + between))
    out = {"estimated_accuracy": acc, "estimated_accuracy_low": max(0.0, acc - width),
           "estimated_accuracy_high": min(1.0, acc + width)}
    out.update(_estimated_f1(rows, cals, versions, right, seed))
    return out


def _estimated_f1(rows: pa.Table, cals: dict[int, Calibration], versions: np.ndarray, right: np.ndarray,
                  seed: int) -> dict[str, float]:
    """Macro F1 of the calibrated class probabilities, their predicted class's set to the chance of being right
    (the others scaled to the rest), so that it agrees with the estimated accuracy."""
    classes = {c.classes for c in cals.values()}
    if len(classes) != 1:  # versions with different classes: no one F1 to estimate
        return {}
    (order,) = classes
    proba = matrix(rows.column("proba"))
    if proba.shape[1] != len(order):
        return {}
    p = np.empty_like(proba)
    predicted = np.empty(len(p), dtype=int)
    labels = rows.column("prediction").to_pylist()
    for v, cal in cals.items():
        mine = versions == v
        p[mine] = cal.probabilities(proba[mine])
        predicted[mine] = cal.indices([x for x, m in zip(labels, mine, strict=True) if m])
    p = _with_chosen(p, predicted, right)
    f1 = expected_f1(p, predicted)
    rng = np.random.default_rng(seed)
    cum = np.cumsum(p, axis=1)
    draws = [_macro_f1((rng.random(len(p))[:, None] > cum).sum(axis=1), predicted, len(order))
             for _ in range(DRAWS)]
    low, high = np.quantile(draws, [0.025, 0.975])
    return {"estimated_f1": f1, "estimated_f1_low": float(min(low, f1)), "estimated_f1_high": float(max(high, f1))}


def _with_chosen(p: np.ndarray, predicted: np.ndarray, right: np.ndarray) -> np.ndarray:
    rows = np.arange(len(p))
    rest = 1.0 - p[rows, predicted]
    scale = np.where(rest > 0, (1.0 - right) / np.where(rest > 0, rest, 1.0), 0.0)
    out = p * scale[:, None]
    out[rows, predicted] = right
    missing = (rest <= 0) & (right < 1)  # all mass on the predicted class: spread the rest evenly
    if missing.any() and p.shape[1] > 1:
        out[missing] = ((1.0 - right[missing]) / (p.shape[1] - 1))[:, None]
        out[rows[missing], predicted[missing]] = right[missing]
    return out


def expected_f1(p: np.ndarray, predicted: np.ndarray) -> float:
    """Macro F1 from expected confusion counts: true positives of class k are the calibrated chances of k
    where k was predicted, false negatives its chances elsewhere (as CBPE)."""
    scores = []
    for k in range(p.shape[1]):
        mine = predicted == k
        tp = p[mine, k].sum()
        fp = mine.sum() - tp
        fn = p[~mine, k].sum()
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 0.0)
    return float(np.mean(scores))


def _macro_f1(truth: np.ndarray, predicted: np.ndarray, k: int) -> float:
    scores = []
    for c in range(k):
        tp = np.sum((truth == c) & (predicted == c))
        fp = np.sum((truth != c) & (predicted == c))
        fn = np.sum((truth == c) & (predicted != c))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0
