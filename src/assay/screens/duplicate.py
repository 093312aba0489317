"""``duplicate``: exact copies (the same content) and near copies (close in feature space; MinHash for text).

Copies form clusters; in each cluster the first sample (in the data's order, so the accepted data before a
new batch) is kept and every other member is flagged with the sample it copies.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa

from assay.screens._base import Param, Screen, ScreenResult
from assay.screens._neighbors import neighbors, typical_distance
from assay.screens.data import ScreenData, content_groups
from assay.screens.minhash import similar_texts


class DuplicateScreen(Screen):
    name = "duplicate"
    description = "exact and near copies of other samples, in clusters"
    extra_columns: ClassVar = {"duplicate_cluster": pa.int64(), "duplicate_of": pa.string()}
    params: ClassVar = {
        "near": Param(float, 0.1, 0.0, 1.0, doc="near copy: closer than this share of the typical distance "
                                                "between a sample and its nearest neighbour (0 = exact only)"),
        "neighbors": Param(int, 5, 1, 100, doc="neighbours searched for near copies of each sample"),
        "text_similarity": Param(float, 0.8, 0.0, 1.0, doc="MinHash Jaccard similarity that makes two texts "
                                                           "near copies"),
    }
    near: float
    neighbors: int
    text_similarity: float

    def _score(self, data: ScreenData) -> ScreenResult:
        n = data.n
        digests = data.digests if data.digests is not None else content_groups(data.features)  # set by ScreenData
        exact = _same_group_edges(digests)
        near_edges: list[tuple[np.ndarray, np.ndarray]] = []
        nearest = np.full(n, np.inf)
        typical = 1.0
        if n > 1:
            dist, idx = neighbors(data, self.neighbors)
            typical = typical_distance(dist)
            nearest = dist[:, 0] / typical
            if self.near > 0:
                close = dist < self.near * typical
                rows = np.repeat(np.arange(n), dist.shape[1])[close.ravel()]
                near_edges.append((rows, idx.ravel()[close.ravel()]))
            if data.texts is not None and self.text_similarity < 1.0:
                near_edges.append(similar_texts(data.texts, self.text_similarity))
        cluster, flag, copies, is_exact = _clusters(n, exact, near_edges, digests)
        reason: list[str | None] = [None] * n
        for i in np.flatnonzero(flag):
            what = "exact copy" if is_exact[i] else f"near copy (distance {nearest[i]:.3f} x typical)" \
                if nearest[i] < self.near else "near copy (similar text, MinHash)"
            reason[i] = f"{what} of sample {data.ids[copies[i]][:12]}"
        score = np.where(flag, np.where(is_exact, 0.0, 0.5 * np.minimum(nearest / max(self.near, 1e-9), 1.0)),
                         0.5 + 0.5 * np.minimum(nearest, 1.0))
        sizes = np.bincount(cluster[cluster >= 0]) if (cluster >= 0).any() else np.zeros(0, np.int64)
        summary = {"exact_copies": int((flag & is_exact).sum()), "near_copies": int((flag & ~is_exact).sum()),
                   "clusters": int((sizes > 1).sum()), "largest_cluster": int(sizes.max()) if len(sizes) else 0,
                   "typical_distance": typical}
        of = np.array([data.ids[c] if f else "" for c, f in zip(copies, flag, strict=True)], dtype=object)
        return ScreenResult(self.name, np.clip(score, 0, 1), flag, reason, summary,
                            {"duplicate_cluster": cluster, "duplicate_of": of})


def _same_group_edges(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges linking each sample to the first sample with the same content."""
    _, first = np.unique(groups, return_index=True)
    inverse = np.searchsorted(np.unique(groups), groups)
    anchor = first[inverse]
    keep = anchor != np.arange(len(groups))
    return np.flatnonzero(keep), anchor[keep]


def _clusters(n: int, exact: tuple[np.ndarray, np.ndarray], near: list[tuple[np.ndarray, np.ndarray]],
              groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cluster ids (-1: alone), flags (all members but the first), the kept sample each copies, exactness."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows = np.concatenate([exact[0], *(e[0] for e in near)]).astype(np.int64)
    cols = np.concatenate([exact[1], *(e[1] for e in near)]).astype(np.int64)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp, minlength=comp.max() + 1 if n else 0)
    first = np.full(len(sizes), n, np.int64)
    np.minimum.at(first, comp, np.arange(n))
    keeper = first[comp]
    in_cluster = sizes[comp] > 1
    flag = in_cluster & (keeper != np.arange(n))
    _, dense = np.unique(comp[in_cluster], return_inverse=True)
    cluster = np.full(n, -1, np.int64)
    cluster[in_cluster] = dense
    is_exact = flag & (groups == groups[keeper])
    return cluster, flag, keeper, is_exact
