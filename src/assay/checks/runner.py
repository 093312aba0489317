"""Running a suite: answers from the fragments' statistics where they decide, one streamed pass over the
data for every other aggregate, then the ids of failing samples.

Expectations that the statistics kept with each fragment decide exactly (counts of nulls, ranges that
hold, values from few distinct ones, means and deviations clear of their bounds) read no data. The
aggregates of the others go into DuckDB queries over the version's record batches, reading only the
columns they need (two groups of expectations over disjoint columns, one thread each), so a table
larger than memory is checked in one pass without loading it. Only when a row expectation fails is the
data read again, to count and show the samples that fail. Every query runs on a sandboxed connection
(``assay.table.sandbox``): a suite's SQL reads only the data registered there, no file and no network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from assay.checks.expectations import (
    ColumnType,
    Distribution,
    Expectation,
    InDataset,
    Outcome,
    RowCondition,
    Unique,
    q,
)
from assay.checks.statistics import answer_from_statistics
from assay.checks.suite import Suite
from assay.engines import Engine, default_engine
from assay.errors import SQLConditionError, SuiteError
from assay.table import DatasetVersion
from assay.table.sandbox import sandbox

SAMPLE_IDS = 10
DISTRIBUTION_SAMPLE = 200_000
HISTOGRAM_BINS = 30


@dataclass(frozen=True)
class ExpectationResult:
    """The outcome of one expectation."""

    expectation: Expectation
    success: bool
    observed: Any = None
    failing: int | None = None
    sample_ids: tuple[str, ...] = ()
    sample_keys: tuple[dict[str, Any], ...] = ()
    message: str = ""

    @property
    def severity(self) -> str:
        return self.expectation.severity

    def to_dict(self) -> dict[str, Any]:
        return {"expectation": self.expectation.to_dict(), "label": self.expectation.label,
                "severity": self.severity, "success": self.success, "observed": _plain(self.observed),
                "failing": self.failing, "sample_ids": list(self.sample_ids),
                "sample_keys": [_plain(k) for k in self.sample_keys], "message": self.message}


@dataclass(frozen=True)
class CheckResult:
    """Every expectation's result for one dataset version."""

    dataset: str
    commit: str | None
    rows: int
    results: tuple[ExpectationResult, ...] = field(default_factory=tuple)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # column -> histogram (profile=True)

    @property
    def failures(self) -> list[ExpectationResult]:
        """Failed error-level expectations: these block a commit."""
        return [r for r in self.results if not r.success and r.severity == "error"]

    @property
    def warnings(self) -> list[ExpectationResult]:
        return [r for r in self.results if not r.success and r.severity == "warn"]

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "commit": self.commit, "rows": self.rows, "ok": self.ok,
                "failures": len(self.failures), "warnings": len(self.warnings),
                "results": [r.to_dict() for r in self.results]}


def run_suite(version: DatasetVersion, suite: Suite, *,
              other: Callable[[str], DatasetVersion] | None = None,
              reference: Callable[[str], DatasetVersion] | None = None,
              statistics: bool = True, profile: bool = False, engine: Engine | None = None) -> CheckResult:
    """Check ``version`` against ``suite``; ``other`` and ``reference`` open datasets named by expectations.

    The streamed pass runs as (up to) two tasks of ``engine`` (default: :func:`assay.engines.default_engine`).

    ``statistics=False`` answers every expectation from the data, not from the fragments' statistics
    (the results are the same; this is for verifying that). ``profile=True`` also draws each column's
    distribution (a histogram of numbers, the most frequent values of the rest; from a sample of at most
    ``DISTRIBUTION_SAMPLE`` rows), for reports: every column gets a chart, with a reference or without.
    """
    for i, e in enumerate(suite.expectations):  # built without validation (not from a suite file): check here
        if isinstance(e, RowCondition):
            try:
                e.validate()
            except SQLConditionError as exc:
                raise SuiteError(f"expectation {i + 1} ({e.label}): {exc}") from exc
    schema = {f.name: str(f.type) for f in version.schema}
    con = sandbox()
    try:
        rows, values = _one_pass(con, version, suite, schema, statistics, engine or default_engine())
        results = [_result(con, version, e, schema, rows, values.get(i, {}), other, reference)
                   for i, e in enumerate(suite.expectations)]
        profiles = _profiles(con, version) if profile else {}
    finally:
        con.close()
    return CheckResult(version.name, version.commit, rows, tuple(results), profiles)


