"""Expectations: one small class per kind, with its arguments declared as data.

Each expectation turns into SQL aggregates that the runner evaluates in one pass over the data, and,
for expectations about single rows, a predicate that is true for a failing row (used to count failing
samples and fetch some of their ids). Nulls are ignored by value expectations (as in Great
Expectations); NaN is outside every range.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from assay._params import OPTIONAL, Param, check_params
from assay.errors import ParamError
from assay.table.sandbox import check_condition

NUMBER = (int, float)
SEVERITIES = ("error", "warn")
SEVERITY = Param(str, "error", choices=SEVERITIES, doc="error: a failure refuses the commit; warn: reported")
MOSTLY = Param(NUMBER, 1.0, 0, 1, doc="the share of the rows considered that must pass")


def q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: Any) -> str:
    """A SQL literal for a string, number or boolean."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, NUMBER):
        if isinstance(value, float) and not math.isfinite(value):
            return f"'{value}'::DOUBLE"
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


@dataclass(frozen=True)
class Outcome:
    success: bool
    observed: Any
    failing: int | None = None  # samples that fail (row expectations)


@dataclass(frozen=True)
class Expectation:
    """Base: ``kind``, arguments, severity. Subclasses declare ``params`` and the SQL they need."""

    kind: ClassVar[str] = ""
    params: ClassVar[Mapping[str, Param]] = {}
    args: dict[str, Any] = field(default_factory=dict)
    severity: str = "error"
    mostly: float = 1.0

    @classmethod
    def build(cls, raw: dict[str, Any]) -> Expectation:
        """The expectation with arguments ``raw`` (plus ``severity`` and ``mostly``); ParamError if they do not
        fit its ``params``."""
        args = dict(raw)
        severity = SEVERITY.check("severity", args.pop("severity", "error"))
        mostly = MOSTLY.check("mostly", args.pop("mostly", 1.0))
        made = cls(check_params(f"expectation {cls.kind!r}", cls.params, args), severity, float(mostly))
        made.validate()
        return made

    def validate(self) -> None:
        """Checks across arguments (override)."""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"expect": self.kind, **self.args}
        if self.severity != "error":
            d["severity"] = self.severity
        if self.mostly != 1.0:
            d["mostly"] = self.mostly
        return d

    @property
    def label(self) -> str:
        target = self.args.get("column") or ",".join(self.args.get("columns", [])) or ""
        return f"{self.kind}({target})" if target else self.kind

    def columns(self) -> list[str]:
        cols = [self.args["column"]] if "column" in self.args else []
        return cols + list(self.args.get("columns", []))

    def failing_predicate(self) -> str | None:
        """SQL that is true for a failing row; None for expectations about the whole table."""
        return None

    def aggregates(self) -> dict[str, str]:
        """Named SQL aggregates this expectation needs (beyond the count of failing rows)."""
        return {}

    def evaluate(self, values: dict[str, Any], rows: int, failing: int | None) -> Outcome:
        """Success from the aggregates; row expectations pass when few enough rows fail.

        ``mostly`` is a share of the rows considered: the non-null values for value expectations.
        """
        assert failing is not None
        considered = int(values.get("considered", rows))
        allowed = (1.0 - self.mostly) * considered
        fraction = failing / considered if considered else 0.0
        return Outcome(failing <= allowed + 1e-9, {"failing_fraction": fraction}, failing)


def _require_a_bound(args: dict[str, Any]) -> None:
    if "min" not in args and "max" not in args:
        raise ParamError("give min, max or both")
    if "min" in args and "max" in args and args["min"] > args["max"]:
        raise ParamError(f"min ({args['min']}) is greater than max ({args['max']}); nothing could pass")


def _outside(value: str, args: dict[str, Any]) -> str:
    """SQL true when ``value`` lies outside [min, max] (bounds exclusive with strict_min / strict_max)."""
    parts = []
    if "min" in args:
        parts.append(f"{value} {'<=' if args.get('strict_min') else '<'} {lit(args['min'])}")
    if "max" in args:
        parts.append(f"{value} {'>=' if args.get('strict_max') else '>'} {lit(args['max'])}")
    return " OR ".join(parts)


