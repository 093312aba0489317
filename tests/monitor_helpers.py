"""A repository whose model ``digits`` (trained on ``digits-train@v1``, evaluated on ``digits-test@v1``) has
served and logged requests: the fixture the monitor tests build on."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
from starlette.testclient import TestClient

import assay
from assay.models import register
from assay.models.onnx_export import export_onnx
from assay.serve import create_app

FEATURES = [f"p{j}" for j in range(64)]


def digits_table() -> pa.Table:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    cols = {"id": pa.array(np.arange(len(y)), pa.int64())}
    cols.update({f: pa.array(x[:, j].astype(np.float32)) for j, f in enumerate(FEATURES)})
    cols["label"] = pa.array(y.astype(np.int64))
    return pa.table(cols)


def make_repo(folder: Path) -> Path:
    """Model ``digits`` version 1 with lineage to ``digits-train@v1`` and ``digits-test@v1``."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    table = digits_table()
    train, test = table.slice(0, 1200), table.slice(1200)
    repo = assay.init(folder)
    repo.add("digits-train", train, key=["id"])
    repo.add("digits-test", test, key=["id"])
    repo.commit("digits split for training and evaluation")
    repo.tag("v1")
    x = np.stack([train.column(f).to_numpy() for f in FEATURES], axis=1)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # ConvergenceWarning: a few iterations are enough here
        model = LogisticRegression(max_iter=60).fit(x, train.column("label").to_numpy())
    onnx = export_onnx(model, sample_inputs=x[:4]).onnx
    register(repo, "digits", onnx, train="digits-train@v1", eval="digits-test@v1", label="label")
    repo.close()
    return folder


def serve(folder: Path, rows: np.ndarray) -> list[str]:
    """Send ``rows`` (n x 64) to the model in batches of 50; the request ids, in order; the log is flushed."""
    ids: list[str] = []
    with TestClient(create_app(folder, "digits", auth=False, flush_rows=10_000, flush_seconds=3600)) as c:
        for start in range(0, len(rows), 50):
            body = [{"X": r.tolist()} for r in rows[start:start + 50]]
            r = c.post("/v1/models/digits/predict", json=body)
            assert r.status_code == 200, r.text
            rid = r.headers.get("x-request-id") or r.json().get("request_id")
            ids += [f"{rid}/{i}" for i in range(len(body))]
    return ids
