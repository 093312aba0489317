"""A 40-expectation suite over 10,000,000 rows x 20 columns: assay (answers from the fragments'
statistics, then one streamed pass over the columns the other expectations need) against Great
Expectations 1.x (pandas) with the equivalent suite on the same Parquet data, in one run.

Each tool runs in its own child process (Great Expectations in its own virtual environment, given by
``--ge-python``; skipped with a message when absent), so that peak memory is measured per tool.
assay is timed on the check alone (the data committed beforehand: the statistics are computed then, as
part of the commit); Great Expectations on reading the Parquet file into pandas and on validating,
shown apart.

    python benchmarks/bench_checks.py [--quick] [--workdir DIR] [--ge-python /work/ge-venv/bin/python]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from _common import fmt_bytes, fmt_s, parser, print_table, run_measured, scratch, setup
from bench_memory import make_parquet

GOAL_SECONDS = 15.0
GE_DEFAULT = "/work/ge-venv/bin/python"


def suite() -> list[tuple[dict[str, Any], str, dict[str, Any]]]:
    """40 expectations: (assay expectation, Great Expectations class, its arguments)."""
    out: list[tuple[dict[str, Any], str, dict[str, Any]]] = []

    def add(ours: dict[str, Any], theirs: str, args: dict[str, Any]) -> None:
        out.append((ours, theirs, args))

    add({"expect": "row_count", "min": 1}, "ExpectTableRowCountToBeBetween", {"min_value": 1})
    add({"expect": "not_null", "column": "id"}, "ExpectColumnValuesToNotBeNull", {"column": "id"})
    add({"expect": "unique", "column": "id"}, "ExpectColumnValuesToBeUnique", {"column": "id"})
    add({"expect": "between", "column": "id", "min": 0}, "ExpectColumnValuesToBeBetween",
        {"column": "id", "min_value": 0})
    for i in range(8):
        f = f"f{i}"
        add({"expect": "not_null", "column": f}, "ExpectColumnValuesToNotBeNull", {"column": f})
        add({"expect": "between", "column": f, "min": -10, "max": 10}, "ExpectColumnValuesToBeBetween",
            {"column": f, "min_value": -10, "max_value": 10})
    for i in range(4):
        f = f"f{i}"
        add({"expect": "mean_between", "column": f, "min": -0.1, "max": 0.1}, "ExpectColumnMeanToBeBetween",
            {"column": f, "min_value": -0.1, "max_value": 0.1})
        add({"expect": "std_between", "column": f, "min": 0.9, "max": 1.1}, "ExpectColumnStdevToBeBetween",
            {"column": f, "min_value": 0.9, "max_value": 1.1})
    for i in range(4):
        c = f"i{i}"
        add({"expect": "between", "column": c, "min": -(10**9), "max": 10**9}, "ExpectColumnValuesToBeBetween",
            {"column": c, "min_value": -(10**9), "max_value": 10**9})
    add({"expect": "in_set", "column": "label", "values": list(range(10))}, "ExpectColumnValuesToBeInSet",
        {"column": "label", "value_set": list(range(10))})
    add({"expect": "length_between", "column": "name", "min": 12, "max": 12}, "ExpectColumnValueLengthsToBeBetween",
        {"column": "name", "min_value": 12, "max_value": 12})
    add({"expect": "regex", "column": "path", "pattern": "^img/"}, "ExpectColumnValuesToMatchRegex",
        {"column": "path", "regex": "^img/"})
    add({"expect": "length_between", "column": "text", "min": 4, "max": 47}, "ExpectColumnValueLengthsToBeBetween",
        {"column": "text", "min_value": 4, "max_value": 47})
    add({"expect": "in_set", "column": "cat0", "values": [f"cat0_{j}" for j in range(10)]},
        "ExpectColumnValuesToBeInSet", {"column": "cat0", "value_set": [f"cat0_{j}" for j in range(10)]})
    add({"expect": "not_null", "column": "cat1"}, "ExpectColumnValuesToNotBeNull", {"column": "cat1"})
    add({"expect": "not_null", "column": "cat2"}, "ExpectColumnValuesToNotBeNull", {"column": "cat2"})
    add({"expect": "quantile_between", "column": "f4", "quantile": 0.5, "min": -0.1, "max": 0.1},
        "ExpectColumnMedianToBeBetween", {"column": "f4", "min_value": -0.1, "max_value": 0.1})
    assert len(out) == 40, len(out)
    return out


def run_assay(source: str, repo_path: str) -> None:
    """Child: commit the data (untimed), then time the check; prints a JSON line."""
    import yaml

    import assay
    from assay.checks import parse_suite, run_suite

    repo = assay.init(repo_path)
    repo.add("big", source, key="id")
    repo.commit("data")
    text = yaml.safe_dump({"dataset": "big", "expectations": [ours for ours, _, _ in suite()]})
    version = repo.dataset("big", "HEAD")
    start = time.perf_counter()
    result = run_suite(version, parse_suite(text))
    seconds = time.perf_counter() - start
    print(json.dumps({"check": seconds, "ok": result.ok, "rows": result.rows,
                      "failed": [r.expectation.label for r in result.results if not r.success]}))


GE_CHILD = r'''
import json, sys, time
import great_expectations as gx
import pandas as pd
spec = json.load(open(sys.argv[1]))
start = time.perf_counter()
df = pd.read_parquet(spec["source"])
read = time.perf_counter() - start
context = gx.get_context(mode="ephemeral")
batch = context.data_sources.add_pandas("p").add_dataframe_asset(name="a") \
    .add_batch_definition_whole_dataframe("b").get_batch(batch_parameters={"dataframe": df})
suite = gx.ExpectationSuite(name="s")
for name, args in spec["expectations"]:
    suite.add_expectation(getattr(gx.expectations, name)(**args))
start = time.perf_counter()
result = batch.validate(suite)
validate = time.perf_counter() - start
print(json.dumps({"read": read, "validate": validate, "ok": bool(result.success), "version": gx.__version__,
                  "failed": [r.expectation_config.type for r in result.results if not r.success]}))
'''


def child_measure(cmd: list[str]) -> tuple[dict[str, Any], int]:
    out, peak, _ = run_measured(cmd)
    return json.loads(out.strip().splitlines()[-1]), peak


def main() -> None:
    if len(sys.argv) >= 4 and sys.argv[1] == "--assay-child":
        run_assay(sys.argv[2], sys.argv[3])
        return
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--ge-python", default=GE_DEFAULT, help="python of a virtual environment with "
                   "great_expectations 1.x (skipped when absent)")
    args = p.parse_args()
    setup(args, "bench_checks")
    rows = 1_000_000 if args.quick else 10_000_000
    with scratch(args, "bench-checks-") as root:
        source = root / "big.parquet"
        make_parquet(source, rows)
        print(f"data: {rows:,} rows x 20 columns, Parquet {fmt_bytes(source.stat().st_size)}; suite of 40")
        ours, our_peak = child_measure([sys.executable, __file__, "--assay-child", str(source), str(root / "repo")])
        print(f"  assay  check {ours['check']:.2f} s, peak RSS {fmt_bytes(our_peak)} (child, incl. the commit "
              f"before it); ok={ours['ok']} failed={ours['failed']}")
        theirs, their_peak = None, 0
        if Path(args.ge_python).exists():
            spec = root / "ge.json"
            spec.write_text(json.dumps({"source": str(source),
                                        "expectations": [[n, a] for _, n, a in suite()]}))
            theirs, their_peak = child_measure([args.ge_python, "-c", GE_CHILD, str(spec)])
            print(f"  GE {theirs['version']}  read {theirs['read']:.2f} s, validate {theirs['validate']:.2f} s, "
                  f"peak RSS {fmt_bytes(their_peak)}; ok={theirs['ok']} failed={theirs['failed']}")
        else:
            print(f"  Great Expectations skipped: no python at {args.ge_python}")
    rows_out = [["assay (statistics + one pass)", fmt_s(ours["check"]), "-", fmt_bytes(our_peak),
                 f"<= {GOAL_SECONDS:g} s", "yes" if ours["check"] <= GOAL_SECONDS else "NO"]]
    if theirs:
        ratio = theirs["validate"] / ours["check"]
        rows_out.append([f"Great Expectations {theirs['version']} (pandas)", fmt_s(theirs["validate"]),
                         fmt_s(theirs["read"]), fmt_bytes(their_peak), ">= 10x slower than assay",
                         f"{ratio:.1f}x " + ("yes" if ratio >= 10 else "NO")])
    print_table(f"Summary ({rows:,} rows x 20 columns, 40 expectations)",
                ["tool", "check s", "read s", "peak RSS", "goal", "met?"], rows_out)


if __name__ == "__main__":
    main()