def _missing(e: Expectation, schema: dict[str, str]) -> list[str]:
    return [c for c in e.columns() if c not in schema]


def _one_pass(con: Any, version: DatasetVersion, suite: Suite, schema: dict[str, str],
              statistics: bool = True, engine: Engine | None = None) -> tuple[int, dict[int, dict[str, Any]]]:
    """Every expectation's aggregates: from statistics where they decide, the others in one pass over the
    data (two column groups, one engine task each)."""
    per_expectation: dict[int, list[tuple[str, str]]] = {}
    for i, e in enumerate(suite.expectations):
        if _missing(e, schema) or isinstance(e, ColumnType | InDataset | Distribution):
            continue
        pred = e.failing_predicate()
        items = [] if pred is None or isinstance(e, Unique) else [("failing", f"count(*) FILTER (WHERE {pred})")]
        per_expectation[i] = items + list(e.aggregates().items())
    broken = _unbindable(con, version, _columns_for(suite.expectations, schema), per_expectation)
    values: dict[int, dict[str, Any]] = {i: {"error": msg} for i, msg in broken.items()}
    working = {i: items for i, items in per_expectation.items() if i not in broken}
    if statistics:
        values.update(answer_from_statistics(con, version, {i: suite.expectations[i] for i in working}))
    working = {i: items for i, items in working.items() if i not in values}
    if not working:
        return version.num_rows, values
    needed = _columns_for([suite.expectations[i] for i in working], schema)
    groups = _split(working, suite, schema, needed)
    # each group reads its columns and aggregates in its own task
    parts = list((engine or default_engine()).map(partial(_aggregate_group, version), groups))
    for _, part in parts:
        for i, named in part.items():
            values.setdefault(i, {}).update(named)
    return parts[0][0], values


def _split(working: dict[int, list[tuple[str, str]]], suite: Suite, schema: dict[str, str],
           needed: list[str]) -> list[tuple[list[str], dict[int, list[tuple[str, str]]]]]:
    """Two groups of expectations over (mostly) disjoint columns, so that two cores share the pass."""
    if len(working) < 2 or any(isinstance(suite.expectations[i], RowCondition) for i in working):
        return [(needed, working)]
    by_load = sorted(working, key=lambda i: -len(working[i]))
    groups: list[dict[int, list[tuple[str, str]]]] = [{}, {}]
    columns: list[set[str]] = [set(), set()]
    for i in by_load:
        cols = {c for c in suite.expectations[i].columns() if c in schema}
        # prefer the group that already reads these columns, else the lighter one
        k = 0 if cols <= columns[0] else 1 if cols <= columns[1] else int(len(columns[1]) < len(columns[0]))
        groups[k][i] = working[i]
        columns[k] |= cols
    return [([c for c in needed if c in cols] or needed[:1], g) for cols, g in zip(columns, groups, strict=True) if g]


def _aggregate_group(version: DatasetVersion, group: tuple[list[str], dict[int, list[tuple[str, str]]]]
                     ) -> tuple[int, dict[int, dict[str, Any]]]:
    return _aggregate(version, *group)


def _aggregate(version: DatasetVersion, needed: list[str],
               items: dict[int, list[tuple[str, str]]]) -> tuple[int, dict[int, dict[str, Any]]]:
    selects = ["count(*) AS _rows"] + [f"{sql} AS e{i}__{name}" for i, named in items.items() for name, sql in named]
    names = [(i, name) for i, named in items.items() for name, _ in named]
    con = sandbox(threads=1)
    try:
        con.register("data", version.reader(needed))
        row = con.sql(f"SELECT {', '.join(selects)} FROM data").fetchall()[0]
    finally:
        con.close()
    out: dict[int, dict[str, Any]] = {}
    for (i, name), value in zip(names, row[1:], strict=True):
        out.setdefault(i, {})[name] = value
    return int(row[0]), out


def _unbindable(con: Any, version: DatasetVersion, needed: list[str],
                per_expectation: dict[int, list[tuple[str, str]]]) -> dict[int, str]:
    """Expectations whose SQL does not fit the data's types (e.g. a mean of text), with DuckDB's reason.

    Bound against an empty table of the same schema, so one bad expectation never stops the others.
    """
    import duckdb

    con.register("data", version.schema.empty_table().select(needed))
    try:
        everything = [sql for items in per_expectation.values() for _, sql in items] or ["1"]
        con.sql(f"SELECT {', '.join(everything)} FROM data").fetchall()
        return {}
    except duckdb.Error:
        broken = {}
        for i, items in per_expectation.items():
            try:
                con.sql(f"SELECT {', '.join(sql for _, sql in items) or '1'} FROM data").fetchall()
            except duckdb.Error as e:
                broken[i] = str(e).splitlines()[0]
        return broken
    finally:
        con.unregister("data")