class _ValueExpectation(Expectation):
    """A row expectation about non-null values: ``mostly`` counts only those."""

    def aggregates(self) -> dict[str, str]:
        return {"considered": f"count({q(self.args['column'])})"}


# -- row expectations ------------------------------------------------------------------------------------


class NotNull(Expectation):
    kind = "not_null"
    params = {"column": Param(str)}

    def failing_predicate(self) -> str:
        return f"{q(self.args['column'])} IS NULL"


class Between(_ValueExpectation):
    kind = "between"
    params = {"column": Param(str), "min": Param(NUMBER, OPTIONAL), "max": Param(NUMBER, OPTIONAL),
              "strict_min": Param(bool, OPTIONAL), "strict_max": Param(bool, OPTIONAL),
              "allow_nan": Param(bool, OPTIONAL)}

    def validate(self) -> None:
        _require_a_bound(self.args)

    def failing_predicate(self) -> str:
        c = q(self.args["column"])
        outside = _outside(c, self.args)
        nan = f"isnan({c}::DOUBLE)"
        if self.args.get("allow_nan"):  # NaN compares above every number in SQL: keep it out of the range test
            return f"{c} IS NOT NULL AND NOT {nan} AND ({outside})"
        return f"{c} IS NOT NULL AND ({nan} OR {outside})"


class InSet(_ValueExpectation):
    kind = "in_set"
    params = {"column": Param(str), "values": Param(list)}

    def failing_predicate(self) -> str:
        c = q(self.args["column"])
        values = self.args["values"]
        if not values:
            return f"{c} IS NOT NULL"
        return f"{c} IS NOT NULL AND {c} NOT IN ({', '.join(lit(v) for v in values)})"


class Regex(_ValueExpectation):
    kind = "regex"
    params = {"column": Param(str), "pattern": Param(str)}

    def validate(self) -> None:
        try:
            re.compile(self.args["pattern"])
        except re.error as e:
            raise ParamError(f"pattern {self.args['pattern']!r} is not a valid regular expression: {e}") from e

    def failing_predicate(self) -> str:
        c = q(self.args["column"])
        return f"{c} IS NOT NULL AND NOT regexp_matches({c}::VARCHAR, {lit(self.args['pattern'])})"


class LengthBetween(_ValueExpectation):
    kind = "length_between"
    params = {"column": Param(str), "min": Param(int, OPTIONAL), "max": Param(int, OPTIONAL)}

    def validate(self) -> None:
        _require_a_bound(self.args)

    def failing_predicate(self) -> str:
        outside = _outside(f"length({q(self.args['column'])}::VARCHAR)", self.args)
        return f"{q(self.args['column'])} IS NOT NULL AND ({outside})"


class RowCondition(Expectation):
    """The escape hatch: a DuckDB SQL condition every row must meet (nulls make it fail)."""

    kind = "sql"
    params = {"condition": Param(str)}

    def validate(self) -> None:
        check_condition(self.args["condition"], "condition")

    def columns(self) -> list[str]:
        return []

    @property
    def label(self) -> str:
        return f"sql({self.args['condition']})"

    def failing_predicate(self) -> str:
        return f"NOT coalesce(({self.args['condition']}), FALSE)"


# -- table expectations ------------------------------------------------------------------------------------


class _TableExpectation(Expectation):
    def evaluate(self, values: dict[str, Any], rows: int, failing: int | None) -> Outcome:
        raise NotImplementedError


def _within(value: float | None, lo: float | None, hi: float | None) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return (lo is None or value >= lo) and (hi is None or value <= hi)


class _Bounded(_TableExpectation):
    """An aggregate that must lie in [min, max]."""

    sql: ClassVar[str] = ""

    def validate(self) -> None:
        _require_a_bound(self.args)

    def aggregates(self) -> dict[str, str]:
        return {"value": self.sql.format(c=q(self.args.get("column", "")), **self.args)}

    def evaluate(self, values: dict[str, Any], rows: int, failing: int | None) -> Outcome:
        value = values["value"]
        value = float(value) if isinstance(value, NUMBER) else value
        return Outcome(_within(value, self.args.get("min"), self.args.get("max")), value)


