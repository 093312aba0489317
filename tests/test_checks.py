"""Suites: parsing with line numbers, every expectation kind, inference, drift, the commit gate, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import assay
from assay.checks import infer_suite, parse_suite, run_suite
from assay.errors import SuiteError

DATA = pa.table({
    "id": pa.array([1, 2, 3, 4, 5, 6], pa.int64()),
    "age": [10.0, 20.0, None, 40.0, float("nan"), float("inf")],
    "label": ["cat", "dog", "cat", "cat", None, "bird"],
    "email": ["a@x.org", "b@x.org", "bad", "c@x.org", "d@x.org", None],
    "empty": pa.array([None] * 6, pa.float64()),
})


@pytest.fixture
def version(repo: assay.Repo) -> assay.DatasetVersion:
    repo.add("t", DATA, key="id")
    repo.commit("data")
    return repo.dataset("t", "HEAD")


def check(version: assay.DatasetVersion, body: str) -> list[tuple[bool, int | None, object]]:
    suite = parse_suite(f"dataset: t\nexpectations:\n{body}")
    result = run_suite(version, suite)
    return [(r.success, r.failing, r.observed if not r.message else r.message) for r in result.results]


@pytest.mark.parametrize("text, line, words", [
    ("dataset: t\nexpectations:\n  - expect: nope\n    column: a\n", 3, "unknown expectation 'nope'"),
    ("dataset: t\nexpectations:\n  - column: a\n    expect: nope\n", 4, "unknown expectation 'nope'"),
    ("dataset: t\nexpectations:\n  -\n    column: a\n\n    expect: nope\n", 6, "unknown expectation 'nope'"),
    ("dataset: t\nexpectations:\n  - expect: between\n    column: a\n    min: low\n", 3,
     "min must be a number, not 'low'"),
    ("dataset: t\nexpectations:\n  - expect: not_null\n", 3, "expectation 'not_null' is missing parameter 'column'"),
    ("dataset: t\nexpectations:\n  - expect: between\n    column: a\n", 3, "give min, max or both"),
    ("dataset: t\nexpectations:\n  - expect: regex\n    column: a\n    pattern: '('\n", 3, "not a valid regular"),
    ("dataset: t\nexpectations: [\n", 3, "invalid YAML"),
    ("dataset: t\nexpectations:\n  - expect: not_null\n    column: a\n    severity: fatal\n", 3, "severity"),
    ("expectations: []\n", 1, "'dataset' must name"),
    ("dataset: t\nexpectations:\n  - expect: not_null\n    column: a\n    colour: red\n", 3,
     "expectation 'not_null' has no parameter 'colour'"),
])
def test_malformed_suites_name_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(SuiteError) as info:
        parse_suite(text, "suite.yaml")
    assert f"suite.yaml line {line}" in str(info.value) and words in str(info.value)


def test_row_expectations_count_failing_samples(version: assay.DatasetVersion) -> None:
    results = check(version, """
  - {expect: not_null, column: label}
  - {expect: between, column: age, min: 0, max: 100}
  - {expect: in_set, column: label, values: [cat, dog]}
  - {expect: regex, column: email, pattern: '^[^@]+@[^@]+$'}
  - {expect: length_between, column: email, min: 4}
  - {expect: sql, condition: "id < 6"}
  - {expect: in_set, column: label, values: [cat, dog, bird], mostly: 0.9}
""")
    assert [(ok, n) for ok, n, _ in results] == [
        (False, 1), (False, 2), (False, 1), (False, 1), (False, 1), (False, 1), (True, 0)]


def test_nan_and_infinity_fail_ranges_nulls_do_not(version: assay.DatasetVersion) -> None:
    (result,) = check(version, "  - {expect: between, column: age, min: 0}\n")
    assert result[:2] == (False, 1)  # NaN fails; inf >= 0 passes; null is ignored
    (result,) = check(version, "  - {expect: between, column: age, max: 1000}\n")
    assert result[:2] == (False, 2)  # NaN and inf


def test_table_expectations(version: assay.DatasetVersion) -> None:
    results = check(version, """
  - {expect: row_count, min: 6, max: 6}
  - {expect: null_fraction, column: label, max: 0.1}
  - {expect: mean_between, column: id, min: 3.4, max: 3.6}
  - {expect: std_between, column: id, min: 1.8, max: 1.9}
  - {expect: quantile_between, column: id, quantile: 0.5, min: 3.5, max: 3.5}
  - {expect: unique, column: label}
  - {expect: unique, columns: [id, label]}
  - {expect: category_frequency, column: label, value: cat, min: 0.5, max: 0.5}
  - {expect: label_distribution, column: label, frequencies: {cat: 0.5, dog: 0.2, bird: 0.2}, tolerance: 0.05}
  - {expect: column, column: id, type: int64}
  - {expect: column, column: id, type: string}
