"""Suites: declarative YAML files of expectations for one dataset, parsed with line numbers.

::

    format: 1
    dataset: train
    expectations:
      - expect: not_null
        column: id
      - expect: between
        column: age
        min: 0
        max: 120
        severity: warn        # error (default) blocks a commit, warn only reports

Every mistake in a suite is an error that names its line and says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from assay.checks.expectations import KINDS, Expectation
from assay.errors import InputError, ParamError, SQLConditionError, SuiteError

SUITE_FORMAT = 1


@dataclass(frozen=True)
class Suite:
    """The expectations for one dataset."""

    dataset: str
    expectations: tuple[Expectation, ...] = ()
    format: int = SUITE_FORMAT
    source: str = field(default="", compare=False)  # the YAML text it was read from

    def to_yaml(self) -> str:
        doc = {"format": self.format, "dataset": self.dataset,
               "expectations": [e.to_dict() for e in self.expectations]}
        return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110)


def load_suite(text_or_path: str | Path) -> Suite:
    """A suite from YAML text or a file path."""
    if isinstance(text_or_path, Path) or (isinstance(text_or_path, str) and "\n" not in text_or_path
                                           and text_or_path.endswith((".yaml", ".yml"))):
        path = Path(text_or_path)
        try:
            return parse_suite(path.read_text(encoding="utf-8"), str(path))
        except FileNotFoundError as e:
            raise SuiteError(f"{path}: no such suite file") from e
    return parse_suite(str(text_or_path), "<suite>")


def compose_yaml(text: str, where: str, error: type[InputError]) -> yaml.Node | None:
    """The YAML node tree of ``text`` (with line numbers); invalid YAML raises ``error`` naming the line."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise error(f"{where}{line}: invalid YAML ({getattr(e, 'problem', e)}); fix the syntax") from e


def parse_suite(text: str, where: str = "<suite>") -> Suite:
    """Parse and validate a suite; errors name ``where`` and the line."""
    root = compose_yaml(text, where, SuiteError)
    if not isinstance(root, yaml.MappingNode):
        raise SuiteError(f"{where}: a suite is a mapping with 'dataset' and 'expectations'")
    top = _mapping(root)
    fmt = _value(top.get("format"), 1)
    if not isinstance(fmt, int) or fmt > SUITE_FORMAT:
        raise SuiteError(f"{where} line {_line(top.get('format'), root)}: suite format {fmt!r} is not one this "
                         f"assay reads (up to {SUITE_FORMAT}); upgrade assay")
    dataset = _value(top.get("dataset"), None)
    if not isinstance(dataset, str) or not dataset:
        raise SuiteError(f"{where} line {_line(top.get('dataset'), root)}: 'dataset' must name the dataset the "
                         "suite tests")
    node = top.get("expectations")
    if not isinstance(node, yaml.SequenceNode):
        raise SuiteError(f"{where} line {_line(node, root)}: 'expectations' must be a list of expectations")
    unknown = sorted(set(top) - {"format", "dataset", "expectations"})
    if unknown:
        raise SuiteError(f"{where} line {_line(top[unknown[0]], root)}: unknown key {unknown[0]!r}; a suite has "
                         "format, dataset and expectations")
    expectations = tuple(_expectation(item, where) for item in node.value)
    return Suite(dataset, expectations, fmt, text)


def _expectation(node: yaml.Node, where: str) -> Expectation:
    line = node.start_mark.line + 1
    if not isinstance(node, yaml.MappingNode):
        raise SuiteError(f"{where} line {line}: each expectation is a mapping with 'expect' and its arguments")
    keys = {k.value: k for k, _ in node.value}
    fields = _mapping(node)
    kind = _value(fields.pop("expect", None), None)
    if kind is None:
        raise SuiteError(f"{where} line {line}: this expectation has no 'expect: KIND' line (it has "
                         f"{', '.join(map(repr, keys)) or 'no keys'}); write e.g. '- expect: between' with "
                         "'column:', 'min:' and 'max:' on the lines below it")
    if kind not in KINDS:
        near = ", ".join(sorted(KINDS))
        raise SuiteError(f"{where} line {_line(keys.get('expect'), node)}: unknown expectation {kind!r}; "
                         f"known: {near}")
    args = {k: yaml.safe_load(yaml.serialize(v)) for k, v in fields.items()}
    try:
        return KINDS[kind].build(args)
    except SQLConditionError as e:  # at the condition itself
        raise SuiteError(f"{where} line {_line(fields.get('condition'), node)}: {kind}: {e}") from e
    except ParamError as e:
        raise SuiteError(f"{where} line {line}: {kind}: {e}") from e


def _mapping(node: yaml.MappingNode) -> dict[str, yaml.Node]:
    return {k.value: v for k, v in node.value}


def _value(node: yaml.Node | None, default: Any) -> Any:
    return default if node is None else yaml.safe_load(yaml.serialize(node))


def _line(node: yaml.Node | None, parent: yaml.Node) -> int:
    return (node or parent).start_mark.line + 1