class RowCount(_Bounded):
    kind = "row_count"
    params = {"min": Param(int, OPTIONAL), "max": Param(int, OPTIONAL)}
    sql = "count(*)"

    def aggregates(self) -> dict[str, str]:
        return {"value": "count(*)"}


class NullFraction(_Bounded):
    kind = "null_fraction"
    params = {"column": Param(str), "min": Param(NUMBER, OPTIONAL), "max": Param(NUMBER, OPTIONAL)}
    sql = "coalesce(avg(({c} IS NULL)::INTEGER), 0)"


class MeanBetween(_Bounded):
    kind = "mean_between"
    params = {"column": Param(str), "min": Param(NUMBER, OPTIONAL), "max": Param(NUMBER, OPTIONAL)}
    sql = "avg({c}) FILTER (WHERE NOT isnan({c}::DOUBLE))"


class StdBetween(_Bounded):
    kind = "std_between"
    params = {"column": Param(str), "min": Param(NUMBER, OPTIONAL), "max": Param(NUMBER, OPTIONAL)}
    sql = "stddev_samp({c}) FILTER (WHERE NOT isnan({c}::DOUBLE))"


class QuantileBetween(_Bounded):
    kind = "quantile_between"
    params = {"column": Param(str), "quantile": Param(NUMBER, low=0, high=1), "min": Param(NUMBER, OPTIONAL),
              "max": Param(NUMBER, OPTIONAL)}
    sql = "quantile_cont({c}, {quantile}) FILTER (WHERE NOT isnan({c}::DOUBLE))"



class Unique(_TableExpectation):
    kind = "unique"
    params = {"column": Param(str, OPTIONAL), "columns": Param(list, OPTIONAL)}

    def validate(self) -> None:
        if ("column" in self.args) == ("columns" in self.args):
            raise ParamError("give 'column' (one) or 'columns' (a composite key), not both")

    def aggregates(self) -> dict[str, str]:
        cols = ", ".join(q(c) for c in self.columns())
        present = " AND ".join(f"{q(c)} IS NOT NULL" for c in self.columns())
        return {"dups": f"count(*) FILTER (WHERE {present}) - count(DISTINCT ({cols})) FILTER (WHERE {present})"}

    def failing_predicate(self) -> str:  # rows whose key occurs more than once (second pass only)
        cols = ", ".join(q(c) for c in self.columns())
        return f"count(*) OVER (PARTITION BY {cols}) > 1 AND " + \
            " AND ".join(f"{q(c)} IS NOT NULL" for c in self.columns())

    def evaluate(self, values: dict[str, Any], rows: int, failing: int | None) -> Outcome:
        dups = int(values["dups"] or 0)
        return Outcome(dups == 0, {"duplicates": dups}, None)


class CategoryFrequency(_TableExpectation):
    kind = "category_frequency"
    params = {"column": Param(str), "value": Param((str, int, float, bool)),
              "min": Param(NUMBER, OPTIONAL), "max": Param(NUMBER, OPTIONAL)}

    def aggregates(self) -> dict[str, str]:
        c = q(self.args["column"])
        # the share of all rows (nulls count as rows that are not the value)
        return {"value": f"coalesce(sum(({c} = {lit(self.args['value'])})::INTEGER), 0) / greatest(count(*), 1)"}

    def evaluate(self, values: dict[str, Any], rows: int, failing: int | None) -> Outcome:
        v = float(values["value"] or 0.0)
        return Outcome(_within(v, self.args.get("min"), self.args.get("max")), v)


