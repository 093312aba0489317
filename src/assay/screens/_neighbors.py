"""Nearest neighbours in feature space, shared by the duplicate and outlier screens (cached per data)."""

from __future__ import annotations

import numpy as np

from assay.screens.data import ScreenData


def neighbors(data: ScreenData, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices of the ``k`` nearest other samples of each sample (n x k, nearest first)."""
    k = max(1, min(k, data.n - 1))
    cached = data.cache.get("neighbors")
    if cached is None or cached[0].shape[1] < k:
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=k + 1).fit(data.features)
        dist, idx = nn.kneighbors(data.features)
        dist, idx = _drop_self(dist, idx)
        data.cache["neighbors"] = cached = (dist, idx)
    return cached[0][:, :k], cached[1][:, :k]


def _drop_self(dist: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each sample from its own neighbour list (it is not always first when copies tie at 0)."""
    n = len(idx)
    is_self = idx == np.arange(n)[:, None]
    no_self = ~is_self.any(axis=1)
    is_self[no_self, -1] = True  # the sample itself fell off the list: drop the farthest instead
    keep = ~is_self
    width = idx.shape[1] - 1
    return dist[keep].reshape(n, width), idx[keep].reshape(n, width)


def typical_distance(dist: np.ndarray) -> float:
    """The median distance to the nearest other sample, over samples that are not exact copies."""
    first = dist[:, 0]
    positive = first[first > 0]
    return float(np.median(positive)) if len(positive) else 1.0
