"""Lineage of commits: every writer derives a child commit that keeps all the content it did not change;
gc and fsck walk the content each kind declares; merges pass the suites' gate like commits."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import assay
from assay.gate import drop, parse_policy, release
from assay.repo import RefUpdate
from assay.repo.commits import Commit
from assay.repo.graph import KINDS, OBJECT, Edge, Kind, Node, register_kind
from tests.conftest import make_table

MODEL_INDEX = b'{"format": 1, "type": "model-index", "name": "clf", "versions": [], "refs": {}}'  # an empty model
SUITE = "dataset: {name}\nexpectations:\n  - {{expect: between, column: x, min: 0, max: 10}}\n# version {version}\n"


def _suite(name: str, version: int = 0) -> str:
    return SUITE.format(name=name, version=version)


def _rows(start: int, n: int, x: float = 1.0) -> pa.Table:
    return pa.table({"id": pa.array(range(start, start + n), pa.int64()), "x": [x] * n})


def _ids(repo: assay.Repo, rev: str) -> dict[str, list[int]]:
    return {n: sorted(repo.dataset(n, rev).to_arrow(["id"]).column("id").to_pylist())
            for n in repo.datasets(rev)}


def _head_commit(repo: assay.Repo) -> Commit:
    head = repo.head()
    assert head is not None
    return repo.read_commit(head)


def _set_models(repo: assay.Repo, models: dict[str, str]) -> None:
    """Register models on main the way a model registry would: a child of the tip with its models replaced."""
    tip = repo.head()
    assert tip is not None
    new = repo.derive(parents=(tip,), message="register models", models=models)
    repo.move_refs([RefUpdate("main", "branch", new, tip)], "models")


# -- one way to make a child commit ----------------------------------------------------------------------------


def test_child_carries_every_kind_unless_given() -> None:
    parent = Commit.child(parent=None, parents=(), message="p", author="a", time=1.0, meta={"x": 1},
                          datasets={"t": "m1"}, suites={"t": "s1"}, models={"clf": "r1"},
                          kinds={"reports": {"r": "o1"}})
    child = Commit.child(parent=parent, parents=("p",), message="c", author="a", datasets={"t": "m2"})
    assert child.datasets == {"t": "m2"}
    assert (child.suites, child.models, child.kinds) == ({"t": "s1"}, {"clf": "r1"}, {"reports": {"r": "o1"}})
    assert child.meta == {} and child.parents == ("p",)
    again = Commit.from_bytes(child.to_bytes())
    assert again == child
    cleared = Commit.child(parent=child, parents=(), message="c", author="a", kinds={"reports": {}}, suites={})
    assert cleared.kinds == {} and cleared.suites == {} and cleared.models == {"clf": "r1"}


def test_old_commits_still_load() -> None:
    old = {"format": 1, "type": "commit", "parents": [], "message": "m", "author": "a", "time": 1.0,
           "datasets": {"t": "m1"}, "code": None}
    c = Commit.from_bytes(json.dumps(old).encode())
    assert c.content() == {"datasets": {"t": "m1"}, "suites": {}, "models": {}}
    assert "kinds" not in c.to_dict()  # commits without other kinds keep their old form


class _Model:
    """The expected content of main: ids per dataset and suite text per dataset."""

    def __init__(self) -> None:
        self.ids: dict[str, list[int]] = {}
        self.suites: dict[str, str] = {}
        self.next_id = 0
        self.version = 0

    def rows(self, n: int) -> pa.Table:
        self.next_id += n
        return _rows(self.next_id - n, n)

    def suite(self, name: str) -> str:
        self.version += 1
        return _suite(name, self.version)


def _change(repo: assay.Repo, model: _Model, op: tuple[str, str, int]) -> None:
    """Apply one change (staged and committed) to the checked-out branch and to ``model``."""
    what, name, n = op
    if what == "add":
        t = model.rows(n)
        repo.add(name, t, key="id", mode="append")
        model.ids[name] = sorted([*model.ids.get(name, []), *t.column("id").to_pylist()])
    elif what == "suite":
        text = model.suite(name)
        repo.set_suite(name, text)
        model.suites[name] = text
    elif what == "rm":
        if name not in model.ids:
            return
        repo.remove(name)
        del model.ids[name]
    repo.commit(f"{what} {name}")


def _check(repo: assay.Repo, model: _Model, models: dict[str, str]) -> None:
    assert _ids(repo, "main") == model.ids
    assert {n: repo.suite_text(n, "main") for n in repo.suites("main")} == model.suites
    assert _head_commit(repo).models == models


CHANGE = st.tuples(st.sampled_from(["add", "suite", "rm"]), st.sampled_from(["a", "b"]), st.integers(1, 3))
OP = st.one_of(CHANGE.map(lambda c: ("change", c, None)),
               st.tuples(st.just("merge"), CHANGE, st.none() | CHANGE))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OP, min_size=1, max_size=4))
def test_random_histories_drop_nothing(ops: list[tuple[str, Any, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp, assay.init(tmp) as repo:
        model = _Model()
        _change(repo, model, ("add", "a", 2))
        models = {"clf": repo.store.put(MODEL_INDEX)}
        _set_models(repo, models)
        for i, (kind, theirs, ours) in enumerate(ops):
            if kind == "change":
                _change(repo, model, theirs)
            else:
                _merge_step(repo, model, f"b{i}", theirs, ours)
            _check(repo, model, models)
        assert repo.fsck().ok


def _merge_step(repo: assay.Repo, model: _Model, branch: str, theirs: tuple[str, str, int],
                ours: tuple[str, str, int] | None) -> None:
    """Change ``theirs`` on a new branch, ``ours`` (if any) on main, then merge the branch into main.

    Both sides setting the suite of one dataset is a conflict; one side removing a dataset that the other
    appends to is left out (it is a conflict of samples, tested in test_repo).
    """
    if ours is not None and ours[1] == theirs[1] and {ours[0], theirs[0]} == {"rm", "add"}:
        ours = None
    repo.checkout(branch, create=True)
    mine = _Model()
    mine.ids, mine.suites, mine.next_id, mine.version = dict(model.ids), dict(model.suites), model.next_id, \
        model.version
    _change(repo, mine, theirs)
    repo.checkout("main")
    model.next_id, model.version = mine.next_id, mine.version  # fresh ids and suite versions on both sides
    expected = _Model()
    expected.ids, expected.suites = dict(model.ids), dict(model.suites)
    if ours is not None:
        _change(repo, model, ours)
    conflict = ours is not None and theirs[1] == ours[1] and theirs[0] == ours[0] == "suite"
    before = repo.head()
    if conflict:
        with pytest.raises(assay.MergeConflict):
            repo.merge(branch)
        assert repo.head() == before
        return
    repo.merge(branch)
    _three_way(model, expected, mine)


def _three_way(model: _Model, base: _Model, theirs: _Model) -> None:
    """What main must hold after merging ``theirs``: each side's changes over ``base``."""
    for name in set(base.ids) | set(model.ids) | set(theirs.ids):
        b, o, t = base.ids.get(name), model.ids.get(name), theirs.ids.get(name)
        if o is None and t is None:
            model.ids.pop(name, None)
        elif o is None or t is None:
            if (o if t is None else t) == b:  # one side removed it, the other left it alone
                model.ids.pop(name, None)
            else:
                model.ids[name] = o if t is None else t  # type: ignore[assignment]
        else:
            model.ids[name] = sorted(set(o) | set(t))  # appends only: the union
    for name in set(theirs.suites) - set(base.suites) | {n for n in theirs.suites if theirs.suites[n] !=
                                                          base.suites.get(n)}:
        model.suites[name] = theirs.suites[name]


