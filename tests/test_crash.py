"""Crash safety: a writer killed (SIGKILL) anywhere in ``add`` + ``commit`` leaves a consistent repository.

Every write is a temporary object renamed into place, and a branch moves by compare-and-swap, so after a
kill fsck finds nothing wrong, the branch is at the old commit (old data intact) or at the new one (new data
whole), and the next writer is not blocked.

Writers run in child processes of a ``forkserver`` (started fresh from a single-threaded server that has
already imported assay): quick to start and safe, unlike ``fork`` from this process whose Arrow and DuckDB
thread pools may be running.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import random
import signal
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import assay
from assay.repo.staging import WorkState

TABLE, FOLDER = "train", "images"
TABLE_ROWS = 3000
FOLDER_FILES = 40
KILLS = 60
MEASURED_RUNS = 2  # uncrashed commits of each kind before the first kill, to learn how long a commit takes
MEASURE_EVERY = 8  # and then one uncrashed commit every so many steps, as the repository and the machine change
TIMEOUT = 60.0  # seconds to wait for a child to report; only reached when something hangs

Rows = dict[Any, tuple[Any, ...]]


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["assay", __name__])  # children start with assay and this module loaded
    return ctx


# -- data --------------------------------------------------------------------------------------------------


def make_rows(ids: np.ndarray, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = len(ids)
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "x": rng.random(n),
        "count": rng.integers(0, 1000, n),
        "name": [f"s{seed}-{i}" for i in ids],
    })


def rows_of(table: pa.Table) -> Rows:
    d = table.to_pydict()
    cols = [c for c in table.column_names if c != "id"]
    return {k: tuple(d[c][i] for c in cols) for i, k in enumerate(d["id"])}


def make_files(seed: int, previous: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """Small files in label sub-folders; from ``previous``, a few changed, removed and added."""
    rng = random.Random(seed)
    if previous is None:
        return {f"{rng.choice('abc')}/f{i:03d}.bin": rng.randbytes(rng.randrange(50, 3000))
                for i in range(FOLDER_FILES)}
    files = dict(previous)
    names = sorted(files)
    for name in rng.sample(names, 4):
        files[name] = rng.randbytes(rng.randrange(50, 3000))
    for name in rng.sample(names, 2):
        files.pop(name, None)
    for i in range(3):
        files[f"{rng.choice('abc')}/new{seed}-{i}.bin"] = rng.randbytes(rng.randrange(50, 3000))
    return files


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


def read_table(repo: assay.Repo, ref: str | None) -> Rows:
    return rows_of(repo.dataset(TABLE, ref=ref).to_arrow())


def read_files(repo: assay.Repo, ref: str | None) -> dict[str, bytes]:
    version = repo.dataset(FOLDER, ref=ref)
    t = version.to_arrow(["path", "blob"])
    paths, blobs = t.column("path").to_pylist(), t.column("blob").to_pylist()
    return {p: version.read_blob(b) for p, b in zip(paths, blobs, strict=True)}


# -- the writer --------------------------------------------------------------------------------------------


def commit_in_child(root: str, name: str, source: Any, key: str | None, mode: str, message: str,
                    conn: Connection) -> None:
    """Runs in a child: open the repository, say so, then add and commit (timed)."""
    repo = assay.Repo(root)
    conn.send("ready")
    start = time.perf_counter()
    repo.add(name, str(source) if isinstance(source, Path) else source, key=key, mode=mode)
    oid = repo.commit(message)
    conn.send(("done", oid, time.perf_counter() - start))
    repo.close()
    with contextlib.suppress(EOFError):  # stay alive until the parent is done with this process
        conn.recv()
    conn.close()


@dataclass
class Outcome:
    killed: bool  # the child died of the SIGKILL (rather than finishing first)
    duration: float | None  # from the child being ready to its report of the finished commit


def run_writer(ctx: Any, args: tuple[Any, ...], delay: float | None) -> Outcome:
    """Start a writer; SIGKILL it ``delay`` seconds after it is ready (None: let it finish)."""
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=commit_in_child, args=(*args, child))
    proc.start()
    child.close()
    duration = None
    try:
        assert parent.poll(TIMEOUT), "the writer did not start"
        assert parent.recv() == "ready"
        ready = time.perf_counter()  # kill delays count from here, so durations do too
        if delay is None:
            assert parent.poll(TIMEOUT), "the writer did not finish"
            assert parent.recv()[0] == "done"
            duration = time.perf_counter() - ready
        else:
            time.sleep(delay)
            proc.kill()  # the child is alive until told to go: working, or waiting once done
            if parent.poll(0):
                with contextlib.suppress(EOFError):  # the child died while sending
                    duration = parent.recv()[2]  # as the child measured it
        parent.close()
        proc.join(TIMEOUT)
        assert proc.exitcode == (0 if delay is None else -signal.SIGKILL)
    finally:
        if proc.exitcode is None:
            proc.kill()
            proc.join()
        parent.close()
        proc.close()
    return Outcome(duration is None, duration)


# -- checks ------------------------------------------------------------------------------------------------


def assert_lock_free(root: Path) -> None:
    """No process holds the repository lock (a dead writer's lock went with it)."""
    with open(root / ".assay" / "lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError when held
        fcntl.flock(f, fcntl.LOCK_UN)


@dataclass
class State:
    tip: str
    log: list[str]
    table: Rows
    files: dict[str, bytes]
    manifests: dict[str, str] = field(default_factory=dict)


def snapshot(repo: assay.Repo, table: Rows, files: dict[str, bytes]) -> State:
    tip = repo.head()
    assert tip is not None
    return State(tip, [oid for oid, _ in repo.log()], table, files, repo.datasets("main"))


def check_after_kill(root: Path, old: State, name: str, message: str, new_data: Any) -> bool:
    """Assert the repository is consistent and holds the old or the whole new version; True when new."""
    assert_lock_free(root)
    with assay.Repo(root) as repo:
        report = repo.fsck()
        assert report.ok, report.to_dict()
        ref = repo.catalog.get_ref("main")
        assert ref is not None
        other = FOLDER if name == TABLE else TABLE
        if ref.commit == old.tip:
            moved = False
            assert repo.datasets("main") == old.manifests
            expect = old.table if name == TABLE else old.files
        else:
            moved = True
            oid, c = repo.show("main")
            assert c.parents == (old.tip,), "the new commit must sit directly on the old one"
            assert c.message == message
            assert c.datasets[other] == old.manifests[other]
            assert [o for o, _ in repo.log()] == [oid, *old.log]
            expect = new_data
        got = read_table(repo, "main") if name == TABLE else read_files(repo, "main")
        assert got == expect, f"branch at {ref.commit[:12]} (moved={moved}) holds other data than expected"
        assert (read_table(repo, "main") if other == TABLE else read_files(repo, "main")) == (
            old.table if other == TABLE else old.files)
        # the working version (staged change, if the writer died after staging it) is old or new, never a mix
        working = read_table(repo, None) if name == TABLE else read_files(repo, None)
        assert working in (expect, new_data, old.table if name == TABLE else old.files)
    return moved


# -- the test ----------------------------------------------------------------------------------------------


@dataclass
class Change:
    name: str
    source: Any
    key: str | None
    mode: str
    expect: Any


def table_change(rng: random.Random, old: Rows, seed: int) -> tuple[pa.Table, str, Rows]:
    """A change to the table dataset, its mode, and the rows it must give."""
    mode = rng.choice(["replace", "upsert", "append", "delete"])
    ids = np.array(sorted(old))
    top = int(ids.max()) + 1
    if mode == "replace":
        keep = np.sort(np.random.default_rng(seed).choice(ids, len(ids) - 500, replace=False))
        change = make_rows(np.concatenate([keep, np.arange(top, top + 500)]), seed)
        return change, mode, rows_of(change)
    if mode == "upsert":
        change = make_rows(np.concatenate([ids[::10], np.arange(top, top + 200)]), seed)
        return change, mode, {**old, **rows_of(change)}
    if mode == "append":
        change = make_rows(np.arange(top, top + 300), seed)
        return change, mode, {**old, **rows_of(change)}
    gone = ids[::7]
    expect = {k: v for k, v in old.items() if k not in set(gone.tolist())}
    return pa.table({"id": pa.array(gone, pa.int64())}), mode, expect


@pytest.mark.slow
def test_sigkill_during_commit_leaves_old_or_whole_new_version(tmp_path: Path) -> None:
    ctx = _context()
    rng = random.Random(20261127)
    root = tmp_path / "repo"
    folders = tmp_path / "folders"
    base_table = make_rows(np.arange(TABLE_ROWS), 0)
    base_files = make_files(0)
    with assay.init(root) as repo:
        repo.add(TABLE, base_table, key="id")
        repo.add(FOLDER, str(write_folder(folders / "base", base_files)))
        repo.commit("base")
        state = snapshot(repo, rows_of(base_table), base_files)

    durations: dict[str, list[float]] = {TABLE: [], FOLDER: []}
    kills = before = after = died_mid_commit = 0
    step = 0
    while kills < KILLS:
        step += 1
        name = FOLDER if step % 5 == 0 else TABLE
        expect: Rows | dict[str, bytes]
        if name == TABLE:
            source, mode, expect = table_change(rng, state.table, step)
            key: str | None = "id"
        else:
            files = make_files(step, state.files)
            source, mode, key, expect = write_folder(folders / f"s{step}", files), "replace", None, files
        message = f"change {step}"
        measured = durations[name]
        if len(measured) < MEASURED_RUNS or step % MEASURE_EVERY == 0:
            delay = None
        else:
            delay = rng.uniform(0, 1.2 * statistics.median(measured[-5:]))
        outcome = run_writer(ctx, (str(root), name, source, key, mode, message), delay)
        if delay is None:
            assert outcome.duration is not None
            measured.append(outcome.duration)
        else:
            kills += 1
            died_mid_commit += outcome.killed

        moved = check_after_kill(root, state, name, message, expect)
        if delay is not None:
            after += moved
            before += not moved
        elif not moved:
            raise AssertionError("an uncrashed commit did not move the branch")

        # the repository stays usable: the next writer adds (over whatever the dead one staged) and commits
        next_table = make_rows(np.arange(step * 10, step * 10 + TABLE_ROWS), 100_000 + step)
        table, files = rows_of(next_table), make_files(1000 + step, state.files)
        with assay.Repo(root) as repo:
            if name == TABLE:
                repo.add(TABLE, next_table, key="id")
            else:
                repo.add(FOLDER, str(write_folder(folders / f"p{step}", files)))
            repo.commit(f"after {step}")
            assert repo.status().staged == {}
            if name == TABLE:
                assert read_table(repo, "main") == table
                state = snapshot(repo, table, state.files)
            else:
                assert read_files(repo, "main") == files
                state = snapshot(repo, state.table, files)

    print(f"\n{kills} kills: {before} left the old commit, {after} the new one; {died_mid_commit} died "
          f"mid-commit; commit took {statistics.median(durations[TABLE]) * 1000:.0f} ms (table), "
          f"{statistics.median(durations[FOLDER]) * 1000:.0f} ms (folder)")
    assert before >= 1, "no kill landed before the branch moved: the test did not cover that case"
    assert after >= 1, "no kill landed after the branch moved: the test did not cover that case"
    with assay.Repo(root) as repo:
        assert repo.fsck().ok


# -- a kill at one exact point: after the branch moved, before the staging area was cleared ----------------


def commit_then_die_before_clearing(root: str, conn: Connection) -> None:
    """Runs in a child: add and commit, but die (SIGKILL) when commit clears the staging area."""
    original: Callable[[WorkState, Any], None] = WorkState.write_staging

    def write_staging(self: WorkState, staging: Any) -> None:
        if not staging.datasets:
            conn.send(assay.Repo(root).catalog.get_ref("main").commit)  # type: ignore[union-attr]
            os.kill(os.getpid(), signal.SIGKILL)
        original(self, staging)

    WorkState.write_staging = write_staging  # type: ignore[method-assign]
    repo = assay.Repo(root)
    repo.add(TABLE, make_rows(np.arange(100, 200), 1), key="id", mode="append")
    repo.commit("append")


def test_kill_between_branch_update_and_staging_clear(tmp_path: Path) -> None:
    ctx = _context()
    root = tmp_path / "repo"
    with assay.init(root) as repo:
        repo.add(TABLE, make_rows(np.arange(100), 0), key="id")
        old = repo.commit("base")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=commit_then_die_before_clearing, args=(str(root), child))
    proc.start()
    child.close()
    try:
        assert parent.poll(TIMEOUT)
        new = parent.recv()
        proc.join(TIMEOUT)
        assert proc.exitcode == -signal.SIGKILL
    finally:
        parent.close()
        proc.close()
    assert new != old
    assert_lock_free(root)
    with assay.Repo(root) as repo:
        assert repo.fsck().ok
        assert repo.head() == new
        expect = rows_of(make_rows(np.arange(100), 0)) | rows_of(make_rows(np.arange(100, 200), 1))
        assert read_table(repo, "main") == expect
        assert read_table(repo, None) == expect
        # the change is committed, so there is nothing left to commit, and the next change goes on top
        with pytest.raises(assay.NothingToCommit):
            repo.commit("again")
        repo.add(TABLE, make_rows(np.arange(200, 210), 2), key="id", mode="append")
        third = repo.commit("third")
        assert [o for o, _ in repo.log()] == [third, new, old]
        assert len(read_table(repo, "main")) == 210
