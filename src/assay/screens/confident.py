"""Confident learning (Northcutt et al., 2021): which given labels out-of-fold probabilities contradict."""

from __future__ import annotations

import numpy as np


def find_label_issues(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """A boolean mask of likely label errors (confident learning, prune by noise rate).

    For each given class, as many samples as the calibrated confident joint puts off its diagonal are
    flagged, those with the lowest probability of their given label (at least one sample of the class is
    kept); a sample whose given label is the model's top prediction is never flagged.
    """
    n, c = probs.shape
    counts = np.bincount(labels, minlength=c)
    thresholds = np.array([probs[labels == j, j].mean() if counts[j] else 1.0 for j in range(c)])
    above = probs >= thresholds[None, :] - 1e-6
    likely = np.where(above, probs, -1.0).argmax(axis=1)
    confident = above.any(axis=1)
    joint = np.zeros((c, c))
    np.add.at(joint, (labels[confident], likely[confident]), 1.0)
    row = joint.sum(axis=1, keepdims=True)
    calibrated = np.rint(joint / np.where(row > 0, row, 1.0) * counts[:, None]).astype(np.int64)
    flag = np.zeros(n, bool)
    for given in range(c):
        members = np.flatnonzero(labels == given)
        off = int(calibrated[given].sum() - calibrated[given, given])
        remove = min(off, max(len(members) - 1, 0))
        if remove > 0:
            flag[members[np.argsort(probs[members, given], kind="stable")[:remove]]] = True
    flag &= probs.argmax(axis=1) != labels
    return flag