def test_gate_publish_and_release_keep_suites_and_models(repo: assay.Repo) -> None:
    base = make_table(60)
    repo.add("t", base, key="id")
    repo.set_suite("t", "dataset: t\nexpectations:\n  - {expect: not_null, column: id}\n")
    repo.commit("base")
    models = {"clf": repo.store.put(MODEL_INDEX)}
    _set_models(repo, models)
    suites = _head_commit(repo).suites
    copies = base.slice(0, 3).set_column(0, "id", pa.array([900, 901, 902], pa.int64()))
    policy = parse_policy("max_quarantined: 1.0\nscreens:\n  duplicate: {action: quarantine}\n")
    report = repo.ingest(pa.concat_tables([copies, make_table(10, seed=9, start=500)]), into="t", policy=policy)
    assert report.ok and len(report.quarantined) >= 3
    published = _head_commit(repo)
    assert published.models == models and published.suites == suites
    release(repo, "t", [report.quarantined[0].sample], branch="main")
    released = _head_commit(repo)
    assert released.models == models and released.suites == suites
    assert released.meta == {"checks": {"t": {"passed": 1, "warnings": 0}}}  # a release is checked like a commit
    drop(repo, "t", None)
    repo.compact(["t"])
    assert _head_commit(repo).models == models and _head_commit(repo).suites == suites
    assert repo.fsck().ok


