"""Peak memory of committing a 10,000,000-row x 20-column Parquet file (add with key 'id' + commit), in a
child process: peak RSS from getrusage(RUSAGE_CHILDREN) and from polling the child with psutil.

The Parquet file is written in batches with ParquetWriter, so generating it never holds 10M rows.

    python benchmarks/bench_memory.py [--quick] [--workdir DIR] [--keep] [--profile]
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from _common import fmt_bytes, fmt_s, make_rows, parser, print_table, run_measured, scratch, setup, timed, yes_no

GOAL_BYTES = 2 * 1000**3
BATCH = 500_000


def make_parquet(path: Path, rows: int) -> None:
    writer: pq.ParquetWriter | None = None
    try:
        for i, start in enumerate(range(0, rows, BATCH)):
            table = make_rows(100 + i, start, min(BATCH, rows - start))
            if writer is None:
                # dictionaries differ per batch only in codes; the schema is the same for all batches
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def child(source: str, repo_path: str, profile: bool) -> None:
    """Runs in the child process: init, add, commit; prints a JSON line with timings."""
    import _common

    _common._PROFILE["on"] = profile
    import assay

    os.chdir(Path(repo_path).parent)
    start = time.perf_counter()
    repo = assay.init(repo_path)
    add_s, result = timed("assay add (10M rows)", lambda: repo.add("big", source, key="id"))
    commit_s, _ = timed("assay commit", lambda: repo.commit("10M rows"))
    total = time.perf_counter() - start
    print(json.dumps({"add": add_s, "commit": commit_s, "total": total, "rows": result.manifest.rows,
                      "fragments": len(result.manifest.fragments), "stored": repo.store.stored_bytes(),
                      "self_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def measure(source: Path, repo_path: Path, profile: bool) -> tuple[dict[str, float], int, int, float]:
    cmd = [sys.executable, __file__, "--child", str(source), str(repo_path)] + (["--profile"] if profile else [])
    out, peak, wall = run_measured(cmd)
    print(out.rstrip())
    report = json.loads(out.strip().splitlines()[-1])
    maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return report, maxrss, peak, wall


def main() -> None:
    if len(sys.argv) >= 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], "--profile" in sys.argv[4:])
        return
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args()
    setup(args, "bench_memory")
    rows = 1_000_000 if args.quick else 10_000_000
    with scratch(args, "bench-memory-") as root:
        source = root / "big.parquet"
        gen_s, _ = timed("generate", lambda: make_parquet(source, rows))
        size = source.stat().st_size
        print(f"input: {rows:,} rows x 20 columns, Parquet {fmt_bytes(size)} (generated in {gen_s:.1f} s; "
              f"generator peak RSS {fmt_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)})")
        report, maxrss, polled, wall = measure(source, root / "repo", args.profile)
    ok = max(maxrss, polled) < GOAL_BYTES
    table = [
        ["add (key id)", fmt_s(report["add"]), "-", "-", "-"],
        ["commit", fmt_s(report["commit"]), "-", "-", "-"],
        ["init+add+commit (in child)", fmt_s(report["total"]), "-", "-", "-"],
        ["child process, wall", fmt_s(wall), fmt_bytes(maxrss), fmt_bytes(polled), f"< {fmt_bytes(GOAL_BYTES)}"],
    ]
    print_table(f"Summary ({report['rows']:,} rows committed in {report['fragments']} fragments; "
                f"stored {fmt_bytes(report['stored'])} from {fmt_bytes(size)} of Parquet; "
                f"peak < 2 GB met: {yes_no(ok)})",
                ["step", "seconds", "peak RSS (getrusage)", "peak RSS (psutil, 20 ms poll)", "goal"], table)


if __name__ == "__main__":
    main()
