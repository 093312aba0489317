"""Export a model to ONNX and verify the export against the original.

Pure functions over model objects, ONNX bytes and numpy arrays (or Arrow tables), so that the registry can
wire them to model versions and the CLI to commands:

- :func:`export_onnx` turns a scikit-learn estimator or pipeline (skl2onnx, zipmap off), a PyTorch
  ``nn.Module`` (``torch.onnx.export``, the torch.export-based exporter, with dynamic batch and sequence axes),
  a Hugging Face transformer (``input_ids``/``attention_mask``/``token_type_ids`` -> ``last_hidden_state``) or
  a sentence-transformers model (-> ``embeddings``, pooling and normalisation inside the graph) into ONNX bytes
  with their signature.
- :func:`verify_export` runs the original and the ONNX model on the same inputs and refuses
  (:class:`~assay.errors.ExportMismatch`) when outputs differ beyond the stated tolerance or labels disagree.
- :func:`session` and :func:`run_onnx` run ONNX bytes with ONNX Runtime at a fixed thread count.

onnx, onnxruntime, skl2onnx and torch are imported only when used.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from assay.errors import ExportMismatch, UnsupportedModel
from assay.models.adapters import check_onnx, framework_of, onnx_spec, require
from assay.models.record import Signature, TensorSpec

FRAMEWORKS = ("sklearn", "torch", "transformers", "sentence-transformers", "onnx")
Feeds = dict[str, np.ndarray]
@dataclass(frozen=True)
class ExportResult:
    """ONNX bytes with their signature and where they came from."""

    onnx: bytes = field(repr=False)
    framework: str
    opset: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocessing_in_graph: bool = False
    converter: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.onnx).hexdigest()

    @property
    def size(self) -> int:
        return len(self.onnx)

    def signature(self) -> dict[str, Any]:
        """``{"inputs": [...], "outputs": [...]}``, as a registry record's signature stores them."""
        sig = Signature(self.inputs, self.outputs).to_dict()
        return {"inputs": sig["inputs"], "outputs": sig["outputs"]}

    def to_dict(self) -> dict[str, Any]:
        """Everything but the bytes (JSON-serialisable)."""
        return {"framework": self.framework, "opset": self.opset, "converter": self.converter,
                "preprocessing_in_graph": self.preprocessing_in_graph, "size": self.size,
                "sha256": self.sha256, **self.signature()}


def detect_framework(model: Any) -> str:
    """The framework of a model object, one of :data:`FRAMEWORKS` (``adapters.framework_of`` with torch models
    told apart: transformers, sentence-transformers); :class:`UnsupportedModel` for anything else."""
    return framework_of(model, detail=True)


def export_onnx(model: Any, *, sample_inputs: Any, framework: str | None = None, opset: int | None = None,
                input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None) -> ExportResult:
    """Export ``model`` to ONNX, tracing or converting it with ``sample_inputs``.

    ``sample_inputs``: a 2-D array (or Arrow table of numeric columns) for scikit-learn; an array, a tuple of
    arrays or a name -> array mapping for PyTorch; a mapping of token arrays (or a list of strings for a
    sentence-transformers model, tokenised with its tokenizer) for transformers. Axis 0 is exported as a
    dynamic ``batch`` axis, and axis 1 of integer (token) inputs as a dynamic ``sequence`` axis.
    """
    kind = framework or detect_framework(model)
    if kind == "sklearn":
        return _export_sklearn(model, sample_inputs, opset)
    if kind in ("torch", "transformers", "sentence-transformers"):
        return _export_torch(model, kind, sample_inputs, opset, input_names, output_names)
    if kind == "onnx":
        return describe_onnx(bytes(model))
    raise UnsupportedModel(f"unknown framework {kind!r}; known: {', '.join(FRAMEWORKS)}")


def describe_onnx(onnx_bytes: bytes, *, framework: str = "onnx", converter: str = "",
                  preprocessing_in_graph: bool = False) -> ExportResult:
    """Read the signature and opset of ONNX bytes (raises :class:`UnsupportedModel` on a corrupt file)."""
    proto = check_onnx(bytes(onnx_bytes))
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    init = {i.name for i in proto.graph.initializer}
    inputs = tuple(onnx_spec(v) for v in proto.graph.input if v.name not in init)
    outputs = tuple(onnx_spec(v) for v in proto.graph.output)
    return ExportResult(onnx_bytes, framework, opset, inputs, outputs, preprocessing_in_graph, converter)


