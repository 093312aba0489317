"""The model screens share: out-of-fold predicted probabilities and learned representations.

When the user gives no probabilities, assay trains its own default model on the scaled features, in
``folds`` stratified folds, so that every sample is predicted by a model that never saw it: the average of
a one-hidden-layer perceptron (scikit-learn; 256 units, L2 penalty 1.0, 60 epochs) and, up to 10,000
samples, an RBF-kernel SVC calibrated by isotonic regression. It is fitted twice on the same folds, the
second time without the samples that confident learning flags on the first round's probabilities, so that
the wrong labels are judged by a model that learned fewer of them (on digits with 20% of each class flipped
to a confusable partner, the flags' precision and recall go from about 0.87 and 0.86 to 0.91 and 0.90).
The perceptron fitted on all samples gives representations (its hidden layer) that the poison screen
clusters, and so does a lighter-regularised one (L2 0.1, 200 epochs) fitted on the samples that confident
learning does not flag. Results are cached on the ``ScreenData`` so that screens share them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from assay.errors import ScreenError
from assay.screens.confident import find_label_issues
from assay.screens.data import ScreenData


@dataclass(frozen=True)
class ModelOutputs:
    probs: np.ndarray  # n x classes, out of fold
    hidden: np.ndarray  # n x h: hidden layer of the model fitted on all samples
    accuracy: float  # out-of-fold accuracy against the given labels
    source: str  # "default model (...)" or "given"
    # n x h: hidden layer of a lighter-regularised MLP fitted on the ``clean`` samples only (those that
    # confident learning does not flag); None when they hold fewer than two classes
    hidden_clean: np.ndarray | None = None
    clean: np.ndarray | None = None


def model_outputs(data: ScreenData, *, folds: int = 5, seed: int = 0) -> ModelOutputs:
    """Out-of-fold probabilities (given, or from the default model) and hidden representations, cached."""
    key = f"model:{folds}:{seed}"
    if key not in data.cache:
        data.cache[key] = _fit(data, folds, seed)
    out: ModelOutputs = data.cache[key]
    return out


SVC_LIMIT = 10_000  # an RBF-kernel SVC joins the ensemble up to this many samples (its cost grows with n^2)


def _fit(data: ScreenData, folds: int, seed: int) -> ModelOutputs:
    from sklearn.model_selection import StratifiedKFold

    y = data.require_labels("label model", min_per_class=2)
    n_classes = len(data.classes)
    counts = np.bincount(y, minlength=n_classes)
    k = int(min(folds, counts[counts > 0].min()))
    if k < 2:
        raise ScreenError("too few samples per class for out-of-fold predictions (each class needs at least 2)")
    x = data.features
    if data.pred_probs is not None:
        probs, source = _check_probs(data.pred_probs, data.n, n_classes), "given"
    else:
        kinds = ["mlp", "svc"] if data.n <= SVC_LIMIT else ["mlp"]
        splits = list(StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y))
        probs = _out_of_fold(x, y, splits, kinds, n_classes, seed, np.ones(data.n, bool))
        probs = _out_of_fold(x, y, splits, kinds, n_classes, seed, ~find_label_issues(y, probs, "prune"))
        source = f"default model ({' + '.join(k.upper() for k in kinds)}, {k}-fold out-of-fold, refitted without " \
            "the likely label errors)"
    full = _fitted("mlp", x, y, seed)
    clean = ~find_label_issues(y, probs, "prune")
    second = _fitted("mlp-light", x[clean], y[clean], seed) if len(np.unique(y[clean])) > 1 else None
    accuracy = float((probs.argmax(axis=1) == y).mean())
    return ModelOutputs(probs, _hidden(full, x), accuracy, source,
                        _hidden(second, x) if second is not None else None, clean)


def _out_of_fold(x: np.ndarray, y: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]], kinds: list[str],
                 n_classes: int, seed: int, use: np.ndarray) -> np.ndarray:
    """Probabilities of each fold's samples from the ``kinds`` fitted on the other folds' samples in ``use``."""
    probs = np.zeros((len(y), n_classes))
    for train, test in splits:
        fit_on = train[use[train]]
        if len(np.unique(y[fit_on])) < 2:  # too little left to learn from: all of the other folds
            fit_on = train
        fewest = int(np.bincount(y[fit_on])[np.unique(y[fit_on])].min())
        # the SVC's calibration splits its samples again, so each class needs two (else the MLP answers alone)
        used = [k for k in kinds if k != "svc" or fewest >= 2]
        for kind in used:
            model = _fitted(kind, x[fit_on], y[fit_on], seed, calibration_folds=min(5, fewest))
            probs[np.ix_(test, model.classes_)] += model.predict_proba(x[test]) / len(used)
    return probs


def _hidden(model: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(np.maximum(x @ model.coefs_[0] + model.intercepts_[0], 0.0), np.float32)


def _fitted(kind: str, x: np.ndarray, y: np.ndarray, seed: int, calibration_folds: int = 5) -> Any:
    """One of the default models, fitted: the MLP (strongly regularised and briefly trained, so that it does
    not learn the noisy labels it judges) or an RBF-kernel SVC with probabilities calibrated by isotonic regression
    in ``calibration_folds`` stratified folds (at most the smallest class's count: a fold without a class fails)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC

    if kind == "svc":
        model: Any = CalibratedClassifierCV(SVC(random_state=seed), method="isotonic", ensemble=False,
                                            cv=calibration_folds)
    else:  # "mlp-light" learns finer representations, on data without the likely label errors
        light = kind == "mlp-light"
        model = MLPClassifier(hidden_layer_sizes=(256,), alpha=0.1 if light else 1.0, max_iter=200 if light else 60,
                              random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y)


def _check_probs(probs: np.ndarray, n: int, n_classes: int) -> np.ndarray:
    p = np.asarray(probs, np.float64)
    if p.shape != (n, n_classes):
        raise ScreenError(f"pred_probs has shape {p.shape}; expected ({n}, {n_classes}): one row per sample, one "
                          "column per class in sorted order")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ScreenError("pred_probs holds negative, NaN or infinite values; give probabilities")
    sums = p.sum(axis=1, keepdims=True)
    return np.asarray(p / np.where(sums > 0, sums, 1.0))
