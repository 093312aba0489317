"""The work split by fragment, in-process against a local Ray cluster of two nodes, on the same data in one run:
``add`` of a 20-column table (its fragments encoded and written as engine tasks), the 40-expectation check of
bench_checks (its streamed pass as engine tasks), and the duplicate and outlier screens over the first
``--screen-rows`` samples (their nearest-neighbour queries as engine tasks). Results must be identical
(manifest bytes, check results, scores and flags).

The cluster is two `ray start` processes on this machine (one CPU each, as tests/ray_cluster.py starts them);
its start and the first task (Ray's worker processes starting) are timed apart, not in the figures. On a machine
of two cores no speed-up is possible: the ratio is Ray's overhead (pickling fragments to the object store,
scheduling, a worker opening the store from its URL), to be read per task.

    python benchmarks/bench_engine.py [--quick] [--rows N] [--screen-rows N] [--workdir DIR]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from _common import fmt_s, parser, print_table, scratch, setup
from bench_checks import suite as check_suite
from bench_memory import make_parquet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/ray_cluster.py: the two-node cluster of the tests
GOAL_OVERHEAD = 0.30


def workload(engine: Any, source: Path, repo_path: Path, suite_text: str, screen_rows: int) -> dict[str, Any]:
    import numpy as np

    import assay
    from assay.checks import parse_suite, run_suite

    assay.init(repo_path)
    with assay.Repo(repo_path, engine=engine) as repo:
        start = time.perf_counter()
        added = repo.add("big", source, key="id")
        add_s = time.perf_counter() - start
        version = repo.dataset("big")
        start = time.perf_counter()
        result = run_suite(version, parse_suite(suite_text), engine=engine)
        check_s = time.perf_counter() - start
        start = time.perf_counter()
        exact = run_suite(version, parse_suite(suite_text), engine=engine, statistics=False)
        scan_s = time.perf_counter() - start
        repo.add("sample", version.to_arrow(["id", "f0", "f1", "f2", "f3", "f4", "f5"]).slice(0, screen_rows),
                 key="id")
        sample = repo.dataset("sample")
        start = time.perf_counter()
        run = assay.screen(sample, ["duplicate", "outlier"], engine=engine)
        screen_s = time.perf_counter() - start
    scores = {n: (np.asarray(r.score).tobytes(), np.asarray(r.flag).tobytes()) for n, r in run.results.items()}
    return {"add": add_s, "check": check_s, "scan": scan_s, "screen": screen_s, "manifest": added.manifest.to_bytes(),
            "fragments": len(added.manifest.fragments), "result": result.to_dict(), "exact": exact.to_dict(),
            "scores": scores}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=None, help="rows of the table (default 10,000,000; --quick 1,000,000)")
    p.add_argument("--screen-rows", type=int, default=None,
                   help="samples screened (default 100,000; --quick 20,000; at most --rows)")
    args = p.parse_args()
    setup(args, "bench_engine")
    import ray
    import yaml

    from assay.engines import InProcessEngine, RayEngine
    from tests.ray_cluster import AUTH, LocalCluster

    rows = args.rows or (1_000_000 if args.quick else 10_000_000)
    screen_rows = min(rows, args.screen_rows or (20_000 if args.quick else 100_000))
    text = yaml.safe_dump({"dataset": "big", "expectations": [ours for ours, _, _ in check_suite()]})
    os.environ.update(AUTH)
    with scratch(args, "bench-engine-") as root:
        source = root / "big.parquet"
        make_parquet(source, rows)
        print(f"data: {rows:,} rows x 20 columns; suite of 40 expectations; {screen_rows:,} samples screened")
        local = workload(InProcessEngine(), source, root / "inprocess", text, screen_rows)
        print(f"  in-process (2 threads): add {local['add']:.2f} s, check {local['check']:.2f} s, "
              f"check without statistics {local['scan']:.2f} s, screens {local['screen']:.2f} s; "
              f"{local['fragments']} fragments")
        start = time.perf_counter()
        with LocalCluster() as cluster:
            engine = RayEngine(cluster.address).connect()
            cluster.wait_for_nodes(ray, 2)
            up = time.perf_counter() - start
            start = time.perf_counter()
            list(engine.map(abs, range(4)))  # Ray starts its worker processes on the first tasks
            warm = time.perf_counter() - start
            print(f"  Ray cluster of 2 nodes up in {up:.1f} s, first tasks (workers starting) {warm:.1f} s")
            engine.nodes.clear()
            distributed = workload(engine, source, root / "ray", text, screen_rows)
            nodes = dict(engine.nodes)
            engine.close()
        print(f"  Ray (2 nodes x 1 CPU):  add {distributed['add']:.2f} s, check {distributed['check']:.2f} s, "
              f"check without statistics {distributed['scan']:.2f} s, screens {distributed['screen']:.2f} s; "
              f"tasks per node {sorted(nodes.values())}")
    same = all(local[k] == distributed[k] for k in ("manifest", "result", "exact", "scores"))
    print(f"identical results (manifest bytes, check results, scores and flags): {same}")
    table = []
    for key, label in (("add", "add (fragments written as tasks)"), ("check", "check (40 expectations)"),
                       ("scan", "check without statistics (one pass)"),
                       ("screen", f"duplicate + outlier screens ({screen_rows:,} samples)")):
        ratio = distributed[key] / local[key]
        table.append([label, fmt_s(local[key]), fmt_s(distributed[key]), f"{ratio:.2f}x",
                      f"<= {1 + GOAL_OVERHEAD:.2f}x", "yes" if ratio <= 1 + GOAL_OVERHEAD else "NO"])
    print_table(f"Summary ({rows:,} rows x 20 columns; {len(nodes)} Ray nodes used)",
                ["work", "in-process s", "Ray s", "Ray / in-process", "goal", "met?"], table)
    print("the screens' features and index are built in the caller; only their k-NN queries are engine tasks")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
