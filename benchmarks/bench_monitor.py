"""Monitoring benchmark, drift half: assay's sketch-based drift against Evidently's data drift preset.

1. Speed and memory: drift of ROWS (default 1M) x 20 columns (14 numeric, 6 categorical; 3 of them shifted)
   against a reference of ROWS rows, each side in its own process: assay streams both Parquet files through
   its profiles (DataSketches) and compares them; Evidently 0.7 runs ``Report([DataDriftPreset()])`` on the
   two DataFrames. Seconds (reading included, and without it), peak resident memory (``ru_maxrss``) and the
   ratios. Then a further 10,000-row window against the stored reference profile (goal <= 50 ms).
2. Detection (assay): planted shifts in 5,000-row windows against a 200k-row reference (mean shift of 0.3
   sd, variance x1.5, a new category at 5 %, a shift confined to one slice, a change of label prior), each
   on 5 seeds: the share detected in the right column; and false alarms on 20 fresh samples (goal 0).

Goals (issue 10): >= 10x faster than Evidently with peak <= 300 MB; a further window <= 50 ms; detection.

The peer runs in its own virtual environment (the script skips it, saying so, when it is absent)::

    python3 -m venv /work/peer-evidently-venv
    /work/peer-evidently-venv/bin/pip install evidently 'pandas<2.3'   # evidently 0.7.23 imports a helper
                                                                         # pandas 3 no longer has

Run: ``PYTHONPATH=src python benchmarks/bench_monitor.py [--rows 1000000] [--quick] [--evidently PYTHON]``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

EVIDENTLY_PYTHON = "/work/peer-evidently-venv/bin/python"
NUMERIC, CATEGORICAL = 14, 6
SHIFTED = ("n0", "n7", "c2")  # a mean shift of 0.3 sd, a variance change, a change of category shares
WINDOW = 10_000


def _categories(k: int) -> list[str]:
    return [f"v{i:02d}" for i in range(k)]


def make_table(rng: np.random.Generator, rows: int, *, shifted: bool = False) -> pa.Table:
    """14 numeric columns (pairs correlated, some skewed) and 6 categorical ones (3 to 40 values)."""
    cols: dict[str, Any] = {}
    base = rng.normal(size=(rows, NUMERIC))
    for j in range(NUMERIC):
        x = base[:, j] + (0.6 * base[:, j - 1] if j % 2 else 0.0)
        if j % 5 == 4:
            x = np.exp(0.5 * x)  # skewed
        if shifted and f"n{j}" == "n0":
            x = x + 0.3 * x.std()
        if shifted and f"n{j}" == "n7":
            x = x.mean() + (x - x.mean()) * 1.5
        cols[f"n{j}"] = pa.array(x)
    for j in range(CATEGORICAL):
        k = (3, 5, 8, 12, 20, 40)[j]
        p = np.geomspace(1.0, 0.2, k)
        if shifted and f"c{j}" == "c2":
            p = p[::-1].copy()
        values = np.asarray(_categories(k))[rng.choice(k, rows, p=p / p.sum())]
        cols[f"c{j}"] = pa.array(values)
    return pa.table(cols)


def write(folder: Path, rows: int) -> tuple[Path, Path, Path]:
    ref, cur, win = folder / "reference.parquet", folder / "current.parquet", folder / "window.parquet"
    if not ref.exists():
        chunk = 250_000
        for path, seed, shifted in ((ref, 1, False), (cur, 2, True)):
            rng = np.random.default_rng(seed)
            with pq.ParquetWriter(path, make_table(rng, 1).schema) as w:
                for start in range(0, rows, chunk):
                    w.write_table(make_table(rng, min(chunk, rows - start), shifted=shifted))
        pq.write_table(make_table(np.random.default_rng(3), WINDOW, shifted=True), win)
    return ref, cur, win


# -- the two sides, each run in its own process ----------------------------------------------------------


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def assay_side(ref: Path, cur: Path, win: Path) -> dict[str, Any]:
    from assay.monitor.drift import compare
    from assay.monitor.profile import Profile, window_profile

    c0, t0 = time.process_time(), time.perf_counter()
    reference = Profile.build_stream(_batches(ref))
    t1 = time.perf_counter()
    current = Profile.build_stream(_batches(cur), like=reference)
    t2 = time.perf_counter()
    result = compare(reference, current)
    c3, t3 = time.process_time(), time.perf_counter()
    stored = Profile.from_bytes(reference.to_bytes())
    window = pq.read_table(win)
    laps, cpu = [], []
    for _ in range(7):  # the median of 7 (the first pays for imports of scipy.special)
        v0, w0 = time.process_time(), time.perf_counter()
        further = compare(stored, window_profile(stored, window))
        laps.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - v0)
    return {"reference_s": t1 - t0, "current_s": t2 - t1, "compare_s": t3 - t2, "total_s": t3 - t0, "cpu_s": c3 - c0,
            "window_cpu_ms": float(np.median(cpu)) * 1000,
            "window_ms": float(np.median(laps)) * 1000, "window_min_ms": min(laps) * 1000, "peak_mb": _peak_mb(),
            "profile_kb": len(reference.to_bytes()) / 1024,
            "drifted": [f.feature for f in result if f.drifted],
            "window_drifted": [f.feature for f in further if f.drifted]}


def _batches(path: Path, size: int = 50_000) -> Any:
    """A Parquet file in batches, row group by row group, the memory of each given back to the system."""
    f = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    for i in range(f.num_row_groups):
        yield from f.iter_batches(batch_size=size, row_groups=[i])
        pa.default_memory_pool().release_unused()


def evidently_side(ref: Path, cur: Path) -> dict[str, Any]:
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    c0, t0 = time.process_time(), time.perf_counter()
    reference, current = pd.read_parquet(ref), pd.read_parquet(cur)
    t1 = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    c2, t2 = time.process_time(), time.perf_counter()
    drifted = []
    for m in snapshot.dict()["metrics"]:
        cfg = m.get("config", {})
        if cfg.get("type", "").endswith("ValueDrift") and _over(m["value"], cfg):
            drifted.append(cfg["column"])
    return {"read_s": t1 - t0, "run_s": t2 - t1, "total_s": t2 - t0, "cpu_s": c2 - c0, "peak_mb": _peak_mb(),
            "drifted": drifted}


def _over(value: float, cfg: dict[str, Any]) -> bool:
    method = str(cfg.get("method", "")).lower()
    return value < cfg["threshold"] if "p_value" in method or "test" in method else value >= cfg["threshold"]


def _run_side(python: str, side: str, *paths: Path) -> dict[str, Any] | None:
    env_path = str(Path(__file__).resolve().parents[1] / "src")
    cmd = [python, __file__, "--side", side, *map(str, paths)]
    import os

    env = {**os.environ, "PYTHONPATH": env_path} if side == "assay" else \
        {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        print(f"{side} side failed:\n{r.stderr[-3000:]}")
        return None
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


# -- detection -----------------------------------------------------------------------------------------------


def detection(seeds: int = 5, fresh: int = 20, rows: int = 5000) -> None:
    from assay.monitor.drift import compare
    from assay.monitor.profile import Profile, window_profile

    def sample(rng: np.random.Generator, n: int, planted: str | None = None) -> pa.Table:
        t = make_table(rng, n)
        y = rng.random(n) < (0.65 if planted == "label prior" else 0.5)
        t = t.append_column("prediction", pa.array(np.where(y, "yes", "no")))
        n1 = t.column("n1").to_numpy() + np.where(y, 0.4, -0.4)  # a feature that follows the label
        t = t.set_column(t.schema.get_field_index("n1"), "n1", pa.array(n1))
        if planted == "mean shift":
            t = t.set_column(2, "n2", pa.array(t.column("n2").to_numpy() + 0.3 * np.std(t.column("n2").to_numpy())))
        if planted == "variance":
            x = t.column("n3").to_numpy()
            t = t.set_column(3, "n3", pa.array(x.mean() + (x - x.mean()) * 1.5))
        if planted == "new category":
            c = np.asarray(t.column("c1").to_pylist(), dtype=object)
            c[rng.random(n) < 0.05] = "new"
            t = t.set_column(t.schema.get_field_index("c1"), "c1", pa.array(c.tolist()))
        if planted == "slice":
            in_slice = np.asarray(t.column("c0").to_pylist()) == "v02"  # about 17 % of rows
            x = t.column("n6").to_numpy() + np.where(in_slice, 1.0, 0.0)
            t = t.set_column(6, "n6", pa.array(x))
        return t

    reference = Profile.build(sample(np.random.default_rng(1000), 200_000))
    where = {"mean shift": "n2", "variance": "n3", "new category": "c1", "slice": "n6", "label prior": "prediction"}
    print(f"\ndetection: {rows:,}-row windows against a 200,000-row reference, {seeds} seeds each")
    for planted, column in where.items():
        hits, extra = 0, 0
        for s in range(seeds):
            drifted = [f.feature for f in compare(reference, window_profile(reference,
                                                                            sample(np.random.default_rng(s), rows,
                                                                                   planted))) if f.drifted]
            hits += column in drifted
            extra += len([d for d in drifted if d not in (column, "*", "n1")])
        print(f"  {planted:13s} ({column:10s}): detected {hits}/{seeds}; other columns flagged: {extra}")
    alarms = 0
    for s in range(fresh):
        drifted = [f.feature for f in compare(reference, window_profile(reference,
                                                                        sample(np.random.default_rng(500 + s), rows)))
                   if f.drifted]
        alarms += bool(drifted)
    print(f"  false alarms on {fresh} fresh samples of the reference distribution: {alarms} (goal 0)")


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the reference and of the current data")
    p.add_argument("--quick", action="store_true", help="100,000 rows")
    p.add_argument("--evidently", default=EVIDENTLY_PYTHON, help="the Python of Evidently's virtual environment")
    p.add_argument("--workdir", default=tempfile.gettempdir(), help="where the Parquet files are written (kept)")
    p.add_argument("--no-detection", action="store_true")
    p.add_argument("--side", help=argparse.SUPPRESS)
    p.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side:
        paths = [Path(x) for x in args.paths]
        got = assay_side(*paths) if args.side == "assay" else evidently_side(*paths[:2])
        print(json.dumps(got))
        return
    rows = 100_000 if args.quick else args.rows
    folder = Path(args.workdir) / f"assay-bench-monitor-{rows}"
    folder.mkdir(parents=True, exist_ok=True)
    import os

    print(f"== monitor drift: {rows:,} x {NUMERIC + CATEGORICAL} columns against {rows:,} (shifted: "
          f"{', '.join(SHIFTED)}); {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} ==")
    t = time.perf_counter()
    ref, cur, win = write(folder, rows)
    print(f"data in {folder} ({time.perf_counter() - t:.1f} s to make)")
    a = _run_side(sys.executable, "assay", ref, cur, win)
    if a is not None:
        print(f"assay:     {a['total_s']:7.2f} s (reference {a['reference_s']:.2f} s, current {a['current_s']:.2f} s, "
              f"compare {a['compare_s'] * 1000:.1f} ms; reading included), peak {a['peak_mb']:.0f} MB, "
              f"profile {a['profile_kb']:.0f} KB; CPU {a['cpu_s']:.2f} s; drifted {a['drifted']}")
        print(f"           a further {WINDOW:,}-row window: {a['window_ms']:.1f} ms median of 7, fastest "
              f"{a['window_min_ms']:.1f} ms, CPU {a['window_cpu_ms']:.1f} ms (goal <= 50 ms); drifted "
              f"{a['window_drifted']}")
    e = None
    if Path(args.evidently).exists():
        e = _run_side(args.evidently, "evidently", ref, cur)
    else:
        print(f"Evidently: not found at {args.evidently}; SKIPPING the peer (see this script's docstring)")
    if e is not None:
        print(f"Evidently: {e['total_s']:7.2f} s (read {e['read_s']:.2f} s, DataDriftPreset {e['run_s']:.2f} s), "
              f"peak {e['peak_mb']:.0f} MB; CPU {e['cpu_s']:.2f} s; drifted {e['drifted']}")
    if a is not None and e is not None:
        print(f"ratio: assay {e['total_s'] / a['total_s']:.1f}x faster (goal >= 10x; CPU time "
              f"{e['cpu_s'] / a['cpu_s']:.1f}x less), "
              f"{e['run_s'] / max(a['total_s'], 1e-9):.1f}x against Evidently's run alone; peak memory "
              f"{a['peak_mb']:.0f} MB vs {e['peak_mb']:.0f} MB ({e['peak_mb'] / a['peak_mb']:.1f}x less; "
              "goal <= 300 MB)")
    if not args.no_detection:
        detection()


if __name__ == "__main__":
    main()