# scikit-learn


def _as_matrix(x: Any) -> np.ndarray:
    if hasattr(x, "column_names") and hasattr(x, "to_pandas"):  # an Arrow table of numeric feature columns
        x = np.column_stack([np.asarray(c.to_numpy(zero_copy_only=False)) for c in x.columns])
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise UnsupportedModel(f"scikit-learn models take a 2-D array of features, got shape {arr.shape}: "
                               "reshape with array.reshape(-1, n_features)")
    return arr


def _export_sklearn(model: Any, sample: Any, opset: int | None) -> ExportResult:
    skl2onnx = require("skl2onnx")
    require("onnx")
    from sklearn.base import is_classifier
    from sklearn.pipeline import Pipeline

    x = _as_matrix(sample).astype(np.float32)
    final = model.steps[-1][1] if isinstance(model, Pipeline) else model
    options = {id(final): {"zipmap": False}} if is_classifier(final) else None
    try:
        with _tree_bool_shim():
            proto = skl2onnx.to_onnx(model, x[:1], options=options, target_opset=opset)
    except Exception as e:  # skl2onnx raises RuntimeError/NotImplementedError/MissingShapeCalculator
        raise UnsupportedModel(f"skl2onnx cannot convert {type(model).__name__}: {e}. Supported: the estimators "
                               "listed by skl2onnx.supported_converters(); wrap custom steps in a PyTorch "
                               "module or register a converter") from e
    steps = len(model.steps) if isinstance(model, Pipeline) else 1
    return describe_onnx(proto.SerializeToString(), framework="sklearn", converter=f"skl2onnx {skl2onnx.__version__}",
                         preprocessing_in_graph=steps > 1)


@contextlib.contextmanager
def _tree_bool_shim() -> Iterator[None]:
    """skl2onnx 1.20 passes a Python bool as ``nodes_missing_value_tracks_true`` of tree nodes, which onnx >= 1.19
    rejects ("Expected an int, got a boolean") for every HistGradientBoosting model; make it an int while converting."""
    try:
        tree = importlib.import_module("skl2onnx.common.tree_ensemble")
    except ImportError:
        yield
        return
    original = getattr(tree, "add_node", None)
    if original is None:
        yield
        return

    def add_node(*args: Any, **kwargs: Any) -> Any:
        if "nodes_missing_value_tracks_true" in kwargs:
            kwargs["nodes_missing_value_tracks_true"] = int(kwargs["nodes_missing_value_tracks_true"])
        return original(*args, **kwargs)

    setattr(tree, "add_node", add_node)  # noqa: B010
    try:
        yield
    finally:
        setattr(tree, "add_node", original)  # noqa: B010


# PyTorch, transformers, sentence-transformers


def _torch_module(model: Any, kind: str) -> tuple[Any, list[str], list[str]]:
    """The module to trace, its input names and its output names."""
    torch = require("torch")
    if kind == "sentence-transformers":
        return _SentenceEmbedder.make(torch, model), ["input_ids", "attention_mask", "token_type_ids"], ["embeddings"]
    if kind == "transformers":
        return _HiddenStates.make(torch, model), ["input_ids", "attention_mask", "token_type_ids"], \
            ["last_hidden_state"]
    return model, [], ["output"]


class _SentenceEmbedder:
    """A sentence-transformers model as one module: transformer, mean (or CLS) pooling, L2 normalisation."""

    @staticmethod
    def make(torch: Any, st: Any) -> Any:
        transformer = st[0].auto_model
        modes: dict[str, Any] = getattr(st[1], "get_config_dict", dict)() if len(st) > 1 else {}
        cls_pool = bool(modes.get("pooling_mode_cls_token"))
        normalize = any(type(m).__name__ == "Normalize" for m in st)

        class SentenceEmbedder(torch.nn.Module):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.transformer = transformer

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
                h = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                     token_type_ids=token_type_ids).last_hidden_state
                if cls_pool:
                    e = h[:, 0]
                else:
                    m = attention_mask.unsqueeze(-1).to(h.dtype)
                    e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(e, p=2.0, dim=1) if normalize else e

        return SentenceEmbedder().eval()


