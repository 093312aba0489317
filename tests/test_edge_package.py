"""Edge packages: the ONNX model, its signature and hashes, and a runner needing only onnxruntime and numpy."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import blake3
import numpy as np
import pytest

from assay.errors import InputError
from assay.models.onnx_export import export_onnx
from assay.models.package import package


@pytest.fixture(scope="module")
def model() -> tuple[Any, bytes, dict[str, Any], np.ndarray]:
    """A scaler + MLP pipeline on digits, its ONNX export (the scaler inside the graph) and held-out rows."""
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), MLPClassifier((16,), max_iter=40, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        pipe.fit(x[:1000], y[:1000])
    result = export_onnx(pipe, sample_inputs=x[:2])
    return pipe, result.onnx, result.signature(), x[1000:1020]


def _run(python: str, folder: Path, rows: np.ndarray, tmp: Path) -> dict[str, Any]:
    request = tmp / "input.json"
    request.write_text(json.dumps({"X": rows.tolist()}))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the package must not need assay
    done = subprocess.run([python, "predict.py", str(request)], cwd=folder, capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _same_as_original(pipe: Any, rows: np.ndarray, out: dict[str, Any]) -> None:
    assert out["label"] == pipe.predict(rows).tolist()
    np.testing.assert_allclose(np.array(out["probabilities"]), pipe.predict_proba(rows), atol=1e-5)


def test_folder_package_runs_and_matches_the_original(model: Any, tmp_path: Path) -> None:
    pipe, onnx_bytes, signature, rows = model
    result = package(onnx_bytes, signature, tmp_path / "pkg", name="digits-mlp", metadata={"version": 3})
    folder = tmp_path / "pkg"
    assert sorted(p.name for p in folder.iterdir()) == ["README.txt", "manifest.json", "model.onnx", "predict.py",
                                                        "signature.json"]
    manifest = json.loads((folder / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() == result.files[name]
        assert entry["blake3"] == blake3.blake3(data).hexdigest() and entry["size"] == len(data)
    assert manifest["metadata"] == {"version": 3} and manifest["format"] == 1
    assert json.loads((folder / "signature.json").read_text())["inputs"] == signature["inputs"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind
    _same_as_original(pipe, rows, _run(sys.executable, folder, rows, tmp_path))


def test_predict_is_importable(model: Any, tmp_path: Path) -> None:
    pipe, onnx_bytes, signature, rows = model
    package(onnx_bytes, signature, tmp_path / "pkg")
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from predict import predict; "
            "out = predict(json.loads(sys.argv[2])); sys.stdout.write(json.dumps({k: v.tolist() for k, v in "
            "out.items()}))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "pkg"), json.dumps(rows.tolist())],
                          capture_output=True, text=True, timeout=300, check=True)
    _same_as_original(pipe, rows, json.loads(done.stdout))  # a bare list goes to the one input


def test_zip_package_unpacks_and_runs(model: Any, tmp_path: Path) -> None:
    pipe, onnx_bytes, _, rows = model
    result = package(onnx_bytes, None, tmp_path / "out" / "digits.zip")  # signature read from the graph
    assert result.path.is_file() and zipfile.is_zipfile(result.path)
    with zipfile.ZipFile(result.path) as zf:
        zf.extractall(tmp_path / "unpacked")
    _same_as_original(pipe, rows, _run(sys.executable, tmp_path / "unpacked", rows, tmp_path))


def test_existing_destination_needs_overwrite(model: Any, tmp_path: Path) -> None:
    _, onnx_bytes, signature, _ = model
    dest = tmp_path / "pkg"
    package(onnx_bytes, signature, dest, name="first")
    with pytest.raises(InputError, match="already exists"):
        package(onnx_bytes, signature, dest, name="second")
    assert json.loads((dest / "manifest.json").read_text())["name"] == "first"  # untouched
    package(onnx_bytes, signature, dest, name="second", overwrite=True)
    assert json.loads((dest / "manifest.json").read_text())["name"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # the old one is gone, no temporary left


def test_signature_must_be_the_models(model: Any, tmp_path: Path) -> None:
    _, onnx_bytes, signature, _ = model
    wrong = {"inputs": [{"name": "pixels", "dtype": "float32", "shape": [None, 64]}], "outputs": signature["outputs"]}
    with pytest.raises(InputError, match=r"inputs \['pixels'\] are not the model's \['X'\]"):
        package(onnx_bytes, wrong, tmp_path / "pkg")
    with pytest.raises(InputError, match="JSON-serialisable"):
        package(onnx_bytes, signature, tmp_path / "pkg2", metadata={"when": object()})
    assert list(tmp_path.iterdir()) == []


def test_runner_refuses_a_damaged_model_and_bad_input(model: Any, tmp_path: Path) -> None:
    _, onnx_bytes, signature, rows = model
    folder = tmp_path / "pkg"
    package(onnx_bytes, signature, folder)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"X": rows[:, :10].tolist()}))
    done = subprocess.run([sys.executable, "predict.py", str(bad)], cwd=folder, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 1 and "has shape [20, 10]; the model takes [None, 64]" in done.stderr
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"X": rows.tolist()}))
    done = subprocess.run([sys.executable, "predict.py", str(good)], cwd=folder, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 1 and "does not match its SHA-256" in done.stderr


@pytest.mark.slow
def test_package_runs_in_a_fresh_venv_with_only_onnxruntime_and_numpy(model: Any, tmp_path: Path) -> None:
    pipe, onnx_bytes, signature, rows = model
    package(onnx_bytes, signature, tmp_path / "pkg")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / ("Scripts" if os.name == "nt" else "bin") / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "onnxruntime", "numpy"],
                   check=True, timeout=900, capture_output=True)
    listed = subprocess.run([python, "-m", "pip", "list", "--format=json"], check=True, capture_output=True,
                            text=True, timeout=120)
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "assay" not in names and "scikit-learn" not in names and "torch" not in names
    _same_as_original(pipe, rows, _run(python, tmp_path / "pkg", rows, tmp_path))
