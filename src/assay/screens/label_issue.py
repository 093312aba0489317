"""``label_issue``: confident learning (Northcutt et al., 2021) on out-of-fold predicted probabilities.

Per class, the threshold is the mean probability the model gives that class over the samples labelled
with it. Samples whose probability for some other class reaches that class's threshold count in the
confident joint (given label x likely true label), calibrated to the class sizes. For each given label,
as many samples as the joint puts off its diagonal are flagged (prune by noise rate), ranked by the
probability of their given label (self-confidence; cleanlab's default ranks by the margin to the other
class, which found fewer flipped digits in our benchmark). A sample whose given label is also the model's
top prediction is never flagged. The score is the probability of the given label.

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
    """A boolean mask of likely label errors (confident learning, prune by noise rate).

    For each given class, as many samples as the calibrated confident joint puts off its diagonal are
    flagged, those with the lowest probability of their given label (at least one sample of the class is
    kept); a sample whose given label is the model's top prediction is never flagged.
    """
    n, c = probs.shape
    counts = np.bincount(labels, minlength=c)
    thresholds = np.array([probs[labels == j, j].mean() if counts[j] else 1.0 for j in range(c)])
    above = probs >= thresholds[None, :] - 1e-6
    likely = np.where(above, probs, -1.0).argmax(axis=1)
    confident = above.any(axis=1)
    joint = np.zeros((c, c))
    np.add.at(joint, (labels[confident], likely[confident]), 1.0)
    row = joint.sum(axis=1, keepdims=True)
    calibrated = np.rint(joint / np.where(row > 0, row, 1.0) * counts[:, None]).astype(np.int64)
    flag = np.zeros(n, bool)
    for given in range(c):
        members = np.flatnonzero(labels == given)
        off = int(calibrated[given].sum() - calibrated[given, given])
        remove = min(off, max(len(members) - 1, 0))
        if remove > 0:
            flag[members[np.argsort(probs[members, given], kind="stable")[:remove]]] = True
    flag &= probs.argmax(axis=1) != labels
    return flag
