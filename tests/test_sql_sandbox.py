"""User SQL (a suite's ``sql`` condition, ``scores --where``) reads only the data assay hands it."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import assay
from assay.checks import parse_suite, run_suite
from assay.checks.expectations import RowCondition
from assay.checks.suite import Suite
from assay.cli.app import app
from assay.errors import SQLConditionError, SuiteError
from assay.gate import read_scores
from assay.table.sandbox import sandbox
from tests.test_cli import _assay

DATA = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "age": [5, 40, 70], "name": ["Ann", "bob", None]})
SCORES = pa.table({"sample": ["a", "b", "c"], "action": ["accepted", "quarantined", "accepted"],
                   "outlier_score": [0.9, 0.1, 0.5]})
PASSWD = "read_csv('/etc/passwd', header=false, columns={'l': 'VARCHAR'})"

ATTACKS = {
    "read_csv": f"age > (SELECT count(*) FROM {PASSWD})",
    "read_csv called as a value": f"{PASSWD} IS NOT NULL",
    "read_text": "length((SELECT content FROM read_text('/etc/passwd'))) > 0",
    "read_text called as a value": "length(read_text('/etc/passwd')) > 0",
    "read_parquet": "age > (SELECT count(*) FROM read_parquet('{tmp}/secret.parquet'))",
    "read_parquet called as a value": "read_parquet('{tmp}/secret.parquet') IS NULL",
    "glob": "EXISTS (SELECT * FROM glob('/etc/*'))",
    "copy": "COPY (SELECT 1) TO '{tmp}/out.csv'",
    "copy after a closing parenthesis": "TRUE) FROM data; COPY (SELECT 1) TO '{tmp}/out.csv'; SELECT (TRUE",
    "attach": "ATTACH '{tmp}/evil.db' AS evil",
    "install": "INSTALL httpfs",
    "load": "LOAD httpfs",
    "set": "SET enable_external_access = true",
    "second statement": "age > 0; SELECT * FROM " + PASSWD,
    "comment": "age > 0 -- and the rest",
    "in a subquery": "age IN (SELECT 1)",
}


@pytest.fixture
def repo_with_data(repo: assay.Repo, tmp_path: Path) -> assay.Repo:
    repo.add("t", DATA, key="id")
    repo.add("t.scores", SCORES, key="sample")
    repo.commit("data and scores")
    pq.write_table(pa.table({"x": list(range(17))}), tmp_path / "secret.parquet")
    return repo


def _nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "evil.db").exists()


def _suite_file(tmp_path: Path, condition: str) -> Path:
    path = tmp_path / "evil.yaml"
    quoted = condition.replace("'", "''")
    path.write_text(f"dataset: t\nexpectations:\n  - expect: not_null\n    column: id\n"
                    f"  - expect: sql\n    condition: '{quoted}'\n")
    return path


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_suite_condition_that_reaches_beyond_the_data_is_refused(repo_with_data: assay.Repo, tmp_path: Path,
                                                                   attack: str) -> None:
    condition = ATTACKS[attack].replace("{tmp}", str(tmp_path))
    suite = _suite_file(tmp_path, condition)
    result = CliRunner().invoke(app, ["--repo", str(repo_with_data.root), "check", "t", "--suite", str(suite)])
    assert isinstance(result.exception, SuiteError), result.output
    message = str(result.exception)
    assert f"{suite} line 6: sql: condition" in message and "is not allowed" in message
    assert "may only use the columns of the dataset" in message
    with pytest.raises(SuiteError, match="not allowed"):
        run_suite(repo_with_data.dataset("t"), parse_suite(suite.read_text()))
    _nothing_written(tmp_path)


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_scores_condition_that_reaches_beyond_the_data_is_refused(repo_with_data: assay.Repo, tmp_path: Path,
                                                                    attack: str) -> None:
    condition = ATTACKS[attack].replace("{tmp}", str(tmp_path))
    with pytest.raises(SQLConditionError, match=r"the --where condition .* is not allowed") as info:
        read_scores(repo_with_data, "t", where=condition)
    assert "may only use the columns of the dataset" in str(info.value)
    result = CliRunner().invoke(app, ["--repo", str(repo_with_data.root), "scores", "t", "--where", condition])
    assert isinstance(result.exception, SQLConditionError) and "--where" in str(result.exception)
    _nothing_written(tmp_path)


def test_the_issue_s_suite_does_not_leak_the_line_count_through_the_cli(repo_with_data: assay.Repo,
                                                                        tmp_path: Path) -> None:
    suite = _suite_file(tmp_path, ATTACKS["read_csv"])
    r = _assay(repo_with_data.root, "check", "t", "--suite", str(suite), "--json")
    assert r.returncode == 1 and r.stdout == ""
    assert "line 6: sql: condition" in r.stderr and "not allowed: it holds a subquery" in r.stderr
    r = _assay(repo_with_data.root, "scores", "t", "--where", "outlier_score > 0; COPY scores TO 'out.csv'")
    assert r.returncode == 1 and "--where" in r.stderr and r.stdout == ""
    assert not (repo_with_data.root / "out.csv").exists()


def test_an_expectation_built_in_code_is_checked_before_it_runs(repo_with_data: assay.Repo) -> None:
    unchecked = RowCondition({"condition": ATTACKS["read_csv"]})  # built without validate()
    suite = Suite("t", (RowCondition({"condition": "age > 0"}), unchecked))
    with pytest.raises(SuiteError, match=r"expectation 2 \(sql\(age > \(SELECT.*not allowed"):
        run_suite(repo_with_data.dataset("t"), suite)


def test_ordinary_conditions_still_work(repo_with_data: assay.Repo) -> None:
    suite = parse_suite("""dataset: t
