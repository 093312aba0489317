"""One Repo: ``assay.Repo`` is ``repo.Repository`` with the suite checker installed, and the core never skips a
suite silently (commit, merge and derive check it, refuse without a checker, or record an explicit skip)."""

from __future__ import annotations

from pathlib import Path

import pytest

import assay
from assay.repo import Repository
from tests.conftest import make_table

SUITE = "dataset: t\nexpectations:\n  - {expect: row_count, max: 10}\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    assay.init(tmp_path)
    return tmp_path


def test_assay_repo_is_the_core_with_the_checker(folder: Path) -> None:
    with assay.Repo(folder) as repo:
        assert isinstance(repo, Repository) and repo.verifier is not None
        assert repr(repo).startswith("<Repo ")
    assert not hasattr(assay.repo, "Repo")  # one Repo: the public one
    with Repository(folder) as core:
        assert core.verifier is None and repr(core).startswith("<Repository ")


def test_the_core_refuses_to_commit_a_suite_it_cannot_check(folder: Path) -> None:
    with Repository(folder) as core:
        core.add("t", make_table(10), key="id")
        core.set_suite("t", SUITE)
        with pytest.raises(assay.CheckFailed, match="no suite checker"):
            core.commit("unchecked")
        assert core.head() is None  # nothing was committed
        oid = core.commit("skip, recorded", no_verify=True)
        assert core.read_commit(oid).meta["no_verify"] is True
    with assay.Repo(folder) as repo:
        repo.add("t", make_table(12), key="id")
        with pytest.raises(assay.CheckFailed, match="row_count"):
            repo.commit("checked")  # the public Repo checks the suite


def test_derive_checks_the_datasets_it_changes_unless_told_not_to(folder: Path) -> None:
    with assay.Repo(folder) as repo:
        repo.add("t", make_table(5), key="id")
        repo.set_suite("t", SUITE)
        tip = repo.commit("five rows")
        too_many, _ = repo.build_version("t", make_table(12), base=repo.datasets("HEAD")["t"], key="id")
        with pytest.raises(assay.CheckFailed, match="row_count"):
            repo.derive(parents=(tip,), message="unchecked?", datasets={"t": too_many})
        skipped = repo.derive(parents=(tip,), message="a gate decided", datasets={"t": too_many},
                              verify=False)
        assert repo.read_commit(skipped).datasets["t"] == too_many
        fine, _ = repo.build_version("t", make_table(8), base=repo.datasets("HEAD")["t"], key="id")
        checked = repo.derive(parents=(tip,), message="checked", datasets={"t": fine})
        assert repo.read_commit(checked).meta["checks"]["t"]["passed"] == 1
    with Repository(folder) as core, pytest.raises(assay.CheckFailed, match="no suite checker"):
        core.derive(parents=(tip,), message="unchecked?", datasets={"t": fine})


def test_a_release_that_would_fail_the_suite_is_refused(repo: assay.Repo) -> None:
    import pyarrow as pa

    from assay.gate import release
    from assay.gate.policy import parse_policy

    base = make_table(60)
    repo.add("t", base, key="id")
    repo.commit("base")
    copies = base.slice(0, 3).set_column(0, "id", pa.array([900, 901, 902], pa.int64()))
    policy = parse_policy("checks: skip\nmax_quarantined: 1.0\nscreens:\n  duplicate: {action: quarantine}\n")
    report = repo.ingest(pa.concat_tables([copies, make_table(10, seed=9, start=500)]), into="t", policy=policy)
    assert report.ok and len(report.quarantined) >= 1
    rows = repo.dataset("t", "main").num_rows
    repo.set_suite("t", f"dataset: t\nexpectations:\n  - {{expect: row_count, max: {rows}}}\n")
    tip = repo.commit("no more rows")
    with pytest.raises(assay.CheckFailed, match="Nothing was released") as info:
        release(repo, "t", [report.quarantined[0].sample], branch="main")
    assert "row_count" in str(info.value) and "--no-verify" not in str(info.value)
    assert repo.resolve("main") == tip  # nothing moved


def test_the_ids_of_a_fragment_with_deleted_rows_are_those_of_its_live_rows(tmp_path: Path) -> None:
    """A read of ids and hashes only (picked from the id index in NumPy) gives the live rows, their ids,
    hashes and positions exactly as a read beside a data column (Arrow's filter of the whole fragment)."""
    import numpy as np

    from assay.table.fragments import POSITION, id_table, read_fragment
    from assay.table.manifest import HASH_COLUMN, ID_COLUMN

    with assay.init(tmp_path) as repo:
        repo.add("t", make_table(400), key="id")
        repo.commit("first")
        repo.add("t", make_table(40, seed=3, start=100), mode="upsert")  # 40 old rows deleted in the fragment
        repo.commit("relabel")
        version = repo.dataset("t")
        manifest, store = version.manifest, repo.store
        ref = manifest.fragments[0]
        assert ref.deleted
        for cols in ([ID_COLUMN, HASH_COLUMN], [HASH_COLUMN], [HASH_COLUMN, ID_COLUMN]):
            fast = read_fragment(store, ref, cols, positions=True)
            full = read_fragment(store, ref, ["id", *cols], positions=True).drop_columns(["id"])
            assert fast.equals(full) and fast.num_rows == 360 and fast.column_names == [*cols, POSITION]
        ids = id_table(store, manifest.fragments)
        assert ids.num_rows == 400 == len(set(ids.column(ID_COLUMN).to_pylist()))
        first = ids.filter(np.asarray(ids.column("_assay_frag").to_numpy() == 0))
        assert set(first.column(POSITION).to_pylist()) == set(range(400)) - set(range(100, 140))


@pytest.mark.parametrize("overlap", [0, 64 << 20])
def test_a_small_input_read_beside_the_base_ids_gives_the_same_version(tmp_path: Path, overlap: int,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Small inputs are hashed while another thread reads the base's ids, large ones after: same versions, and
    an input that is refused is refused the same way either way."""
    import pyarrow as pa

    import assay.table.update as update

    monkeypatch.setattr(update, "_OVERLAP_BYTES", overlap)
    with assay.init(tmp_path / str(overlap)) as repo:
        repo.add("t", make_table(500), key="id")
        repo.commit("first")
        changed = make_table(50, seed=3, start=100)
        repo.add("t", changed, mode="upsert")
        repo.add("t", make_table(20, seed=4, start=500), mode="append")
        repo.commit("more")
        got = repo.dataset("t").to_arrow().sort_by("id")
        assert got.num_rows == 520 and got.slice(100, 50).to_pylist() == changed.to_pylist()
        bad = make_table(5, seed=5, start=600).set_column(0, "id", pa.array([1, None, 3, 4, 5], pa.int64()))
        with pytest.raises(assay.errors.KeyViolation, match="row 2"):
            repo.add("t", bad, mode="upsert")
        assert repo.dataset("t").to_arrow().num_rows == 520
