"""Suite inference describes the distribution, not the one sample it saw."""

from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa
import pytest

import assay
from assay.checks import infer_suite, parse_suite, run_suite


def _sample(n: int, seed: int, start: int) -> pa.Table:
    """One draw of a fixed distribution: ids continue after ``start``, as a fresh batch's do."""
    rng = np.random.default_rng(seed)
    return pa.table({
        "id": pa.array(np.arange(start, start + n), pa.int64()),
        "ref": [str(uuid.UUID(bytes=rng.bytes(16))) for _ in range(n)],
        "normal": rng.normal(10, 2, n),
        "positive": rng.exponential(3.0, n),
        "lognormal": rng.lognormal(0, 1, n),
        "uniform": rng.uniform(0, 1, n),
        "count": rng.poisson(40, n).astype(np.int64),
        "label": rng.choice([0, 1, 2], n, p=[0.5, 0.3, 0.2]).astype(np.int64),
        "kind": rng.choice(["a", "b", "c", "d"], n),
    })


def _errors(repo: assay.Repo, suite_yaml: str, table: pa.Table) -> list[str]:
    repo.add("d", table, key="id")
    res = run_suite(repo.dataset("d"), parse_suite(suite_yaml))
    repo.reset()
    return [f"{r.expectation.kind}({r.expectation.args.get('column')})" for r in res.results
            if not r.success and r.expectation.severity == "error"]


def test_a_fresh_sample_passes_the_suite_inferred_from_another(repo: assay.Repo) -> None:
    n = 2000
    repo.add("d", _sample(n, 0, 0), key="id")
    repo.commit("first sample")
    suite = infer_suite(repo.dataset("d", "HEAD")).to_yaml()
    refused = {seed: errs for seed in range(1, 21) if (errs := _errors(repo, suite, _sample(n, seed, seed * n)))}
    assert not refused, f"fresh samples of the same distribution refused: {refused}"
    base = _sample(n, 99, 50 * n)
    drifted = base.set_column(2, "normal", pa.array(base.column("normal").to_numpy() + 25))
    assert "between(normal)" in _errors(repo, suite, drifted)
    nulls = pa.array([None if i % 3 == 0 else v for i, v in enumerate(base.column("uniform").to_pylist())])
    assert "not_null(uniform)" in _errors(repo, suite, base.set_column(5, "uniform", nulls))
    new_class = base.set_column(7, "label", pa.array(np.full(n, 7, np.int64)))
    assert "in_set(label)" in _errors(repo, suite, new_class)


def test_inferred_bounds_read_as_a_person_writes_them(repo: assay.Repo) -> None:
    repo.add("d", _sample(3000, 5, 0), key="id")
    suite = infer_suite(repo.dataset("d"))
    by = {(e.kind, e.args.get("column")): e.args for e in suite.expectations}
    assert ("between", "id") not in by and ("unique", "id") in by  # the key: unique, never bounded
    assert ("between", "ref") not in by and ("unique", "ref") in by  # uuid-like: unique as a warning
    assert next(e for e in suite.expectations if e.kind == "unique" and e.args["column"] == "ref").severity == "warn"
    assert ("unique", "normal") not in by  # continuous values are distinct by chance
    assert by[("between", "positive")]["min"] == 0  # never negative: not widened across zero
    assert by[("between", "uniform")]["min"] == 0
    assert by[("in_set", "label")]["values"] == [0, 1, 2] and ("between", "label") not in by
    for (kind, _), args in by.items():
        if kind == "between":
            for bound in ("min", "max"):
                text = repr(args[bound])
                assert len(text.replace("-", "").replace(".", "").rstrip("0").lstrip("0")) <= 4, text


@pytest.mark.parametrize("value", [15.803999999999998, 0.000123456, -2.71828, 123456.7, 1e-12])
def test_rounding_is_outward(value: float) -> None:
    from assay.checks.infer import _down, _up

    assert _down(value) <= value <= _up(value)
    assert len(f"{_up(value):g}".replace("-", "").replace(".", "").split("e")[0].strip("0")) <= 3
