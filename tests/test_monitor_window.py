"""The monitor's view of the prediction log: decoded features and predictions, windows, and the reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import assay
from assay.errors import InputError, RefNotFound
from assay.monitor import Window, production, reference
from assay.monitor.window import parse_time, split
from monitor_helpers import FEATURES, digits_table, make_repo, serve


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, list[str]]:
    folder = make_repo(tmp_path_factory.mktemp("monitor") / "repo")
    t = digits_table()
    x = np.stack([t.column(f).to_numpy() for f in FEATURES], axis=1)[1200:1450]
    return folder, x, serve(folder, x)


def test_the_log_decodes_into_the_features_and_predictions_the_model_gave(served: tuple[Path, np.ndarray,
                                                                                        list[str]]) -> None:
    folder, x, ids = served
    rows = production(assay.Repo(folder), "digits")
    assert rows.num_rows == len(x)
    assert sorted(rows.column("request_id").to_pylist()) == sorted(ids)
    order = {rid: i for i, rid in enumerate(ids)}
    got = np.stack([rows.column(f).to_numpy() for f in FEATURES], axis=1)
    sent = x[[order[r] for r in rows.column("request_id").to_pylist()]]
    assert np.array_equal(got, sent)
    proba = np.array(rows.column("proba").to_pylist())
    assert np.array_equal(proba.argmax(axis=1), rows.column("prediction").to_numpy())
    assert np.allclose(proba.max(axis=1), rows.column("score").to_numpy())


def test_windows_by_rows_and_time_and_the_reference(served: tuple[Path, np.ndarray, list[str]]) -> None:
    folder, x, _ = served
    repo = assay.Repo(folder)
    rows = production(repo, "digits")
    assert [part.num_rows for _, _, part in split(rows, Window.parse("100 rows"))] == [100, 100, 50]
    assert production(repo, "digits", window="30").num_rows == 30
    assert production(repo, "digits", window="1h").num_rows == len(x)
    assert production(repo, "digits", since="1h").num_rows == len(x)
    assert production(repo, "digits", since=parse_time("2999-01-01")).num_rows == 0
    ref = reference(repo, "digits")
    assert ref.num_rows == 1200 and ref.column_names == [*FEATURES, "label"]
    assert reference(repo, "digits", role="eval").num_rows == len(digits_table()) - 1200


@pytest.mark.parametrize("text", ["", "0", "-5", "1.5 rows", "3 fortnights", "h"])
def test_a_bad_window_says_what_a_window_is(text: str) -> None:
    with pytest.raises(InputError, match="row count"):
        Window.parse(text)


def test_no_log_and_no_training_version_are_clear_errors(tmp_path: Path) -> None:
    folder = make_repo(tmp_path / "repo")
    repo = assay.Repo(folder)
    with pytest.raises(RefNotFound, match=r"no prediction log 'predictions.digits'.*assay serve digits"):
        production(repo, "digits")
    from assay.models import register
    from assay.models.registry import read_artifact

    register(repo, "bare", read_artifact(repo, "digits"))
    with pytest.raises(InputError, match=r"without a train dataset version.*--reference DATASET@REV"):
        reference(repo, "bare")