class LabelDistribution(_TableExpectation):
    """Each label's share of the rows within ``tolerance`` of the given frequencies."""

    kind = "label_distribution"
    params = {"column": Param(str), "frequencies": Param(dict), "tolerance": Param(NUMBER, OPTIONAL)}

    def aggregates(self) -> dict[str, str]:
        c = q(self.args["column"])
        return {"histogram": f"histogram({c}::VARCHAR)", "rows": "count(*)"}

    def evaluate(self, values: dict[str, Any], rows: int, failing: int | None) -> Outcome:
        counts = dict(values["histogram"] or {})
        n = values["rows"] or 0
        tol = float(self.args.get("tolerance", 0.05))
        observed = {str(k): (v / n if n else 0.0) for k, v in counts.items()}
        wanted = {str(k): float(v) for k, v in self.args["frequencies"].items()}
        ok = all(abs(observed.get(k, 0.0) - f) <= tol for k, f in wanted.items()) and \
            all(k in wanted or share <= tol for k, share in observed.items())
        return Outcome(ok, observed)


class Fresh(_TableExpectation):
    """The newest timestamp is at most ``max_age_seconds`` old."""

    kind = "fresh"
    params = {"column": Param(str), "max_age_seconds": Param(NUMBER)}

    def aggregates(self) -> dict[str, str]:
        c = q(self.args["column"])
        return {"age": f"epoch(now()::TIMESTAMP) - epoch(max({c})::TIMESTAMP)"}

    def evaluate(self, values: dict[str, Any], rows: int, failing: int | None) -> Outcome:
        age = values["age"]
        return Outcome(age is not None and float(age) <= float(self.args["max_age_seconds"]),
                       None if age is None else float(age))


class ColumnType(_TableExpectation):
    """The column exists (with the given Arrow type, when given). Checked on the schema."""

    kind = "column"
    params = {"column": Param(str), "type": Param(str, OPTIONAL)}

    def evaluate(self, values: dict[str, Any], rows: int, failing: int | None) -> Outcome:
        actual = values.get("type")
        return Outcome(actual is not None and ("type" not in self.args or actual == self.args["type"]), actual)


class InDataset(_TableExpectation):
    """Every (non-null) value appears in a column of another dataset (a foreign key)."""

    kind = "in_dataset"
    params = {"column": Param(str), "dataset": Param(str), "other_column": Param(str, OPTIONAL)}

    def evaluate(self, values: dict[str, Any], rows: int, failing: int | None) -> Outcome:
        missing = int(values.get("missing", 0))
        return Outcome(missing == 0, {"missing": missing}, missing)


class Distribution(_TableExpectation):
    """The column's distribution against a reference version of the dataset (drift, skew).

    Numeric: Kolmogorov-Smirnov statistic and Wasserstein distance normalised by the reference's standard
    deviation. Categorical: chi-squared p-value and Jensen-Shannon distance.
    """

    kind = "distribution"
    params = {"column": Param(str), "reference": Param(str), "ks_max": Param(NUMBER, OPTIONAL),
              "wasserstein_max": Param(NUMBER, OPTIONAL), "chi2_pvalue_min": Param(NUMBER, OPTIONAL),
              "js_max": Param(NUMBER, OPTIONAL)}

    def evaluate(self, values: dict[str, Any], rows: int, failing: int | None) -> Outcome:
        stats = values.get("stats") or {}
        numbers = {k: v for k, v in stats.items() if isinstance(v, float)}
        limits = {"ks": ("ks_max", max), "wasserstein": ("wasserstein_max", max),
                  "chi2_pvalue": ("chi2_pvalue_min", min), "js": ("js_max", max)}
        ok = bool(stats)
        for stat, (arg, kind) in limits.items():
            if arg in self.args and stat in numbers:
                limit = float(self.args[arg])
                ok = ok and (numbers[stat] <= limit if kind is max else numbers[stat] >= limit)
        return Outcome(ok, stats)


KINDS: dict[str, type[Expectation]] = {cls.kind: cls for cls in (
    ColumnType, NotNull, NullFraction, Unique, Between, InSet, Regex, LengthBetween, RowCount, MeanBetween,
    StdBetween, QuantileBetween, CategoryFrequency, LabelDistribution, InDataset, Fresh, RowCondition, Distribution,
)}
