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
from assay.screens.confident import find_label_issues
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
