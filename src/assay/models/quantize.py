"""Graph optimisation and INT8 quantisation within an accuracy budget.

:func:`quantize` optimises an fp32 ONNX graph with ONNX Runtime, quantises it to INT8 (dynamic, or static QDQ
with calibration inputs for convolutional models), and measures the task's metric for the fp32 and the INT8
model side by side on the evaluation inputs. When the drop exceeds ``budget`` it tries the usual remedies in
order (per-channel weights, then leaving the most sensitive MatMul/Gemm/Conv nodes in fp32, measured by how much
error each node adds on the evaluation inputs) and, if every remedy is still over, refuses with
:class:`~assay.errors.QuantizationRefused`, whose ``report`` holds every attempt.

The budget is in percentage points for every task:

- ``classification``: accuracy in percent against ``eval_targets`` (or agreement with the fp32 model's labels
  when no targets are given); the drop is fp32 accuracy minus INT8 accuracy.
- ``regression``: mean absolute error against ``eval_targets``; the drop is the INT8 model's relative increase
  of that error in percent (with no targets: the INT8 predictions' mean absolute deviation from the fp32
  predictions, relative to their mean magnitude, in percent).
- ``embedding``: mean cosine similarity (in percent) to ``reference_outputs`` (default: the fp32 model's own
  outputs); the drop is fp32 cosine minus INT8 cosine, so ``budget=1.0`` asks for a mean cosine >= 0.99.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assay.errors import InputError, ModelError, QuantizationRefused
from assay.models.adapters import check_onnx, require
from assay.models.onnx_export import Feeds, onnx_feeds, session

TASKS = ("classification", "regression", "embedding")
METHODS = ("dynamic", "static")
SENSITIVE_OPS = ("MatMul", "Gemm", "Conv")
_EXCLUDE_STEPS = (1, 2, 4, 8)


@dataclass(frozen=True)
class Attempt:
    """One quantisation setting tried, and how it scored."""

    remedy: str  # "none", "per_channel", "exclude 2 nodes"...
    per_channel: bool
    excluded: tuple[str, ...]
    int8_metric: float
    drop: float
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"remedy": self.remedy, "per_channel": self.per_channel, "excluded": list(self.excluded),
                "int8_metric": self.int8_metric, "drop": self.drop, "size": self.size}


@dataclass(frozen=True)
class QuantizeResult:
    """An INT8 model within budget, the optimised fp32 model it came from, and the figures."""

    onnx: bytes = field(repr=False)
    fp32_onnx: bytes = field(repr=False)
    task: str
    method: str
    metric: str
    fp32_metric: float
    int8_metric: float
    drop: float
    budget: float
    samples: int
    attempts: tuple[Attempt, ...]
    optimization: str

    @property
    def chosen(self) -> Attempt:
        return self.attempts[-1]

    @property
    def size_ratio(self) -> float:
        """INT8 size over fp32 size."""
        return len(self.onnx) / max(len(self.fp32_onnx), 1)

    def to_dict(self) -> dict[str, Any]:
        """The report (JSON-serialisable), without the bytes."""
        return {"task": self.task, "method": self.method, "metric": self.metric, "fp32_metric": self.fp32_metric,
                "int8_metric": self.int8_metric, "drop": self.drop, "budget": self.budget, "samples": self.samples,
                "optimization": self.optimization, "fp32_size": len(self.fp32_onnx), "int8_size": len(self.onnx),
                "size_ratio": self.size_ratio, "settings": self.chosen.to_dict(),
                "attempts": [a.to_dict() for a in self.attempts]}


def optimize(onnx_bytes: bytes, *, level: str = "basic") -> bytes:
    """The graph as ONNX Runtime optimises it offline (``basic``: constant folding, redundant nodes removed;
    ``extended`` adds fusions into ONNX Runtime's own operators; ``none`` returns the bytes unchanged)."""
    if level == "none":
        return bytes(onnx_bytes)
    ort = require("onnxruntime")
    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}
    if level not in levels:
        raise InputError(f"unknown optimisation level {level!r}: use none, basic or extended")
    check_onnx(onnx_bytes)
    with tempfile.TemporaryDirectory(prefix="assay-opt-") as tmp:
        out = Path(tmp) / "optimized.onnx"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = levels[level]
        opts.optimized_model_filepath = str(out)
        opts.log_severity_level = 3
        ort.InferenceSession(bytes(onnx_bytes), opts, providers=["CPUExecutionProvider"])
        return out.read_bytes()


