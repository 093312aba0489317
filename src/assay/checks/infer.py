"""Inferring a suite from a known-good version (like TFDV's schema inference, but editable YAML).

Per column: its type; its null fraction (no nulls stays strict, otherwise a margin); numeric ranges
widened by a tenth of their span; the set of values of low-cardinality text columns; uniqueness of
columns whose values are all distinct; the row count's order of magnitude; and, as warnings, the
distribution of each column against the version it was inferred from.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

from assay.checks.expectations import KINDS, Expectation, q
from assay.checks.suite import Suite
from assay.table import DatasetVersion

MAX_SET = 20  # text columns with at most this many distinct values get an in_set expectation


def infer_suite(version: DatasetVersion, *, reference: str | None = None) -> Suite:
    """A suite that ``version`` passes, with sensible tolerances, to edit before use.

    ``reference`` (a revision) adds distribution expectations against that version, as warnings.
    """
    import duckdb

    con = duckdb.connect(config={"memory_limit": "1GB"})
    try:
        con.register("data", version.reader())
        stats = _column_stats(con, version.schema)
        small = [name for name, s in stats.items() if s["kind"] == "text" and s["distinct"] <= MAX_SET]
        values = _small_sets(con, version, small)
        maybe_keys = [n for n, s in stats.items() if s["nulls"] == 0 and s["distinct"] >= 0.95 * s["rows"] > 0]
        unique = _exactly_unique(con, version, maybe_keys)
    finally:
        con.close()
    rows = version.num_rows
    out: list[Expectation] = [KINDS["row_count"].build({"min": rows // 2, "max": rows * 10, "severity": "warn"})]
    for field in version.schema:
        out.extend(_for_column(field, stats[field.name], rows, values.get(field.name), field.name in unique,
                               reference))
    return Suite(version.name, tuple(out))


def _kind(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        return _kind(t.value_type)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "text"
    return "other"


def _column_stats(con: Any, schema: pa.Schema) -> dict[str, dict[str, Any]]:
    selects = ["count(*)"]
    for f in schema:
        c, kind = q(f.name), _kind(f.type)
        selects += [f"count(*) FILTER (WHERE {c} IS NULL)", f"approx_count_distinct({c})"]
        if kind == "number":
            selects += [f"min({c}) FILTER (WHERE NOT isnan({c}::DOUBLE))",
                        f"max({c}) FILTER (WHERE NOT isnan({c}::DOUBLE))",
                        f"count(*) FILTER (WHERE isnan({c}::DOUBLE))"]
        else:
            selects += ["NULL", "NULL", "0"]
    row = con.sql(f"SELECT {', '.join(selects)} FROM data").fetchall()[0]
    out = {}
    for i, f in enumerate(schema):
        nulls, distinct, lo, hi, nans = row[1 + 5 * i : 6 + 5 * i]
        out[f.name] = {"kind": _kind(f.type), "nulls": nulls, "distinct": distinct, "min": lo, "max": hi,
                       "nans": nans, "rows": row[0], "type": str(f.type)}
    return out


def _small_sets(con: Any, version: DatasetVersion, names: list[str]) -> dict[str, list[Any]]:
    """The distinct values of low-cardinality columns, in a second pass over just those columns."""
    if not names:
        return {}
    con.register("small", version.reader(names))
    lists = ", ".join(f"list(DISTINCT {q(n)}::VARCHAR ORDER BY {q(n)}::VARCHAR) FILTER (WHERE {q(n)} IS NOT NULL)"
                      for n in names)
    row = con.sql(f"SELECT {lists} FROM small").fetchall()[0]
    return {n: list(v or []) for n, v in zip(names, row, strict=True)}


def _exactly_unique(con: Any, version: DatasetVersion, names: list[str]) -> set[str]:
    """Which of the candidate columns (nearly distinct by estimate) have no repeated value at all."""
    if not names:
        return set()
    con.register("keys", version.reader(names))
    counts = ", ".join(f"count(DISTINCT {q(n)})" for n in names)
    row = con.sql(f"SELECT count(*), {counts} FROM keys").fetchall()[0]
    return {n for n, d in zip(names, row[1:], strict=True) if d == row[0]}


def _for_column(field: pa.Field, s: dict[str, Any], rows: int, values: list[Any] | None, unique: bool,
                reference: str | None) -> list[Expectation]:
    name = field.name
    out = [KINDS["column"].build({"column": name, "type": s["type"]})]
    if s["nulls"] == 0:
        out.append(KINDS["not_null"].build({"column": name}))
    else:
        fraction = s["nulls"] / rows
        out.append(KINDS["null_fraction"].build({"column": name, "max": round(min(1.0, fraction * 1.5 + 0.01), 4)}))
    if s["kind"] == "number" and s["min"] is not None:
        lo, hi = float(s["min"]), float(s["max"])
        margin = (hi - lo) * 0.1 if math.isfinite(hi - lo) else 0.0
        integral = pa.types.is_integer(field.type)
        lo, hi = lo - margin, hi + margin
        bounds: dict[str, Any] = {"min": int(lo), "max": int(hi)} if integral else {"min": lo, "max": hi}
        if s["nans"]:
            bounds["allow_nan"] = True
        out.append(KINDS["between"].build({"column": name, **bounds}))
    if values is not None:
        out.append(KINDS["in_set"].build({"column": name, "values": values}))
    if rows > 1 and unique and s["kind"] in ("number", "text"):
        out.append(KINDS["unique"].build({"column": name}))
    if reference is not None and s["kind"] in ("number", "text"):
        limits = {"ks_max": 0.1, "wasserstein_max": 0.25} if s["kind"] == "number" else {"js_max": 0.1}
        out.append(KINDS["distribution"].build({"column": name, "reference": reference, **limits, "severity": "warn"}))
    return out
