"""``label_issue``: confident learning (Northcutt et al., 2021) on out-of-fold predicted probabilities.

Per class, the threshold is the mean probability the model gives that class over the samples labelled
with it. Samples whose probability for some other class reaches that class's threshold count in the
confident joint (given label x likely true label), calibrated to the class sizes. For each pair of given
label and likely true label, that many samples are flagged: those with the largest margin for the other
class (prune by noise rate). A sample whose given label is also the model's top prediction is never
flagged. The score is the probability of the given label (self-confidence).

The probabilities come from the user (``pred_probs`` in the features) or from assay's default model.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa

from assay.screens._base import Param, Screen, ScreenResult
from assay.screens.data import ScreenData
from assay.screens.model import model_outputs


class LabelIssueScreen(Screen):
    name = "label_issue"
    description = "likely label errors, by confident learning on out-of-fold probabilities"
    extra_columns: ClassVar = {"label_predicted": pa.string()}
    needs_labels = True
    params: ClassVar = {
        "folds": Param(int, 5, 2, 20, doc="folds of the out-of-fold model"),
        "seed": Param(int, 0, 0, None),
    }
    folds: int
    seed: int

    def _score(self, data: ScreenData) -> ScreenResult:
        y = data.require_labels(self.name, min_per_class=2)
        outputs = model_outputs(data, folds=self.folds, seed=self.seed)
        probs = outputs.probs
        flag = find_label_issues(y, probs)
        predicted = probs.argmax(axis=1)
        given_p = probs[np.arange(len(y)), y]
        reason: list[str | None] = [
            f"labelled {data.classes[y[i]]!r} but the model predicts {data.classes[predicted[i]]!r} "
            f"(p={probs[i, predicted[i]]:.2f}; p of the given label {given_p[i]:.2f})" if flag[i] else None
            for i in range(len(y))]
        summary = {"model": outputs.source, "oof_accuracy": round(outputs.accuracy, 4),
                   "estimated_noise": round(float(flag.mean()), 4) if len(flag) else 0.0}
        suggested = np.array([str(data.classes[p]) for p in predicted], dtype=object)
        return ScreenResult(self.name, given_p.copy(), flag, reason, summary, {"label_predicted": suggested})


def find_label_issues(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """A boolean mask of likely label errors (confident learning, prune by noise rate)."""
    n, c = probs.shape
    counts = np.bincount(labels, minlength=c)
    thresholds = np.array([probs[labels == j, j].mean() if counts[j] else 1.0 for j in range(c)])
    above = probs >= thresholds[None, :] - 1e-6
    masked = np.where(above, probs, -1.0)
    likely = masked.argmax(axis=1)
    confident = above.any(axis=1)
    joint = np.zeros((c, c))
    np.add.at(joint, (labels[confident], likely[confident]), 1.0)
    row = joint.sum(axis=1, keepdims=True)
    calibrated = joint / np.where(row > 0, row, 1.0) * counts[:, None]
    remove = np.rint(calibrated).astype(np.int64)
    flag = np.zeros(n, bool)
    for given in range(c):
        members = np.flatnonzero(labels == given)
        for true in range(c):
            if true == given or remove[given, true] == 0 or len(members) == 0:
                continue
            margin = probs[members, true] - probs[members, given]
            top = members[np.argsort(-margin, kind="stable")[:remove[given, true]]]
            flag[top] = True
    flag &= probs.argmax(axis=1) != labels
    return flag
