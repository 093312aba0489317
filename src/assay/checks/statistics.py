"""Answering expectations from the statistics kept with each fragment, without reading the data.

An expectation is answered here only when the statistics determine its result exactly: the values it
would get from the scan (counts of failing rows, shares, histograms), or, for means and standard
deviations, a value that differs from the scan's by rounding only and lies clear of every bound by
more than that rounding can move it. Everything else (and anything whose statistics are missing) is
left to the scan, which stays the reference.

Row predicates are evaluated by DuckDB itself, with the expectation's own SQL, over a small table of
the column's type: the smallest and largest values (a range predicate that neither fails holds for
every value between them, since casts and comparisons are monotonic), or the distinct values weighted
by their counts (which gives the exact number of failing rows).
"""

from __future__ import annotations

import math
import sys
from typing import Any

import pyarrow as pa

from assay.checks.expectations import (
    Between,
    CategoryFrequency,
    Expectation,
    InSet,
    LabelDistribution,
    LengthBetween,
    MeanBetween,
    NotNull,
    NullFraction,
    Regex,
    RowCount,
    StdBetween,
    Unique,
    lit,
    q,
)
from assay.table import DatasetVersion
from assay.table.stats import ColumnStats

_EPS = sys.float_info.epsilon
_TINY = 1e-300  # and subnormal results: no bound that near zero is decided here
_NESTED = (pa.types.is_nested, pa.types.is_union)
_BY_VALUE = (Between, InSet, Regex, LengthBetween, CategoryFrequency, LabelDistribution, Unique)
_BY_COUNTS = (NotNull, NullFraction, MeanBetween, StdBetween)


def answer_from_statistics(con: Any, version: DatasetVersion,
                           expectations: dict[int, Expectation]) -> dict[int, dict[str, Any]]:
    """The aggregates (as the scan would name them) of each expectation the statistics decide."""
    usable = {i: e for i, e in expectations.items() if isinstance(e, (RowCount, *_BY_VALUE, *_BY_COUNTS))}
    columns = list(dict.fromkeys(c for e in usable.values() for c in e.columns()))
    known = _Known(con, version, version.column_stats(columns) if columns else {})
    out = {}
    for i, e in usable.items():
        values = _answer(known, e)
        if values is not None:
            out[i] = values
    return out


class _Known:
    """What the answers need: the statistics, the version's schema and rows, DuckDB for predicates."""

    def __init__(self, con: Any, version: DatasetVersion, stats: dict[str, ColumnStats | None]):
        self.con, self.version, self.stats, self.rows = con, version, stats, version.num_rows

    def value_type(self, column: str) -> pa.DataType:
        t = self.version.schema.field(column).type
        return t.value_type if pa.types.is_dictionary(t) else t

    def count_where(self, column: str, values: list[Any], weights: list[int], predicate: str) -> int | None:
        """Sum of ``weights`` of the ``values`` for which ``predicate`` holds; None if DuckDB cannot say."""
        rows = self._query(column, values, weights, f"SELECT coalesce(sum(_assay_n) FILTER (WHERE {predicate}), 0)")
        return None if rows is None else int(rows[0][0])

    def histogram(self, column: str, s: ColumnStats) -> dict[str, int] | None:
        """Counts by text, as the scan's ``histogram(column::VARCHAR)`` gives them."""
        assert s.values is not None
        rows = self._query(column, [v for v, _ in s.values], [n for _, n in s.values],
                           f"SELECT {q(column)}::VARCHAR, sum(_assay_n)", " GROUP BY 1 ORDER BY 1")
        return None if rows is None else {str(k): int(n) for k, n in rows}

    def _query(self, column: str, values: list[Any], weights: list[int], select: str,
               rest: str = "") -> list[tuple[Any, ...]] | None:
        """``select`` over a table of ``values`` (typed as the column) and their weights ``_assay_n``."""
        if column == "_assay_n":
            return None
        try:
            typed = pa.array(values, self.value_type(column))
            table = pa.table({column: typed, "_assay_n": pa.array(weights, pa.int64())})
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError, OverflowError):
            return None
        self.con.register("assay_stats", table)
        try:
            return list(self.con.sql(f"{select} FROM assay_stats{rest}").fetchall())
        except Exception:  # e.g. a value DuckDB cannot convert at run time: the scan will say
            return None
        finally:
            self.con.unregister("assay_stats")


def _answer(col: _Known, e: Expectation) -> dict[str, Any] | None:
    if isinstance(e, RowCount):
        return {"value": col.rows}
    if isinstance(e, Unique):
        return _unique(col, e)
    s = col.stats.get(e.columns()[0])
    if s is None:
        return None
    if isinstance(e, NotNull):
        return {"failing": s.nulls}
    if isinstance(e, NullFraction):
        return {"value": s.nulls / col.rows if col.rows else 0.0}
    if isinstance(e, MeanBetween):
        return _mean(e, s)
    if isinstance(e, StdBetween):
        return _std(e, s)
    if isinstance(e, CategoryFrequency):
        return _category_frequency(col, e, s)
    if isinstance(e, LabelDistribution):
        return _label_distribution(col, e, s)
    return _row_values(col, e, s)


