"""The model registry: versions with signature and lineage, aliases, lineage both ways, and bad input."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import assay
from assay.errors import (
    FormatError,
    ModelError,
    ModelFileError,
    ModelNotFound,
    RefNotFound,
    SignatureMismatch,
    UnsupportedModel,
)
from assay.models import ModelVersion
from assay.models.record import read_index

FEATURES = [f"p{i}" for i in range(64)]


def digits_table() -> pa.Table:
    from sklearn.datasets import load_digits

    d = load_digits()
    cols = {c: d.data[:, i] for i, c in enumerate(FEATURES)}
    return pa.table({"id": np.arange(len(d.target)), **cols, "label": d.target})


@pytest.fixture(scope="module")
def digits() -> pa.Table:
    return digits_table()


@pytest.fixture
def drepo(repo: assay.Repo, digits: pa.Table) -> assay.Repo:
    """train@v1 (1,000 rows), train@v2 (v1 + 200 rows), test@t1 (the rest), test-nolabel@t1."""
    repo.add("train", digits.slice(0, 1000), key=["id"])
    repo.add("test", digits.slice(1200), key=["id"])
    repo.add("nolabel", digits.slice(1200).drop_columns(["label"]), key=["id"])
    repo.commit("digits")
    repo.tag("v1")
    repo.add("train", digits.slice(1000, 200), key=["id"], mode="append")
    repo.commit("more digits")
    repo.tag("v2")
    return repo


def mlp(digits: pa.Table, rows: int = 1000) -> Any:
    from sklearn.neural_network import MLPClassifier

    x = np.column_stack([digits.column(c).to_numpy() for c in FEATURES])[:rows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short fit does not converge; the model is real all the same
        return MLPClassifier(hidden_layer_sizes=(16,), max_iter=20, random_state=0).fit(
            x, digits.column("label").to_numpy()[:rows])


def test_register_show_load_sklearn(drepo: assay.Repo, digits: pa.Table) -> None:
    model = mlp(digits)
    v = drepo.register_model("digits", model, train="train@v1", eval="test@v1", metrics={"accuracy": 0.9},
                             params={"hidden": 16})
    assert (v.name, v.version, v.framework) == ("digits", 1, "sklearn")
    assert v.signature.features == tuple(FEATURES) and v.signature.label == "label"
    assert v.signature.inputs[0].shape == (None, 64) and v.signature.classes == tuple(range(10))
    assert v.lineage.train is not None and v.lineage.train.rows == 1000
    assert v.lineage.train.commit == drepo.resolve("v1") and v.lineage.eval is not None
    assert v.libraries["scikit-learn"] and v.size == v.artifact().bytes > 0
    shown = drepo.model("digits@1")
    assert shown == v and drepo.model("digits") == v
    x = np.column_stack([digits.column(c).to_numpy() for c in FEATURES])[1200:]
    assert (drepo.load_model("digits@latest").predict(x) == model.predict(x)).all()
    head = drepo.read_commit(drepo.resolve("main"))
    assert "digits" in head.models and head.datasets == drepo.read_commit(drepo.resolve("v2")).datasets
    drepo.gc(grace=0)  # records, artifacts and training manifests are reachable through the commit
    assert drepo.fsck().ok and (drepo.load_model("digits").predict(x) == model.predict(x)).all()


def test_versions_aliases_and_stored_formats(drepo: assay.Repo, digits: pa.Table) -> None:
    model = mlp(digits)
    for _ in range(3):
        drepo.register_model("digits", model, train="train@v1")
    assert drepo.set_model_alias("digits", 2, "champion") == 2
    assert drepo.model("digits@champion").version == 2
    drepo.set_model_alias("digits", 3, "champion")  # moved: one new commit
    assert drepo.model("digits@champion").version == 3
    assert drepo.model("digits@champion", rev="main~1").version == 2  # the old alias, at the commit before
    [summary] = drepo.models()
    assert (summary.name, summary.versions, summary.aliases) == ("digits", 3, {"champion": 3})
    oid = drepo.read_commit(drepo.resolve("main")).models["digits"]
    index = read_index(drepo.store.get, oid)
    assert [drepo.store.get(e.record) for e in index.versions] == [drepo.model(f"digits@{n}").to_bytes()
                                                                     for n in (1, 2, 3)]
    newer = drepo.model("digits").to_dict() | {"format": 99}
    with pytest.raises(FormatError, match="upgrade assay"):
        ModelVersion.from_bytes(__import__("json").dumps(newer).encode())


def test_index_pages(drepo: assay.Repo, digits: pa.Table, monkeypatch: pytest.MonkeyPatch) -> None:
    from assay.models import record

    monkeypatch.setattr(record, "PAGE", 3)  # pages of 3 versions instead of 256
    model = _fit_on(digits, FEATURES)
    for i in range(8):
        drepo.register_model("paged", model, params={"i": i})
    drepo.set_model_alias("paged", 2, "old")
    stored = __import__("json").loads(drepo.store.get(drepo.read_commit(drepo.resolve("main")).models["paged"]))
    assert len(stored["pages"]) == 2 and len(stored["versions"]) == 2 and stored["count"] == 8
    drepo.gc(grace=0)  # pages, and the records they list, are reachable
    assert drepo.fsck().ok
    assert [v.params["i"] for v in assay.models.history(drepo, "paged")] == list(range(8))
    assert drepo.model("paged@old").params == {"i": 1} and drepo.model("paged@3").params == {"i": 2}


def test_pipeline_with_named_features(drepo: assay.Repo, digits: pa.Table) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = digits.slice(0, 300).select([*FEATURES[:32], "label"]).to_pandas()
    pipe = make_pipeline(StandardScaler(), HistGradientBoostingClassifier(max_iter=3, max_depth=3, random_state=0))
    pipe.fit(frame[FEATURES[:32]], frame["label"])
    v = drepo.register_model("hgb", pipe, train="train@v1", eval="test@v1")
    assert v.signature.features == tuple(FEATURES[:32]) and v.model_class.endswith("Pipeline")


@pytest.mark.slow  # importing torch and torch.export take seconds
def test_torch_module_with_example_input(drepo: assay.Repo) -> None:
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.ReLU(), torch.nn.Linear(8, 10))
    example = torch.zeros(2, 64)
    v = drepo.register_model("net", net, train="train@v1", example_input=example)
    assert v.framework == "torch" and v.meta["parameters"] == 64 * 8 + 8 + 8 * 10 + 10
    assert v.signature.inputs[0].shape == (None, 64) and v.signature.outputs[0].shape == (None, 10)
    assert [a.name for a in v.artifacts] == ["model.pt2", "example_input.npy"]
    x = torch.randn(3, 64)
    assert torch.allclose(drepo.load_model("net")(x), net(x))
    with pytest.raises(ModelError, match="example_input"):
        drepo.register_model("net", net)


def test_import_assay_imports_no_framework() -> None:
    code = "import assay, assay.models, sys; print(sorted(m for m in ('torch', 'onnx', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def tiny_onnx() -> bytes:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((64, 10), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def test_onnx_file_and_corrupt_file(drepo: assay.Repo, tmp_path: Path) -> None:
    data = tiny_onnx()
    good = tmp_path / "m.onnx"
    good.write_bytes(data)
    v = drepo.register_model("onnx-model", str(good), train="train@v1")
    assert v.framework == "onnx" and v.signature.inputs[0].shape == ("N", 64)
    assert v.signature.inputs[0].dtype == "float32" and v.meta["opsets"] == {"ai.onnx": 17}
    for bad in (data[: len(data) // 2], b"\x08\x07garbage"):
        (tmp_path / "bad.onnx").write_bytes(bad)
        with pytest.raises(ModelFileError, match="not a valid ONNX model"):
            drepo.register_model("onnx-model", str(tmp_path / "bad.onnx"))
    assert drepo.model("onnx-model").version == 1


def test_bad_input_registers_nothing(drepo: assay.Repo, digits: pa.Table) -> None:
    model = mlp(digits)
    tip = drepo.resolve("main")
    with pytest.raises(UnsupportedModel, match=r"not a model assay knows.*assay\[torch\].*assay\[onnx\]"):
        drepo.register_model("m", {"weights": [1, 2]})
    with pytest.raises(UnsupportedModel, match="suffix"):
        drepo.register_model("m", "model.txt")
    small = _fit_on(digits, FEATURES[:10])
    with pytest.raises(SignatureMismatch, match="takes 10 feature value"):
        drepo.register_model("m", small, train="train@v1")
    with pytest.raises(SignatureMismatch, match="does not have"):
        drepo.register_model("m", model, train="train@v1", features=["nope", *FEATURES[:63]])
    with pytest.raises(RefNotFound, match="unknown revision 'v9'"):
        drepo.register_model("m", model, train="train@v9")
    with pytest.raises(RefNotFound, match="no dataset 'trian'"):
        drepo.register_model("m", model, train="trian@v1")
    with pytest.raises(SignatureMismatch, match="has no label column 'label'"):
        drepo.register_model("m", model, train="train@v1", eval="nolabel@v1")
    with pytest.raises(ModelNotFound, match="no model 'm'"):
        drepo.set_model_alias("m", 1, "champion")
    assert drepo.resolve("main") == tip and drepo.models() == []
    drepo.register_model("m", model, train="train@v1")
    with pytest.raises(ModelNotFound, match="versions 1 to 1"):
        drepo.set_model_alias("m", 7, "champion")
    with pytest.raises(ModelNotFound, match="no version or alias 'best'"):
        drepo.model("m@best")


def _fit_on(digits: pa.Table, columns: list[str]) -> Any:
    from sklearn.linear_model import LogisticRegression

    x = np.column_stack([digits.column(c).to_numpy() for c in columns])[:500]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LogisticRegression(max_iter=50).fit(x, digits.column("label").to_numpy()[:500])


def test_lineage_both_ways(drepo: assay.Repo, digits: pa.Table) -> None:
    model = mlp(digits)
    drepo.register_model("digits", model, train="train@v1", eval="test@v1")
    drepo.register_model("digits", mlp(digits, 1200), train="train@v2")
    drepo.register_model("digits-copy", model, train="train@v1", parent="digits@1", derived_by="export onnx")
    drepo.register_model("digits-copy", model, train="train@v1", parent="digits-copy@1", derived_by="quantize")
    report = drepo.model_lineage("digits-copy@2")
    assert [a.spec for a in report.ancestors] == ["digits-copy@1", "digits@1"]
    down = drepo.model_lineage("digits@1").descendants
    assert down == ((1, "digits-copy@1", "export onnx"), (2, "digits-copy@2", "quantize"))
    found = {(t.spec, t.match) for t in drepo.trained_on("train@v1")}
    assert found == {("digits@1", "exact"), ("digits@2", "contains"), ("digits-copy@1", "exact"),
                     ("digits-copy@2", "exact")}
    assert {t.spec for t in drepo.trained_on("train@v2")} == {"digits@2"}
    late = drepo.dataset("train@v2").to_arrow(["id"], with_ids=True)
    sid = late.column("_assay_id")[late.column("id").to_pylist().index(1100)].as_py()  # hex, as users see ids
    assert [t.spec for t in drepo.trained_on("train@v2", sample=sid)] == ["digits@2"]
    assert [t.spec for t in drepo.trained_on("train@v2", sample="1100")] == ["digits@2"]  # by its key
    with pytest.raises(RefNotFound, match="has no sample"):
        drepo.trained_on("train@v1", sample="1100")
    d = drepo.model_diff("digits@1", "digits@2")
    assert d.data["train"]["added"] == 200 and d.data["train"]["removed"] == 0
    assert d.data["eval"]["b"] is None


def test_derived_version_takes_the_parents_data_and_attachments(drepo: assay.Repo, digits: pa.Table) -> None:
    drepo.register_model("digits", mlp(digits), train="train@v1", eval="test@v1")
    v = drepo.register_model("digits-onnx", tiny_onnx(), parent="digits@1", derived_by="export onnx")
    assert v.lineage.train == drepo.model("digits@1").lineage.train and v.lineage.eval is not None
    assert v.signature.features == tuple(FEATURES) and v.signature.label == "label"
    evaluation = assay.models.data(drepo, "digits-onnx")
    assert evaluation is not None and evaluation.num_rows == len(digits) - 1200
    assert assay.models.attach(drepo, "digits-onnx@1", "bench", {"p50_ms": 0.01}) == 1
    view = assay.models.describe(drepo, "digits-onnx")
    assert view.attached == {"bench": {"p50_ms": 0.01}} and view.version == v  # the record is unchanged
    drepo.set_model_alias("digits-onnx", 1, "edge")
    assert assay.models.describe(drepo, "digits-onnx").aliases == ("edge",)
    assert assay.models.remove_alias(drepo, "digits-onnx", "edge") == 1
    with pytest.raises(ModelNotFound, match="no version or alias 'edge'"):
        drepo.model("digits-onnx@edge")
    drepo.add("train", digits.slice(1200, 10), key=["id"], mode="append")
    drepo.commit("a dataset commit carries the registry over")
    assert [m.name for m in drepo.models()] == ["digits", "digits-onnx"]
    drepo.gc(grace=0)
    assert drepo.fsck().ok and assay.models.attachments(drepo, "digits-onnx") == {"bench": {"p50_ms": 0.01}}


def _register_many(root: str, worker: int, count: int, model: Any, out: Any) -> None:
    with assay.Repo(root) as repo:
        out.put([repo.register_model("shared", model, params={"worker": worker, "i": i}).version
                 for i in range(count)])


@pytest.mark.slow
def test_two_processes_register_at_once(drepo: assay.Repo, digits: pa.Table) -> None:
    model, count = _fit_on(digits, FEATURES), 8
    ctx = multiprocessing.get_context("forkserver")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_register_many, args=(str(drepo.root), w, count, model, queue)) for w in range(2)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    numbers = sorted(n for part in got for n in part)
    assert numbers == list(range(1, 2 * count + 1))  # unique numbers, no version lost
    seen = {(v.params["worker"], v.params["i"]) for v in assay.models.history(drepo, "shared")}
    assert seen == {(w, i) for w in range(2) for i in range(count)}
