"""Crash safety of the gate: an ``ingest`` killed (SIGKILL) at any point leaves the target branch and the
quarantine both as they were, or both updated; fsck finds nothing wrong and the next ingest goes through.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import assay
from assay.gate import ingest, parse_policy

POLICY = "max_quarantined: 1.0\nscreens:\n  duplicate: {action: quarantine}\n  outlier: {action: warn}\n"
KILLS = 14


def _batch(i: int) -> pa.Table:
    from tests.test_gate import samples

    fresh = samples(40, start=1000 + 100 * i)
    copies = samples(200).slice(i, 2).set_column(0, "id", pa.array([50_000 + 10 * i, 50_001 + 10 * i]))
    return pa.concat_tables([fresh, copies])


def _child(root: str, i: int) -> None:
    with assay.Repo(root) as repo:
        ingest(repo, _batch(i), into="points", policy=parse_policy(POLICY))


def _ids(repo: assay.Repo, spec: str) -> set[int]:
    try:
        return set(repo.dataset(spec).to_arrow(["id"]).column("id").to_pylist())
    except assay.RefNotFound:
        return set()


def _state(repo: assay.Repo, i: int) -> str:
    batch = set(_batch(i).column("id").to_pylist())
    copies = {50_000 + 10 * i, 50_001 + 10 * i}
    published = _ids(repo, "points@main") & batch
    held = _ids(repo, "points@quarantine/points") & batch if repo.catalog.get_ref("quarantine/points") else set()
    if not published and not held:
        return "old"
    assert published == batch - copies and held == copies, (published, held)  # never half of an ingest
    return "new"


def test_a_killed_ingest_leaves_both_branches_as_they_were_or_both_updated(tmp_path: Path) -> None:
    from tests.test_gate import samples

    root = tmp_path / "repo"
    with assay.init(root) as repo:
        assert ingest(repo, samples(200), into="points", key="id", policy=parse_policy(POLICY)).ok
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["assay", "assay.gate", __name__])
    start = time.perf_counter()
    _run(ctx, str(root), 0, None)
    duration = time.perf_counter() - start
    outcomes = []
    for k, fraction in enumerate(np.linspace(0.05, 1.4, KILLS)):
        i = k + 1
        _run(ctx, str(root), i, fraction * duration)
        with assay.Repo(root) as repo:
            outcomes.append(_state(repo, i))
            assert repo.fsck().ok
    assert "old" in outcomes and "new" in outcomes, outcomes
    _run(ctx, str(root), KILLS + 1, None)  # the next writer is not blocked
    with assay.Repo(root) as repo:
        assert _state(repo, KILLS + 1) == "new"


def _run(ctx: Any, root: str, i: int, kill_after: float | None) -> None:
    proc = ctx.Process(target=_child, args=(root, i))
    proc.start()
    if kill_after is None:
        proc.join(120)
        assert proc.exitcode == 0
        return
    proc.join(kill_after)
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
