"""Revisions as git users type them (HEAD^2, ~N, ^ chains, @{time}), one DATASET@REV parser for the API and every
command, and `assay log` with --oneline, --graph, --since, --author and --format json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import assay
from assay.cli.app import app
from assay.errors import InputError, RefNotFound
from assay.repo.revisions import parse_dataset_spec, parse_revision
from tests.conftest import make_table

runner = CliRunner()


@pytest.fixture
def merged(repo: assay.Repo) -> dict[str, str]:
    """A (base), B on main, C on side, M = merge of side into main: M^1 = B, M^2 = C, M~2 = A."""
    repo.add("t", make_table(10), key="id")
    a = repo.commit("A")
    repo.create_branch("side")
    repo.add("t", make_table(1, seed=5, start=1), mode="upsert")
    b = repo.commit("B", author="Ann <ann@example.com>")
    repo.checkout("side")
    repo.add("t", make_table(1, seed=6, start=2), mode="upsert")
    c = repo.commit("C", author="Bob <bob@example.com>")
    repo.checkout("main")
    m = repo.merge("side").commit
    return {"A": a, "B": b, "C": c, "M": m}


def test_parents_by_number_and_chains(repo: assay.Repo, merged: dict[str, str]) -> None:
    expect = {"HEAD": "M", "HEAD^0": "M", "HEAD^": "B", "HEAD^1": "B", "HEAD^2": "C", "HEAD~1": "B", "HEAD~": "B",
              "HEAD~2": "A", "HEAD^^": "A", "HEAD^2^": "A", "HEAD^2~1": "A", "main^2": "C", "side~1": "A",
              f"{merged['M'][:10]}^2": "C"}
    for rev, name in expect.items():
        assert repo.resolve(rev) == merged[name], rev
    assert repo.dataset("t@HEAD^2").to_arrow().num_rows == 10


def test_bad_revisions_say_what_is_wrong(repo: assay.Repo, merged: dict[str, str]) -> None:
    with pytest.raises(RefNotFound, match="no parent number 3"):
        repo.resolve("HEAD^3")
    with pytest.raises(RefNotFound, match="further than the first commit"):
        repo.resolve("HEAD~5")
    with pytest.raises(RefNotFound, match="is the first commit"):
        repo.resolve("HEAD~2^1")
    for bad in ("HEAD~x", "~2", "main@{}", "a@b"):
        with pytest.raises(RefNotFound, match="cannot read revision"):
            repo.resolve(bad)


def test_time_then_steps(repo: assay.Repo, merged: dict[str, str]) -> None:
    assert repo.resolve("main@{2999-01-01}") == merged["M"]
    assert repo.resolve("@{2999-01-01}~1") == merged["B"]
    with pytest.raises(RefNotFound, match="no commit that old"):
        repo.resolve("main@{1999-01-01}")


@given(st.lists(st.tuples(st.sampled_from("~^"), st.integers(0, 12) | st.none()), max_size=6))
def test_parse_revision_reads_every_step(steps: list[tuple[str, int | None]]) -> None:
    text = "main" + "".join(op + ("" if n is None else str(n)) for op, n in steps)
    r = parse_revision(text)
    assert r.base == "main" and r.when is None
    assert r.steps == tuple((op, 1 if n is None else n) for op, n in steps)


def test_one_dataset_spec_parser() -> None:
    assert parse_dataset_spec("t").rev is None
    assert parse_dataset_spec("t@v1").rev == "v1"
    assert parse_dataset_spec("t@{2030-01-01}").rev == "@{2030-01-01}"
    assert parse_dataset_spec("t@main@{2030-01-01}~1").rev == "main@{2030-01-01}~1"
    for bad, words in (("@v1", "names no dataset"), ("t@", "names no revision"), ("a b@v1", "not a valid dataset")):
        with pytest.raises(InputError, match=words):
            parse_dataset_spec(bad)


def test_check_accepts_every_revision_form_the_api_accepts(repo: assay.Repo, merged: dict[str, str]) -> None:
    from assay import infer_suite

    repo.set_suite("t", infer_suite(repo.dataset("t")).to_yaml())
    repo.commit("suite")
    for spec in ("t@{2999-01-01}", "t@HEAD", "t@main@{2999-01-01}", "t@HEAD~0"):
        assert repo.dataset(spec).num_rows == 10
        r = runner.invoke(app, ["-C", str(repo.root), "check", spec])
        assert r.exit_code == 0 and "ok" in r.output, (spec, r.output, r.exception)
        r = runner.invoke(app, ["-C", str(repo.root), "suite", "show", spec])
        assert r.exit_code == 0 and "expectations" in r.output, spec
    r = runner.invoke(app, ["-C", str(repo.root), "check", "t@HEAD~1^2"])  # the side branch had no suite
    assert isinstance(r.exception, RefNotFound) and "has no suite" in str(r.exception)


def _log(repo: assay.Repo, *args: str) -> str:
    r = runner.invoke(app, ["-C", str(repo.root), "log", *args])
    assert r.exit_code == 0, (r.output, r.exception)
    return r.output


def test_log_oneline_graph(repo: assay.Repo, merged: dict[str, str]) -> None:
    lines = _log(repo, "--oneline", "--graph").splitlines()
    short = {k: v[:12] for k, v in merged.items()}
    assert lines[0] == f"* {short['M']} Merge side into main"
    assert lines[1] == "|\\"
    assert lines[-1] == f"* {short['A']} A"
    assert "|/" in lines
    commit_rows = [ln for ln in lines if "*" in ln]
    assert len(commit_rows) == 4 and any(ln.startswith("| *") for ln in commit_rows)  # one side on a lane of its own
    plain = _log(repo, "--format", "oneline").splitlines()
    assert [ln.split()[0] for ln in plain] == [merged[k][:12] for k in ("M", "C", "B", "A")] or \
        [ln.split()[0] for ln in plain] == [merged[k][:12] for k in ("M", "B", "C", "A")]


def test_log_filters_and_json(repo: assay.Repo, merged: dict[str, str]) -> None:
    by_ann = json.loads(_log(repo, "--author", "ann", "--format", "json"))
    assert [c["commit"] for c in by_ann] == [merged["B"]]
    assert json.loads(_log(repo, "--since", "2999-01-01", "--format", "json")) == []
    assert len(json.loads(_log(repo, "--since", "2000-01-01", "--json", "-n", "2"))) == 2
    assert "No commits match" in _log(repo, "--author", "nobody")
    text = _log(repo, "--graph")
    assert "merge " in text and "|" in text
    r = runner.invoke(app, ["-C", str(repo.root), "log", "--format", "xml"])
    assert isinstance(r.exception, InputError) and "use text, oneline or json" in str(r.exception)
    r = runner.invoke(app, ["-C", str(repo.root), "log", "--since", "yesterday"])
    assert isinstance(r.exception, InputError) and "ISO 8601" in str(r.exception)


def test_no_hand_split_dataset_specs_left() -> None:
    src = Path(assay.__file__).parent
    hand = re.compile(r"""(?<!r)(partition|split)\(["']@["']\)""")  # rpartition("@"): user@host in a URL
    offenders = [str(p.relative_to(src)) for p in src.rglob("*.py")
                 if p.name != "revisions.py" and hand.search(p.read_text())]
    assert offenders == []


def test_a_filtered_graph_stays_narrow(repo: assay.Repo, merged: dict[str, str]) -> None:
    lines = _log(repo, "--oneline", "--graph", "--author", "o").splitlines()  # Bob, and "Test" of the others
    assert all(not ln.startswith("| | ") for ln in lines)
    assert _log(repo, "--oneline", "--graph", "-n", "1").splitlines() == [f"* {merged['M'][:12]} Merge side into main"]
