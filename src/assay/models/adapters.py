"""Model frameworks: which one an object belongs to, how it is stored, what its signature is, how it loads.

Supported: scikit-learn estimators and pipelines (stored with pickle), PyTorch ``nn.Module`` (exported with an
example input by ``torch.export``, the batch dimension dynamic, saved as a ``.pt2`` program), and ONNX models
(a ``.onnx`` file, its bytes, or an ``onnx.ModelProto``).
scikit-learn, torch and onnx are imported only when a model of theirs is handled: torch is never imported
unless the object given is already a torch module or a file is a ``.pt2`` program.

Loading a pickle runs code from the file: register and load only pickle files that you trust.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import pickle
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from assay.errors import MissingExtra, ModelError, ModelFileError, UnsupportedModel
from assay.models.record import ModelVersion, Signature, TensorSpec

_HINT = {
    "onnx": "pip install 'assay[onnx]'",
    "onnxruntime": "pip install 'assay[onnx]'",
    "skl2onnx": "pip install 'assay[onnx]'",
    "onnxscript": "pip install 'assay[onnx]'",
    "torch": "pip install 'assay[torch]' (the CPU build: pip install torch==2.13.0)",
    "sentence_transformers": "pip install 'assay[text]'",
}


def require(module: str) -> Any:
    """Import an optional dependency, or raise :class:`MissingExtra` saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        raise MissingExtra(f"this model operation needs {top}, which is not installed: "
                           f"{_HINT.get(top, 'pip install ' + top)}") from e

SUPPORTED = ("scikit-learn estimators and pipelines, PyTorch nn.Module (with example_input; Hugging Face "
             "transformers and sentence-transformers models export to ONNX; pip install 'assay[torch]'), and ONNX "
             "models: a .onnx file, its bytes or an onnx.ModelProto (pip install "
             "'assay[onnx]')")
FILE_SUFFIXES = {".pkl": "sklearn", ".pickle": "sklearn", ".joblib": "sklearn", ".onnx": "onnx", ".pt2": "torch",
                 ".pt": "torch"}


@dataclass(frozen=True)
class Packed:
    """A model ready to store: its files (name, bytes, media), signature and provenance."""

    framework: str
    model_class: str
    files: tuple[tuple[str, bytes, str], ...]
    signature: Signature
    libraries: dict[str, str]
    meta: dict[str, Any]


@dataclass(frozen=True)
class OnnxBytes:
    """The bytes of an ONNX model, as read from a file."""

    data: bytes
    source: str = "bytes"


def framework_of(model: Any, *, detail: bool = False) -> str:
    """``sklearn``, ``torch`` or ``onnx``; UnsupportedModel for anything else. With ``detail``, a torch model
    that is a Hugging Face transformer or a sentence-transformers model is ``transformers`` or
    ``sentence-transformers`` (how it is exported to ONNX)."""
    if isinstance(model, OnnxBytes | bytes | bytearray | memoryview):
        return "onnx"
    if isinstance(model, str | Path):
        suffix = Path(model).suffix.lower()
        if suffix in FILE_SUFFIXES:
            return FILE_SUFFIXES[suffix]
        raise UnsupportedModel(f"cannot tell the framework of file {str(model)!r} from its suffix {suffix!r}: use "
                               ".pkl or .joblib (scikit-learn), .onnx, or .pt2 (torch.export.save). Supported: "
                               f"{SUPPORTED}")
    if _is_instance(model, "sklearn", "sklearn.base", "BaseEstimator"):
        return "sklearn"
    if _is_instance(model, "torch", "torch.nn", "Module"):
        return _torch_kind(model) if detail else "torch"
    if _is_instance(model, "onnx", "onnx", "ModelProto"):
        return "onnx"
    raise UnsupportedModel(f"cannot take a {_class_name(model)}: it is not a model assay knows; supported are "
                           f"{SUPPORTED}")


def _torch_kind(model: Any) -> str:
    mro = [f"{c.__module__}.{c.__name__}" for c in type(model).__mro__]
    if any(m.startswith("sentence_transformers.") for m in mro):
        return "sentence-transformers"
    if any(m.startswith("transformers.") and m.endswith("PreTrainedModel") for m in mro):
        return "transformers"
    return "torch"


def _is_instance(model: Any, package: str, module: str, cls: str) -> bool:
    """Whether ``model`` is a ``module.cls``, looked up only if ``package`` was already imported (by whoever
    made the model), so that checking never imports a framework."""
    if package not in sys.modules:
        return False
    try:
        base = getattr(__import__(module, fromlist=[cls]), cls)
    except (ImportError, AttributeError):
        return False
    return isinstance(model, base)


