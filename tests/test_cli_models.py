"""``assay model``: a session through the command line, and its errors."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result
from typer.testing import CliRunner

import assay
from assay.cli.app import app
from assay.errors import InputError, ModelFileError, ModelNotFound, RefNotFound, SignatureMismatch, UnsupportedModel
from tests.test_models_registry import FEATURES, _fit_on, digits_table, tiny_onnx


def _assay(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(assay.__file__).parents[1])}
    return subprocess.run([sys.executable, "-m", "assay.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env)


runner = CliRunner()


def _run(cwd: Path, *args: str) -> Result:
    return runner.invoke(app, ["-C", str(cwd), *args])


def _ok(cwd: Path, *args: str) -> str:
    r = _run(cwd, *args)
    assert r.exit_code == 0, f"{args}: {r.output}\n{r.exception!r}"
    return r.output


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # model files are named relative to the working folder
    t = digits_table()
    with assay.init(tmp_path) as repo:
        repo.add("train", t.slice(0, 1000), key=["id"])
        repo.add("test", t.slice(1200), key=["id"])
        repo.add("nolabel", t.slice(1200).drop_columns(["label"]), key=["id"])
        repo.commit("digits")
        repo.tag("v1")
        repo.add("train", t.slice(1000, 200), key=["id"], mode="append")
        repo.commit("more")
        repo.tag("v2")
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(_fit_on(t, FEATURES)))
    (tmp_path / "model.onnx").write_bytes(tiny_onnx())
    return tmp_path


def test_model_session(folder: Path) -> None:
    out = _ok(folder, "model", "register", "digits", "model.pkl", "--train", "train@v1", "--eval", "test@v1",
              "--metrics", '{"accuracy": 0.91}', "--params", '{"C": 1.0}')
    assert "registered digits@1 (sklearn" in out and "train@v1" in out
    _ok(folder, "model", "register", "digits", "model.pkl", "--train", "train@v2", "--metrics", '{"accuracy": 0.93}')
    _ok(folder, "model", "register", "digits-onnx", "model.onnx", "--train", "train@v1", "--parent", "digits@1")
    assert "digits@champion -> version 2" in _ok(folder, "model", "alias", "digits", "2", "champion")
    listed = json.loads(_ok(folder, "model", "list", "--json"))
    assert [(m["name"], m["versions"], m["aliases"]) for m in listed] == [("digits", 2, {"champion": 2}),
                                                                          ("digits-onnx", 1, {})]
    shown = _ok(folder, "model", "show", "digits@champion")
    assert "digits@2 of 2 (aliases: champion)" in shown and "train@v2" in shown and "X: float64[Nx64]" in shown
    record = json.loads(_ok(folder, "model", "show", "digits@1", "--json"))
    assert record["lineage"]["train"]["rows"] == 1000 and record["metrics"] == {"accuracy": 0.91}
    diff = _ok(folder, "model", "diff", "digits@1", "digits@2")
    assert "metric accuracy: 0.91 -> 0.93 (+0.02)" in diff and "+200 -0 ~0 samples" in diff
    lineage = _ok(folder, "model", "lineage", "digits@1")
    assert "-> digits-onnx@1" in lineage and "data  train: train@v1" in lineage
    found = json.loads(_ok(folder, "model", "trained-on", "train@v1", "--json"))
    assert {(t["model"], t["match"]) for t in found} == {("digits@1", "exact"), ("digits@2", "contains"),
                                                         ("digits-onnx@1", "exact")}
    assert "digits@2" in _ok(folder, "model", "trained-on", "train@v2", "--sample", "1100")
    assert "digits@1" not in _ok(folder, "model", "trained-on", "train@v2", "--sample", "1100")


def test_model_errors(folder: Path) -> None:
    (folder / "bad.onnx").write_bytes(tiny_onnx()[:40])
    np.save(folder / "x.npy", np.zeros((1, 64)))
    cases = [
        (["register", "m", "bad.onnx"], ModelFileError, "not a valid ONNX model"),
        (["register", "m", "notes.txt"], UnsupportedModel, "suffix '.txt'"),
        (["register", "m", "model.pkl", "--train", "train@v9"], RefNotFound, "unknown revision 'v9'"),
        (["register", "m", "model.pkl", "--train", "nope@v1"], RefNotFound, "no dataset 'nope'"),
        (["register", "m", "model.pkl", "--train", "train@v1", "--eval", "nolabel@v1"], SignatureMismatch,
         "no label column"),
        (["register", "m", "model.pkl", "--metrics", "[1"], InputError, "--metrics is not JSON"),
        (["alias", "m", "1", "champion"], ModelNotFound, "no model 'm'"),
    ]
    for args, error, message in cases:
        r = _run(folder, "model", *args)
        assert isinstance(r.exception, error) and message in str(r.exception), (args, r.exception)
    assert json.loads(_ok(folder, "model", "list", "--json")) == []
    r = _assay(folder, "model", "show", "m")  # through the error boundary: one line, exit code 1
    assert r.returncode == 1 and r.stderr.startswith("error: no model 'm'"), r.stderr
