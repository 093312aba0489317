"""``poison``: signs of backdoor and label-flip poisoning in learned representations, per class.

Representations are the hidden layer of the model fitted for ``label_issue`` (or the features, with
``representation: features``). Within each class, two detectors look for a small group that the model
learned apart from the rest:

- spectral signatures (Tran et al., 2018): the squared projection of each centred representation on the
  class's top singular vector, as a robust z-score;
- activation clustering (Chen et al., 2018): the representations reduced to a few principal components and
  split in two by k-means; the smaller cluster is suspicious when it holds less than ``max_share`` of the
  class and the split is clear (silhouette at least ``min_silhouette``).

A sample is flagged when both agree (in the small cluster and spectral z above ``spectral_z``), or when
the spectral score alone is extreme (above twice ``spectral_z``).
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
        "spectral_z": Param(float, 3.0, 0.5, 100.0, doc="robust z of the spectral score that counts"),
        "max_share": Param(float, 0.35, 0.01, 0.5, doc="largest share of a class a poisoned cluster may hold"),
        "min_silhouette": Param(float, 0.1, -1.0, 1.0, doc="how clear the two-way split must be"),
        "components": Param(int, 10, 2, 100, doc="principal components for activation clustering"),
        "folds": Param(int, 5, 2, 20, doc="folds of the label model (shared with label_issue)"),
        "seed": Param(int, 0, 0, None),
    }
    representation: str
    spectral_z: float
    max_share: float
    min_silhouette: float
    components: int
    folds: int
    seed: int

    def _score(self, data: ScreenData) -> ScreenResult:
        y = data.require_labels(self.name, min_per_class=2)
        reps = (model_outputs(data, folds=self.folds, seed=self.seed).hidden if self.representation == "model"
                else data.features)
        z = np.zeros(data.n)
        small = np.zeros(data.n, bool)
        skipped = []
        for c in np.unique(y):
            members = np.flatnonzero(y == c)
            if len(members) < MIN_CLASS:
                skipped.append(data.classes[c])
                continue
            r = reps[members].astype(np.float64)
            z[members] = _spectral(r)
            small[members] = self._small_cluster(r)
        flag = (small & (z > self.spectral_z)) | (z > 2 * self.spectral_z)
        reason: list[str | None] = [
            f"apart from the rest of class {data.classes[y[i]]!r} in the learned representation (spectral "
            f"z {z[i]:.1f}{', in a small separate cluster' if small[i] else ''})" if flag[i] else None
            for i in range(data.n)]
        score = 1.0 / (1.0 + np.maximum(z, 0.0) / self.spectral_z) * np.where(small, 0.75, 1.0)
        score = np.where(flag, np.minimum(score, 0.49), np.maximum(score, 0.5))
        summary = {"classes_skipped": [str(c) for c in skipped], "small_clusters": int(small.sum())}
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
    centred = r - r.mean(axis=0)
    if not centred.any():
        return np.zeros(len(r))
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    s = (centred @ vt[0]) ** 2
    median = float(np.median(s))
    spread = 1.4826 * float(np.median(np.abs(s - median))) or float(s.std()) or 1.0
    return np.asarray((s - median) / spread)
