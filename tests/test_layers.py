"""The house drawn from imports: the layers of docs/architecture.md, lowest first; a module imports only its own
layer and lower ones (even inside a function); no import circle at module level anywhere in the package, and
none at all between the modules of the CLI; one exception tree; the public surface is sorted."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import assay
import assay.checks
import assay.engines
import assay.gate
import assay.models
import assay.repo
import assay.screens
import assay.serve
import assay.store
import assay.table

SRC = Path(assay.__file__).parent
DOCS = SRC.parents[1] / "docs" / "architecture.md"
# below every layer: they import nothing from assay but each other
FOUNDATION = ["errors", "_types", "_params", "_lazy"]
LAYERS = ["engines", "store", "table", "repo", "remote", "checks", "screens", "gate", "models", "serve", "monitor",
          "report", "cli"]
FACADE = "_api"  # assay.Repo and the package root: above the library layers, below the adapters (report, cli)
RANK = {name: 0 for name in FOUNDATION} | {name: i + 1 for i, name in enumerate(LAYERS[:-2])} | \
    {FACADE: len(LAYERS) - 1, "report": len(LAYERS), "cli": len(LAYERS) + 1}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _statements(body: Iterable[ast.stmt], *, top_level: bool) -> Iterator[ast.stmt]:
    """Every statement; with ``top_level``, only those that run at import (not in functions, nor under
    ``if TYPE_CHECKING:``)."""
    for node in body:
        yield node
        if top_level and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if top_level and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _statements(node.orelse, top_level=top_level)
            continue
        for name in ("body", "orelse", "finalbody"):
            yield from _statements(getattr(node, name, []), top_level=top_level)
        for inner in (*getattr(node, "handlers", []), *getattr(node, "cases", [])):
            yield from _statements(inner.body, top_level=top_level)


def imports(source: str, module: str, *, is_package: bool = False, top_level: bool = False) -> list[str]:
    """The assay modules that ``module`` imports, relative imports resolved (``from . import x``,
    ``from ..repo import y``); ``from package import name`` names the submodule when ``name`` is one."""
    out = []
    for node in _statements(ast.parse(source).body, top_level=top_level):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, is_package, node.module, node.level)
            out.extend(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names)
    return [name for name in dict.fromkeys(out) if name == "assay" or name.startswith("assay.")]


def _absolute(module: str, is_package: bool, name: str | None, level: int) -> str:
    if level == 0:
        return name or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - (level - 1)]
    return ".".join([*parts, name] if name else parts)


def _imports_of(module: str, *, top_level: bool = False) -> list[str]:
    path = MODULES[module]
    return imports(path.read_text(), module, is_package=path.name == "__init__.py", top_level=top_level)


def _rank(module: str) -> int:
    parts = module.split(".")
    return RANK[FACADE] if len(parts) == 1 else RANK[parts[1]]


def test_relative_imports_are_read_as_absolute_ones() -> None:
    source = "from . import _common\nfrom ..repo import revisions\nfrom .. import errors\nimport assay.table\n" \
             "def later():\n    from assay.gate import policy\n"
    assert imports(source, "assay.cli.app") == ["assay.cli._common", "assay.repo.revisions", "assay.errors",
                                                "assay.table", "assay.gate.policy"]
    assert imports(source, "assay.cli.app", top_level=True) == ["assay.cli._common", "assay.repo.revisions",
                                                                "assay.errors", "assay.table"]
    assert imports("from . import app\nfrom .app import main\n", "assay.cli", is_package=True) == \
        ["assay.cli.app"]
    assert imports("if TYPE_CHECKING:\n    from assay.repo import Repository\nelse:\n    import assay.store\n",
                   "assay.gate.x", top_level=True) == ["assay.store"]


def test_every_module_belongs_to_a_layer_in_the_documented_order() -> None:
    unplaced = sorted(m for m in MODULES if m != "assay" and m.split(".")[1] not in RANK)
    assert unplaced == [], "add the new layer to LAYERS (and docs/architecture.md), or move the module"
    documented = re.findall(r"^\| `(\w+)` \|", DOCS.read_text(), re.MULTILINE)
    assert documented == LAYERS, "the layers table of docs/architecture.md lists the layers in this order"


def test_lower_layers_never_import_higher_ones() -> None:
    problems = [f"{m} imports {name}" for m in sorted(MODULES) for name in _imports_of(m)
                if _rank(name) > _rank(m)]
    assert problems == []


def test_the_foundation_and_the_engines_import_no_layer() -> None:
    for module in [f"assay.{n}" for n in FOUNDATION] + [m for m in MODULES if m.startswith("assay.engines")]:
        others = [n for n in _imports_of(module) if n.split(".")[1] not in (*FOUNDATION, "engines")]
        assert others == [], module


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, []):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycles_finds_a_circle() -> None:
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": []}) == []


def test_no_import_circle_at_module_level() -> None:
    graph = {m: [n for n in _imports_of(m, top_level=True) if n in MODULES and n != m] for m in MODULES}
    assert _cycles(graph) == []


def test_the_cli_modules_import_no_circle_even_inside_functions() -> None:
    cli = [m for m in MODULES if m.startswith("assay.cli")]
    assert {"assay.cli.app", "assay.cli._common"} <= set(cli)
    graph = {m: [n for n in _imports_of(m) if n in cli and n != m] for m in cli}
    assert _cycles(graph) == []
    groups = [m for m in cli if m.endswith("_cmds")]
    from assay.cli import app as cli_app  # the app imports each command group by name, when it is run

    assert groups and {*cli_app._COMMANDS.values(), *(m for m, _ in cli_app._GROUPS.values()), "ui_cmds"} == \
        {m.rsplit(".", 1)[1] for m in groups}
    assert all("assay.cli.app" not in graph[m] for m in groups)  # and none imports it back


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
    for module in (assay, assay.engines, assay.store, assay.table, assay.repo, assay.checks, assay.screens,
                   assay.gate, assay.models, assay.serve):
        names = list(module.__all__)
        assert names == sorted(names), module.__name__
        for name in names:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_every_error_subclasses_the_root() -> None:
    from assay import errors

    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert all(issubclass(c, errors.AssayError) for c in classes)
    assert issubclass(errors.ObjectNotFound, KeyError) and issubclass(errors.InputError, ValueError)


EDGE = "assay.models._edge."  # the edge package's runner: copied to devices, imports only onnxruntime and numpy


def _exception_names() -> set[str]:
    """Builtin exception names and every class errors.py defines: the bases an exception class derives from."""
    import builtins

    from assay import errors

    found = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}
    return found | {n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, BaseException)}


def test_every_exception_class_is_defined_in_errors_py() -> None:
    bases = _exception_names()
    outside = []
    for module, path in MODULES.items():
        if module == "assay.errors" or module.startswith(EDGE):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(ast.unparse(b).rpartition(".")[2] in bases for b in node.bases):
                outside.append(f"{module}.{node.name}")
    assert outside == [], "define exception classes in src/assay/errors.py (and draw them in its docstring)"


def test_the_error_tree_in_the_docstring_names_every_class() -> None:
    from assay import errors

    classes = [n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, Exception)]
    assert all(re.search(rf"\b{n}\b", errors.__doc__ or "") for n in classes)