expectations:
  - {expect: sql, condition: "age >= 0 AND name IS NOT NULL"}
  - {expect: sql, condition: "lower(name) = name"}
  - {expect: sql, condition: "regexp_matches(name, '^[A-Za-z]+$') AND length(name) = 3"}
  - {expect: sql, condition: "CASE WHEN age > 50 THEN name IS NULL ELSE age::DOUBLE < 50.5 END"}
  - {expect: sql, condition: "name IN ('Ann', 'bob;--')"}
""")
    result = run_suite(repo_with_data.dataset("t"), suite)
    assert [(r.success, r.failing) for r in result.results] == [(False, 1), (False, 2), (False, 1), (True, 0),
                                                                (False, 2)]
    picked = read_scores(repo_with_data, "t", where="action = 'accepted' AND lower(sample) IN ('a', 'c')")
    assert picked.column("sample").to_pylist() == ["a", "c"]


def test_the_sandbox_reads_registered_arrow_data_and_nothing_else(tmp_path: Path) -> None:
    con = sandbox(threads=1)
    con.register("data", DATA)
    con.register("stream", pa.RecordBatchReader.from_batches(DATA.schema, DATA.to_batches()))
    assert con.sql("SELECT count(*) FROM data JOIN stream USING (id)").fetchall() == [(3,)]
    pq.write_table(DATA, tmp_path / "secret.parquet")
    for statement in [f"SELECT * FROM {PASSWD}", "SELECT * FROM read_text('/etc/passwd')",
                      "SELECT * FROM glob('/etc/*')", f"SELECT * FROM read_parquet('{tmp_path}/secret.parquet')",
                      f"SELECT * FROM '{tmp_path}/secret.parquet'", f"COPY data TO '{tmp_path}/out.csv'",
                      f"ATTACH '{tmp_path}/evil.db'", "INSTALL httpfs", "LOAD httpfs",
                      "SET enable_external_access = true", "SET lock_configuration = false",
                      "RESET enable_external_access"]:
        with pytest.raises(duckdb.Error):
            con.sql(statement).fetchall()
    _nothing_written(tmp_path)
    assert con.sql("SELECT current_setting('enable_external_access')").fetchall() == [(False,)]
    con.close()