def _columns_for(expectations: Sequence[Expectation], schema: dict[str, str]) -> list[str]:
    if any(isinstance(e, RowCondition) for e in expectations):
        return list(schema)
    wanted = {c for e in expectations for c in e.columns() if c in schema}
    return [c for c in schema if c in wanted] or list(schema)[:1]


def _result(con: Any, version: DatasetVersion, e: Expectation, schema: dict[str, str], rows: int,
            values: dict[str, Any], other: Callable[[str], DatasetVersion] | None,
            reference: Callable[[str], DatasetVersion] | None) -> ExpectationResult:
    missing = _missing(e, schema)
    if missing:
        return ExpectationResult(e, False, None, None, message=f"column(s) {missing} not in dataset {version.name!r}; "
                                 f"it has {list(schema)}")
    if "error" in values:
        return ExpectationResult(e, False, None, None, message=f"could not be evaluated: {values['error']}")
    try:
        if isinstance(e, ColumnType):
            outcome = e.evaluate({"type": schema.get(e.args["column"])}, rows, None)
        elif isinstance(e, InDataset):
            outcome = e.evaluate({"missing": _missing_in_other(con, version, e, other)}, rows, None)
        elif isinstance(e, Distribution):
            outcome = e.evaluate({"stats": _distribution(con, version, e, reference)}, rows, None)
        else:
            outcome = e.evaluate(values, rows, values.get("failing"))
    except Exception as exc:  # an expectation that cannot run is a failure with a reason, not a crash
        return ExpectationResult(e, False, None, None, message=f"could not be evaluated: {exc}")
    return _with_samples(con, version, e, outcome)


def _with_samples(con: Any, version: DatasetVersion, e: Expectation, outcome: Outcome) -> ExpectationResult:
    pred = e.failing_predicate()
    if outcome.success or pred is None:
        return ExpectationResult(e, outcome.success, outcome.observed, outcome.failing)
    key = list(version.key or ())
    cols = list(dict.fromkeys([*e.columns(), *key])) if not isinstance(e, RowCondition) else list(version.schema.names)
    con.register("data", _with_ids(version, cols))
    picked = ", ".join(["_assay_id", *(q(k) for k in key)])
    if isinstance(e, Unique):
        sql = f"SELECT {picked} FROM (SELECT *, {pred} AS _bad FROM data) WHERE _bad LIMIT {SAMPLE_IDS}"
    else:
        sql = f"SELECT {picked} FROM data WHERE {pred} LIMIT {SAMPLE_IDS}"
    found = con.sql(sql).fetchall()
    con.unregister("data")
    ids = tuple(str(r[0]) for r in found)
    keys = tuple(dict(zip(key, r[1:], strict=True)) for r in found) if key else ()
    return ExpectationResult(e, False, outcome.observed, outcome.failing, ids, keys)


def _with_ids(version: DatasetVersion, cols: list[str]) -> Any:
    import pyarrow as pa

    from assay.table.manifest import ID_COLUMN

    schema = pa.schema([pa.field(ID_COLUMN, pa.string()), *(version.schema.field(c) for c in cols)])
    batches = (b.select([ID_COLUMN, *cols]) for b in version.scan([*cols], with_ids=True))
    return pa.RecordBatchReader.from_batches(schema, batches)


def _missing_in_other(con: Any, version: DatasetVersion, e: InDataset,
                      other: Callable[[str], DatasetVersion] | None) -> int:
    if other is None:
        raise ValueError("no way to open other datasets here")
    target = other(e.args["dataset"])
    col = e.args.get("other_column", e.args["column"])
    if col not in target.schema.names:
        raise ValueError(f"dataset {target.name!r} has no column {col!r}")
    con.register("data", version.reader([e.args["column"]]))
    con.register("other_data", target.reader([col]))
    c = q(e.args["column"])
    n = con.sql(f"SELECT count(*) FROM data WHERE {c} IS NOT NULL AND {c} NOT IN "
                f"(SELECT {q(col)} FROM other_data WHERE {q(col)} IS NOT NULL)").fetchall()[0][0]
    con.unregister("data")
    con.unregister("other_data")
    return int(n)


