"""Concurrent writers: no lost update, clear conflicts, and refs that move only by compare-and-swap.

Writers are separate processes, started by a ``forkserver`` (quick, and safe whatever threads this process
runs). Two set-ups share a branch:

* one repository folder: every writer uses the same staging area and lock, so commits are serialised;
* work folders of their own (own HEAD, staging and lock) over one object store and one catalog, the way
  several machines share a repository: a writer whose staged change was built on a base that moved gets a
  ``ConflictError`` saying what to do, while a commit whose base moved only in other datasets is retried.
"""

from __future__ import annotations

import itertools
import multiprocessing
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import assay
from assay.repo.catalog import SqlCatalog
from assay.store import LocalObjectStore

WRITERS = 4
ROUNDS = 5
ROWS_PER_COMMIT = 25
TIMEOUT = 120.0  # seconds to wait for a writer; only reached when something hangs


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["assay", __name__])
    return ctx


def rows(ids: Sequence[int] | np.ndarray, seed: int = 0) -> pa.Table:
    ids = np.asarray(ids, np.int64)
    rng = np.random.default_rng(seed)
    return pa.table({"id": pa.array(ids, pa.int64()), "x": rng.random(len(ids)),
                     "name": [f"s{seed}-{i}" for i in ids]})


def batch_ids(worker: int, round_: int) -> list[int]:
    start = 1_000_000 + worker * 10_000 + round_ * 100
    return list(range(start, start + ROWS_PER_COMMIT))


def ids_at(repo: assay.Repo, rev: str | None = "main", name: str = "train") -> set[int]:
    return set(repo.dataset(name, ref=rev).to_arrow(["id"]).column("id").to_pylist())


def open_tree(tree: Path, shared: Path) -> assay.Repo:
    """A work folder of its own (HEAD, staging, lock) over the object store and catalog of ``shared``."""
    url = f"sqlite:///{shared / '.assay' / 'catalog.db'}"
    return assay.Repo(tree, store=LocalObjectStore(shared / ".assay"), catalog=SqlCatalog(url))


def make_tree(tree: Path, shared: Path) -> None:
    assay.init(tree, catalog_url=f"sqlite:///{shared / '.assay' / 'catalog.db'}").close()


def assert_single_chain(repo: assay.Repo, commits: int) -> list[str]:
    """The branch's history is one line of ``commits`` commits (each has its predecessor as only parent)."""
    log = repo.log("main")
    assert len(log) == commits
    for (_, c), (older, _) in itertools.pairwise(log):
        assert c.parents == (older,)
    assert log[-1][1].parents == ()
    return [oid for oid, _ in log]


# -- running writers in processes -------------------------------------------------------------------------