""")
    assert [ok for ok, _, _ in results] == [True, False, True, True, True, False, True, True, True, True, False]
    assert results[5][2] == {"duplicates": 2}


def test_all_null_and_empty_inputs_have_defined_results(repo: assay.Repo, version: assay.DatasetVersion) -> None:
    results = check(version, """
  - {expect: mean_between, column: empty, min: 0, max: 1}
  - {expect: null_fraction, column: empty, min: 1, max: 1}
  - {expect: between, column: empty, min: 0, max: 1}
""")
    assert [ok for ok, _, _ in results] == [False, True, True]
    repo.add("t", pa.table({"id": [1]}), mode="delete")
    repo.add("e", pa.table({"id": [1], "x": [1.0]}), key="id")
    repo.add("e", pa.table({"id": [1]}), mode="delete")
    empty = repo.dataset("e")
    res = run_suite(empty, parse_suite("dataset: e\nexpectations:\n  - {expect: row_count, min: 1}\n"
                                       "  - {expect: not_null, column: x}\n"))
    assert [(r.success, r.failing) for r in res.results] == [(False, None), (True, 0)]


def test_missing_column_fails_clearly_without_crashing(version: assay.DatasetVersion) -> None:
    (result,) = check(version, "  - {expect: not_null, column: nope}\n")
    assert result[0] is False and "not in dataset 't'" in str(result[2])


def test_failures_show_sample_keys(version: assay.DatasetVersion) -> None:
    res = run_suite(version, parse_suite("dataset: t\nexpectations:\n  - {expect: regex, column: email, "
                                         "pattern: '@'}\n"))
    (r,) = res.results
    assert r.sample_keys == ({"id": 3},) and len(r.sample_ids[0]) == 32
    assert not res.ok and res.to_dict()["results"][0]["sample_keys"] == [{"id": 3}]


def test_warnings_do_not_fail(version: assay.DatasetVersion) -> None:
    res = run_suite(version, parse_suite("dataset: t\nexpectations:\n  - {expect: row_count, max: 2, "
                                         "severity: warn}\n"))
    assert res.ok and len(res.warnings) == 1


def test_in_dataset(repo: assay.Repo, version: assay.DatasetVersion) -> None:
    repo.add("labels", pa.table({"name": ["cat", "dog"]}))
    res = run_suite(version, parse_suite("dataset: t\nexpectations:\n  - {expect: in_dataset, column: label, "
                                         "dataset: labels, other_column: name}\n"), other=repo.dataset)
    assert res.results[0].observed == {"missing": 1}


def test_inferred_suite_passes_and_catches_drift(repo: assay.Repo) -> None:
    rng = np.random.default_rng(0)
    n = 3000
    good = pa.table({"id": np.arange(n), "x": rng.normal(0, 1, n), "cls": rng.choice(["a", "b", "c"], n)})
    repo.add("d", good, key="id")
    repo.commit("good")
    suite = infer_suite(repo.dataset("d", "HEAD"), reference="HEAD")
    again = parse_suite(suite.to_yaml())
    assert again.to_yaml() == suite.to_yaml()
    assert run_suite(repo.dataset("d"), again, reference=lambda r: repo.dataset("d", r)).ok
    shifted = good.set_column(1, "x", pa.array(rng.normal(1.5, 1, n)))
    shifted = shifted.set_column(2, "cls", pa.array(rng.choice(["a", "b", "c"], n, p=[0.8, 0.1, 0.1])))
    repo.add("d", shifted)
    res = run_suite(repo.dataset("d"), again, reference=lambda r: repo.dataset("d", r))
    drift = {r.expectation.args["column"]: r for r in res.results if r.expectation.kind == "distribution"}
    assert not drift["x"].success and drift["x"].observed["ks"] > 0.4
    assert not drift["cls"].success and drift["cls"].observed["js"] > 0.1
    assert "id" not in drift  # the key: its values say nothing about the next batch


def test_commit_gate_refuses_and_no_verify_is_recorded(repo: assay.Repo, tmp_path: Path) -> None:
    repo.add("t", DATA.drop_columns(["empty"]), key="id")
    repo.set_suite("t", "dataset: t\nexpectations:\n  - {expect: not_null, column: email}\n")
    with pytest.raises(assay.CheckFailed) as info:
        repo.commit("with a null email")
    assert "not_null(email): 1 sample(s) fail (e.g. id=6)" in str(info.value)
    assert "--no-verify" in str(info.value) and repo.head() is None
    oid = repo.commit("anyway", no_verify=True)
    _, c = repo.show(oid)
    assert c.meta["no_verify"] is True and c.meta["unchecked"] == ["t"]
    assert "not_null" in (repo.suite_text("t", "HEAD") or "")
    repo.add("t", pa.table({"id": [6], "age": [1.0], "label": ["cat"], "email": ["e@x.org"]}), mode="upsert")
    oid = repo.commit("fixed")
    assert repo.show(oid)[1].meta["checks"] == {"t": {"passed": 1, "warnings": 0}}
    repo.set_suite("t", "dataset: t\nexpectations:\n  - {expect: row_count, max: 3}\n")
    with pytest.raises(assay.CheckFailed):
        repo.commit("a stricter suite checks the committed data")
    assert repo.fsck().ok


def _assay(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assay.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_cli_check_exit_codes_and_json(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(DATA.drop_columns(["empty"]), tmp_path / "d.parquet")
    _assay(tmp_path, "init")
    _assay(tmp_path, "add", "t", "d.parquet", "--key", "id")
    assert _assay(tmp_path, "commit", "-m", "c").returncode == 0
    assert _assay(tmp_path, "suite", "infer", "t@HEAD", "-o", "s.yaml").returncode == 0
    assert _assay(tmp_path, "check", "t", "--suite", "s.yaml").returncode == 0
    (tmp_path / "bad.yaml").write_text("dataset: t\nexpectations:\n  - {expect: not_null, column: email}\n")
    r = _assay(tmp_path, "check", "t", "--suite", "bad.yaml", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["failures"] == 1
    r = _assay(tmp_path, "suite", "set", "t", "bad.yaml")
    assert r.returncode == 0
    r = _assay(tmp_path, "commit", "-m", "suite")
    assert r.returncode == 1 and "not_null(email)" in r.stderr
    assert _assay(tmp_path, "commit", "-m", "suite", "--no-verify").returncode == 0
    assert "not_null" in _assay(tmp_path, "suite", "show", "t").stdout
    (tmp_path / "broken.yaml").write_text("dataset: t\nexpectations:\n  - {expect: nope}\n")
    r = _assay(tmp_path, "check", "t", "--suite", "broken.yaml")
    assert r.returncode == 1 and "broken.yaml line 3" in r.stderr


def test_cli_check_lists_failures_and_sums_up_passes(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(DATA.drop_columns(["empty"]), tmp_path / "d.parquet")
    _assay(tmp_path, "init")
    _assay(tmp_path, "add", "t", "d.parquet", "--key", "id")
    (tmp_path / "s.yaml").write_text("dataset: t\nexpectations:\n  - {expect: not_null, column: id}\n"
                                     "  - {expect: unique, column: id}\n  - {expect: not_null, column: email}\n"
                                     "  - {expect: mean_between, column: age, min: 1000, max: 2000, "
                                     "severity: warn}\n")
    r = _assay(tmp_path, "check", "t", "--suite", "s.yaml")
    assert r.returncode == 1
    assert "not_null(email)" in r.stdout and "mean_between(age)" in r.stdout
    assert "not_null(id)" not in r.stdout and "unique(id)" not in r.stdout  # passes are summed up, not listed
    assert "2 of 4 expectations passed (list them with --all)" in r.stdout
    assert "failing_fraction" not in r.stdout and "{" not in r.stdout  # words, not raw JSON
    every = _assay(tmp_path, "check", "t", "--suite", "s.yaml", "--all")
    assert "not_null(id)" in every.stdout and "unique(id)" in every.stdout and every.returncode == 1
    (tmp_path / "nokind.yaml").write_text("dataset: t\nexpectations:\n  - column age: between 0 and 5\n")
    r = _assay(tmp_path, "check", "t", "--suite", "nokind.yaml")
    assert r.returncode == 1 and "no 'expect: KIND' line" in r.stderr and "None" not in r.stderr