# -- row expectations ----------------------------------------------------------------------------------------


def _row_values(col: _Known, e: Expectation, s: ColumnStats) -> dict[str, Any] | None:
    """``failing`` and ``considered`` of a value expectation (between, in_set, regex, length_between)."""
    failing = _from_range(col, e, s)
    if failing is None and s.values is not None:
        failing = col.count_where(e.columns()[0], [v for v, _ in s.values], [n for _, n in s.values],
                                  e.failing_predicate() or "FALSE")
    if failing is None:
        return None
    return {"failing": failing, "considered": s.rows - s.nulls}


def _from_range(col: _Known, e: Expectation, s: ColumnStats) -> int | None:
    """Failing rows when the range of the values shows that none fails (NaN aside); else None."""
    if isinstance(e, Between):
        nan_fails = 0 if e.args.get("allow_nan") else s.nans
        if s.count == 0:
            return nan_fails
        if s.min is None or s.max is None:
            return None
        outside = col.count_where(e.columns()[0], [s.min, s.max], [1, 1], e.failing_predicate())
        return nan_fails if outside == 0 else None
    if isinstance(e, LengthBetween) and s.min_length is not None and s.max_length is not None:
        low, high = e.args.get("min"), e.args.get("max")
        inside = (low is None or s.min_length >= low) and (high is None or s.max_length <= high)
        return 0 if inside else None
    return None


# -- aggregates ------------------------------------------------------------------------------------------------


def _mean(e: Expectation, s: ColumnStats) -> dict[str, Any] | None:
    if s.count == 0:
        return {"value": None}  # the mean of no numbers: the scan's NULL
    if s.mean is None or s.min is None or s.max is None:
        return None
    scale = max(abs(s.min), abs(s.max))
    if scale * s.count > 1e300:  # the scan's running sum could overflow
        return None
    margin = 2 * s.count * _EPS * scale + _TINY  # the worst rounding of a running sum of the values, over the count
    return {"value": s.mean} if _clear(s.mean - margin, s.mean + margin, e.args) else None


def _std(e: Expectation, s: ColumnStats) -> dict[str, Any] | None:
    if s.count < 2:
        return {"value": None}  # the sample deviation of fewer than two numbers: the scan's NULL
    if s.m2 is None or s.min is None or s.max is None:
        return None
    variance = max(s.m2, 0.0) / (s.count - 1)
    scale = max(abs(s.min), abs(s.max))
    margin = 4 * s.count * _EPS * scale * scale + _TINY  # rounding of the scan's streamed variance, at worst
    if not math.isfinite(margin):
        return None
    low, high = math.sqrt(max(variance - margin, 0.0)), math.sqrt(variance + margin)
    return {"value": math.sqrt(variance)} if _clear(low, high, e.args) else None


def _clear(low: float, high: float, args: dict[str, Any]) -> bool:
    """Whether no bound of ``args`` lies within [low, high] (so rounding cannot change the outcome)."""
    return all(not low <= float(args[b]) <= high for b in ("min", "max") if b in args)


def _category_frequency(col: _Known, e: Expectation, s: ColumnStats) -> dict[str, Any] | None:
    if s.values is None:
        return None
    c = e.columns()[0]
    hits = col.count_where(c, [v for v, _ in s.values], [n for _, n in s.values], f"{q(c)} = {lit(e.args['value'])}")
    return None if hits is None else {"value": hits / max(col.rows, 1)}


def _label_distribution(col: _Known, e: Expectation, s: ColumnStats) -> dict[str, Any] | None:
    if s.values is None:
        return None
    histogram = col.histogram(e.columns()[0], s)
    return None if histogram is None else {"histogram": histogram, "rows": col.rows}


def _unique(col: _Known, e: Unique) -> dict[str, Any] | None:
    """Keyed datasets never hold two samples with one key (the table layer refuses them); a column with few
    distinct values has as many duplicates as values beyond the first of each."""
    key = col.version.key
    if key and set(key) <= set(e.columns()) and all(_keyable(col, k) for k in key):
        return {"dups": 0}
    s = col.stats.get(e.columns()[0]) if len(e.columns()) == 1 else None
    if s is None or s.values is None:
        return None
    return {"dups": s.rows - s.nulls - len(s.values)}


def _keyable(col: _Known, k: str) -> bool:
    """Key column ``k`` is held with the schema's type in every fragment, a type whose sample ids are
    equal exactly when DuckDB's values are."""
    t = col.value_type(k)
    return col.stats.get(k) is not None and not any(test(t) for test in _NESTED)
