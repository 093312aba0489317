"""The layers of DESIGN.md: a lower layer never imports a higher one; the public surface is sorted."""

from __future__ import annotations

import ast
from pathlib import Path

import assay
import assay.checks
import assay.gate
import assay.models
import assay.repo
import assay.screens
import assay.serve
import assay.store
import assay.table

LAYERS = ["errors", "store", "table", "repo", "checks", "screens", "gate", "models", "serve", "report", "cli"]
SRC = Path(assay.__file__).parent


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "assay" or len(parts) < 2:
        return None
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else None


def test_lower_layers_never_import_higher_ones() -> None:
    problems = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[0] not in LAYERS and rel.stem not in LAYERS:
            continue
        own = LAYERS.index(rel.parts[0] if len(rel.parts) > 1 else rel.stem)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                layer = _layer(name)
                if layer is not None and layer > own:
                    problems.append(f"{rel} imports {name}")
    assert problems == []


def test_library_never_prints() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        if "cli" in path.relative_to(SRC).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(str(path.relative_to(SRC)))
    assert offenders == []


def test_public_surfaces_are_sorted_and_importable() -> None:
    for module in (assay, assay.store, assay.table, assay.repo, assay.checks, assay.screens, assay.gate,
                   assay.models, assay.serve):
        names = list(module.__all__)
        assert names == sorted(names), module.__name__
        for name in names:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_every_error_subclasses_the_root() -> None:
    from assay import errors

    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert all(issubclass(c, errors.AssayError) for c in classes)
    assert issubclass(errors.ObjectNotFound, KeyError) and issubclass(errors.InputError, ValueError)
