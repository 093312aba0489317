"""Shipping registered versions: export, INT8 within a budget, benchmarks and edge packages, through the API and
the command line, on a scikit-learn MLP trained on the digits (and a small embedding graph for a refusal)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

import assay
from assay.cli.app import app
from assay.errors import InputError, QuantizationRefused
from assay.models import describe, get, history, read_artifact, register
from assay.models.onnx_export import run_onnx
from assay.models.ship import bench_version, export_version, package_version, quantize_version
from tests.test_models_registry import FEATURES, digits_table

pytest.importorskip("skl2onnx")
pytest.importorskip("onnxruntime")
runner = CliRunner()


def _x(t: pa.Table) -> np.ndarray:
    return np.column_stack([t.column(c).to_numpy() for c in FEATURES]).astype(np.float64)


@pytest.fixture(scope="module")
def digits() -> pa.Table:
    return digits_table()


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory, digits: pa.Table) -> tuple[Path, Any]:
    """A repository with train@v1 (1,200 rows) and test@v1 (597), an MLP (m@1, with scaling in a pipeline)
    registered on them, and its ONNX export (m@2)."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    root = tmp_path_factory.mktemp("ship")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short fit does not converge; the model is real all the same
        model = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=60,
                                                              random_state=0))
        model.fit(_x(digits)[:1200], digits.column("label").to_numpy()[:1200])
    with assay.init(root) as repo:
        repo.add("train", digits.slice(0, 1200), key=["id"])
        repo.add("test", digits.slice(1200), key=["id"])
        repo.commit("digits")
        repo.tag("v1")
        register(repo, "m", model, train="train@v1", eval="test@v1", metrics={"accuracy": 0.9})
        export_version(repo, "m@1")
    return root, model


def test_export_is_verified_and_registered_with_its_parent(shipped: tuple[Path, Any], digits: pa.Table) -> None:
    root, model = shipped
    with assay.Repo(root) as repo:
        v, parent = get(repo, "m@2"), get(repo, "m@1")
        assert v.framework == "onnx" and v.lineage.parent is not None and v.lineage.parent.spec == "m@1"
        assert v.lineage.derived_by == "export onnx"
        assert v.lineage.train == parent.lineage.train and v.lineage.eval == parent.lineage.eval
        assert v.signature.features == tuple(FEATURES) and v.signature.label == "label"
        check = v.meta["export"]["verification"]
        assert check["passed"] and check["samples"] == 256 and check["label_agreement"] == 1.0
        assert v.meta["export"]["samples_from"].startswith("test@")  # the recorded evaluation data
        assert v.metrics["max_abs_diff"] < 1e-4 and v.meta["task"] == "classification"
        out = run_onnx(read_artifact(repo, "m@2"), _x(digits)[1200:].astype(np.float32))
        assert (out["label"] == model.predict(_x(digits)[1200:])).all()


def test_quantize_within_budget_registers_int8_with_both_metrics(shipped: tuple[Path, Any],
                                                                digits: pa.Table) -> None:
    root, model = shipped
    r = runner.invoke(app, ["-C", str(root), "model", "quantize", "m@2", "--budget", "1"])
    assert r.exit_code == 0, r.output
    assert "quantised m@2 to INT8" in r.output and "fp32" in r.output and "int8" in r.output
    with assay.Repo(root) as repo:
        q = get(repo, "m")
        assert f"registered {q.spec}" in r.output
        assert q.lineage.parent is not None and q.lineage.parent.spec == "m@2"
        assert q.lineage.derived_by == "quantize int8 dynamic"
        fp32 = 100 * model.score(_x(digits)[1200:], digits.column("label").to_numpy()[1200:])
        assert q.metrics["accuracy_fp32"] == pytest.approx(fp32, abs=0.2)  # the fp32 ONNX model, as verified
        assert q.metrics["accuracy_fp32"] - q.metrics["accuracy_int8"] == pytest.approx(q.metrics["accuracy_drop"])
        assert q.metrics["accuracy_drop"] <= 1.0
        assert q.size < get(repo, "m@2").size and q.lineage.eval == get(repo, "m@2").lineage.eval
        assert q.meta["quantization"]["samples"] == digits.num_rows - 1200


