"""The gate: ingest audits a batch, publishes what passes, quarantines what is flagged; policies; scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sklearn.datasets import make_blobs

import assay
from assay.errors import ConflictError, InputError, PolicyError, RefNotFound
from assay.gate import (
    drop,
    ingest,
    parse_policy,
    quarantined,
    read_scores,
    release,
    screen_version,
    show,
)
from assay.repo import RefUpdate
from tests.conftest import write_images

FAST = parse_policy("screens:\n  duplicate: {action: quarantine}\n  outlier: {action: warn}\n")
LABELS = parse_policy("screens:\n  duplicate: {action: quarantine}\n  label_issue: {action: quarantine}\n"
                      "  value: {action: warn}\n")


def samples(n: int, start: int = 0, seed: int | None = None) -> pa.Table:
    """Points around three fixed centres; each ``seed`` (default: ``start``) draws other points."""
    centers = np.random.default_rng(42).uniform(-10, 10, (3, 6))
    x, y = make_blobs(n_samples=n, centers=centers, cluster_std=1.0, random_state=start if seed is None else seed)
    cols: dict[str, pa.Array] = {"id": pa.array(np.arange(start, start + n), pa.int64())}
    for j in range(x.shape[1]):
        cols[f"f{j}"] = pa.array(x[:, j])
    cols["label"] = pa.array(y.astype(np.int64))
    return pa.table(cols)


def relabel(t: pa.Table, rows: np.ndarray) -> pa.Table:
    y = t.column("label").to_numpy().copy()
    y[rows] = (y[rows] + 1) % 3
    return t.set_column(t.column_names.index("label"), "label", pa.array(y))


def ids_of(repo: assay.Repo, spec: str) -> set[int]:
    return set(repo.dataset(spec).to_arrow(["id"]).column("id").to_pylist())


@pytest.fixture
def accepted(repo: assay.Repo) -> assay.Repo:
    report = ingest(repo, samples(300), into="points", key="id", policy=FAST)
    assert report.ok and report.accepted == 300
    return repo


def test_a_clean_batch_is_published_with_its_scores(accepted: assay.Repo) -> None:
    repo = accepted
    report = ingest(repo, samples(100, start=300), into="points", policy=FAST, message="batch 2")
    assert report.ok and report.batch_rows == 100 and report.accepted == 100 and not report.quarantined
    assert ids_of(repo, "points@main") == set(range(400))
    scores = repo.dataset("points.scores", "main").to_arrow()
    assert scores.num_rows == 400 and set(scores.column("action").to_pylist()) <= {"accepted", "warned"}
    head = repo.read_commit(repo.resolve("main"))
    assert head.meta["ingest"]["accepted"] == 100 and head.message.startswith("batch 2")
    assert repo.catalog.get_ref("staging/points") is None  # removed with the publication
    assert report.staged is not None and repo.read_commit(report.staged).datasets["points"]
    assert repo.catalog.get_ref("quarantine/points") is None
    assert repo.fsck().ok


def test_flagged_samples_go_to_quarantine_with_their_reasons(accepted: assay.Repo) -> None:
    repo = accepted
    batch = samples(120, start=300)
    batch = relabel(batch, np.arange(0, 120, 10))  # 12 wrong labels
    copy = samples(300).slice(7, 1).set_column(0, "id", pa.array([999], pa.int64()))  # a copy of sample 7
    report = ingest(repo, pa.concat_tables([batch, copy]), into="points", policy=LABELS)
    held = {f.key["id"] for f in report.quarantined}
    assert 999 in held and len(held & set(range(300, 420, 10))) >= 10
    assert len(held - {999} - set(range(300, 420, 10))) <= 2
    assert ids_of(repo, "points@main") == (set(range(420)) | {999}) - held
    assert ids_of(repo, "points@quarantine/points") == held
    q = quarantined(repo, "points")
    reasons = dict(zip(q.column("sample").to_pylist(), q.column("reasons").to_pylist(), strict=True))
    dup = next(f for f in report.quarantined if f.key["id"] == 999)
    assert "exact copy of sample" in reasons[dup.sample]
    assert any("label_issue: labelled" in r for r in reasons.values())
    assert show(repo, "points", dup.sample[:10])["values"]["id"] == 999
    assert repo.fsck().ok


def test_release_and_drop_move_samples_out_of_quarantine(accepted: assay.Repo) -> None:
    repo = accepted
    copies = samples(300).slice(0, 3).set_column(0, "id", pa.array([900, 901, 902], pa.int64()))
    allow = parse_policy("max_quarantined: 1.0\nscreens:\n  duplicate: {action: quarantine}\n")
    report = ingest(repo, copies, into="points", policy=allow)
    assert len(report.quarantined) == 3
    first = next(f for f in report.quarantined if f.key["id"] == 900)
    release(repo, "points", [first.sample[:8]])
    assert 900 in ids_of(repo, "points@main")
    released = read_scores(repo, "points@main", where="action = 'released'")
    assert released.column("sample").to_pylist() == [first.sample]
    assert ids_of(repo, "points@quarantine/points") == {901, 902}
    drop(repo, "points", None)
    assert quarantined(repo, "points").num_rows == 0
    assert ids_of(repo, "points@main") == set(range(300)) | {900}
    with pytest.raises(InputError, match="empty"):
        drop(repo, "points", None)
    with pytest.raises(RefNotFound, match="no quarantined sample"):
        release(repo, "points", ["ffff"])
    assert repo.fsck().ok


def test_a_batch_that_fails_the_suite_is_rejected_and_nothing_is_published(accepted: assay.Repo) -> None:
    repo = accepted
    repo.set_suite("points", "dataset: points\nexpectations:\n  - expect: between\n    column: f0\n    min: -50\n"
                             "    max: 50\n")
    repo.commit("a suite")
    before = repo.resolve("main")
    bad = samples(20, start=300).set_column(1, "f0", pa.array([1000.0] * 20))
    report = ingest(repo, bad, into="points", policy=FAST)
    assert not report.ok and "between" in report.rejected[0]
    assert repo.resolve("main") == before
    assert repo.catalog.get_ref("staging/points") is None  # removed; the report keeps the staged commit
    assert report.staged is not None and ids_of(repo, f"points@{report.staged}") == set(range(320))
    warn = parse_policy("checks: warn\nscreens:\n  duplicate: {}\n")
    assert ingest(repo, bad, into="points", policy=warn).ok


def test_policy_can_reject_a_whole_batch(accepted: assay.Repo) -> None:
    repo = accepted
    before = repo.resolve("main")
    copies = samples(300).slice(0, 10).set_column(0, "id", pa.array(np.arange(500, 510), pa.int64()))
    reject = parse_policy("screens:\n  duplicate: {action: reject}\n")
    report = ingest(repo, copies, into="points", policy=reject)
    assert not report.ok and "action is reject" in report.rejected[0]
    mostly = parse_policy("max_quarantined: 0.2\nscreens:\n  duplicate: {action: quarantine}\n")
    report = ingest(repo, pa.concat_tables([copies, samples(20, start=600, seed=5)]), into="points", policy=mostly)
    assert not report.ok and "more than max_quarantined 20.0%" in report.rejected[0]
    share = parse_policy("screens:\n  duplicate: {action: warn, max_flagged: 0.1}\n")
    assert not ingest(repo, copies, into="points", policy=share).ok
    assert repo.resolve("main") == before and repo.catalog.get_ref("quarantine/points") is None


def test_a_screen_that_cannot_run_is_reported_never_a_silent_all_clear(repo: assay.Repo) -> None:
    one_class = samples(60).set_column(7, "label", pa.array(np.zeros(60, np.int64)))
    report = ingest(repo, one_class, into="points", key="id", policy=LABELS)
    assert report.ok and "label_issue" in report.screens["not_run"]
    assert any("needs at least 2 classes" in w for w in report.warnings)
    strict = parse_policy("unavailable: reject\nscreens:\n  label_issue: {}\n")
    more = samples(10, start=60).set_column(7, "label", pa.array(np.zeros(10, np.int64)))
    report = ingest(repo, more, into="points", policy=strict)
    assert not report.ok and "label_issue did not run" in report.rejected[0]


def test_an_unchanged_batch_does_nothing(accepted: assay.Repo) -> None:
    before = accepted.resolve("main")
    report = ingest(accepted, samples(300).slice(0, 10), into="points", policy=FAST, mode="upsert")
    assert report.batch_rows == 0 and "nothing to do" in report.warnings[0]
    assert accepted.resolve("main") == before


POLICY_ERRORS = [
    ("screens:\n  bogus: {}\n", "line 2: unknown screen 'bogus'"),
    ("screens:\n  outlier: {threshold: -3}\n", "line 2: screen 'outlier': threshold must lie in"),
    ("screens:\n  outlier: {threshold: high}\n", "line 2: screen 'outlier': threshold must be a number"),
    ("screens:\n  outlier: {action: delete}\n", "line 2: screen 'outlier': action must be one of"),
    ("screens:\n  outlier: {nieghbors: 3}\n", "line 2: screen 'outlier': screen 'outlier' has no parameter"),
    ("screens:\n  duplicate: {max_flagged: 2}\n",
     "line 2: screen 'duplicate': max_flagged must lie in [0.0, 1.0], not 2.0"),
    ("max_quarantined: 1.5\n", "line 1: max_quarantined must lie in [0.0, 1.0], not 1.5"),
    ("checks: maybe\n", "line 1: checks must be one of"),
    ("min_batch: 0\n", "line 1: min_batch must be at least 1, not 0"),
    ("screens: [duplicate]\n", "line 1: 'screens' maps screen names"),
    ("features: {lable: y}\n", "line 1: features has no parameter 'lable'"),
    ("features: {dims: 1}\n", "line 1: dims must lie in [2, 1024], not 1"),
    ("features: {text_model: bert}\n", "line 1: text_model must be one of ['tfidf', 'minilm'], not 'bert'"),
    ("screens:\n  outlier: {max_flagged: .inf}\n", "line 2: screen 'outlier': max_flagged must be a finite number"),
    ("screens:\n  duplicate: {near: 0.1\n", "line 3: invalid YAML"),
    ("colour: blue\n", "line 1: unknown key 'colour'"),
]


@pytest.mark.parametrize(("text", "message"), POLICY_ERRORS)
def test_policy_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message.replace("(", "\\(").replace("[", "\\[")):
        parse_policy(text, "policy.yaml")


def test_scores_filter_sort_and_score_a_whole_version(accepted: assay.Repo) -> None:
    repo = accepted
    top = read_scores(repo, "points@main", sort="outlier_score", limit=5)
    values = top.column("outlier_score").to_pylist()
    assert values == sorted(values) and top.num_rows == 5
    assert read_scores(repo, "points", flagged="duplicate").num_rows == 0
    with pytest.raises(InputError, match="does not run on the scores"):
        read_scores(repo, "points", where="no_such_column > 1")
    with pytest.raises(InputError, match="cannot sort by"):
        read_scores(repo, "points", sort="nope")
    run = screen_version(repo, "points@main", FAST, save=True)
    assert run.data.n == 300 and "points.scores" in repo.status().staged
    repo.commit("rescore")
    assert set(read_scores(repo, "points").column("action").to_pylist()) == {"scored"}


def test_refs_move_together_or_not_at_all(accepted: assay.Repo) -> None:
    repo = accepted
    main = repo.resolve("main")
    with pytest.raises(ConflictError):
        repo.move_refs([RefUpdate("other", "branch", main, None), RefUpdate("main", "branch", main, "0" * 64)], "x")
    assert repo.catalog.get_ref("other") is None


def test_ingest_of_image_folders_reports_thumbnails(repo: assay.Repo, tmp_path: Path) -> None:
    from assay.report import ingest_report_html

    write_images(tmp_path / "first", {"a": 180, "b": 0}, 30)
    assert ingest(repo, tmp_path / "first", into="images", policy=FAST).ok
    (tmp_path / "second" / "a").mkdir(parents=True)
    (tmp_path / "second" / "a" / "copy.png").write_bytes((tmp_path / "first" / "a" / "3.png").read_bytes())
    report = ingest(repo, tmp_path / "second", into="images", policy=FAST)
    assert [f.key["path"] for f in report.quarantined] == ["a/copy.png"]
    page = ingest_report_html(report, repo.store.get)
    assert page.count("data:image/png;base64,") == 1 and "exact copy of sample" in page
    assert quarantined(repo, "images").column("label").to_pylist() == ["a/copy.png"]  # by path
    assert show(repo, "images", "a/copy.png")["sample"] == report.quarantined[0].sample
    release(repo, "images", ["a/copy.png"])
    assert "a/copy.png" in repo.dataset("images", "main").to_arrow().column("path").to_pylist()


def test_quarantined_samples_are_named_by_their_key(accepted: assay.Repo) -> None:
    repo = accepted
    copies = samples(300).slice(0, 3).set_column(0, "id", pa.array([900, 901, 902], pa.int64()))
    allow = parse_policy("max_quarantined: 1.0\nscreens:\n  duplicate: {action: quarantine}\n")
    ingest(repo, copies, into="points", policy=allow)
    assert sorted(quarantined(repo, "points").column("label").to_pylist()) == ["id=900", "id=901", "id=902"]
    assert show(repo, "points", "id=901")["values"]["id"] == 901
    assert show(repo, "points", "902")["label"] == "id=902"  # the bare value of a one-column key
    release(repo, "points", ["id=900"])
    drop(repo, "points", ["901"])
    assert ids_of(repo, "points@quarantine/points") == {902}
    assert 900 in ids_of(repo, "points@main") and 901 not in ids_of(repo, "points@main")
    with pytest.raises(RefNotFound, match="key, path or id"):
        show(repo, "points", "id=5")


def test_a_held_update_keeps_the_old_version_until_it_is_released(accepted: assay.Repo) -> None:
    repo = accepted
    first = samples(300)
    before = first.slice(5, 1).to_pylist()[0]
    update = first.slice(5, 1).set_column(1, "f0", first.slice(6, 1).column("f0"))
    for c in first.column_names[2:7]:  # sample 5 becomes an exact copy of sample 6: held back
        update = update.set_column(update.column_names.index(c), c, first.slice(6, 1).column(c))
    allow = parse_policy("max_quarantined: 1.0\nscreens:\n  duplicate: {action: quarantine}\n")
    report = ingest(repo, update, into="points", policy=allow, mode="upsert")
    assert [f.key["id"] for f in report.quarantined] == [5]
    main = repo.dataset("points", "main").to_arrow()
    row = main.filter(pa.compute.equal(main.column("id"), 5)).to_pylist()
    assert row == [before]  # the published version still holds the old sample
    release(repo, "points", None)
    main = repo.dataset("points", "main").to_arrow()
    row = main.filter(pa.compute.equal(main.column("id"), 5)).to_pylist()
    assert len(row) == 1 and row[0]["f0"] == first.column("f0")[6].as_py() and main.num_rows == 300
    assert repo.fsck().ok
