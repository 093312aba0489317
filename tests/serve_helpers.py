"""A temporary repository holding a small digits model (logistic regression, exported to ONNX) for serve tests."""

from __future__ import annotations

import socket
import warnings
from pathlib import Path

import numpy as np

import assay
from assay.models import register
from assay.models.onnx_export import export_onnx


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x.astype(np.float32), y


def make_repo(folder: Path) -> Path:
    """A repository with model ``digits`` (version 1; alias ``champion``) and ``other`` (for key tests)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    x, y = digits()
    repo = assay.init(folder)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # ConvergenceWarning: a few iterations are enough here
        model = LogisticRegression(max_iter=40).fit(x[:600], y[:600])
    onnx = export_onnx(model, sample_inputs=x[:4]).onnx
    register(repo, "digits", onnx)
    register(repo, "other", onnx)
    repo.set_model_alias("digits", 1, "champion")
    repo.close()
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