# -- reachability declared by each kind ------------------------------------------------------------------------


def _report_children(store: Any, oid: str, data: bytes) -> list[Edge]:
    return [Edge(b, OBJECT, f"file of report {oid[:12]}") for b in json.loads(data)["files"]]


@pytest.fixture
def reports() -> Iterator[Kind]:
    yield register_kind(Kind("reports", Node("report", _report_children)))
    KINDS.pop("reports")


def test_gc_keeps_what_a_registered_kind_references(repo: assay.Repo, reports: Kind) -> None:
    repo.add("t", make_table(5), key="id")
    repo.commit("base")
    files = [repo.store.put(f"page {i}".encode()) for i in range(3)]
    record = repo.store.put(json.dumps({"files": files}).encode())
    tip = repo.head()
    assert tip is not None
    new = repo.derive(parents=(tip,), message="a report", kinds={"reports": {"weekly": record}})
    repo.move_refs([RefUpdate("main", "branch", new, tip)], "report")
    repo.add("t", make_table(2, start=100), mode="append")
    repo.commit("more rows")  # carries the report
    assert _head_commit(repo).kinds == {"reports": {"weekly": record}}
    reachable = {oid for oid, _ in repo.reachable()}
    assert {record, *files} <= reachable
    repo.gc(grace=0)
    assert all(repo.store.has(o) for o in [record, *files])
    assert repo.fsck().ok
    tip = repo.head()
    assert tip is not None
    gone = repo.derive(parents=(tip,), message="drop the report", kinds={"reports": {}})
    repo.move_refs([RefUpdate("main", "branch", gone, tip)], "report")
    repo.gc(grace=0)  # history still holds the report
    assert all(repo.store.has(o) for o in [record, *files])


def test_fsck_finds_a_missing_object_of_a_registered_kind(repo: assay.Repo, reports: Kind) -> None:
    repo.add("t", make_table(5), key="id")
    tip = repo.commit("base")
    record = repo.store.put(json.dumps({"files": ["0" * 64]}).encode())
    new = repo.derive(parents=(tip,), message="a report", kinds={"reports": {"weekly": record}})
    repo.move_refs([RefUpdate("main", "branch", new, tip)], "report")
    report = repo.fsck()
    assert not report.ok and [o for o, _ in report.missing] == ["0" * 64]


# -- merges pass the gate --------------------------------------------------------------------------------------


