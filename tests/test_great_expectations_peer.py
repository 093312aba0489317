"""Great Expectations' per-expectation test definitions, run against assay's equivalent expectations.

Every case that maps onto an assay expectation is run; the counts are printed, and every case whose
verdict differs must be listed in docs/great_expectations.md as a documented semantic difference.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

import assay
from assay.checks import parse_suite, run_suite
from assay.errors import SuiteError
from tests import ge_peer

DOC = Path(__file__).parents[1] / "docs" / "great_expectations.md"
ROW = "__row__"


def _store(repo: assay.Repo, name: str, table: pa.Table) -> None:
    """The case's data as a dataset keyed by row number (empty tables: one row added, then deleted)."""
    rows = max(table.num_rows, 1)
    data = table if table.num_rows else pa.Table.from_pylist([{}], schema=table.schema)
    repo.add(name, data.append_column(ROW, pa.array(range(rows), pa.int64())), key=ROW)
    if not table.num_rows:
        repo.add(name, pa.table({ROW: [0]}), mode="delete")


def _verdict(repo: assay.Repo, case: ge_peer.Case, name: str) -> bool | None:
    """assay's verdict: True (passes), False (fails), None (the expectation is refused as invalid)."""
    import yaml

    assert case.data is not None and case.expectation is not None
    text = yaml.safe_dump({"dataset": name, "expectations": [case.expectation]})
    try:
        suite = parse_suite(text)
    except SuiteError:
        return None
    result = run_suite(repo.dataset(name), suite)
    (r,) = result.results
    return None if r.message.startswith("could not be evaluated") else r.success


def test_great_expectations_definitions(tmp_path: Path) -> None:
    if not ge_peer.available():
        pytest.skip(f"Great Expectations' test definitions are not at {ge_peer.PEER}")
    repo = assay.init(tmp_path / "repo")
    counts: Counter[str] = Counter()
    disagreements = []
    tables: dict[str, str] = {}
    for case in ge_peer.cases():
        if case.expectation is None:
            counts["not mapped"] += 1
            continue
        counts["mapped"] += 1
        assert case.data is not None
        key = case.dataset
        if key not in tables:
            tables[key] = f"d{len(tables)}"
            _store(repo, tables[key], case.data)
        got = _verdict(repo, case, tables[key])
        if got == case.expect_success:
            counts["passed"] += 1
        else:
            disagreements.append(f"{case.file}::{case.title}")
    documented = set(re.findall(r"`([\w.]+::[\w\-:.]+)`", DOC.read_text()))
    counts["documented differences"] = len(set(disagreements) & documented)
    print(f"\nGreat Expectations definitions: {dict(counts)}")
    assert counts["mapped"] >= 200
    undocumented = sorted(set(disagreements) - documented)
    assert undocumented == [], f"{len(undocumented)} disagreements are neither fixed nor documented"