def _distribution(con: Any, version: DatasetVersion, e: Distribution,
                  reference: Callable[[str], DatasetVersion] | None) -> dict[str, Any]:
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    if reference is None:
        raise ValueError("no way to open the reference version here")
    ref = reference(e.args["reference"])
    col = e.args["column"]
    current, base = _sample(con, version, col), _sample(con, ref, col)
    if len(current) == 0 or len(base) == 0:
        raise ValueError("no values to compare (empty or all-null column)")
    if current.dtype.kind in "iufb" and base.dtype.kind in "iufb":
        a, b = current.astype(float), base.astype(float)
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        scale = float(np.std(b)) or 1.0
        edges = np.histogram_bin_edges(np.concatenate([a, b]), bins=HISTOGRAM_BINS)
        return {"ks": float(stats.ks_2samp(a, b).statistic),
                "wasserstein": float(stats.wasserstein_distance(a, b) / scale),
                "histogram": {"edges": edges.tolist(), "current": np.histogram(a, edges)[0].tolist(),
                              "reference": np.histogram(b, edges)[0].tolist()}}
    cats, now_all = np.unique(current.astype(str), return_counts=True)
    ref_cats, then_all = np.unique(base.astype(str), return_counts=True)
    names = sorted(set(cats.tolist()) | set(ref_cats.tolist()))
    now = np.array([dict(zip(cats.tolist(), now_all.tolist(), strict=True)).get(c, 0) for c in names], float)
    then = np.array([dict(zip(ref_cats.tolist(), then_all.tolist(), strict=True)).get(c, 0) for c in names], float)
    expected = (then + 0.5) / (then + 0.5).sum() * now.sum()  # smoothed, so new categories are measurable
    top = np.argsort(-(now + then))[:HISTOGRAM_BINS]
    return {"chi2_pvalue": float(stats.chisquare(now, expected).pvalue),
            "js": float(jensenshannon(now / now.sum(), then / then.sum(), base=2)),
            "histogram": {"categories": [names[i] for i in top], "current": now[top].astype(int).tolist(),
                          "reference": then[top].astype(int).tolist()}}


def _profiles(con: Any, version: DatasetVersion) -> dict[str, dict[str, Any]]:
    """Each plain column's distribution, in the histogram form distribution expectations report (current only).

    Key columns, columns of nested types, binary blobs and identifier-like text (every value distinct) are left
    out: a chart of them says nothing."""
    import pyarrow as pa

    out: dict[str, dict[str, Any]] = {}
    keys = set(version.key or ())
    for f in version.schema:
        t = f.type
        if f.name in keys or pa.types.is_nested(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
            continue
        values = _sample(con, version, f.name)
        if len(values) == 0:
            continue
        if values.dtype.kind in "iufb" and not pa.types.is_boolean(t):
            v = values.astype(float)
            v = v[np.isfinite(v)]
            if len(v) == 0:
                continue
            distinct = np.unique(v)
            if len(distinct) <= 12 and np.all(distinct == np.round(distinct)):  # few whole values: bars per value
                out[f.name] = {"categories": [f"{x:g}" for x in distinct],
                               "current": [int((v == x).sum()) for x in distinct]}
                continue
            edges = np.histogram_bin_edges(v, bins=HISTOGRAM_BINS)
            out[f.name] = {"edges": edges.tolist(), "current": np.histogram(v, edges)[0].tolist()}
            continue
        cats, counts = np.unique(values.astype(str), return_counts=True)
        if len(cats) == len(values) and len(values) > 20:  # an identifier: every value once
            continue
        top = np.argsort(-counts, kind="stable")[:HISTOGRAM_BINS]
        out[f.name] = {"categories": [str(cats[i]) for i in top], "current": counts[top].astype(int).tolist()}
    return out


def _sample(con: Any, version: DatasetVersion, col: str) -> np.ndarray:
    if col not in version.schema.names:
        raise ValueError(f"the reference has no column {col!r}")
    con.register("sample_src", version.reader([col]))
    rel = con.sql(f"SELECT {q(col)} AS v FROM sample_src WHERE {q(col)} IS NOT NULL "
                  f"USING SAMPLE reservoir({DISTRIBUTION_SAMPLE} ROWS) REPEATABLE (7)")
    values = rel.to_arrow_table().column("v").to_numpy(zero_copy_only=False)
    con.unregister("sample_src")
    return np.asarray(values)


def _plain(value: Any) -> Any:
    """JSON-friendly values (numpy scalars, bytes, dates)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)
