"""`assay serve keys` and `assay predictions label` through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
from starlette.testclient import TestClient

import assay
from assay.serve import create_app
from serve_helpers import digits, make_repo


def _assay(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assay.cli", "-C", str(folder), *args], capture_output=True,
                          text=True, timeout=120)


def test_keys_create_list_revoke_and_labels_join_by_request_id(tmp_path: Path) -> None:
    folder = make_repo(tmp_path / "repo")
    made = _assay(folder, "serve", "keys", "create", "digits", "--name", "app")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("assay_") and "shown once" in made.stderr
    listed = _assay(folder, "serve", "keys", "list", "digits", "--json")
    assert [(k["name"], k["revoked"]) for k in json.loads(listed.stdout)] == [("app", None)]
    assert key not in listed.stdout
    again = _assay(folder, "serve", "keys", "create", "digits", "--name", "app")
    assert again.returncode == 1 and "already has a key named 'app'" in again.stderr
    x, y = digits()
    with TestClient(create_app(folder, "digits")) as c:
        ids = [c.post("/v1/models/digits/predict", json={"X": x[i].tolist()},
                      headers={"Authorization": f"Bearer {key}"}).json()["request_id"] for i in range(3)]
    assert _assay(folder, "serve", "keys", "revoke", "digits", "--name", "app").returncode == 0
    with TestClient(create_app(folder, "digits", log=False)) as c:
        assert c.post("/v1/models/digits/predict", json={"X": x[0].tolist()},
                      headers={"Authorization": f"Bearer {key}"}).status_code == 403
    labels = tmp_path / "labels.csv"
    pacsv.write_csv(pa.table({"rid": [*ids[:2], "nope"], "y": [int(y[0]), int(y[1]), 1]}), labels)
    done = _assay(folder, "predictions", "label", "digits", str(labels), "--id-column", "rid", "--label-column", "y",
                  "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["labelled"], result["matched"], result["unknown"]) == (2, 2, 1)
    with assay.Repo(folder) as repo:
        joined = repo.dataset("predictions.digits.labels").to_arrow().to_pylist()
        assert repo.fsck().ok
    assert sorted((r["request_id"], r["label"]) for r in joined) == sorted(zip(ids[:2], [int(y[0]), int(y[1])],
                                                                               strict=True))
    column = _assay(folder, "predictions", "label", "digits", str(labels), "--id-column", "rid")
    assert column.returncode == 1 and "has no column 'label'" in column.stderr and "--label-column" in column.stderr
    missing = _assay(folder, "predictions", "label", "other", str(labels), "--id-column", "rid", "--label-column", "y")
    assert missing.returncode == 1 and "no prediction log" in missing.stderr


def test_serving_a_model_that_is_not_onnx_says_how_to_export_it(tmp_path: Path) -> None:
    from sklearn.dummy import DummyClassifier

    folder = make_repo(tmp_path / "repo")
    x, y = digits()
    with assay.Repo(folder) as repo:
        repo.register_model("raw", DummyClassifier().fit(x[:10], y[:10]))
    r = _assay(folder, "serve", "raw", "--port", "1")
    assert r.returncode == 1 and "assay model export raw@1" in r.stderr