def quantize(onnx_bytes: bytes, *, eval_inputs: Any, task: str, eval_targets: Any = None,
             reference_outputs: Any = None, budget: float = 0.5, method: str = "dynamic",
             calibration_inputs: Any = None, output: str | None = None, optimization: str = "basic",
             threads: int = 1) -> QuantizeResult:
    """Quantise ``onnx_bytes`` to INT8 within ``budget`` points of the fp32 metric on ``eval_inputs``.

    ``eval_inputs``: an array (one-input model) or a name -> array mapping, or a list of such (requests run one
    by one, e.g. token sequences of different lengths). ``output`` names the output the metric reads (default:
    ``probabilities`` if present, else the first float output). ``calibration_inputs`` (same forms) are
    required for ``method="static"``. Raises :class:`QuantizationRefused` with the report when over budget.
    """
    _check_args(task, method, budget, eval_targets, calibration_inputs, optimization)
    fp32 = name_nodes(optimize(onnx_bytes, level=optimization))
    scorer = _Scorer(fp32, eval_inputs, task, eval_targets, reference_outputs, output, threads)
    attempts: list[Attempt] = []
    int8 = b""
    for remedy, per_channel, excluded in _remedies(fp32, scorer, method, calibration_inputs, budget, attempts):
        int8 = _quantize_once(fp32, method, per_channel, excluded, calibration_inputs)
        metric = scorer.score(int8)
        attempts.append(Attempt(remedy, per_channel, tuple(excluded), metric, scorer.drop(metric), len(int8)))
        if attempts[-1].drop <= budget:
            last = attempts[-1]
            return QuantizeResult(int8, fp32, task, method, scorer.metric_name, scorer.fp32_metric, last.int8_metric,
                                  last.drop, budget, scorer.samples, tuple(attempts), optimization)
    report = {"task": task, "method": method, "metric": scorer.metric_name, "fp32_metric": scorer.fp32_metric,
              "best_int8_metric": min(attempts, key=lambda a: a.drop).int8_metric, "budget": budget,
              "samples": scorer.samples, "attempts": [a.to_dict() for a in attempts]}
    best = min(attempts, key=lambda a: a.drop)
    raise QuantizationRefused(
        f"INT8 quantisation is over its budget: {scorer.metric_name} {scorer.fp32_metric:.3f} for fp32, "
        f"{best.int8_metric:.3f} at best for INT8 ({best.remedy}), a drop of {best.drop:.3f} points against a "
        f"budget of {budget:g}, after trying {', '.join(a.remedy for a in attempts)}. Nothing was registered. Keep "
        "the fp32 model, raise --budget if the drop is acceptable, or try --method static with calibration data",
        report)


def _check_args(task: str, method: str, budget: float, targets: Any, calibration: Any, optimization: str) -> None:
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}: use one of {', '.join(TASKS)}")
    if method not in METHODS:
        raise InputError(f"unknown quantisation method {method!r}: use dynamic or static")
    if not budget >= 0:
        raise InputError(f"the budget must be a number of points >= 0, got {budget!r}")
    if method == "static" and calibration is None:
        raise InputError("static quantisation needs calibration inputs (samples from the training data): pass "
                         "calibration_inputs, or use method='dynamic'")
    if optimization not in ("none", "basic", "extended"):
        raise InputError(f"unknown optimisation level {optimization!r}: use none, basic or extended")


def _remedies(fp32: bytes, scorer: _Scorer, method: str, calibration: Any, budget: float,
              attempts: list[Attempt]) -> Iterator[tuple[str, bool, list[str]]]:
    """Settings to try in order; the sensitivity ranking is measured only if the first two are over budget."""
    yield "none", False, []
    yield "per_channel", True, []
    per_channel = min(attempts, key=lambda a: a.drop).per_channel
    base = _quantize_once(fp32, method, per_channel, [], calibration)
    ranking = scorer.sensitivity(fp32, base)
    for k in _EXCLUDE_STEPS:
        if k < len(ranking):  # at least one node stays quantised
            yield f"exclude {k} most sensitive node{'s' * (k > 1)}", per_channel, ranking[:k]


def _quantize_once(fp32: bytes, method: str, per_channel: bool, excluded: Sequence[str], calibration: Any) -> bytes:
    q = require("onnxruntime.quantization")
    extra = {"DefaultTensorType": require("onnx").TensorProto.FLOAT}  # for tensors shape inference cannot type
    with tempfile.TemporaryDirectory(prefix="assay-quant-") as tmp, _root_log_quiet():
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        try:
            _run_quantizer(q, src, dst, fp32, method, per_channel, excluded, calibration, extra)
        except Exception as e:  # the quantiser raises RuntimeError, ValueError, KeyError on graphs it cannot take
            other = "dynamic" if method == "static" else "static"
            raise ModelError(f"ONNX Runtime's {method} quantiser cannot quantise this graph ({type(e).__name__}: "
                             f"{str(e)[:200]}); nothing was registered. Try --method {other}, or keep the fp32 "
                             "model") from e
        return dst.read_bytes()