def _assay(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assay.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_three_way_merge_keeps_suites(tmp_path: Path) -> None:
    with assay.init(tmp_path) as repo:
        repo.add("wine", _rows(0, 10), key="id")
        repo.commit("data")
        repo.set_suite("wine", _suite("wine"))
        repo.commit("suite")
        repo.checkout("bad2", create=True)
        repo.add("wine", _rows(100, 3), mode="append")
        repo.commit("theirs")
        repo.checkout("main")
        repo.add("wine", _rows(200, 2), mode="append")
        repo.commit("ours")
    merged = _assay(tmp_path, "merge", "bad2")
    assert merged.returncode == 0, merged.stderr
    check = _assay(tmp_path, "check", "wine")
    assert check.returncode == 0, check.stdout + check.stderr
    with assay.Repo(tmp_path) as repo:
        c = _head_commit(repo)
        assert len(c.parents) == 2 and c.suites == {"wine": repo.suites("bad2")["wine"]}
        assert c.meta["checks"]["wine"]["passed"] == 1
        assert repo.dataset("wine").num_rows == 15


def test_suites_changed_on_both_sides_conflict(repo: assay.Repo) -> None:
    repo.add("t", _rows(0, 5), key="id")
    repo.commit("data")
    repo.checkout("b", create=True)
    repo.set_suite("t", _suite("t", 1))
    repo.commit("theirs")
    repo.checkout("main")
    repo.set_suite("t", _suite("t", 2))
    head = repo.commit("ours")
    with pytest.raises(assay.MergeConflict, match="suites 't': ours added, theirs added"):
        repo.merge("b")
    assert repo.head() == head


def _failing_branch(repo: assay.Repo, *, ours_moves: bool) -> str:
    repo.add("t", _rows(0, 5), key="id")
    repo.set_suite("t", _suite("t"))
    repo.commit("base")
    repo.checkout("bad", create=True)
    repo.add("t", _rows(100, 2, x=99.0), mode="append")
    repo.commit("out of range", no_verify=True)
    repo.checkout("main")
    if ours_moves:
        repo.add("t", _rows(200, 2), mode="append")
        repo.commit("ours")
    head = repo.head()
    assert head is not None
    return head


def test_fast_forward_of_unverified_branch_is_refused(tmp_path: Path) -> None:
    with assay.init(tmp_path) as repo:
        head = _failing_branch(repo, ours_moves=False)
    refused = _assay(tmp_path, "merge", "bad")
    assert refused.returncode == 1
    assert "Nothing was merged" in refused.stderr and "between" in refused.stderr
    with assay.Repo(tmp_path) as repo:
        assert repo.head() == head and not repo.status().staged
    forced = _assay(tmp_path, "merge", "bad", "--no-verify")
    assert forced.returncode == 0, forced.stderr
    with assay.Repo(tmp_path) as repo:
        _, c = repo.show()
        assert c.parents == (head, repo.resolve("bad"))
        assert c.meta["no_verify"] is True and c.meta["unchecked"] == ["t"]
        assert repo.dataset("t").num_rows == 7 and c.suites == repo.read_commit(head).suites


def test_three_way_merge_of_failing_data_is_refused(repo: assay.Repo) -> None:
    head = _failing_branch(repo, ours_moves=True)
    with pytest.raises(assay.CheckFailed, match="Nothing was merged"):
        repo.merge("bad")
    assert repo.head() == head
    result = repo.merge("bad", no_verify=True)
    _, c = repo.show()
    assert result.datasets == {"t": "merged"} and c.meta["no_verify"] is True
    assert c.meta["merge_base"] == repo.merge_base(head, repo.resolve("bad"))


def test_fast_forward_that_passes_moves_the_branch(repo: assay.Repo) -> None:
    repo.add("t", _rows(0, 5), key="id")
    repo.set_suite("t", _suite("t"))
    repo.commit("base")
    repo.checkout("good", create=True)
    repo.add("t", _rows(100, 2), mode="append")
    tip = repo.commit("fine")
    repo.checkout("main")
    result = repo.merge("good")
    assert result.fast_forward and repo.head() == tip and not result.up_to_date
    assert repo.merge("good").up_to_date


def test_entries_of_an_unregistered_kind_are_kept_as_plain_objects(repo: assay.Repo) -> None:
    repo.add("t", make_table(5), key="id")
    tip = repo.commit("base")
    note = repo.store.put(b"a note")
    new = repo.derive(parents=(tip,), message="a note", kinds={"notes": {"n": note}})
    repo.move_refs([RefUpdate("main", "branch", new, tip)], "note")
    repo.gc(grace=0)
    assert repo.store.has(note) and repo.fsck().ok
