"""The loop: labelled production rows of a served model through the gate into its training dataset."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from typer.testing import CliRunner

import assay
from assay.errors import InputError, NothingToIngest, RefNotFound
from assay.gate import parse_policy, quarantine_branch
from assay.monitor import ingest_predictions
from monitor_helpers import FEATURES, digits_table, make_repo, serve

POLICY = parse_policy("screens:\n  duplicate: {action: quarantine}\n")  # one quick screen: the tests are about the loop


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], np.ndarray]:
    """Model ``digits`` that answered 120 test digits; their true labels in ``labels.csv`` for the first 80."""
    folder = make_repo(tmp_path_factory.mktemp("loop") / "repo")
    t = digits_table()
    x = np.stack([t.column(f).to_numpy() for f in FEATURES], axis=1)[1300:1420]
    y = t.column("label").to_numpy()[1300:1420]
    ids = serve(folder, x)
    pcsv.write_csv(pa.table({"rid": ids[:80], "y": y[:80]}), folder / "labels.csv")
    return folder, ids, y


@pytest.fixture
def repo_dir(served: tuple[Path, list[str], np.ndarray], tmp_path: Path) -> Path:
    shutil.copytree(served[0], tmp_path / "repo")
    return tmp_path / "repo"


def _ingest(folder: Path, **kwargs: object) -> assay.monitor.LoopReport:
    options = {"into": "digits-train", "policy": POLICY, **kwargs}
    return ingest_predictions(assay.Repo(folder), "digits", **options)  # type: ignore[arg-type]


def test_labelled_rows_join_the_training_data_once_with_their_source(repo_dir: Path,
                                                                      served: tuple[Path, list[str], np.ndarray]
                                                                      ) -> None:
    _, ids, y = served
    r = _ingest(repo_dir, labels=repo_dir / "labels.csv", id_column="rid", label_column="y")
    assert r.ok and r.labels is not None and r.labels.labelled == 80
    assert (r.rows, r.labelled, r.unlabelled, r.already) == (120, 80, 40, 0)
    assert r.gate is not None and r.gate.batch_rows == 80 and r.gate.accepted + len(r.gate.quarantined) == 80
    repo = assay.Repo(repo_dir)
    train = repo.dataset("digits-train").to_arrow()
    assert train.num_rows == 1200 + r.gate.accepted
    new = train.filter(pa.compute.less(train.column("id"), 0))  # production keys: negative, from the request ids
    assert new.num_rows == r.gate.accepted and new.schema == train.schema
    key_of = {-1 - (int.from_bytes(hashlib.sha256(rid.encode()).digest()[:8], "little") >> 2): i
              for i, rid in enumerate(ids)}  # the documented key of a request id
    rows = [key_of[k] for k in new.column("id").to_pylist()]
    assert all(i < 80 for i in rows)  # only labelled rows, each with the label the file gave its request
    assert new.column("label").to_pylist() == y[rows].tolist()
    x = np.stack([digits_table().column(f).to_numpy() for f in FEATURES], axis=1)[1300:1420]
    assert np.array_equal(np.stack([new.column(f).to_numpy() for f in FEATURES], axis=1), x[rows])
    source = repo.read_commit(repo.resolve("main")).meta["ingest"]["source"]
    assert source["model"] == "digits" and source["versions"] == [1] and source["rows"] == 80
    assert {source["first_request"], source["last_request"]} <= set(ids[:80])
    again = _ingest(repo_dir)  # the same window again: nothing new
    assert again.gate is None and again.already == 80 and "ingested before" in again.notes[-1]
    assert repo.dataset("digits-train").num_rows == train.num_rows


def test_labels_that_arrive_later_are_taken_on_the_next_run(repo_dir: Path,
                                                            served: tuple[Path, list[str], np.ndarray]) -> None:
    _, ids, y = served
    first = _ingest(repo_dir, labels=repo_dir / "labels.csv", id_column="rid", label_column="y")
    pcsv.write_csv(pa.table({"request_id": ids[80:100], "label": y[80:100]}), repo_dir / "later.csv")
    second = _ingest(repo_dir, labels=repo_dir / "later.csv")
    assert second.gate is not None and second.gate.batch_rows == 20 and second.already == 80
    assert first.gate is not None
    held = len(first.gate.quarantined) + len(second.gate.quarantined)
    rows = assay.Repo(repo_dir).dataset("digits-train").num_rows
    assert rows == 1200 + 100 - held


def test_since_takes_only_the_rows_logged_after_it(repo_dir: Path, served: tuple[Path, list[str], np.ndarray]
                                                   ) -> None:
    _, ids, y = served
    cut = time.time()
    x = np.stack([digits_table().column(f).to_numpy() for f in FEATURES], axis=1)[1500:1510]
    more = serve(repo_dir, x)
    pcsv.write_csv(pa.table({"request_id": [*ids[:80], *more], "label": [*y[:80], *([3] * 10)]}),
                   repo_dir / "all.csv")
    r = _ingest(repo_dir, labels=repo_dir / "all.csv", since=cut)
    assert (r.rows, r.labelled) == (10, 10) and r.source["since"] == cut
    assert r.source["first_request"] in more and r.source["last_request"] in more


def test_a_dataset_keyed_by_strings_or_by_content(repo_dir: Path) -> None:
    repo = assay.Repo(repo_dir)
    train = repo.dataset("digits-train").to_arrow()
    repo.add("by-name", train.set_column(0, "id", pa.array([f"train/{i}" for i in range(train.num_rows)])),
             key=["id"])
    repo.add("by-content", train.drop_columns(["id"]))
    repo.commit("the training data keyed by name and by content")
    labels = {"labels": repo_dir / "labels.csv", "id_column": "rid", "label_column": "y"}
    named = _ingest(repo_dir, into="by-name", **labels)
    keys = assay.Repo(repo_dir).dataset("by-name").to_arrow(["id"]).column(0).to_pylist()
    assert named.gate is not None and sum(k.startswith("predictions/digits/") for k in keys) == named.gate.accepted
    content = _ingest(repo_dir, into="by-content")
    assert content.gate is not None and content.gate.batch_rows == 80
    assert _ingest(repo_dir, into="by-content").already == 80  # the same rows again: their contents are in


def test_rows_the_gate_held_back_are_not_ingested_again(repo_dir: Path) -> None:
    repo = assay.Repo(repo_dir)
    x = np.stack([digits_table().column(f).to_numpy() for f in FEATURES], axis=1)[:30]  # copies of training rows
    cut = time.time()
    ids = serve(repo_dir, x)
    pcsv.write_csv(pa.table({"request_id": ids, "label": digits_table().column("label").to_numpy()[:30]}),
                   repo_dir / "copies.csv")
    r = ingest_predictions(repo, "digits", into="digits-train", labels=repo_dir / "copies.csv", since=cut,
                           policy=parse_policy("max_quarantined: 1.0\nscreens:\n  duplicate: {action: quarantine}\n"))
    assert r.gate is not None and len(r.gate.quarantined) >= 25  # exact copies of training samples
    assert all(f.key["id"] < 0 for f in r.gate.quarantined)
    assert repo.catalog.get_ref(quarantine_branch("digits-train")) is not None
    again = _ingest(repo_dir, since=cut)
    assert again.gate is None and again.already == 30  # neither the accepted nor the held-back rows again


def test_bad_input_is_refused_with_what_to_do(repo_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(NothingToIngest, match="predictions label digits"):
        _ingest(repo_dir)  # served, but no label has arrived
    with pytest.raises(InputError, match="in the future"):
        _ingest(repo_dir, since="2999-01-01")
    repo = assay.Repo(repo_dir)
    repo.add("narrow", repo.dataset("digits-train").to_arrow().drop_columns(["p5"]), key=["id"])
    repo.commit("a dataset without p5")
    with pytest.raises(InputError, match="no column 'p5'"):
        _ingest(repo_dir, into="narrow", labels=repo_dir / "labels.csv", id_column="rid", label_column="y")
    assert "predictions.digits.labels" not in repo.datasets("main")  # refused before the labels were joined
    with pytest.raises(InputError, match="no dataset 'nothing'"):
        _ingest(repo_dir, into="nothing")
    with pytest.raises(NothingToIngest, match="no rows since"):
        _ingest(repo_dir, since=time.time())
    unserved = make_repo(tmp_path / "unserved")
    with pytest.raises(RefNotFound, match="assay serve digits"):
        _ingest(unserved)


def test_the_cli_ingests_predictions_and_says_what_it_left(repo_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from assay.cli.app import app

    monkeypatch.chdir(repo_dir)
    policy = repo_dir / "gate.yaml"
    policy.write_text("screens:\n  duplicate: {action: quarantine}\n")
    args = ["ingest", "predictions/digits", "--into", "digits-train", "--policy", str(policy)]
    r = CliRunner().invoke(app, [*args, "--labels", "labels.csv", "--id-column", "rid", "--label-column", "y"])
    assert r.exit_code == 0, r.output
    assert "120 production row(s) of digits: 80 labelled, 40 without a label" in r.output
    assert "published" in r.output
    r = CliRunner().invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["already_ingested"] == 80 and json.loads(r.output)["gate"] is None
    r = CliRunner().invoke(app, [*args, "--key", "id"])
    assert isinstance(r.exception, InputError) and "do not apply to predictions/NAME" in str(r.exception)


def test_a_server_logging_to_the_branch_meanwhile_does_not_stop_the_ingest(repo_dir: Path) -> None:
    x = np.stack([digits_table().column(f).to_numpy() for f in FEATURES], axis=1)[1600:1605]
    served: list[str] = []

    def log_meanwhile(stage: str, done: int, total: int) -> None:  # the server flushes while the gate audits
        if not served:
            served.extend(serve(repo_dir, x))

    r = ingest_predictions(assay.Repo(repo_dir), "digits", into="digits-train", policy=POLICY,
                           labels=repo_dir / "labels.csv", id_column="rid", label_column="y", progress=log_meanwhile)
    assert served and r.gate is not None and r.gate.accepted > 0
    repo = assay.Repo(repo_dir)
    logged = repo.dataset("predictions.digits").to_arrow(["request_id"]).column(0).to_pylist()
    assert set(served) <= set(logged)  # both the server's rows and the gate's are on main
    assert repo.dataset("digits-train").num_rows == 1200 + r.gate.accepted


def test_a_change_to_the_dataset_meanwhile_is_a_conflict(repo_dir: Path) -> None:
    from assay.errors import ConflictError

    def change_meanwhile(stage: str, done: int, total: int) -> None:
        other = assay.Repo(repo_dir)
        if other.dataset("digits-train").num_rows == 1200:
            other.add("digits-train", digits_table().slice(1700, 1), mode="append")
            other.commit("a sample added while the gate audits")

    with pytest.raises(ConflictError, match="changed on 'main' while the batch was audited"):
        ingest_predictions(assay.Repo(repo_dir), "digits", into="digits-train", policy=POLICY,
                           labels=repo_dir / "labels.csv", id_column="rid", label_column="y",
                           progress=change_meanwhile)
    assert assay.Repo(repo_dir).dataset("digits-train").num_rows == 1201
