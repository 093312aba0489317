"""The nearest training samples of production samples, in one feature space built from the reference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay.monitor._slices import MAX_VALUES, floats, is_array, is_numeric


def embed(reference: pa.Table, rows: pa.Table, features: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The reference rows and ``rows`` in one feature space: numbers standardised by the reference (a constant
    column centred only; nulls at the mean), categories one-hot over the reference's values, long text through
    the screens' text features, images (arrays) as their pixels over the reference's spread."""
    from assay.monitor.profile import array_rows
    from assay.screens.features import FeatureSpec, _is_text, _text_features

    ref_blocks, row_blocks = [], []
    for f in features:
        r, x = reference.column(f), rows.column(f)
        if is_array(r.type):  # images: pixel space, centred and scaled by the reference's values
            rv, xv = array_rows(r, f), array_rows(x, f)
            mean = np.nanmean(rv, axis=0) if len(rv) else 0.0
            scale = float(np.nanstd(rv)) or 1.0 if len(rv) else 1.0
            ref_blocks.append(np.nan_to_num((rv - mean) / scale))
            row_blocks.append(np.nan_to_num((xv - mean) / scale))
        elif is_numeric(r.type) or pa.types.is_boolean(r.type):
            rv, xv = floats(r), floats(x)
            mean = float(np.nanmean(rv)) if np.isfinite(rv).any() else 0.0
            std = float(np.nanstd(rv)) if np.isfinite(rv).any() else 0.0
            scale = std if std > 0 else 1.0
            ref_blocks.append(np.nan_to_num((rv - mean) / scale).reshape(-1, 1))
            row_blocks.append(np.nan_to_num((xv - mean) / scale).reshape(-1, 1))
        elif _is_text(r):
            strings = [s or "" for s in r.to_pylist()] + [s or "" for s in x.to_pylist()]
            both = _text_features(strings, FeatureSpec())
            ref_blocks.append(both[:len(r)])
            row_blocks.append(both[len(r):])
        else:
            values = pc.unique(r.drop_null()).cast(pa.string())[:MAX_VALUES * 2]
            for side, blocks in ((r, ref_blocks), (x, row_blocks)):
                idx = np.asarray(pc.index_in(side.cast(pa.string()), value_set=values).fill_null(-1)
                                 .to_numpy(zero_copy_only=False), np.int64)
                hot = np.zeros((len(idx), len(values)))
                hot[np.flatnonzero(idx >= 0), idx[idx >= 0]] = 1.0
                blocks.append(hot)
    n_ref, n_rows = reference.num_rows, rows.num_rows
    return (np.hstack(ref_blocks) if ref_blocks else np.zeros((n_ref, 0)),
            np.hstack(row_blocks) if row_blocks else np.zeros((n_rows, 0)))


def neighbours_of(train: pa.Table, rows: pa.Table, features: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.neighbors import NearestNeighbors

    z_ref, z_rows = embed(train, rows, features)
    k = min(k, train.num_rows)
    if k == 0 or rows.num_rows == 0:
        return np.zeros((rows.num_rows, 0)), np.zeros((rows.num_rows, 0), np.int64)
    nn = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(z_ref)
    dist, idx = nn.kneighbors(z_rows)
    return dist, idx
