"""``label_issue``: confident learning (Northcutt et al., 2021) on out-of-fold predicted probabilities.

Per class, the threshold is the mean probability the model gives that class over the samples labelled
with it. Samples whose probability for some other class reaches that class's threshold count in the
confident joint (given label x likely true label), calibrated to the class sizes. The joint's columns give
the noise rates (how often a sample of class j is labelled g; one sample added to every off-diagonal cell),
and with them the probability that a sample's given label is wrong, given its out-of-fold probabilities
(Bayes' rule: the true label's posterior is P(j | x) P(g | j), normalised). A sample is flagged when its
label is more likely wrong than right and is not the model's top prediction. Where a class is often
mislabelled as a confusable one, their disagreements are believed sooner; where labels are rarely wrong, the
model must contradict them more firmly. Prune by noise rate (as many flags per class as the joint puts off
its diagonal, cleanlab's default) over-flagged ambiguous samples under class-conditional noise: on a
generated set of overlapping Gaussian classes with 20% of each class flipped to a confusable partner, its
precision was 0.87 against 0.93 for the posterior, at the same recall (benchmarks/bench_screens.py). The
score is the probability that the given label is right.

The probabilities come from the user (``pred_probs`` in the features) or from assay's default model.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa

from assay.screens._base import Param, Screen, ScreenResult
from assay.screens.confident import find_label_issues, label_wrong_probability
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
        flag, wrong = find_label_issues(y, probs), label_wrong_probability(y, probs)
        predicted = probs.argmax(axis=1)
        given_p = probs[np.arange(len(y)), y]
        reason: list[str | None] = [
            f"labelled {data.classes[y[i]]!r} but the model predicts {data.classes[predicted[i]]!r} "
            f"(p={probs[i, predicted[i]]:.2f}; p of the given label {given_p[i]:.2f}; the label is wrong with "
            f"probability {wrong[i]:.2f})" if flag[i] else None
            for i in range(len(y))]
        summary = {"model": outputs.source, "oof_accuracy": round(outputs.accuracy, 4),
                   "estimated_noise": round(float(flag.mean()), 4) if len(flag) else 0.0}
        suggested = np.array([str(data.classes[p]) for p in predicted], dtype=object)
        return ScreenResult(self.name, 1.0 - wrong, flag, reason, summary, {"label_predicted": suggested})
