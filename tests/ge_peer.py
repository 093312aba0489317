"""Great Expectations' own test definitions mapped onto assay expectations (the runner is assay's own).

``cases()`` yields every test case of every expectation that assay has an equivalent of, with the
assay expectation it maps to (or the reason it is not mapped) and Great Expectations' expected verdict.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

PEER = Path(os.environ.get("ASSAY_GE_DEFINITIONS", Path(__file__).parents[1] / ".." / "shared" / "peers"
                            / "great_expectations" / "test_definitions")).resolve()
PANDAS_TYPES = {"int64": pa.int64(), "Int64": pa.int64(), "float64": pa.float64(), "Float64": pa.float64(),
                "str": pa.string(), "string": pa.string(), "object": None, "bool": pa.bool_(),
                "boolean": pa.bool_(), "datetime64[ns]": pa.timestamp("ns"), "int32": pa.int32()}


@dataclass(frozen=True)
class Case:
    file: str
    title: str
    dataset: str  # which data of the file: "<file>#<n>"
    data: pa.Table | None
    expectation: dict[str, Any] | None  # the assay expectation, or None when not mapped
    expect_success: bool | None  # None: Great Expectations expects an error
    reason: str = ""  # why a case is not mapped


def _between(kind: str, extra: dict[str, Any] | None = None) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def convert(a: dict[str, Any]) -> dict[str, Any]:
        out = {"expect": kind, "column": a.pop("column"), **(extra or {})}
        for ge, ours in (("min_value", "min"), ("max_value", "max")):
            if a.get(ge) is not None:
                out[ours] = a.pop(ge)
            a.pop(ge, None)
        for flag in ("strict_min", "strict_max"):
            if flag in a:
                value = a.pop(flag)
                if value and kind != "between":
                    raise NotImplementedError(f"{flag} on {kind}")
                if kind == "between":
                    out[flag] = value
        return out
    return convert


def _simple(kind: str, renames: dict[str, str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def convert(a: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"expect": kind}
        for ge, ours in renames.items():
            if ge in a:
                out[ours] = a.pop(ge)
        return out
    return convert


def _sql(template: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def convert(a: dict[str, Any]) -> dict[str, Any]:
        column = '"' + a.pop("column").replace('"', '""') + '"'
        values = a.pop("value_set", None)
        regex = a.pop("regex", None)
        listed = ", ".join("'" + str(v).replace("'", "''") + "'" if isinstance(v, str) else repr(v)
                           for v in values or [])
        pattern = "'" + str(regex).replace("'", "''") + "'" if regex is not None else ""
        if values == [] and "NOT IN" in template:  # nothing is excluded
            return {"expect": "sql", "condition": "TRUE"}
        return {"expect": "sql", "condition": template.format(c=column, values=listed or "NULL", regex=pattern)}
    return convert


def _exact(kind: str, ge: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def convert(a: dict[str, Any]) -> dict[str, Any]:
        value = a.pop(ge)
        out = {"expect": kind, "min": value, "max": value}
        if "column" in a:
            out["column"] = a.pop("column")
        return out
    return convert


MAPPING: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "expect_column_values_to_be_between": _between("between"),
    "expect_column_values_to_not_be_null": _simple("not_null", {"column": "column"}),
    "expect_column_values_to_be_null": _sql("{c} IS NULL"),
    "expect_column_values_to_be_in_set": _simple("in_set", {"column": "column", "value_set": "values"}),
    "expect_column_values_to_not_be_in_set": _sql("{c} IS NULL OR {c} NOT IN ({values})"),
    "expect_column_values_to_match_regex": _simple("regex", {"column": "column", "regex": "pattern"}),
    "expect_column_values_to_not_match_regex": _sql("{c} IS NULL OR NOT regexp_matches({c}::VARCHAR, {regex})"),
    "expect_column_value_lengths_to_be_between": _between("length_between"),
    "expect_column_value_lengths_to_equal": _exact("length_between", "value"),
    "expect_column_values_to_be_unique": _simple("unique", {"column": "column"}),
    "expect_compound_columns_to_be_unique": _simple("unique", {"column_list": "columns"}),
    "expect_column_mean_to_be_between": _between("mean_between"),
    "expect_column_stdev_to_be_between": _between("std_between"),
    "expect_column_median_to_be_between": _between("quantile_between", {"quantile": 0.5}),
    "expect_column_min_to_be_between": _between("quantile_between", {"quantile": 0.0}),
    "expect_column_max_to_be_between": _between("quantile_between", {"quantile": 1.0}),
    "expect_table_row_count_to_be_between": _between("row_count"),
    "expect_table_row_count_to_equal": _exact("row_count", "value"),
    "expect_column_to_exist": _simple("column", {"column": "column"}),
    "expect_column_distinct_values_to_be_in_set": _simple("in_set", {"column": "column", "value_set": "values"}),
}
IGNORED_ARGS = {"result_format", "catch_exceptions", "include_config", "meta"}


def available() -> bool:
    return PEER.is_dir()


def cases() -> Iterator[Case]:
    for path in sorted(PEER.rglob("*.json")):
        spec = json.loads(path.read_text())
        kind = spec.get("expectation_type", path.stem)
        for n, dataset in enumerate(spec.get("datasets", [])):
            table, why = _table(dataset)
            for test in dataset.get("tests", []):
                if not _for_pandas(test):
                    continue
                yield _case(path.name, f"{path.name}#{n}", kind, table, why, test)


def _case(file: str, dataset: str, kind: str, table: pa.Table | None, why: str, test: dict[str, Any]) -> Case:
    title = test["title"]
    out = test.get("out", {})
    expect_success = out.get("success") if "success" in out else None
    if kind not in MAPPING:
        return Case(file, title, dataset, None, None, expect_success, f"no assay equivalent of {kind}")
    if table is None:
        return Case(file, title, dataset, None, None, expect_success, why)
    args = dict(test.get("in", {}))
    if any(isinstance(v, dict) and "$PARAMETER" in v for v in args.values()):
        return Case(file, title, dataset, None, None, expect_success, "evaluation parameters ($PARAMETER)")
    used = [args.get("column"), *(args.get("column_list") or [])]
    absent = [c for c in used if c is not None and c not in table.column_names]
    if absent:
        return Case(file, title, dataset, None, None, expect_success, f"columns of mixed types {absent}")
    mostly = args.pop("mostly", None)
    for k in IGNORED_ARGS:
        args.pop(k, None)
    try:
        mapped = MAPPING[kind](args)
    except (NotImplementedError, KeyError) as e:
        return Case(file, title, dataset, None, None, expect_success, f"argument not supported: {e}")
    if args:
        return Case(file, title, dataset, None, None, expect_success, f"arguments with no equivalent: {sorted(args)}")
    if mostly is not None:
        mapped["mostly"] = mostly
    return Case(file, title, dataset, table, mapped, expect_success)


def _for_pandas(test: dict[str, Any]) -> bool:
    only = test.get("only_for")
    suppressed = test.get("suppress_test_for", [])
    return (not only or "pandas" in only) and "pandas" not in suppressed


def _table(dataset: dict[str, Any]) -> tuple[pa.Table | None, str]:
    data = dataset.get("data", {})
    if not isinstance(data, dict):
        return None, "the data is not a table of columns"
    types = (dataset.get("schemas") or {}).get("pandas") or {}
    columns = {}
    for name, values in data.items():
        wanted = PANDAS_TYPES.get(types.get(name, ""))
        try:
            columns[name] = pa.array(values, type=wanted) if wanted is not None else pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            columns[name] = None
    if any(v is None for v in columns.values()):
        mixed = [n for n, v in columns.items() if v is None]
        columns = {n: v for n, v in columns.items() if v is not None}
        if not columns:
            return None, f"columns of mixed types {mixed} have no Arrow type"
    return pa.table(columns), ""
