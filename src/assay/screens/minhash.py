"""MinHash over character shingles, with banded locality-sensitive hashing, for near-duplicate texts."""

from __future__ import annotations

import numpy as np

PRIME = (1 << 31) - 1
PERMUTATIONS = 64
BANDS = 16  # 16 bands of 4 rows: pairs with Jaccard >= ~0.6 become candidates with high probability


def signatures(texts: list[str], *, shingle: int = 5, seed: int = 0) -> np.ndarray:
    """One MinHash signature (PERMUTATIONS values) per text."""
    from sklearn.feature_extraction.text import HashingVectorizer

    shingles = HashingVectorizer(analyzer="char", ngram_range=(shingle, shingle), n_features=1 << 24,
                                 alternate_sign=False, norm=None, binary=True, lowercase=True)
    matrix = shingles.transform(texts).tocsr()
    rng = np.random.default_rng(seed)
    a = rng.integers(1, PRIME, PERMUTATIONS, dtype=np.int64)
    b = rng.integers(0, PRIME, PERMUTATIONS, dtype=np.int64)
    out = np.full((len(texts), PERMUTATIONS), PRIME, np.int64)
    for start in range(0, len(texts), 2048):
        block = matrix[start:start + 2048]
        if block.nnz == 0:
            continue
        hashed = (a[:, None] * block.indices[None, :].astype(np.int64) + b[:, None]) % PRIME
        filled = np.flatnonzero(np.diff(block.indptr))
        mins = np.minimum.reduceat(hashed, block.indptr[filled], axis=1)
        out[start + filled] = mins.T
    return out


def similar_texts(texts: list[str], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j), i > j, whose estimated Jaccard similarity of shingles is at least ``threshold``."""
    sig = signatures(texts)
    rows_per_band = PERMUTATIONS // BANDS
    left: list[int] = []
    right: list[int] = []
    seen: set[tuple[int, int]] = set()
    for band in range(BANDS):
        part = np.ascontiguousarray(sig[:, band * rows_per_band:(band + 1) * rows_per_band])
        keys = part.view(np.dtype((np.void, part.itemsize * rows_per_band))).ravel()
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        for s, e in zip(starts, np.r_[starts[1:], len(order)], strict=True):
            members = order[s:e]
            if len(members) < 2 or len(members) > 1000:
                continue
            for i in members[1:]:
                pair = (int(i), int(members[0]))
                if pair not in seen:
                    seen.add(pair)
                    if np.mean(sig[i] == sig[members[0]]) >= threshold and texts[i].strip():
                        left.append(pair[0])
                        right.append(pair[1])
    return np.array(left, np.int64), np.array(right, np.int64)
