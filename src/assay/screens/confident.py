"""Confident learning (Northcutt et al., 2021): which given labels out-of-fold probabilities contradict."""

from __future__ import annotations

import numpy as np

SMOOTHING = 1.0  # samples added to each off-diagonal cell of the joint before the noise rates are read off it


def confident_joint(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The calibrated confident joint: ``c x c`` counts of (given label, likely true label).

    Per class, the threshold is the mean probability of that class over the samples labelled with it; a sample
    counts under the class of highest probability among those that reach their threshold, and each row is
    scaled to the number of samples with that given label.
    """
    c = probs.shape[1]
    counts = np.bincount(labels, minlength=c)
    thresholds = np.array([probs[labels == j, j].mean() if counts[j] else 1.0 for j in range(c)])
    above = probs >= thresholds[None, :] - 1e-6
    likely = np.where(above, probs, -1.0).argmax(axis=1)
    confident = above.any(axis=1)
    joint = np.zeros((c, c))
    np.add.at(joint, (labels[confident], likely[confident]), 1.0)
    row = joint.sum(axis=1, keepdims=True)
    return np.asarray(joint / np.where(row > 0, row, 1.0) * counts[:, None])


def label_wrong_probability(labels: np.ndarray, probs: np.ndarray, smoothing: float = SMOOTHING) -> np.ndarray:
    """For each sample, the probability that its given label is wrong, given its features and the label noise.

    The noise rates ``P(given g | true j)`` are read off the confident joint (its columns normalised, after
    ``smoothing`` samples are added to every off-diagonal cell so that a pair the joint saw no error between
    is unlikely rather than impossible). With the out-of-fold probabilities standing for ``P(true j | x)``, the
    posterior of the true label is ``P(j | x, given g) ~ P(j | x) P(g | j)``; the label is wrong with one minus
    that posterior's value at ``g``. Where a class is often mislabelled as another, a disagreement between the
    two is believed sooner; where labels are rarely wrong, the model must contradict them more firmly.
    """
    n, c = probs.shape
    joint = confident_joint(labels, probs) + smoothing * (1.0 - np.eye(c))
    noise = joint / np.maximum(joint.sum(axis=0, keepdims=True), 1e-12)  # noise[g, j] = P(given g | true j)
    posterior = probs * noise[labels, :]
    posterior /= np.maximum(posterior.sum(axis=1, keepdims=True), 1e-300)
    return np.asarray(1.0 - posterior[np.arange(n), labels])


def find_label_issues(labels: np.ndarray, probs: np.ndarray, method: str = "posterior") -> np.ndarray:
    """A boolean mask of likely label errors; a sample whose given label is the model's top prediction is
    never flagged.

    ``posterior`` (the default): samples whose given label is more likely wrong than right
    (``label_wrong_probability`` above 0.5). ``prune``: confident learning's prune by noise rate, for each
    given class as many samples as the calibrated confident joint puts off its diagonal, those with the
    lowest probability of their given label (at least one sample of the class is kept).
    """
    if method == "posterior":
        flag = label_wrong_probability(labels, probs) > 0.5
    elif method == "prune":
        flag = _prune_by_noise_rate(labels, probs)
    else:
        raise ValueError(f"unknown method {method!r}: 'posterior' or 'prune'")
    return np.asarray(flag & (probs.argmax(axis=1) != labels))


def _prune_by_noise_rate(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    n, c = probs.shape
    calibrated = np.rint(confident_joint(labels, probs)).astype(np.int64)
    flag = np.zeros(n, bool)
    for given in range(c):
        members = np.flatnonzero(labels == given)
        off = int(calibrated[given].sum() - calibrated[given, given])
        remove = min(off, max(len(members) - 1, 0))
        if remove > 0:
            flag[members[np.argsort(probs[members, given], kind="stable")[:remove]]] = True
    return flag
