"""Inferring a suite from a known-good version (like TFDV's schema inference, but editable YAML).

An inferred suite describes the distribution, not the one sample it saw, so that a fresh sample of the same
data passes it. Per column: its type; its null fraction (no nulls stays strict, otherwise a margin); numeric
ranges widened by what a fresh sample plausibly reaches (a quarter of the span, or twice the distance from the
1st/99th percentile to the extreme for long tails; a warning only where the tail beyond them is longer than the
range between them, as no hard bound holds there), never across zero when every value is on one side of it,
rounded outward to three significant digits; the set of values of low-cardinality text and integer columns;
nothing bounded on the declared key or on columns that look like identifiers (all distinct integers in order,
UUID- or hash-like strings); uniqueness at error level only on the key (it is a property of the data there),
as a warning on other identifier-like columns, never on continuous numbers (distinct by chance); the row
count's order of magnitude; and, as warnings, the distribution of each column against a reference version.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

from assay.checks.expectations import KINDS, Expectation, q
from assay.checks.suite import Suite
from assay.table import DatasetVersion

MAX_SET = 20  # text and integer columns with at most this many distinct values get an in_set expectation
_DIGITS = 3  # significant digits of inferred bounds (rounded outward)
_ID_PATTERN = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$|^[0-9a-fA-F]{16,}$"


def infer_suite(version: DatasetVersion, *, reference: str | None = None) -> Suite:
    """A suite that ``version`` passes, with sensible tolerances, to edit before use.

    ``reference`` (a revision) adds distribution expectations against that version, as warnings.
    """
    import duckdb

    con = duckdb.connect(config={"memory_limit": "1GB"})
    try:
        con.register("data", version.reader())
        stats = _column_stats(con, version.schema)
        key = set(version.key or ())
        small = [name for name, s in stats.items() if name not in key and _few_values(s)]
        values = _small_sets(con, version, small)
        maybe_ids = [n for n, s in stats.items() if s["nulls"] == 0 and s["distinct"] >= 0.95 * s["rows"] > 0
                     and s["kind"] in ("integer", "text") and n not in key]
        unique = _exactly_unique(con, version, maybe_ids)
        ids = key | _identifiers(con, version, unique, stats)
    finally:
        con.close()
    rows = version.num_rows
    out: list[Expectation] = [KINDS["row_count"].build({"min": rows // 2, "max": rows * 10, "severity": "warn"})]
    for field in version.schema:
        out.extend(_for_column(field, stats[field.name], rows, values.get(field.name), field.name in ids,
                               field.name in key, reference))
    return Suite(version.name, tuple(out))


def _few_values(s: dict[str, Any]) -> bool:
    """A column with few distinct values, each seen often enough that a fresh sample shows them all."""
    return s["kind"] in ("text", "integer") and 0 < s["distinct"] <= MAX_SET and s["rows"] >= 10 * s["distinct"]


def _identifiers(con: Any, version: DatasetVersion, unique: set[str], stats: dict[str, dict[str, Any]]) -> set[str]:
    """Of the all-distinct columns, those that look like identifiers: integers in increasing order (a counter),
    or strings shaped like UUIDs or hex digests. Their values say nothing about the next batch's."""
    if not unique:
        return set()
    con.register("ids", version.reader(sorted(unique)))
    checks: list[str] = []
    for n in sorted(unique):
        c = q(n)
        if stats[n]["kind"] == "integer":
            checks.append(f"bool_and({c} > prev_{len(checks)}) FILTER (WHERE prev_{len(checks)} IS NOT NULL)")
        else:
            checks.append(f"bool_and(regexp_matches({c}, '{_ID_PATTERN}'))")
    lags = ", ".join(f"lag({q(n)}) OVER () AS prev_{i}" for i, n in enumerate(sorted(unique)))
    row = con.sql(f"SELECT {', '.join(checks)} FROM (SELECT *, {lags} FROM ids)").fetchall()[0]
    return {n for n, ok in zip(sorted(unique), row, strict=True) if ok}


