"""``value``: exact KNN-Shapley values (Jia et al., 2019), weighted by class rarity.

For each validation point the training samples are ranked by distance once, and the exact Shapley value of
each sample for a K-nearest-neighbour classifier follows from a recursion over that ranking. Validation
points are processed in blocks, so memory grows with the block times the number of samples, never with
samples squared. By default the validation points are drawn from the data itself (up to
``validation`` of them, stratified) and each one is left out of its own ranking.

A sample of a rare class weighs more: the value is multiplied by ``(n / (classes * n_class)) ** rarity``.
A sample whose weighted value is negative hurts the classifier and is flagged.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa

from assay.screens._base import Param, Screen, ScreenResult
from assay.screens.data import ScreenData

BLOCK_BYTES = 64 << 20


class ValueScreen(Screen):
    name = "value"
    description = "exact KNN-Shapley value of each sample, weighted by class rarity"
    extra_columns: ClassVar = {"value_shapley": pa.float64(), "value_weighted": pa.float64()}
    needs_labels = True
    params: ClassVar = {
        "k": Param(int, 10, 1, 1000, doc="neighbours of the KNN classifier whose value is measured"),
        "validation": Param(int, 2000, 10, 10_000_000, doc="validation points drawn from the data (all when "
                                                         "there are fewer)"),
        "rarity": Param(float, 0.5, 0.0, 2.0, doc="how much rare classes weigh more (0: not at all)"),
        "threshold": Param(float, 0.0, -1.0, 1.0, doc="flag samples whose weighted value is below this"),
        "seed": Param(int, 0, 0, None),
    }
    k: int
    validation: int
    rarity: float
    threshold: float
    seed: int

    def _score(self, data: ScreenData) -> ScreenResult:
        y = data.require_labels(self.name)
        chosen = _validation_points(y, self.validation, self.seed)
        raw = knn_shapley(data.features, y, data.features[chosen], y[chosen], k=self.k, exclude=chosen)
        counts = np.bincount(y, minlength=len(data.classes)).astype(np.float64)
        present = counts > 0
        weight = (len(y) / (present.sum() * np.where(present, counts, 1.0))) ** self.rarity
        value = raw * weight[y]
        flag = value < self.threshold
        scale = float(np.std(value)) or 1.0
        score = 0.5 + 0.5 * np.tanh((value - self.threshold) / scale)
        reason: list[str | None] = [
            f"harms a {self.k}-nearest-neighbour classifier: KNN-Shapley value {raw[i]:.2e} (weighted {value[i]:.2e})"
            if flag[i] else None for i in range(data.n)]
        summary = {"k": self.k, "validation_points": len(chosen), "negative": int((raw < 0).sum()),
                   "mean_value": float(raw.mean()) if len(raw) else 0.0}
        return ScreenResult(self.name, score, flag, reason, summary,
                            {"value_shapley": raw, "value_weighted": value})


def _validation_points(y: np.ndarray, wanted: int, seed: int) -> np.ndarray:
    if wanted >= len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    _, chosen = train_test_split(np.arange(len(y)), test_size=wanted, stratify=y, random_state=seed)
    return np.sort(chosen)


def knn_shapley(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *, k: int,
                exclude: np.ndarray | None = None) -> np.ndarray:
    """Exact KNN-Shapley value of each training sample, averaged over the validation points.

    ``exclude[j]`` is the index of validation point ``j`` among the training samples when it is one of
    them (leave-one-out): it is then left out of its own ranking and gets no value from it.
    """
    n = len(y)
    x = np.ascontiguousarray(x, np.float32)
    sq = np.einsum("ij,ij->i", x, x)
    total = np.zeros(n, np.float64)
    block = max(1, BLOCK_BYTES // (16 * max(n, 1)))
    for start in range(0, len(y_val), block):
        xv = np.ascontiguousarray(x_val[start:start + block], np.float32)
        d = sq[None, :] - 2.0 * (xv @ x.T) + np.einsum("ij,ij->i", xv, xv)[:, None]
        rows = np.arange(len(xv))
        if exclude is not None:
            d[rows, exclude[start:start + block]] = np.inf  # ranked last, then dropped below
        order = np.argsort(d, axis=1, kind="stable")
        m = n - 1 if exclude is not None else n
        order = order[:, :m]
        match = (y[order] == y_val[start:start + block, None]).astype(np.float64)
        total += np.bincount(order.ravel(), weights=_recursion(match, k).ravel(), minlength=n)
    return total / max(len(y_val), 1)


def _recursion(match: np.ndarray, k: int) -> np.ndarray:
    """Shapley values along each row's ranking (nearest first), from the farthest sample inwards."""
    m = match.shape[1]
    ranks = np.arange(1, m + 1, dtype=np.float64)  # 1-based rank i
    step = np.zeros_like(match)
    # s_i = s_{i+1} + (match_i - match_{i+1}) / K * min(K, i) / i
    step[:, :-1] = (match[:, :-1] - match[:, 1:]) / k * (np.minimum(k, ranks[:-1]) / ranks[:-1])
    step[:, -1] = match[:, -1] / m
    return np.cumsum(step[:, ::-1], axis=1)[:, ::-1]
