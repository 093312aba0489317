"""Checks answered from fragment statistics give the same results as the scan (NaN, infinities, nulls,
empty and all-null columns, appends, upserts, deletions, fragments written before statistics existed),
and read no data."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import assay
from assay.checks import parse_suite, run_suite
from assay.checks.runner import CheckResult
from assay.table import DatasetVersion
from tests.stats_helpers import SpyStore, floats, ints, texts, without_statistics

SCHEMA = pa.schema([
    ("id", pa.int64()), ("f", pa.float64()), ("g", pa.float32()), ("i", pa.int64()), ("s", pa.string()),
    ("d", pa.dictionary(pa.int32(), pa.string())), ("b", pa.bool_()), ("e", pa.float64()),
])


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[assay.Repo]:
    r = assay.init(tmp_path_factory.mktemp("stats") / "repo")
    yield r
    r.close()


_names = itertools.count()


# -- checks: the statistics answer as the scan does ------------------------------------------------------------


def test_expectations_the_statistics_decide_read_no_data(repo: assay.Repo) -> None:
    rng = np.random.default_rng(2)
    n = 5000
    repo.add("quiet", pa.table({"id": np.arange(n), "x": rng.normal(0, 1, n),
                                "cls": pa.array(rng.choice(["a", "b"], n)).dictionary_encode(),
                                "name": [f"n{i:05d}" for i in range(n)]}), key="id")
    version = repo.dataset("quiet")
    suite = parse_suite(yaml.safe_dump({"dataset": "quiet", "expectations": [
        {"expect": "row_count", "min": n}, {"expect": "not_null", "column": "x"},
        {"expect": "between", "column": "x", "min": -10, "max": 10}, {"expect": "unique", "column": "id"},
        {"expect": "mean_between", "column": "x", "min": -0.5, "max": 0.5},
        {"expect": "std_between", "column": "x", "min": 0.5, "max": 1.5},
        {"expect": "in_set", "column": "cls", "values": ["a", "b"]},
        {"expect": "length_between", "column": "name", "min": 6, "max": 6},
        {"expect": "label_distribution", "column": "cls", "frequencies": {"a": 0.5, "b": 0.5}, "tolerance": 0.1},
        {"expect": "column", "column": "x", "type": "double"}]}))
    spy = SpyStore(repo.store)
    result = run_suite(DatasetVersion(spy, version.manifest), suite)
    data = {o for f in version.manifest.fragments for o in (f.oid, f.ids)}
    assert result.ok and not data & set(spy.read) and spy.ranges == []
    _same(result, run_suite(version, suite, statistics=False))


def test_unique_keys_are_guaranteed_by_the_table_layer(repo: assay.Repo) -> None:
    repo.add("keyed", pa.table({"k": [1, 2], "v": ["a", "b"]}), key="k")
    with pytest.raises(assay.KeyViolation):
        repo.add("keyed", pa.table({"k": [2], "v": ["c"]}), mode="append")
    with pytest.raises(assay.KeyViolation):
        repo.add("keyed", pa.table({"k": [3, 3], "v": ["c", "d"]}), mode="upsert")
    repo.add("keyed", pa.table({"k": [2, 3], "v": ["c", "d"]}), mode="upsert")
    suite = parse_suite("dataset: keyed\nexpectations:\n  - {expect: unique, column: k}\n"
                        "  - {expect: unique, columns: [v, k]}\n")
    assert [r.observed for r in run_suite(repo.dataset("keyed"), suite).results] == [{"duplicates": 0}] * 2


def _rows(draw: st.DrawFn, ids: list[int]) -> pa.Table:
    n = len(ids)
    s = draw(st.lists(texts, min_size=n, max_size=n))
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "f": pa.array(draw(st.lists(floats, min_size=n, max_size=n)), pa.float64()),
        "g": pa.array(draw(st.lists(floats, min_size=n, max_size=n)), pa.float32()),
        "i": pa.array(draw(st.lists(ints, min_size=n, max_size=n)), pa.int64()),
        "s": pa.array(s, pa.string()),
        "d": pa.array(draw(st.lists(st.sampled_from([None, "cat", "dog", "é"]), min_size=n, max_size=n)),
                      pa.string()).dictionary_encode(),
        "b": pa.array(draw(st.lists(st.sampled_from([None, True, False]), min_size=n, max_size=n)), pa.bool_()),
        "e": pa.array(draw(st.lists(st.sampled_from([None, None, None, 2.5]), min_size=n, max_size=n)), pa.float64()),
    }, schema=SCHEMA)


def _history(draw: st.DrawFn, repo: assay.Repo) -> DatasetVersion:
    """A dataset after a replace, then appends, upserts and deletions (some of which may empty it)."""
    name = f"h{next(_names)}"
    ids = draw(st.lists(st.integers(0, 40), min_size=1, max_size=12, unique=True))
    repo.add(name, _rows(draw, ids), key="id")
    live = set(ids)
    for op in draw(st.lists(st.sampled_from(["append", "upsert", "delete"]), max_size=3)):
        if op == "append":
            free = sorted(set(range(41, 91)) - live)
            new = draw(st.lists(st.sampled_from(free), min_size=1, max_size=6, unique=True))
            repo.add(name, _rows(draw, new), mode="append")
            live |= set(new)
        elif op == "upsert":
            touched = draw(st.lists(st.integers(0, 90), min_size=1, max_size=6, unique=True))
            repo.add(name, _rows(draw, touched), mode="upsert")
            live |= set(touched)
        elif live:
            gone = draw(st.lists(st.sampled_from(sorted(live)), min_size=1, max_size=len(live), unique=True))
            repo.add(name, pa.table({"id": pa.array(gone, pa.int64())}), mode="delete")
            live -= set(gone)
    return repo.dataset(name)


def _suite(draw: st.DrawFn, data: pa.Table) -> list[dict[str, Any]]:
    def seen(column: str) -> list[Any]:
        values = [v for v in data.column(column).to_pylist() if v is not None]
        return values + ([0, 1] if column in ("f", "g", "i", "e") else [True] if column == "b" else ["zz"])

    def bounds(column: str, numbers: bool = True) -> dict[str, Any]:
        pool = [v for v in seen(column) if not (isinstance(v, float) and math.isnan(v))] + [0.5, 1e-9, 2.0]
        picked = sorted(draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2)))
        out: dict[str, Any] = {}
        if draw(st.booleans()):
            out["min"] = picked[0]
        if "min" not in out or draw(st.booleans()):
            out["max"] = picked[-1]
        return out

    numeric, texty = ["f", "g", "i", "e"], ["s", "d"]
    kinds = {
        "between": lambda: {"column": draw(st.sampled_from(numeric)), **_strict(draw)},
        "not_null": lambda: {"column": draw(st.sampled_from([*numeric, *texty, "b"]))},
        "null_fraction": lambda: {"column": draw(st.sampled_from([*numeric, *texty])),
                                  "max": draw(st.sampled_from([0.0, 0.25, 0.5, 1.0]))},
        "mean_between": lambda: {"column": draw(st.sampled_from(numeric))},
        "std_between": lambda: {"column": draw(st.sampled_from(numeric))},
        "in_set": lambda: {"column": (c := draw(st.sampled_from(["s", "d", "i", "b"]))),
                           "values": draw(st.lists(st.sampled_from(seen(c)), max_size=4, unique=True))},
        "regex": lambda: {"column": draw(st.sampled_from(["s", "d", "i"])),
                          "pattern": draw(st.sampled_from(["^a", "b$", ".", "^$", "é", "^-?[0-9]$"]))},
        "length_between": lambda: {"column": draw(st.sampled_from(["s", "d", "i"])),
                                   **({"min": draw(st.integers(0, 3))} if draw(st.booleans()) else {}),
                                   "max": draw(st.integers(3, 5))},
        "category_frequency": lambda: {"column": (c := draw(st.sampled_from(["s", "d"]))),
                                       "value": draw(st.sampled_from(seen(c))),
                                       "min": draw(st.sampled_from([0.0, 0.25, 1 / 3])), "max": 0.5},
        "label_distribution": lambda: {"column": (c := draw(st.sampled_from(["d", "s", "b"]))),
                                       "frequencies": {str(v): 0.25 for v in seen(c)[:3]},
                                       "tolerance": draw(st.sampled_from([0.05, 0.5]))},
        "unique": lambda: draw(st.sampled_from([{"column": "id"}, {"column": "s"}, {"column": "i"}, {"column": "f"},
                                                {"columns": ["id", "s"]}, {"columns": ["s", "b"]}])),
        "row_count": lambda: {"min": draw(st.integers(0, 10))},
    }
    out = []
    for kind in draw(st.lists(st.sampled_from(sorted(kinds)), min_size=1, max_size=8)):
        e = {"expect": kind, **kinds[kind]()}
        if kind in ("between", "mean_between", "std_between"):
            e.update(bounds(e["column"]))
        if kind in ("between", "in_set", "regex", "not_null") and draw(st.booleans()):
            e["mostly"] = draw(st.sampled_from([0.5, 0.8]))
        out.append(e)
    return out


def _strict(draw: st.DrawFn) -> dict[str, Any]:
    return {k: True for k in ("strict_min", "strict_max", "allow_nan") if draw(st.booleans())}


def _same(ours: CheckResult, scanned: CheckResult) -> None:
    """The same results: observed values equal, but for means and deviations, which may differ by rounding
    (the scan sums in another order). Which duplicates ``unique`` shows first is up to DuckDB's window."""
    assert ours.rows == scanned.rows
    for a, b in zip(ours.results, scanned.results, strict=True):
        label = a.expectation.to_dict()
        assert (a.success, a.failing, a.message) == (b.success, b.failing, b.message), label
        rounded = a.expectation.kind in ("mean_between", "std_between")
        assert _close(a.observed, b.observed) if rounded else _equal(a.observed, b.observed), \
            (label, a.observed, b.observed)
        if a.expectation.kind == "unique":  # which duplicates come first is up to DuckDB's window
            assert len(a.sample_ids) == len(b.sample_ids), label
        else:
            assert (a.sample_ids, a.sample_keys) == (b.sample_ids, b.sample_keys), label


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b) and type(a) is type(b)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data())
def test_statistics_answer_as_the_scan_does(repo: assay.Repo, data: st.DataObject) -> None:
    version = _history(data.draw, repo)
    expectations = _suite(data.draw, version.to_arrow())
    suite = parse_suite(yaml.safe_dump({"dataset": version.name, "expectations": expectations}))
    scanned = run_suite(version, suite, statistics=False)
    _same(run_suite(version, suite), scanned)
    _same(run_suite(without_statistics(version), suite), scanned)