def _kind(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        return _kind(t.value_type)
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "text"
    return "other"


def _column_stats(con: Any, schema: pa.Schema) -> dict[str, dict[str, Any]]:
    selects = ["count(*)"]
    for f in schema:
        c, kind = q(f.name), _kind(f.type)
        selects += [f"count(*) FILTER (WHERE {c} IS NULL)", f"approx_count_distinct({c})"]
        if kind in ("number", "integer"):
            finite = f"WHERE NOT isnan({c}::DOUBLE) AND NOT isinf({c}::DOUBLE)"
            selects += [f"min({c}) FILTER (WHERE NOT isnan({c}::DOUBLE))",
                        f"max({c}) FILTER (WHERE NOT isnan({c}::DOUBLE))",
                        f"count(*) FILTER (WHERE isnan({c}::DOUBLE))",
                        f"quantile_cont({c}::DOUBLE, [0.01, 0.99]) FILTER ({finite})"]
        else:
            selects += ["NULL", "NULL", "0", "NULL"]
    row = con.sql(f"SELECT {', '.join(selects)} FROM data").fetchall()[0]
    out = {}
    for i, f in enumerate(schema):
        nulls, distinct, lo, hi, nans, pct = row[1 + 6 * i : 7 + 6 * i]
        out[f.name] = {"kind": _kind(f.type), "nulls": nulls, "distinct": distinct, "min": lo, "max": hi,
                       "nans": nans, "pct": pct, "rows": row[0], "type": str(f.type)}
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


def _for_column(field: pa.Field, s: dict[str, Any], rows: int, values: list[Any] | None, identifier: bool,
                key: bool, reference: str | None) -> list[Expectation]:
    name = field.name
    out = [KINDS["column"].build({"column": name, "type": s["type"]})]
    if s["nulls"] == 0:
        out.append(KINDS["not_null"].build({"column": name}))
    else:
        fraction = s["nulls"] / rows
        out.append(KINDS["null_fraction"].build({"column": name, "max": _up(min(1.0, fraction * 1.5 + 0.01))}))
    if values is not None:
        typed = [int(v) for v in values] if s["kind"] == "integer" else values
        out.append(KINDS["in_set"].build({"column": name, "values": typed}))
    elif s["kind"] in ("number", "integer") and s["min"] is not None and not identifier:
        out.append(KINDS["between"].build({"column": name, **_range(s, pa.types.is_integer(field.type))}))
    if identifier and rows > 1:
        out.append(KINDS["unique"].build({"column": name, **({} if key else {"severity": "warn"})}))
    if reference is not None and s["kind"] in ("number", "integer", "text") and not identifier:
        limits = {"ks_max": 0.1, "wasserstein_max": 0.25} if s["kind"] != "text" else {"js_max": 0.1}
        out.append(KINDS["distribution"].build({"column": name, "reference": reference, **limits, "severity": "warn"}))
    return out


def _range(s: dict[str, Any], integral: bool) -> dict[str, Any]:
    """Bounds a fresh sample of the same distribution stays within: the observed range widened by a quarter of
    its span, or by twice the tail beyond the 1st/99th percentile when that is longer; not across zero."""
    lo, hi = float(s["min"]), float(s["max"])
    p01, p99 = (float(v) for v in (s["pct"] or (lo, hi)))
    span = hi - lo if math.isfinite(hi - lo) else 0.0
    new_lo = lo - max(0.25 * span, 2 * (p01 - lo)) if math.isfinite(lo) else lo  # infinities stay as bounds
    new_hi = hi + max(0.25 * span, 2 * (hi - p99)) if math.isfinite(hi) else hi
    if lo >= 0:
        new_lo = max(new_lo, 0.0)
    if hi <= 0:
        new_hi = min(new_hi, 0.0)
    bounds: dict[str, Any] = ({"min": math.floor(new_lo), "max": math.ceil(new_hi)} if integral
                              else {"min": _down(new_lo), "max": _up(new_hi)})
    if s["nans"]:
        bounds["allow_nan"] = True
    # a long tail (lognormal, Pareto): no hard bound holds
    if math.isfinite(span) and span and max(hi - p99, p01 - lo) > max(p99 - p01, 1e-300):
        bounds["severity"] = "warn"
    return bounds


def _up(x: float) -> float:
    """``x`` rounded up to three significant digits."""
    return -_down(-x)


def _down(x: float) -> float:
    """``x`` rounded down to three significant digits (a short, readable bound that still holds)."""
    if x == 0 or not math.isfinite(x):
        return x
    scale = 10.0 ** (math.floor(math.log10(abs(x))) - _DIGITS + 1)
    out = math.floor(x / scale) * scale
    return float(f"{out:.{_DIGITS}g}") if float(f"{out:.{_DIGITS}g}") <= x else out
