"""Run the ONNX model packaged beside this file. Needs only onnxruntime and numpy.

Command line: ``python predict.py input.json [--threads N]`` prints the outputs as JSON, one key per output.
``input.json`` maps each input name to a nested list (rows first); a model with one input also takes the bare
list. From Python: ``from predict import predict; predict({"X": rows})`` returns name -> numpy array.

The model's SHA-256 is checked against manifest.json before it is loaded; signature.json names the inputs,
their dtypes and shapes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
_SESSIONS: dict[int, Any] = {}


class PackageError(Exception):
    """The package is damaged or the inputs do not fit its signature."""


def signature() -> dict[str, Any]:
    """The package's signature: inputs and outputs, each with name, dtype and shape."""
    result: dict[str, Any] = json.loads((HERE / "signature.json").read_text())
    return result


def _model_bytes() -> bytes:
    manifest = json.loads((HERE / "manifest.json").read_text())
    data = (HERE / manifest["model"]).read_bytes()
    expected = manifest["files"][manifest["model"]]["sha256"]
    if hashlib.sha256(data).hexdigest() != expected:
        raise PackageError(f"{manifest['model']} does not match its SHA-256 in manifest.json: the package is "
                           "damaged; unpack it again from the original archive")
    return data


def session(threads: int = 1) -> Any:
    """The ONNX Runtime session (loaded once per thread count)."""
    if threads not in _SESSIONS:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        _SESSIONS[threads] = ort.InferenceSession(_model_bytes(), opts, providers=["CPUExecutionProvider"])
    return _SESSIONS[threads]


def _feeds(inputs: Any) -> dict[str, np.ndarray]:
    specs = signature()["inputs"]
    if not isinstance(inputs, dict):
        if len(specs) != 1:
            raise PackageError(f"this model takes {len(specs)} inputs {[s['name'] for s in specs]}: pass an object "
                               "mapping each name to its rows")
        inputs = {specs[0]["name"]: inputs}
    unknown = sorted(set(inputs) - {s["name"] for s in specs})
    missing = [s["name"] for s in specs if s["name"] not in inputs]
    if unknown or missing:
        raise PackageError(f"inputs do not fit the signature: missing {missing}, unknown {unknown}; the model "
                           f"takes {[s['name'] for s in specs]}")
    feeds = {}
    for spec in specs:
        try:
            arr = np.asarray(inputs[spec["name"]], dtype=spec["dtype"])
        except (TypeError, ValueError) as e:
            raise PackageError(f"input {spec['name']!r} cannot be read as {spec['dtype']} rows: {e}") from e
        shape = spec["shape"]
        fixed_ok = all(not isinstance(d, int) or d == n for d, n in zip(shape, arr.shape, strict=False))
        if arr.ndim != len(shape) or not fixed_ok:
            raise PackageError(f"input {spec['name']!r} has shape {list(arr.shape)}; the model takes {shape} "
                               "(a string or null is any size)")
        feeds[spec["name"]] = arr
    return feeds


def predict(inputs: Any, *, threads: int = 1) -> dict[str, np.ndarray]:
    """Run the model: ``inputs`` maps input names to rows (or is the rows of a one-input model)."""
    sess = session(threads)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, _feeds(inputs)), strict=True))


def main(argv: list[str]) -> int:
    args = list(argv)
    threads = 1
    if "--threads" in args:
        i = args.index("--threads")
        threads = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 1:
        sys.stderr.write("usage: python predict.py input.json [--threads N]\n")
        return 2
    try:
        inputs = json.loads(Path(args[0]).read_text())
        outputs = predict(inputs, threads=threads)
    except (OSError, json.JSONDecodeError, PackageError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    sys.stdout.write(json.dumps({k: v.tolist() for k, v in outputs.items()}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
