"""``poison``: signs of backdoor and label-flip poisoning in learned representations, per class.

Representations are the hidden layers of the label model fitted on all samples and of a lighter-regularised
one fitted without the likely label errors (see ``assay.screens.model``), or the features (``representation:
features``); each is examined, and what either flags is flagged. Within each class, two detectors look for
a small group that the model learned apart from the rest:

- activation clustering (Chen et al., 2018): the representations reduced to ``components`` principal
  components and split in two by k-means; the class is suspicious when the smaller cluster holds less than
  ``max_share`` of it and the split is clear (silhouette at least ``min_silhouette``);
- spectral signatures (Tran et al., 2018): the squared projection of each centred representation on the
  class's top singular vector.

In a suspicious class, the small cluster is flagged, and so are the ``spectral_factor`` x (its size)
samples with the highest spectral scores. Classes where the activations do not split cleanly are left
alone, which keeps clean data nearly unflagged.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa

from assay.screens._base import Param, Screen, ScreenResult
from assay.screens.data import ScreenData
from assay.screens.model import model_outputs

MIN_CLASS = 20


class PoisonScreen(Screen):
    name = "poison"
    description = "backdoor and label-flip poisoning: spectral signatures and activation clustering per class"
    extra_columns: ClassVar = {"poison_spectral_z": pa.float64()}
    needs_labels = True
    params: ClassVar = {
        "representation": Param(str, "model", choices=("model", "features"),
                                doc="model: hidden layer of the label model; features: the features"),
        "max_share": Param(float, 0.35, 0.01, 0.5, doc="largest share of a class a poisoned cluster may hold"),
        "min_silhouette": Param(float, 0.5, -1.0, 1.0, doc="how clear the two-way split must be"),
        "spectral_factor": Param(float, 1.0, 0.0, 10.0, doc="also flag this many times the cluster's size of "
                                                          "the class's top spectral scores"),
        "components": Param(int, 10, 2, 100, doc="principal components for activation clustering"),
        "folds": Param(int, 5, 2, 20, doc="folds of the label model (shared with label_issue)"),
        "seed": Param(int, 0, 0, None),
    }
    representation: str
    max_share: float
    min_silhouette: float
    spectral_factor: float
    components: int
    folds: int
    seed: int

    def _score(self, data: ScreenData) -> ScreenResult:
        y = data.require_labels(self.name, min_per_class=2)
        outputs = model_outputs(data, folds=self.folds, seed=self.seed) if self.representation == "model" else None
        views = [(outputs.hidden, np.ones(data.n, bool))] if outputs is not None else [(data.features,
                                                                                      np.ones(data.n, bool))]
        if outputs is not None and outputs.hidden_clean is not None and outputs.clean is not None:
            views.append((outputs.hidden_clean, outputs.clean))
        z = np.zeros(data.n)
        flag = np.zeros(data.n, bool)
        small = np.zeros(data.n, bool)
        skipped: set[str] = set()
        suspicious: set[str] = set()
        for view, (reps, included) in enumerate(views):
            for c in np.unique(y):
                members = np.flatnonzero((y == c) & included)
                if len(members) < MIN_CLASS:
                    skipped.add(str(data.classes[c]))
                    continue
                r = reps[members].astype(np.float64)
                spectral = _spectral(r)
                if view == 0:
                    z[members] = _robust_z(spectral)
                minor = self._small_cluster(r)
                if not minor.any():
                    continue
                suspicious.add(str(data.classes[c]))
                small[members[minor]] = True
                top = int(np.ceil(self.spectral_factor * minor.sum()))
                flag[members[minor]] = True
                flag[members[np.argsort(-spectral, kind="stable")[:top]]] = True
        reason: list[str | None] = [
            f"apart from the rest of class {data.classes[y[i]]!r} in the learned representation ("
            + ("in a small separate cluster, " if small[i] else "") + f"spectral z {z[i]:.1f})" if flag[i] else None
            for i in range(data.n)]
        score = np.where(flag, 0.49 / (1.0 + np.maximum(z, 0.0) / 10.0), 1.0 - 0.5 * np.clip(z, 0, 10) / 10.0)
        summary = {"suspicious_classes": sorted(suspicious), "classes_skipped": sorted(skipped),
                   "representations": len(views)}
        return ScreenResult(self.name, score, flag, reason, summary, {"poison_spectral_z": z})

    def _small_cluster(self, r: np.ndarray) -> np.ndarray:
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA
        from sklearn.metrics import silhouette_score

        k = min(self.components, r.shape[1], len(r) - 1)
        if k < 1 or np.allclose(r, r[0]):
            return np.zeros(len(r), bool)
        reduced = PCA(n_components=k, random_state=self.seed).fit_transform(r)
        labels = KMeans(2, n_init=10, random_state=self.seed).fit_predict(reduced)
        sizes = np.bincount(labels, minlength=2)
        minor = int(sizes.argmin())
        if sizes.min() == 0 or sizes[minor] / len(r) >= self.max_share:
            return np.zeros(len(r), bool)
        if silhouette_score(reduced, labels, random_state=self.seed) < self.min_silhouette:
            return np.zeros(len(r), bool)
        return np.asarray(labels == minor)


def _spectral(r: np.ndarray) -> np.ndarray:
    """Squared projections of the centred rows on their top singular vector."""
    centred = r - r.mean(axis=0)
    if not centred.any():
        return np.zeros(len(r))
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return np.asarray((centred @ vt[0]) ** 2)


def _robust_z(s: np.ndarray) -> np.ndarray:
    median = float(np.median(s))
    spread = 1.4826 * float(np.median(np.abs(s - median))) or float(s.std()) or 1.0
    return np.asarray((s - median) / spread)
