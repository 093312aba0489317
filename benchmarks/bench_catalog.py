"""What opening the default repository's catalog costs, stdlib sqlite3 against SQLAlchemy on the same file, and
merge-base / log over the catalog's commit graph.

    python benchmarks/bench_catalog.py [--commits 300] [--runs 5]

Prints medians in milliseconds and the ratios. The import of SQLAlchemy is measured in a fresh interpreter
(``python -X importtime`` shows the same); opening includes reading the schema version, reading is two ref reads.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from assay.repo.catalog import RefUpdate, SqlCatalog, SqliteCatalog
from assay.repo.repository import Repository as Repo
from assay.repo.repository import init


def _import_ms(module: str, runs: int) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
             for _ in range(runs)]
    return 1000 * statistics.median(times)


def _open_and_read(make, runs: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    opens, reads = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        c = make()
        t1 = time.perf_counter()
        c.list_refs()
        c.get_ref("main")
        reads.append(time.perf_counter() - t1)
        opens.append(t1 - t0)
        c.close()
    return 1000 * statistics.median(opens), 1000 * statistics.median(reads)


def _history(root: Path, commits: int) -> tuple[str, str]:
    r = init(root)
    tip: str | None = None
    for i in range(commits):
        new = r.derive(parents=[tip] if tip else [], message=f"c{i}")
        r.move_refs([RefUpdate("main", "branch", new, tip)], "bench")
        tip = new
    side = r.derive(parents=[tip] if tip else [], message="side")
    r.close()
    return str(tip), side


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=300)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        tip, side = _history(root, args.commits)
        db = root / ".assay" / "catalog.db"
        stdlib = _open_and_read(lambda: SqliteCatalog(db), args.runs)
        alchemy = _open_and_read(lambda: SqlCatalog(f"sqlite:///{db}"), args.runs)
        sa_import = _import_ms("sqlalchemy", args.runs)
        walks = []
        for _ in range(args.runs):
            with Repo(root) as r:
                t0 = time.perf_counter()
                r.merge_base(tip, side)
                t1 = time.perf_counter()
                r.log(limit=10)
                walks.append((t1 - t0, time.perf_counter() - t1))
    print(f"import sqlalchemy (fresh interpreter)   {sa_import:8.1f} ms   (not paid by the default repository)")
    print(f"open catalog       sqlite3 {stdlib[0]:7.2f} ms   SQLAlchemy {alchemy[0]:7.2f} ms   "
          f"x{alchemy[0] / max(stdlib[0], 1e-6):.1f}")
    print(f"two ref reads      sqlite3 {stdlib[1]:7.2f} ms   SQLAlchemy {alchemy[1]:7.2f} ms   "
          f"x{alchemy[1] / max(stdlib[1], 1e-6):.1f}")
    mb = 1000 * statistics.median(w[0] for w in walks)
    lg = 1000 * statistics.median(w[1] for w in walks)
    print(f"merge-base over {args.commits} commits {mb:7.1f} ms   log -n 10 {lg:7.1f} ms (from the catalog's graph)")


if __name__ == "__main__":
    main()
