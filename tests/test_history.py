"""Undo and move: reset --hard/--soft, unstaging by name, revert (three-way on samples), branch -f, and the
warning for commits that leaving a detached HEAD leaves behind."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import assay
from assay.cli.app import app
from assay.errors import CheckFailed, InputError, MergeConflict, NothingToCommit
from assay.repo import undo
from tests.conftest import make_table

runner = CliRunner()


def _cli(repo: assay.Repo, *args: str) -> tuple[int, str, BaseException | None]:
    r = runner.invoke(app, ["-C", str(repo.root), *args])
    return r.exit_code, r.output, r.exception


@pytest.fixture
def two(repo: assay.Repo) -> tuple[str, str]:
    repo.add("t", make_table(20), key="id")
    a = repo.commit("A")
    repo.add("t", make_table(2, seed=9, start=3), mode="upsert")
    b = repo.commit("B")
    return a, b


def _ids(repo: assay.Repo, rev: str | None = None) -> dict[int, float]:
    t = repo.dataset("t", rev).to_arrow()
    return dict(zip(t.column("id").to_pylist(), t.column("x").to_pylist(), strict=True))


def test_reset_hard_moves_the_branch_and_is_refused_with_staged_changes(repo: assay.Repo, two: tuple[str, str]) -> None:
    a, b = two
    repo.add("u", make_table(3))
    with pytest.raises(InputError, match=r"staged changes \(u\).*--force"):
        undo.reset(repo, "HEAD~1", mode="hard")
    assert repo.head() == b and repo.status().staged  # nothing moved
    moved = undo.reset(repo, "HEAD~1", mode="hard", force=True)
    assert (moved.commit, moved.previous, moved.branch) == (a, b, "main")
    assert repo.head() == a and repo.branches()["main"] == a and not repo.status().staged
    assert moved.left_behind == (b,)  # no branch or tag reaches B any more
    again = undo.reset(repo, a, mode="hard")
    assert not again.changed


def test_reset_soft_keeps_the_difference_staged(repo: assay.Repo, two: tuple[str, str]) -> None:
    a, b = two
    b_manifest = repo.datasets("HEAD")["t"]
    moved = undo.reset(repo, "HEAD~1", mode="soft")
    assert repo.head() == a and moved.staged == ("t",)
    staged = repo.status().staged["t"]
    assert staged["manifest"] == b_manifest and staged["updated"] == 2
    c = repo.commit("B again")
    assert repo.read_commit(c).datasets == repo.read_commit(b).datasets and repo.read_commit(c).parents == (a,)


def test_reset_through_the_cli(repo: assay.Repo, two: tuple[str, str]) -> None:
    a, b = two
    code, text, _ = _cli(repo, "reset")
    assert code == 0 and "nothing was staged; nothing changed" in text  # not a success message
    code, _, e = _cli(repo, "reset", "HEAD~1")
    assert isinstance(e, InputError) and "is a revision" in str(e) and "--hard HEAD~1" in str(e)
    code, _, e = _cli(repo, "reset", "nope")
    assert isinstance(e, InputError) and "neither a staged dataset" in str(e)
    repo.add("u", make_table(3))
    code, text, _ = _cli(repo, "reset", "t", "u")
    assert code == 0 and "unstaged u" in text and "t: nothing staged" in text
    code, text, _ = _cli(repo, "reset", "--hard", "HEAD~1")
    assert code == 0 and f"branch main is now at {a[:12]} (was {b[:12]})" in text
    assert f"assay branch NAME {b[:12]}" in text  # the warning names the commit and how to keep it
    code, text, _ = _cli(repo, "reset", "--hard", "HEAD")
    assert "nothing changed" in text
    code, _, e = _cli(repo, "reset", "--hard", "--soft", "HEAD")
    assert isinstance(e, InputError)
    code, _, e = _cli(repo, "reset", "--force")
    assert isinstance(e, InputError) and "--hard" in str(e)


def test_revert_undoes_one_commit_on_top_of_later_ones(repo: assay.Repo, two: tuple[str, str]) -> None:
    a, b = two
    before = _ids(repo, a)
    repo.add("t", make_table(1, seed=4, start=15), mode="upsert")  # a later, unrelated change
    c = repo.commit("C")
    later = _ids(repo)[15]
    result = undo.revert(repo, b)
    now = _ids(repo)
    assert now[3] == before[3] and now[4] == before[4]  # B's changes undone
    assert now[15] == later  # C's change kept
    commit = repo.read_commit(result.commit)
    assert commit.parents == (c,) and commit.meta["revert"] == b and b in commit.message
    assert result.datasets == {"t": "merged"}
    with pytest.raises(NothingToCommit, match="changes nothing"):
        undo.revert(repo, b)


def test_revert_conflicts_are_merge_conflicts(repo: assay.Repo, two: tuple[str, str]) -> None:
    _a, b = two
    repo.add("t", make_table(1, seed=7, start=3), mode="upsert")  # the sample B changed, changed again
    c = repo.commit("C")
    with pytest.raises(MergeConflict, match="CONFLICT") as e:
        undo.revert(repo, b)
    assert e.value.conflicts and repo.head() == c
    _code, _, exc = _cli(repo, "revert", b[:10])
    assert isinstance(exc, MergeConflict)


def test_revert_of_an_added_dataset_removes_it_and_of_a_suite_removes_the_suite(repo: assay.Repo,
                                                                               two: tuple[str, str]) -> None:
    from assay import infer_suite

    repo.add("u", make_table(5))
    added = repo.commit("add u")
    repo.set_suite("t", infer_suite(repo.dataset("t")).to_yaml())
    with_suite = repo.commit("suite")
    undo.revert(repo, added)
    assert "u" not in repo.datasets("HEAD") and "t" in repo.suites("HEAD")
    undo.revert(repo, with_suite)
    assert "t" not in repo.suites("HEAD")
    code, text, _ = _cli(repo, "revert", "HEAD")
    assert code == 0 and "reverted" in text and "t" in repo.suites("HEAD")


def test_revert_passes_the_gate(repo: assay.Repo) -> None:
    repo.add("t", make_table(20), key="id")
    repo.set_suite("t", "format: 1\ndataset: t\nexpectations:\n- {expect: row_count, min: 15}\n")
    repo.commit("A with a suite")
    repo.add("t", make_table(10, start=100), mode="append")
    more = repo.commit("more")  # 30 rows
    repo.add("t", make_table(10).select(["id"]), mode="delete")
    repo.commit("drop ten")  # 20 rows
    with pytest.raises(CheckFailed):  # undoing "more" would leave 10 rows, below the suite's minimum
        undo.revert(repo, more)
    assert repo.dataset("t").num_rows == 20
    undo.revert(repo, more, no_verify=True)
    assert repo.dataset("t").num_rows == 10
    assert repo.read_commit(repo.head() or "").meta.get("no_verify") is True


def test_revert_of_a_merge_needs_a_mainline(repo: assay.Repo, two: tuple[str, str]) -> None:
    repo.create_branch("side", "HEAD~1")
    repo.checkout("side")
    repo.add("s", make_table(3))
    repo.commit("side data")
    repo.checkout("main")
    m = repo.merge("side").commit
    with pytest.raises(InputError, match="--mainline"):
        undo.revert(repo, m)
    with pytest.raises(InputError, match="has 2 parent"):
        undo.revert(repo, m, mainline=3)
    undo.revert(repo, m, mainline=1)
    assert "s" not in repo.datasets("HEAD")


def test_branch_force(repo: assay.Repo, two: tuple[str, str]) -> None:
    a, b = two
    repo.create_branch("exp", a)
    code, text, _ = _cli(repo, "branch", "-f", "exp", "HEAD")
    assert code == 0 and repo.branches()["exp"] == b and "branch exp is now at" in text
    code, text, _ = _cli(repo, "branch", "-f", "new", "HEAD~1")
    assert repo.branches()["new"] == a
    code, _, e = _cli(repo, "branch", "-f", "main", "HEAD~1")
    assert isinstance(e, InputError) and "reset --hard" in str(e)
    repo.tag("v1")
    code, _, e = _cli(repo, "branch", "-f", "v1", "HEAD~1")
    assert isinstance(e, InputError) and "is a tag" in str(e)
    code, _, e = _cli(repo, "branch", "exp2", "HEAD", "--from", "HEAD")
    assert isinstance(e, InputError)
    code, _, _ = _cli(repo, "branch", "exp3", "HEAD~1")  # a start point as git takes it
    assert repo.branches()["exp3"] == a


def test_leaving_a_detached_head_warns_with_the_commit_and_how_to_keep_it(repo: assay.Repo,
                                                                         two: tuple[str, str]) -> None:
    a, _b = two
    repo.checkout(a)
    repo.add("t", make_table(1, seed=3, start=0), mode="upsert")
    lost = repo.commit("on a detached HEAD")
    code, text, _ = _cli(repo, "checkout", "main")
    assert code == 0 and "leaving 1 commit(s) behind" in text and f"assay branch NAME {lost[:12]}" in text
    code, text, _ = _cli(repo, "checkout", a)  # detached again, at a commit main reaches
    code, text, _ = _cli(repo, "checkout", "main")
    assert "warning" not in text
    repo.checkout(lost)
    repo.create_branch("kept")
    code, text, _ = _cli(repo, "checkout", "main")
    assert "warning" not in text  # a branch reaches it now


def test_reset_in_place(repo: assay.Repo, two: tuple[str, str]) -> None:
    _a, b = two
    repo.add("u", make_table(3))
    assert not undo.reset(repo, "HEAD", mode="soft").changed  # the same versions stay staged
    assert "u" in repo.status().staged
    code, text, _ = _cli(repo, "reset", "--hard", "--force")
    assert code == 0 and f"branch main stays at {b[:12]}; the staging area was cleared" in text
    assert not repo.status().staged


def test_json_output(repo: assay.Repo, two: tuple[str, str]) -> None:
    import json

    a, b = two
    code, text, _ = _cli(repo, "revert", "HEAD", "--json")
    reverted = json.loads(text)
    assert code == 0 and reverted["reverted"] == b and reverted["datasets"] == {"t": "restored"}
    code, text, _ = _cli(repo, "reset", "--hard", "HEAD~2", "--json")
    moved = json.loads(text)
    assert moved["commit"] == a and moved["previous"] == reverted["commit"] and len(moved["left_behind"]) == 2
    repo.add("u", make_table(2))
    code, text, _ = _cli(repo, "reset", "u", "t", "--json")
    assert json.loads(text) == {"unstaged": ["u"], "nothing_staged": ["t"]}