class _HiddenStates:
    @staticmethod
    def make(torch: Any, model: Any) -> Any:
        class HiddenStates(torch.nn.Module):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
                return self.model(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state

        return HiddenStates().eval()


def tokenize(model: Any, texts: Sequence[str], *, max_length: int = 128) -> Feeds:
    """Token arrays (int64, padded) for a sentence-transformers model's tokenizer."""
    enc = model.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np")
    return {k: np.asarray(v, np.int64) for k, v in enc.items()}


def torch_feeds(model: Any, kind: str, inputs: Any, names: Sequence[str]) -> Feeds:
    """Inputs as a name -> array mapping in the order the traced module takes them."""
    if kind == "sentence-transformers" and isinstance(inputs, Sequence) and inputs and isinstance(inputs[0], str):
        inputs = tokenize(model, inputs)
    if isinstance(inputs, Mapping):
        if names:
            missing = [n for n in names[:2] if n not in inputs]
            if missing:
                raise UnsupportedModel(f"a transformer takes input_ids and attention_mask; {missing} missing "
                                       f"from the inputs {sorted(inputs)}")
            return {n: np.asarray(inputs[n]) for n in names if n in inputs}
        return {str(k): np.asarray(v) for k, v in inputs.items()}
    arrays = list(inputs) if isinstance(inputs, tuple | list) else [inputs]
    given = list(names) or ([f"input_{i}" for i in range(len(arrays))] if len(arrays) > 1 else ["input"])
    return {n: np.asarray(a) for n, a in zip(given, arrays, strict=False)}


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """torch.onnx and torch.export warn and log about things users cannot act on; keep them off the terminal."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _export_torch(model: Any, kind: str, sample: Any, opset: int | None, input_names: Sequence[str] | None,
                  output_names: Sequence[str] | None) -> ExportResult:
    torch = require("torch")
    require("onnxscript")
    require("onnx")
    module, names, outs = _torch_module(model, kind)
    feeds = torch_feeds(model, kind, sample, list(input_names or names))
    feeds = {k: np.concatenate([v, v]) if v.shape[:1] == (1,) else v for k, v in feeds.items()}  # batch 1 would
    args = tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values())  # specialise the batch axis
    dims = {"batch": torch.export.Dim("batch"), "sequence": torch.export.Dim("sequence")}
    dynamic = tuple(_dynamic_axes(dims, v) for v in feeds.values())
    was_training = bool(getattr(module, "training", False))
    _set_training(module, False)
    try:
        with _quiet_export(), torch.no_grad():
            program = torch.onnx.export(module, args, dynamo=True, verbose=False, opset_version=opset,
                                        input_names=list(feeds), output_names=list(output_names or outs),
                                        dynamic_shapes=dynamic, optimize=True)
    except Exception as e:  # torch.export raises many kinds (UserError, GuardOnDataDependentSymNode, ...)
        raise UnsupportedModel(f"torch.onnx.export could not trace {type(model).__name__}: {str(e)[:400]}. Make "
                               "forward() free of data-dependent Python control flow, or export it yourself "
                               "and register the ONNX file") from e
    finally:
        _set_training(module, was_training)
    converter = f"torch.onnx {torch.__version__} (dynamo)"
    return describe_onnx(program.model_proto.SerializeToString(), framework=kind, converter=converter,
                         preprocessing_in_graph=kind == "sentence-transformers")


def _set_training(module: Any, training: bool) -> None:
    """Put a module in training or eval mode; the module of a ``torch.export`` program (as the registry loads a
    PyTorch version) cannot switch, and keeps the mode it was exported in (eval, by the registry)."""
    with contextlib.suppress(NotImplementedError):
        module.train(training)


def _dynamic_axes(dims: dict[str, Any], arr: np.ndarray) -> dict[int, Any]:
    axes: dict[int, Any] = {0: dims["batch"]} if arr.ndim else {}
    if arr.ndim >= 2 and np.issubdtype(arr.dtype, np.integer):  # token ids, masks: variable length
        axes[1] = dims["sequence"]
    return axes


# running and verifying


def session(onnx_bytes: bytes, *, threads: int = 1, optimization: str = "all") -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (one inter-op thread, sequential)."""
    ort = require("onnxruntime")
    level = ort.GraphOptimizationLevel
    levels = {"none": level.ORT_DISABLE_ALL, "basic": level.ORT_ENABLE_BASIC,
              "extended": level.ORT_ENABLE_EXTENDED, "all": level.ORT_ENABLE_ALL}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = levels[optimization]
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(bytes(onnx_bytes), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's InvalidProtobuf, Fail, InvalidGraph
        raise UnsupportedModel(f"ONNX Runtime cannot load this model ({str(e)[:300]}); the file is truncated, "
                               "corrupt or uses operators this onnxruntime lacks: export it again") from e


def run_onnx(model: Any, inputs: Any, *, threads: int = 1) -> Feeds:
    """Run ONNX bytes (or a session) on ``inputs``: an array for a one-input model or a name -> array mapping."""
    sess = session(bytes(model), threads=threads) if isinstance(model, bytes | bytearray) else model
    feeds = onnx_feeds(sess, inputs)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds), strict=True))


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
               "tensor(int32)": np.int32, "tensor(bool)": np.bool_, "tensor(float16)": np.float16}


