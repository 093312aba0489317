"""Nearest neighbours in feature space, shared by the duplicate and outlier screens (cached per data).

With an engine on the data, the index is built here and the queries run as the engine's tasks, ``BLOCK_ROWS``
samples each (each query's answer does not depend on the others asked with it: the results are the same).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from assay.screens.data import ScreenData

BLOCK_ROWS = 16_384


def neighbors(data: ScreenData, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices of the ``k`` nearest other samples of each sample (n x k, nearest first)."""
    k = max(1, min(k, data.n - 1))
    cached = data.cache.get("neighbors")
    if cached is None or cached[0].shape[1] < k:
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=k + 1).fit(data.features)
        if data.engine is None or data.n <= BLOCK_ROWS:
            dist, idx = nn.kneighbors(data.features)
        else:
            blocks = [(i, min(i + BLOCK_ROWS, data.n)) for i in range(0, data.n, BLOCK_ROWS)]
            parts = list(data.engine.map(partial(_query, nn, data.features), blocks, stage="nearest neighbours"))
            dist, idx = np.vstack([d for d, _ in parts]), np.vstack([i for _, i in parts])
        dist, idx = _drop_self(dist, idx)
        data.cache["neighbors"] = cached = (dist, idx)
    return cached[0][:, :k], cached[1][:, :k]


def _query(nn: Any, features: np.ndarray, block: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    start, stop = block
    dist, idx = nn.kneighbors(features[start:stop])
    return dist, idx


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
