"""An edge package: an ONNX model, its signature, hashes and a runner that needs only onnxruntime and numpy.

:func:`package` writes a folder or a ``.zip`` holding::

    model.onnx       the model (preprocessing inside the graph where the converter put it there)
    signature.json   inputs and outputs: name, dtype, shape (a string or null for a dynamic axis)
    manifest.json    format version, SHA-256 and BLAKE3 of every file, size, metadata
    predict.py       python predict.py input.json  |  from predict import predict
    README.txt

Writes are atomic: everything goes to a temporary sibling first, then one rename puts it in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import blake3

from assay.errors import InputError
from assay.models.onnx_export import describe_onnx

FORMAT_VERSION = 1
MODEL_FILE = "model.onnx"
_README = """{name}: an ONNX model packaged by assay.

Needs Python 3.10+ with onnxruntime and numpy (pip install onnxruntime numpy).

    python predict.py input.json          # prints the outputs as JSON
    python -c "from predict import predict; print(predict({{...}}))"

input.json maps each input name to its rows; signature.json lists the inputs:
{inputs}
manifest.json holds the SHA-256 and BLAKE3 of every file; predict.py checks the model's before loading it.
"""


@dataclass(frozen=True)
class PackageResult:
    """Where the package was written and what it holds (file name -> sha256)."""

    path: Path
    files: dict[str, str] = field(default_factory=dict)
    size: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "files": dict(self.files), "size": self.size}


def package(onnx_bytes: bytes, signature: Mapping[str, Any] | None, dest: str | Path, *, name: str = "model",
            metadata: Mapping[str, Any] | None = None, overwrite: bool = False) -> PackageResult:
    """Write an edge package to ``dest``: a folder, or a zip file when ``dest`` ends in ``.zip``.

    ``signature``: ``{"inputs": [...], "outputs": [...]}`` as :meth:`ExportResult.signature` gives it, or
    None to read it from the graph; its names must be the graph's. ``metadata`` (JSON-serialisable: model
    name, version, lineage) goes into manifest.json. An existing ``dest`` is replaced only with ``overwrite``.
    """
    graph_sig = describe_onnx(bytes(onnx_bytes)).signature()
    sig = _checked_signature(signature, graph_sig)
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise InputError(f"{dest} already exists: choose another destination or pass overwrite=True")
    contents = _contents(bytes(onnx_bytes), sig, name, metadata)
    if dest.suffix.lower() == ".zip":
        _write_zip(contents, dest)
    else:
        _write_dir(contents, dest)
    files = {k: hashlib.sha256(v).hexdigest() for k, v in contents.items()}
    return PackageResult(dest, files, sum(len(v) for v in contents.values()))


def _checked_signature(given: Mapping[str, Any] | None, graph: dict[str, Any]) -> dict[str, Any]:
    if given is None:
        return graph
    for side in ("inputs", "outputs"):
        names = [t["name"] for t in given.get(side, [])]
        expected = [t["name"] for t in graph[side]]
        if names != expected:
            raise InputError(f"the signature's {side} {names} are not the model's {expected}: pass the signature "
                             "of this model (or None to read it from the graph)")
    return {"inputs": list(given["inputs"]), "outputs": list(given["outputs"])}


def _contents(model: bytes, sig: dict[str, Any], name: str, metadata: Mapping[str, Any] | None) -> dict[str, bytes]:
    runner = (resources.files("assay.models") / "_edge" / "predict.py").read_bytes()
    inputs = "\n".join(f"  {t['name']}: {t['dtype']} {t['shape']}" for t in sig["inputs"])
    files = {
        MODEL_FILE: model,
        "signature.json": _json({"format": FORMAT_VERSION, "name": name, **sig}),
        "predict.py": runner,
        "README.txt": _README.format(name=name, inputs=inputs).encode(),
    }
    try:
        meta = json.loads(json.dumps(dict(metadata or {})))
    except TypeError as e:
        raise InputError(f"package metadata must be JSON-serialisable: {e}") from e
    manifest = {"format": FORMAT_VERSION, "name": name, "model": MODEL_FILE, "metadata": meta,
                "files": {k: {"sha256": hashlib.sha256(v).hexdigest(), "blake3": blake3.blake3(v).hexdigest(),
                              "size": len(v)} for k, v in files.items()}}
    return {**files, "manifest.json": _json(manifest)}


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()


def _write_zip(contents: dict[str, bytes], dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for fname, data in contents.items():
                    zf.writestr(fname, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_dir(contents: dict[str, bytes], dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    old: Path | None = None
    try:
        for fname, data in contents.items():
            with open(tmp / fname, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        if dest.exists():  # overwrite: move the old package aside, put the new one in place, then drop the old
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.rename(dest, old)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not dest.exists():
            os.rename(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