def onnx_feeds(sess: Any, inputs: Any) -> Feeds:
    """Inputs cast to the dtypes a session expects; a bare array goes to a one-input model."""
    specs = sess.get_inputs()
    if not isinstance(inputs, Mapping):
        if hasattr(inputs, "column_names"):
            inputs = _as_matrix(inputs)
        if len(specs) != 1:
            raise UnsupportedModel(f"this model takes {len(specs)} inputs ({[s.name for s in specs]}): pass a "
                                   "mapping of name -> array")
        inputs = {specs[0].name: inputs}
    missing = [s.name for s in specs if s.name not in inputs]
    if missing:
        raise UnsupportedModel(f"inputs {missing} missing; the model takes {[s.name for s in specs]}")
    return {s.name: np.asarray(inputs[s.name], dtype=_ORT_DTYPES.get(s.type)) for s in specs}


def reference_outputs(model: Any, inputs: Any, *, framework: str | None = None) -> Feeds:
    """The original model's outputs on ``inputs``, named like the ONNX export's outputs."""
    kind = framework or detect_framework(model)
    if kind == "sklearn":
        x = _as_matrix(inputs)
        if hasattr(model, "predict_proba"):
            return {"label": np.asarray(model.predict(x)), "probabilities": np.asarray(model.predict_proba(x))}
        return {"variable": np.asarray(model.predict(x)).reshape(len(x), -1)}
    if kind == "onnx":
        return run_onnx(bytes(model), inputs)
    if kind == "sentence-transformers" and isinstance(inputs, Sequence) and inputs and isinstance(inputs[0], str):
        normalize = any(type(m).__name__ == "Normalize" for m in model)
        vectors = model.encode(list(inputs), convert_to_numpy=True, show_progress_bar=False,
                               normalize_embeddings=normalize)
        return {"embeddings": np.asarray(vectors, np.float32)}
    return _torch_outputs(model, kind, inputs)


def _torch_outputs(model: Any, kind: str, inputs: Any) -> Feeds:
    torch = require("torch")
    module, names, outs = _torch_module(model, kind)
    feeds = torch_feeds(model, kind, inputs, names)
    was_training = bool(getattr(module, "training", False))
    _set_training(module, False)  # as exported: dropout off, batch norm on its running statistics
    try:
        with torch.no_grad():
            result = module(*(torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()))
    finally:
        _set_training(module, was_training)
    results = result if isinstance(result, tuple | list) else (result,)
    names_out = outs if len(outs) == len(results) else [f"output_{i}" for i in range(len(results))]
    return {n: r.detach().cpu().numpy() for n, r in zip(names_out, results, strict=True)}


@dataclass(frozen=True)
class Verification:
    """How an export's outputs compare with the original's on the same inputs."""

    samples: int
    atol: float
    rtol: float
    max_abs_diff: float
    worst_output: str
    worst_index: tuple[int, ...]
    worst_values: tuple[float, float]  # (original, onnx) at the largest difference
    per_output: dict[str, float]  # output name -> max absolute difference (label mismatches counted as 1.0)
    label_agreement: float | None  # fraction of samples whose predicted label agrees, for classifiers
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "atol": self.atol, "rtol": self.rtol, "max_abs_diff": self.max_abs_diff,
                "worst_output": self.worst_output, "worst_index": list(self.worst_index),
                "worst_values": list(self.worst_values), "per_output": dict(self.per_output),
                "label_agreement": self.label_agreement, "passed": self.passed}