def _class_name(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def read_file(path: str | Path) -> Any:
    """The model in a file: a pickled or joblib scikit-learn model (loading it runs code from the file: only
    load files you trust), an ONNX file (its bytes, checked when packed), or a ``torch.export`` program (.pt2)."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"no model file {str(p)!r}; give the path of a .pkl/.joblib, .onnx or .pt2 file")
    kind = framework_of(p)
    data = p.read_bytes()
    if kind == "onnx":
        return OnnxBytes(data, p.name)
    if kind == "torch":
        torch = require("torch")
        try:
            return torch.export.load(io.BytesIO(data))
        except Exception as e:  # a zip that is not an exported program, or no zip at all
            raise ModelFileError(f"{p.name} is not a saved torch.export program ({type(e).__name__}); save the "
                                 "model with torch.export.save(torch.export.export(model, (example,)), "
                                 "'model.pt2')") from e
    try:
        import joblib

        return joblib.load(io.BytesIO(data))
    except Exception as e:  # any error a broken pickle raises
        raise ModelFileError(f"{p.name} does not load as a pickled scikit-learn model: {e}") from e


def pack(model: Any, *, example_input: Any = None) -> Packed:
    """Serialise ``model`` and read its signature (UnsupportedModel, ModelError or ModelFileError if it cannot)."""
    kind = framework_of(model)
    if isinstance(model, str | Path):
        model = read_file(model)
    packer: Callable[[Any, Any], Packed] = {"sklearn": _pack_sklearn, "torch": _pack_torch, "onnx": _pack_onnx}[kind]
    return packer(model, example_input)


def _versions(*names: str) -> dict[str, str]:
    out = {"python": platform.python_version(), "numpy": metadata.version("numpy")}
    for n in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[n] = metadata.version(n)
    return out


# -- scikit-learn ---------------------------------------------------------------------------------------------------


def _pack_sklearn(model: Any, example_input: Any) -> Packed:
    import numpy as np
    from sklearn.base import is_classifier
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except NotFittedError as e:
        raise ModelError(f"the {type(model).__name__} is not fitted: fit it on the training data, then register "
                         "it") from e
    n = getattr(model, "n_features_in_", None)
    names = getattr(model, "feature_names_in_", None)
    inputs = (TensorSpec("X", "float64", (None, int(n)) if n is not None else None),)
    classes = getattr(model, "classes_", None) if is_classifier(model) else None
    if classes is not None:
        outputs = [TensorSpec("label", np.asarray(classes).dtype.name, (None,))]
        if hasattr(model, "predict_proba"):
            outputs.append(TensorSpec("probabilities", "float64", (None, len(classes))))
    else:
        outputs = [TensorSpec("prediction", "float64", (None,))]
    sig = Signature(inputs, tuple(outputs), tuple(str(c) for c in names) if names is not None else (),
                    classes=tuple(np.asarray(classes).tolist()) if classes is not None else None)
    data = pickle.dumps(model, protocol=5)
    root = type(model).__module__.split(".")[0]
    libs = _versions("scikit-learn", "scipy", *([root] if root not in ("sklearn", "__main__") else []))
    return Packed("sklearn", _class_name(model), (("model.pkl", data, "sklearn-pickle"),), sig, libs,
                  {"estimator": type(model).__name__})


# -- PyTorch --------------------------------------------------------------------------------------------------------


def _as_tuple(x: Any) -> tuple[Any, ...]:
    return tuple(x) if isinstance(x, tuple | list) else (x,)


def _spec(name: str, value: Any) -> TensorSpec:
    """A tensor's spec; symbolic dimensions (the dynamic batch) are None."""
    shape = tuple(d if isinstance(d, int) else None for d in value.shape)
    return TensorSpec(name, str(value.dtype).removeprefix("torch."), shape)


def _program_specs(program: Any) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Inputs and outputs of a ``torch.export.ExportedProgram``, from the tensors its graph was traced with."""
    nodes = {n.name: n for n in program.graph.nodes}
    ins = [nodes[n].meta.get("val") for n in program.graph_signature.user_inputs]
    outs = [nodes[n].meta.get("val") if n in nodes else None for n in program.graph_signature.user_outputs]
    inputs = tuple(_spec("input" if len(ins) == 1 else f"input_{i}", v) for i, v in enumerate(ins) if v is not None)
    outputs = tuple(_spec("output" if len(outs) == 1 else f"output_{i}", v) for i, v in enumerate(outs)
                    if v is not None and hasattr(v, "shape"))
    return inputs, outputs


def _export(torch: Any, model: Any, example: tuple[Any, ...]) -> Any:
    """``torch.export`` of ``model`` with a dynamic batch dimension (an example batch of one is doubled, since
    export fixes dimensions of size 1)."""
    example = tuple(torch.cat([x, x]) if x.dim() and x.shape[0] == 1 else x for x in example)
    dims = tuple({0: torch.export.Dim.DYNAMIC} if x.dim() else {} for x in example)
    try:
        return torch.export.export(model, example, dynamic_shapes=dims)
    except Exception as e:  # torch raises many kinds for a model it cannot trace
        raise ModelError(f"{type(model).__name__} could not be exported with the example input ({type(e).__name__}: "
                         f"{str(e)[:300]}); give an example_input of the shape and dtype it takes") from e


def _pack_torch(model: Any, example_input: Any) -> Packed:
    torch = require("torch")
    program = model if isinstance(model, torch.export.ExportedProgram) else None
    if program is None:
        if example_input is None:
            raise ModelError(f"a PyTorch model needs example_input: a tensor (or tuple of tensors) of one batch, "
                             f"e.g. torch.zeros(1, 64), to export {type(model).__name__} and record its signature")
        model.eval()
        program = _export(torch, model, tuple(torch.as_tensor(x) for x in _as_tuple(example_input)))
    inputs, outputs = _program_specs(program)
    buf = io.BytesIO()
    torch.export.save(program, buf)
    files = [("model.pt2", buf.getvalue(), "torch-export")]
    if example_input is not None:
        import numpy as np

        npy = io.BytesIO()
        np.save(npy, torch.as_tensor(_as_tuple(example_input)[0]).cpu().numpy(), allow_pickle=False)
        files.append(("example_input.npy", npy.getvalue(), "npy"))
    n_params = sum(int(p.numel()) for p in program.parameters())
    cls = _class_name(model) if program is not model else "torch.export.ExportedProgram"
    return Packed("torch", cls, tuple(files), Signature(inputs, outputs), _versions("torch"),
                  {"parameters": n_params})


# -- ONNX -----------------------------------------------------------------------------------------------------------


def check_onnx(data: bytes, source: str = "the ONNX model") -> Any:
    """The ``onnx.ModelProto`` in ``data``, checked with ``onnx.checker``; ModelFileError if it is not one."""
    onnx = require("onnx")
    try:
        proto = onnx.load_from_string(data)
        onnx.checker.check_model(proto)
    except Exception as e:  # DecodeError, ValidationError: a truncated or corrupt file
        raise ModelFileError(f"{source} is not a valid ONNX model ({type(e).__name__}: {str(e)[:200]}); the file "
                             "may be truncated or corrupt: export it again") from e
    for part in ("input", "output"):
        if not getattr(proto.graph, part):
            raise ModelFileError(f"{source} is not a valid ONNX model: its graph has no {part}s; export it again")
    return proto


def _pack_onnx(model: Any, example_input: Any) -> Packed:
    if isinstance(model, OnnxBytes):
        data, source = model.data, model.source
    elif isinstance(model, bytes | bytearray | memoryview):
        data, source = bytes(model), "the ONNX bytes"
    else:
        data, source = model.SerializeToString(), "the ONNX model"
    proto = check_onnx(data, source)
    initial = {i.name for i in proto.graph.initializer}
    inputs = tuple(onnx_spec(v) for v in proto.graph.input if v.name not in initial)
    outputs = tuple(onnx_spec(v) for v in proto.graph.output)
    opsets = {o.domain or "ai.onnx": int(o.version) for o in proto.opset_import}
    meta = {"producer": f"{proto.producer_name} {proto.producer_version}".strip(), "opsets": opsets,
            "ir_version": int(proto.ir_version)}
    return Packed("onnx", "onnx.ModelProto", (("model.onnx", data, "onnx"),), Signature(inputs, outputs),
                  _versions("onnx"), meta)


def onnx_spec(value: Any) -> TensorSpec:
    """The spec of an ONNX graph input or output (a ``ValueInfoProto``): numpy dtype name, and shape with a
    named dynamic axis as its name ("batch") and an unnamed one as None; non-tensor values by their kind."""
    import numpy as np

    onnx = require("onnx")
    t = value.type.tensor_type
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)).name
    except (KeyError, TypeError, ValueError):
        dtype = value.type.WhichOneof("value") or "unknown"
    if not t.HasField("shape"):
        return TensorSpec(value.name, dtype, None)
    dims = tuple(int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim)
    return TensorSpec(value.name, dtype, dims)


# -- loading --------------------------------------------------------------------------------------------------------


def load(version: ModelVersion, read: Callable[[str], bytes]) -> Any:
    """The live model of a stored version: an estimator (unpickled: runs code from the stored bytes, which
    are the ones registered), a torch module (of the exported program), or an ``onnx.ModelProto``."""
    art = version.artifact()
    data = read(art.oid)
    if art.media == "sklearn-pickle":
        return pickle.loads(data)  # the registered bytes, verified against their hash
    if art.media == "torch-export":
        return require("torch").export.load(io.BytesIO(data)).module()
    if art.media == "onnx":
        return require("onnx").load_from_string(data)
    raise UnsupportedModel(f"{version.spec} is stored as {art.media!r}, which this assay cannot load; upgrade assay")


def input_width(signature: Signature) -> int | None:
    """How many feature values one sample of the first input holds (64 for [N, 64] and for [N, 1, 8, 8])."""
    if not signature.inputs or signature.inputs[0].shape is None:
        return None
    dims = signature.inputs[0].shape[1:]
    if not dims or not all(isinstance(d, int) and d > 0 for d in dims):
        return None
    return math.prod(int(d) for d in dims if isinstance(d, int))