def _child(target: Callable[..., Any], args: tuple[Any, ...], conn: Connection) -> None:
    try:
        conn.send(("ok", target(*args)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def run_processes(ctx: Any, target: Callable[..., Any], args: list[tuple[Any, ...]]) -> list[Any]:
    """Run ``target(*a)`` for each ``a`` in its own process, all at once; their return values, in order."""
    started = []
    for a in args:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_child, args=(target, a, child))
        proc.start()
        child.close()
        started.append((proc, parent))
    results = []
    try:
        for proc, parent in started:
            assert parent.poll(TIMEOUT), "a writer hung"
            status, value = parent.recv()
            assert status == "ok", f"a writer failed:\n{value}"
            results.append(value)
            proc.join(TIMEOUT)
            assert proc.exitcode == 0
    finally:
        for proc, parent in started:
            if proc.exitcode is None:
                proc.kill()
                proc.join()
            parent.close()
            proc.close()
    return results


# -- (a) one repository folder ------------------------------------------------------------------------------


def append_in_folder(root: str, worker: int, barrier: Any) -> list[tuple[str, str | None]]:
    """Append ROUNDS batches of new rows, committing each; what became of each batch."""
    out: list[tuple[str, str | None]] = []
    with assay.Repo(root) as repo:
        barrier.wait()
        for r in range(ROUNDS):
            ids = batch_ids(worker, r)
            repo.add("train", rows(ids, worker), key="id", mode="append")
            try:
                out.append(("commit", repo.commit(f"worker {worker} round {r}")))
            except assay.NothingToCommit:
                # the staging area is shared by the folder: another writer's commit took these rows along
                assert set(ids) <= ids_at(repo, "main"), "rows staged here were neither committed nor kept"
                out.append(("taken along", None))
    return out


@pytest.mark.slow
def test_writers_in_one_folder_lose_no_update(tmp_path: Path) -> None:
    ctx = _context()
    root = tmp_path / "repo"
    with assay.init(root) as repo:
        repo.add("train", rows(range(100)), key="id")
        repo.commit("base")
    barrier = ctx.Barrier(WRITERS)
    results = run_processes(ctx, append_in_folder, [(str(root), w, barrier) for w in range(WRITERS)])

    commits = [oid for per_writer in results for what, oid in per_writer if what == "commit"]
    assert len(commits) == len(set(commits))
    with assay.Repo(root) as repo:
        log = assert_single_chain(repo, 1 + len(commits))
        assert set(log[:-1]) == set(commits), "every successful commit is on the branch, and nothing else"
        expected = set(range(100)) | {i for w in range(WRITERS) for r in range(ROUNDS) for i in batch_ids(w, r)}
        assert ids_at(repo) == expected
        assert repo.dataset("train").num_rows == len(expected)
        assert repo.status().staged == {}
        report = repo.fsck()
        assert report.ok, report.to_dict()
    print(f"\n{len(commits)} commits for {WRITERS * ROUNDS} batches; the rest were taken along by other commits")


# -- (a) work folders of their own over one store and catalog -----------------------------------------------


def append_in_tree(tree: str, shared: str, worker: int, barrier: Any) -> tuple[list[str], list[str]]:
    """Append ROUNDS batches; on a conflict, unstage, add again on the new tip, and commit (as the error says)."""
    commits: list[str] = []
    conflicts: list[str] = []
    with open_tree(Path(tree), Path(shared)) as repo:
        barrier.wait()
        for r in range(ROUNDS):
            for _ in range(100):
                repo.add("train", rows(batch_ids(worker, r), worker), key="id", mode="append")
                try:
                    commits.append(repo.commit(f"worker {worker} round {r}"))
                    break
                except assay.ConflictError as e:
                    conflicts.append(str(e))
                    repo.reset()
            else:
                raise AssertionError("a writer never got its commit in")
    return commits, conflicts


@pytest.mark.slow
def test_writers_in_own_folders_lose_no_update_and_get_clear_conflicts(tmp_path: Path) -> None:
    ctx = _context()
    shared = tmp_path / "shared"
    with assay.init(shared) as repo:
        repo.add("train", rows(range(100)), key="id")
        repo.commit("base")
    trees = [tmp_path / f"tree{w}" for w in range(WRITERS)]
    for tree in trees:
        make_tree(tree, shared)
    barrier = ctx.Barrier(WRITERS)
    results = run_processes(ctx, append_in_tree, [(str(t), str(shared), w, barrier) for w, t in enumerate(trees)])

    commits = [oid for c, _ in results for oid in c]
    conflicts = [m for _, m in results for m in m]
    assert len(commits) == len(set(commits)) == WRITERS * ROUNDS
    for message in conflicts:
        assert "changed on this branch" in message and "assay reset" in message and "add it again" in message
    with assay.Repo(shared) as repo:
        log = assert_single_chain(repo, 1 + WRITERS * ROUNDS)
        assert set(log[:-1]) == set(commits)
        expected = set(range(100)) | {i for w in range(WRITERS) for r in range(ROUNDS) for i in batch_ids(w, r)}
        assert ids_at(repo) == expected
        report = repo.fsck()
        assert report.ok, report.to_dict()
    print(f"\n{len(commits)} commits; {len(conflicts)} conflicts were reported and retried")


# -- (b) a base that moves under a staged change ------------------------------------------------------------


@pytest.fixture
def two_trees(tmp_path: Path) -> tuple[assay.Repo, assay.Repo]:
    """Two work folders over one store and catalog, with datasets ``train`` and ``other`` committed."""
    shared = tmp_path / "shared"
    with assay.init(shared) as repo:
        repo.add("train", rows(range(100)), key="id")
        repo.add("other", rows(range(10), 9), key="id")
        repo.commit("base")
    for name in ("a", "b"):
        make_tree(tmp_path / name, shared)
    return open_tree(tmp_path / "a", shared), open_tree(tmp_path / "b", shared)


def test_commit_on_a_moved_base_is_a_clear_conflict(two_trees: tuple[assay.Repo, assay.Repo]) -> None:
    a, b = two_trees
    with a, b:
        a.add("train", rows(range(50, 150), 1), key="id", mode="upsert")
        b.add("train", rows([1000, 1001], 2), key="id", mode="append")
        moved = b.commit("b first")
        with pytest.raises(assay.ConflictError, match=r"(?s)'train' changed on this branch.*assay reset.*add it again"):
            a.commit("a second")
        assert a.head() == moved, "the failed commit left the branch where the other writer put it"
        assert set(a.status().staged) == {"train"}, "the staged change is kept, to be added again"
        assert ids_at(a) == set(range(100)) | {1000, 1001}
        # doing what the message says works, and keeps both changes
        a.reset()
        a.add("train", rows(range(50, 150), 1), key="id", mode="upsert")
        c = a.commit("a second")
        assert a.read_commit(c).parents == (moved,)
        assert ids_at(a) == set(range(150)) | {1000, 1001}
        assert a.fsck().ok


def _move_branch_during_commit(a: assay.Repo, move: Callable[[], str]) -> list[str]:
    """Make ``move`` commit elsewhere just before ``a`` swaps its branch: ``a``'s first swap then fails."""
    original = a.catalog.update_ref
    events: list[str] = []

    def racing(name: str, kind: str, new: str | None, expected: str | None, message: str = "") -> None:
        if not events:
            events.append(move())
        try:
            original(name, kind, new, expected, message)
        except assay.ConflictError:
            events.append("swap failed")
            raise
        events.append("swapped")

    a.catalog.update_ref = racing  # type: ignore[method-assign]
    return events


def test_commit_retries_when_only_other_datasets_moved(two_trees: tuple[assay.Repo, assay.Repo]) -> None:
    a, b = two_trees
    with a, b:
        a.add("train", rows([500, 501], 1), key="id", mode="append")

        def other_writer() -> str:
            b.add("other", rows([77], 7), key="id", mode="append")
            return b.commit("b changes other")

        events = _move_branch_during_commit(a, other_writer)
        c = a.commit("a changes train")
        moved = events[0]
        assert events[1:] == ["swap failed", "swapped"], "the first swap must have lost the race, then retried"
        commit = a.read_commit(c)
        assert commit.parents == (moved,), "the retried commit sits on top of the other writer's"
        assert ids_at(a) == set(range(100)) | {500, 501}
        assert ids_at(a, name="other") == set(range(10)) | {77}
        assert_single_chain(a, 3)
        assert a.status().staged == {}
        assert a.fsck().ok


def test_commit_racing_a_change_to_the_same_dataset_is_a_conflict(
        two_trees: tuple[assay.Repo, assay.Repo]) -> None:
    a, b = two_trees
    with a, b:
        a.add("train", rows([500, 501], 1), key="id", mode="append")

        def same_dataset() -> str:
            b.add("train", rows([600], 6), key="id", mode="append")
            return b.commit("b changes train")

        events = _move_branch_during_commit(a, same_dataset)
        with pytest.raises(assay.ConflictError, match=r"(?s)'train' changed on this branch.*assay reset"):
            a.commit("a changes train")
        assert events[1:] == ["swap failed"]
        assert a.head() == events[0]
        assert ids_at(a) == set(range(100)) | {600}, "the other writer's change stands; nothing was mixed in"
        assert a.fsck().ok


# -- (c) compare-and-swap on refs, from several processes ---------------------------------------------------


REF_RACERS = 6
REF_ROUNDS = 5


def race_ref(root: str, worker: int, barrier: Any) -> list[tuple[str, bool]]:
    """Each round: read the ref, then (all at once) try to move it to a commit of this worker's."""
    out: list[tuple[str, bool]] = []
    with assay.Repo(root) as repo:
        base = repo.head()
        assert base is not None
        head = repo.read_commit(base)
        for r in range(REF_ROUNDS + 1):
            barrier.wait()  # the previous round is over everywhere
            ref = repo.catalog.get_ref("race")
            expected = ref.commit if ref else None
            c = assay.Commit.child(parent=head, parents=(expected or base,), message=f"round {r} worker {worker}",
                                   author="racer")
            new = repo.store.put(c.to_bytes())
            repo.catalog.record_commit(new, c.time, c.message)
            barrier.wait()  # start together
            try:
                repo.catalog.update_ref("race", "branch", new, expected, f"round {r}")
                out.append((new, True))
            except assay.ConflictError as e:
                assert "race" in str(e)
                out.append((new, False))
    return out


@pytest.mark.slow
def test_ref_compare_and_swap_has_exactly_one_winner(tmp_path: Path) -> None:
    ctx = _context()
    root = tmp_path / "repo"
    with assay.init(root) as repo:
        repo.add("train", rows(range(10)), key="id")
        repo.commit("base")
    barrier = ctx.Barrier(REF_RACERS)
    results = run_processes(ctx, race_ref, [(str(root), w, barrier) for w in range(REF_RACERS)])

    winners = []
    for r in range(REF_ROUNDS + 1):  # round 0 creates the ref (expected None), the others move it
        won = [new for per_worker in results for new, ok in [per_worker[r]] if ok]
        assert len(won) == 1, f"round {r}: {len(won)} writers moved the ref"
        winners.append(won[0])
    with assay.Repo(root) as repo:
        assert repo.branches()["race"] == winners[-1]
        log = repo.catalog.reflog("race")
        assert [(old, new) for old, new, _, _ in reversed(log)] == list(zip([None, *winners[:-1]], winners,
                                                                            strict=True))
        # the winners form one chain: each round's commit sits on the previous round's winner
        for older, newer in itertools.pairwise(winners):
            assert repo.read_commit(newer).parents == (older,)
        assert repo.fsck().ok


def test_stale_expected_ref_is_refused(tmp_path: Path) -> None:
    with assay.init(tmp_path / "repo") as repo:
        repo.add("train", rows(range(10)), key="id")
        first = repo.commit("one")
        repo.add("train", rows([10]), key="id", mode="append")
        second = repo.commit("two")
        with pytest.raises(assay.ConflictError, match="another writer committed first"):
            repo.catalog.update_ref("main", "branch", first, first, "stale")
        with pytest.raises(assay.ConflictError, match="already exists"):
            repo.catalog.update_ref("main", "branch", first, None, "create over existing")
        assert repo.head() == second
        repo.catalog.update_ref("main", "branch", first, second, "reset to first")
        assert repo.head() == first