def verify_export(original: Any, onnx_bytes: bytes, inputs: Any, *, atol: float = 1e-4, rtol: float = 1e-3,
                  framework: str | None = None, threads: int = 1) -> Verification:
    """Compare ``original`` and its ONNX export on ``inputs``; raise :class:`ExportMismatch` unless every output
    is within ``atol + rtol * |original|`` and every predicted label agrees."""
    kind = framework or detect_framework(original)
    ref = reference_outputs(original, inputs, framework=kind)
    onnx_inputs = torch_feeds(original, kind, inputs, ["input_ids", "attention_mask", "token_type_ids"]) \
        if kind in ("sentence-transformers", "transformers") else inputs
    got = run_onnx(onnx_bytes, onnx_inputs if kind != "torch" else _positional(onnx_bytes, inputs), threads=threads)
    result = _compare(ref, got, atol, rtol)
    if not result.passed:
        raise ExportMismatch(_mismatch_message(result), result)
    return result


def _positional(onnx_bytes: bytes, inputs: Any) -> Any:
    """Positional torch inputs (an array or a tuple of arrays) named like the export's inputs."""
    if isinstance(inputs, Mapping):
        return inputs
    arrays = list(inputs) if isinstance(inputs, tuple | list) else [inputs]
    names = [s.name for s in describe_onnx(onnx_bytes).inputs]
    return dict(zip(names, arrays, strict=False))


def _compare(ref: Feeds, got: Feeds, atol: float, rtol: float) -> Verification:
    ref_names, got_names = list(ref), list(got)
    pairs = [(r, r if r in got else g) for r, g in zip(ref_names, got_names, strict=False)]
    if len(ref_names) != len(got_names):
        raise ExportMismatch(f"the original gives {len(ref_names)} outputs {ref_names}, the ONNX model "
                             f"{len(got_names)} {got_names}: export the model again")
    per: dict[str, float] = {}
    worst: tuple[str, tuple[int, ...], tuple[float, float], float] = ("", (), (0.0, 0.0), -1.0)
    agreement, passed, samples = None, True, 0
    for rname, gname in pairs:
        a, b = np.asarray(ref[rname]), np.asarray(got[gname])
        samples = max(samples, len(a) if a.ndim else 1)
        if a.size != b.size:
            raise ExportMismatch(f"output {rname!r}: the original gives shape {a.shape}, the ONNX model {b.shape}: "
                                 "export the model again")
        b = b.reshape(a.shape)
        if not np.issubdtype(a.dtype, np.number) or (rname == "label" and not np.issubdtype(a.dtype, np.floating)):
            same = a.astype(str) == b.astype(str) if a.dtype.kind in "OUS" else a == b
            agreement = float(np.mean(same))
            per[rname] = float(np.mean(~same))
            passed &= bool(same.all())
            continue
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        per[rname] = float(diff.max(initial=0.0))
        passed &= bool(np.all(diff <= atol + rtol * np.abs(a.astype(np.float64))))
        if diff.size and per[rname] > worst[3]:
            idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
            worst = (rname, idx, (float(a[idx]), float(b[idx])), per[rname])
    return Verification(samples, atol, rtol, max(worst[3], 0.0), worst[0], worst[1], worst[2], per, agreement,
                        bool(passed))


def _mismatch_message(v: Verification) -> str:
    label = ""
    if v.label_agreement is not None and v.label_agreement < 1:
        label = f"predicted labels disagree on {1 - v.label_agreement:.1%} of {v.samples} samples; "
    return (f"the ONNX export does not match the original: {label}largest difference {v.max_abs_diff:.3g} in output "
            f"{v.worst_output!r} at {list(v.worst_index)} (original {v.worst_values[0]:.6g}, ONNX "
            f"{v.worst_values[1]:.6g}), tolerance atol={v.atol:g} rtol={v.rtol:g}. Nothing was registered. "
            "Check that the model is in eval mode and deterministic, try another opset, or, if the difference is "
            "float32 rounding, raise the tolerance")