def test_a_scikit_learn_version_quantises_static_after_an_export_that_is_not_registered(
        shipped: tuple[Path, Any]) -> None:
    root, _ = shipped
    with assay.Repo(root) as repo:
        before = len(history(repo, "m"))
        q = quantize_version(repo, "m@1", method="static", budget=2.0)  # calibrated on train@v1
        assert q.version.version == before + 1 and q.version.lineage.parent is not None
        assert q.version.lineage.parent.spec == "m@1" and q.version.lineage.derived_by == "quantize int8 static"
        assert q.version.metrics["accuracy_drop"] <= 2.0 and q.version.framework == "onnx"


def _embedding_onnx() -> bytes:
    """A small embedding model (a random 64 -> 16 projection), whose output is named ``embeddings``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(64, 16)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["embeddings"], name="project")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                              [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", 16])], [w])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(proto)
    return bytes(proto.SerializeToString())


def test_over_budget_is_refused_with_the_report_and_registers_nothing(shipped: tuple[Path, Any]) -> None:
    root, _ = shipped
    with assay.Repo(root) as repo:
        register(repo, "emb", _embedding_onnx(), train="train@v1", eval="test@v1")
        with pytest.raises(QuantizationRefused, match=r"over its budget.*Nothing was registered") as info:
            quantize_version(repo, "emb", budget=0.0)  # INT8 never gives exactly the fp32 embeddings
        report = info.value.report
        assert report is not None and report["task"] == "embedding" and report["fp32_metric"] == pytest.approx(100)
        assert report["best_int8_metric"] < 100 and len(report["attempts"]) >= 2
        with pytest.raises(InputError, match="budget"):
            quantize_version(repo, "m@2", budget=-1)
        assert len(history(repo, "emb")) == 1 and not any(v.lineage.parent and v.lineage.parent.name == "emb"
                                                          for v in history(repo, "m"))
    env = {**os.environ, "PYTHONPATH": str(Path(assay.__file__).parents[1])}
    r = subprocess.run([sys.executable, "-m", "assay.cli", "-C", str(root), "model", "quantize", "emb", "--budget",
                        "0"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 1 and "over its budget" in r.stderr and "mean cosine" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    with assay.Repo(root) as repo:
        assert len(history(repo, "emb")) == 1


def test_bench_is_attached_and_shown(shipped: tuple[Path, Any]) -> None:
    root, _ = shipped
    r = runner.invoke(app, ["-C", str(root), "model", "bench", "m@2", "--batch", "1,8", "--threads", "1",
                            "--runs", "20"])
    assert r.exit_code == 0, r.output
    assert "benchmarked m@2" in r.output and "p99 ms" in r.output
    with assay.Repo(root) as repo:
        bench = describe(repo, "m@2").attached["bench"]
        assert [(x["batch"], x["threads"]) for x in bench["results"]] == [(1, 1), (8, 1)]
        assert bench["size_bytes"] == get(repo, "m@2").size and bench["load"]["load_ms"] > 0
        assert bench["inputs_from"].startswith("test@")
    shown = runner.invoke(app, ["-C", str(root), "model", "show", "m@2"])
    assert shown.exit_code == 0 and "attached bench" in shown.output and "batch 8 x1 thread(s)" in shown.output
    as_json = json.loads(runner.invoke(app, ["-C", str(root), "model", "show", "m@2", "--json"]).output)
    assert as_json["attached"]["bench"]["results"][0]["batch"] == 1
    bad = runner.invoke(app, ["-C", str(root), "model", "bench", "m@2", "--batch", "0"])
    assert isinstance(bad.exception, InputError) and "--batch" in str(bad.exception)


def test_a_scikit_learn_version_benchmarks_through_its_framework(shipped: tuple[Path, Any]) -> None:
    root, _ = shipped
    with assay.Repo(root) as repo:
        r = bench_version(repo, "m@1", batches=(1,), threads=(1,), runs=5, warmup=1)
        assert r.results["kind"] == "callable" and r.results["framework"] == "sklearn"
        assert describe(repo, "m@1").attached["bench"]["results"][0]["runs"] == 5


def _import(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"predict_{path.parent.name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_package_runs_and_gives_the_registrys_outputs(shipped: tuple[Path, Any], digits: pa.Table,
                                                      tmp_path: Path) -> None:
    root, model = shipped
    r = runner.invoke(app, ["-C", str(root), "model", "package", "m@2", "--to", str(tmp_path / "edge")])
    assert r.exit_code == 0, r.output
    assert "packaged m@2 into" in r.output and "predict.py" in r.output
    rows = _x(digits)[1200:1240].astype(np.float32)
    out = _import(tmp_path / "edge" / "predict.py").predict(rows)
    with assay.Repo(root) as repo:
        expected = run_onnx(read_artifact(repo, "m@2"), rows)
        assert np.array_equal(out["label"], expected["label"]) and (out["label"] == model.predict(rows)).all()
        manifest = json.loads((tmp_path / "edge" / "manifest.json").read_text())
        assert manifest["metadata"]["model"] == "m" and manifest["metadata"]["version"] == 2
        assert manifest["metadata"]["features"] == FEATURES and manifest["metadata"]["train"]["dataset"] == "train"
        zipped = package_version(repo, "m@1", tmp_path / "m1.zip")  # not ONNX: exported (verified) for it
        assert zipped.exported and (tmp_path / "m1.zip").stat().st_size > 0
        assert len(history(repo, "m")) >= 2  # the export for the package registered nothing
    again = runner.invoke(app, ["-C", str(root), "model", "package", "m@2", "--to", str(tmp_path / "edge")])
    assert isinstance(again.exception, InputError) and "already exists" in str(again.exception)


def test_export_through_the_cli_and_its_errors(shipped: tuple[Path, Any], tmp_path: Path,
                                               digits: pa.Table) -> None:
    root, model = shipped
    with assay.Repo(root) as repo:
        before = len(history(repo, "m"))
        register(repo, "nodata", model)  # no recorded data: nothing to draw samples from
    r = runner.invoke(app, ["-C", str(root), "model", "export", "m@1", "--format", "onnx"])
    assert r.exit_code == 0, r.output
    assert f"registered m@{before + 1}" in r.output and "verified on 256 samples of test@" in r.output
    for args, message in ((["m@1", "--format", "tflite"], "unknown export format"),
                          ([f"m@{before + 1}"], "already an ONNX model"),
                          (["nodata"], "records no eval or train data")):
        bad = runner.invoke(app, ["-C", str(root), "model", "export", *args])
        assert isinstance(bad.exception, InputError) and message in str(bad.exception), bad.output
    with assay.Repo(root) as repo:
        assert len(history(repo, "m")) == before + 1 and len(history(repo, "nodata")) == 1
        with pytest.raises(InputError, match="no evaluation data"):
            quantize_version(repo, "nodata")


@pytest.mark.slow
def test_a_torch_cnn_exports_and_quantises_static_on_its_recorded_data(repo: assay.Repo, digits: pa.Table) -> None:
    torch = pytest.importorskip("torch")
    repo.add("train", digits.slice(0, 1200), key=["id"])
    repo.add("test", digits.slice(1200), key=["id"])
    repo.commit("digits")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(512, 10))
    x = torch.tensor(_x(digits)[:1200].reshape(-1, 1, 8, 8), dtype=torch.float32)  # as stored, 0-16
    y = torch.tensor(digits.column("label").to_numpy()[:1200])
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    register(repo, "cnn", net, example_input=torch.zeros(1, 1, 8, 8), train="train", eval="test", features=FEATURES)
    e = export_version(repo, "cnn")  # the registered torch.export program, exported to ONNX and verified
    assert e.version.spec == "cnn@2" and e.version.meta["task"] == "classification"
    assert e.version.signature.inputs[0].shape == ("batch", 1, 8, 8)
    q = quantize_version(repo, "cnn@2", method="static", budget=2.0)  # calibrated on the training data
    assert q.version.lineage.derived_by == "quantize int8 static" and q.version.metrics["accuracy_fp32"] > 50
    assert q.version.metrics["accuracy_drop"] <= 2.0


def test_every_model_command_has_help_and_is_in_the_docs() -> None:
    from typer.main import get_command

    from assay.cli import model_cmds

    docs = (Path(__file__).parents[1] / "docs" / "models.md").read_text()
    commands = dict(get_command(model_cmds.app).commands)  # type: ignore[attr-defined]
    assert {"export", "quantize", "bench", "package"} <= set(commands)
    for name, cmd in commands.items():
        assert getattr(cmd, "help", None), f"assay model {name} has no help text"
        assert f"assay model {name}" in docs, f"assay model {name} is not in docs/models.md"