def _run_quantizer(q: Any, src: Path, dst: Path, fp32: bytes, method: str, per_channel: bool,
                   excluded: Sequence[str], calibration: Any, extra: dict[str, Any]) -> None:
    """``quantize_dynamic`` or ``quantize_static`` (QDQ, calibrated) of the model at ``src`` into ``dst``."""
    if method == "dynamic":
        q.quantize_dynamic(str(src), str(dst), per_channel=per_channel, weight_type=q.QuantType.QInt8,
                           nodes_to_exclude=list(excluded), extra_options=extra)
        return
    reader = _Calibration(_requests(calibration), [i.name for i in session(fp32).get_inputs()])
    # Softmax stays fp32: ORT's QDQ quantiser pins its output range to [0, 1] and fails when that output is
    # one it did not calibrate (a classifier's last node, as skl2onnx writes it)
    softmax = [n.name for n in check_onnx(fp32).graph.node if n.op_type == "Softmax"]
    q.quantize_static(str(src), str(dst), reader, quant_format=q.QuantFormat.QDQ, per_channel=per_channel,
                      activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                      nodes_to_exclude=[*excluded, *softmax], extra_options=extra)


@contextlib.contextmanager
def _root_log_quiet() -> Iterator[None]:
    """The quantiser logs advice ("consider pre-processing") on the root logger; keep it off the terminal."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class _Calibration:
    """The calibration data reader ONNX Runtime's static quantiser pulls inputs from."""

    def __init__(self, requests: list[Any], names: list[str]) -> None:
        self._feeds = iter(_named(r, names) for r in requests)

    def get_next(self) -> Feeds | None:
        return next(self._feeds, None)


def _named(request: Any, names: list[str]) -> Feeds:
    if isinstance(request, Mapping):
        return {k: np.asarray(v) for k, v in request.items()}
    return {names[0]: np.asarray(request, np.float32)}


def _requests(inputs: Any) -> list[Any]:
    """A list of requests: a list of arrays/mappings as given; one array or mapping split into row chunks."""
    if isinstance(inputs, list) and inputs and (isinstance(inputs[0], Mapping | np.ndarray)):
        return list(inputs)
    if isinstance(inputs, Mapping):
        n = len(next(iter(inputs.values())))
        return [{k: np.asarray(v)[i:i + 64] for k, v in inputs.items()} for i in range(0, n, 64)]
    arr = np.asarray(inputs)
    return [arr[i:i + 64] for i in range(0, len(arr), 64)]


