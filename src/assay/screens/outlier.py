"""``outlier``: samples far from the others in feature space (k-nearest-neighbour distance or local density).

The mean distance to the ``neighbors`` nearest samples (or the local outlier factor) is turned into a
robust z-score (median and MAD over all samples); a sample is flagged above ``threshold``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa

from assay.errors import ScreenError
from assay.screens._base import Param, Screen, ScreenResult
from assay.screens._neighbors import neighbors
from assay.screens.data import ScreenData

MIN_SAMPLES = 10


class OutlierScreen(Screen):
    name = "outlier"
    description = "samples far from the others in feature space"
    extra_columns: ClassVar = {"outlier_z": pa.float64()}
    params: ClassVar = {
        "method": Param(str, "knn", choices=("knn", "lof"), doc="knn: mean distance to neighbours; lof: local "
                                                                 "outlier factor (density)"),
        "neighbors": Param(int, 10, 1, 200, doc="neighbours per sample"),
        "threshold": Param(float, 6.0, 0.5, 100.0, doc="robust z-score above which a sample is flagged"),
    }
    method: str
    neighbors: int
    threshold: float

    def _score(self, data: ScreenData) -> ScreenResult:
        if data.n < MIN_SAMPLES:
            raise ScreenError(f"screen 'outlier' needs at least {MIN_SAMPLES} samples to know what is typical; "
                              f"the data has {data.n}")
        k = min(self.neighbors, data.n - 1)
        if self.method == "lof":
            from sklearn.neighbors import LocalOutlierFactor

            lof = LocalOutlierFactor(n_neighbors=k).fit(data.features)
            raw = -lof.negative_outlier_factor_
        else:
            dist, _ = neighbors(data, k)
            raw = dist.mean(axis=1)
        median = float(np.median(raw))
        spread = 1.4826 * float(np.median(np.abs(raw - median))) or float(raw.std()) or 1.0
        z = (raw - median) / spread
        flag = z > self.threshold
        what = "local outlier factor" if self.method == "lof" else f"mean distance to {k} nearest samples"
        reason: list[str | None] = [f"far from the other samples: {what} {raw[i]:.3g} (typical {median:.3g}, "
                                    f"robust z {z[i]:.1f})" if flag[i] else None for i in range(data.n)]
        score = 1.0 / (1.0 + np.maximum(z, 0.0) / self.threshold)
        summary = {"method": self.method, "typical": median, "max_z": float(z.max())}
        return ScreenResult(self.name, score, flag, reason, summary, {"outlier_z": z})