class _Scorer:
    """The metric of a model on the evaluation inputs, and the fp32 figures to compare with."""

    def __init__(self, fp32: bytes, inputs: Any, task: str, targets: Any, reference: Any, output: str | None,
                 threads: int) -> None:
        self.requests, self.task, self.threads = _requests(inputs), task, threads
        sess = session(fp32, threads=threads)
        self.output = output or _default_output(sess)
        self.fp32_out = self._outputs(sess)
        self.samples = len(self.fp32_out)
        self.targets = None if targets is None else np.asarray(targets)
        if self.targets is not None and len(self.targets) != self.samples:
            raise InputError(f"{len(self.targets)} targets for {self.samples} evaluation samples: pass one target "
                             "(label or value) per sample")
        self.reference = self.fp32_out if reference is None else _stack(reference)
        if task == "embedding" and self.reference.reshape(len(self.reference), -1).shape != \
                self.fp32_out.reshape(self.samples, -1).shape:
            raise InputError(f"reference outputs of shape {self.reference.shape} for model outputs of shape "
                             f"{self.fp32_out.shape}: pass one reference vector per evaluation sample")
        self.metric_name = {"classification": "accuracy %", "regression": "mean absolute error",
                            "embedding": "mean cosine %"}[task]
        self.fp32_metric = self._metric(self.fp32_out)

    def _outputs(self, sess: Any, name: str | None = None) -> np.ndarray:
        name = name or self.output
        parts = [sess.run([name], onnx_feeds(sess, r))[0] for r in self.requests]
        return _stack(parts)

    def score(self, model: bytes) -> float:
        return self._metric(self._outputs(session(model, threads=self.threads)))

    def _metric(self, out: np.ndarray) -> float:
        if self.task == "classification":
            pred = out.argmax(-1) if out.ndim > 1 and out.shape[-1] > 1 else out.reshape(len(out))
            truth = self.targets if self.targets is not None else _labels(self.fp32_out)
            return float(100 * np.mean(pred.reshape(len(truth)) == truth.reshape(len(truth))))
        if self.task == "regression":
            truth = self.targets if self.targets is not None else self.fp32_out
            return float(np.mean(np.abs(out.reshape(len(truth), -1) - truth.reshape(len(truth), -1))))
        return float(100 * np.mean(_cosine(out, self.reference)))

    def drop(self, int8_metric: float) -> float:
        if self.task == "regression":
            if self.targets is None:
                scale = float(np.mean(np.abs(self.fp32_out))) or 1.0
                return 100 * int8_metric / scale
            return 100 * (int8_metric - self.fp32_metric) / max(self.fp32_metric, 1e-12)
        return self.fp32_metric - int8_metric

    def sensitivity(self, fp32: bytes, int8: bytes) -> list[str]:
        """Quantisable nodes, most sensitive first: the relative error each adds to its input's error, on the
        first evaluation requests, comparing the fp32 and INT8 graphs' intermediate tensors."""
        nodes = [n for n in check_onnx(fp32).graph.node if n.op_type in SENSITIVE_OPS and n.name]
        tensors = sorted({t for n in nodes for t in (n.input[0], n.output[0])})
        a = _intermediates(fp32, tensors, self.requests[:8], self.threads)
        b = _intermediates(int8, tensors, self.requests[:8], self.threads)

        def err(t: str) -> float:
            if t not in a or t not in b or a[t].shape != b[t].shape:
                return 0.0
            return float(np.linalg.norm(a[t] - b[t]) / max(float(np.linalg.norm(a[t])), 1e-12))

        added = {n.name: err(n.output[0]) - err(n.input[0]) for n in nodes}
        return [name for name, _ in sorted(added.items(), key=lambda kv: -kv[1])]


def _intermediates(model: bytes, tensors: Sequence[str], requests: list[Any], threads: int) -> dict[str, np.ndarray]:
    """The values of ``tensors`` (those the graph has) on ``requests``, concatenated over requests."""
    onnx = require("onnx")
    proto = check_onnx(model)
    present = {o for n in proto.graph.node for o in n.output} | {i.name for i in proto.graph.input}
    have = {o.name for o in proto.graph.output}
    names = [t for t in tensors if t in present]
    proto.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
                              for t in names if t not in have)
    sess = session(proto.SerializeToString(), threads=threads)
    runs = [sess.run(names, onnx_feeds(sess, r)) for r in requests]
    return {t: np.concatenate([np.ravel(r[i]) for r in runs]) for i, t in enumerate(names)}


def name_nodes(onnx_bytes: bytes) -> bytes:
    """The model with a unique name on every node (quantisers exclude nodes by name) and each opset domain
    imported once (skl2onnx can import the default domain twice, which the quantiser refuses)."""
    proto = check_onnx(onnx_bytes)
    seen: set[str] = set()
    opsets: dict[str, int] = {}
    for o in proto.opset_import:
        domain = "" if o.domain == "ai.onnx" else o.domain
        opsets[domain] = max(opsets.get(domain, 0), o.version)
    changed = len(opsets) != len(proto.opset_import)
    if changed:
        del proto.opset_import[:]
        for domain, version in opsets.items():
            proto.opset_import.add(domain=domain, version=version)
    for i, node in enumerate(proto.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
            changed = True
        seen.add(node.name)
    return proto.SerializeToString() if changed else bytes(onnx_bytes)


def _default_output(sess: Any) -> str:
    names = [o.name for o in sess.get_outputs()]
    if "probabilities" in names:
        return "probabilities"
    floats = [o.name for o in sess.get_outputs() if o.type == "tensor(float)"]
    return (floats or names)[0]


def _labels(out: np.ndarray) -> np.ndarray:
    return out.argmax(-1) if out.ndim > 1 and out.shape[-1] > 1 else out.reshape(len(out))


def _stack(parts: Any) -> np.ndarray:
    if isinstance(parts, np.ndarray):
        return parts
    arrays = [np.asarray(p) for p in parts]
    if arrays and arrays[0].ndim == 3:  # token outputs of different lengths: mean over the sequence
        arrays = [a.mean(1) for a in arrays]
    return np.concatenate(arrays)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a2, b2 = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    den = np.linalg.norm(a2, axis=1) * np.linalg.norm(b2, axis=1)
    return np.asarray((a2 * b2).sum(1) / np.where(den == 0, 1.0, den))
