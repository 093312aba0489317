"""Performance of a served model: realised once labels arrive, estimated from its calibrated confidence before."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from starlette.testclient import TestClient

import assay
from assay.errors import InputError, KeyViolation
from assay.models import registry
from assay.monitor import production
from assay.monitor.calibration import Trees, calibration
from assay.monitor.performance import PERFORMANCE_METRICS, performance, performance_values
from assay.serve import create_app
from assay.serve.labels import label, labels_dataset
from monitor_helpers import FEATURES, digits_table, make_repo, serve

N = 300


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], np.ndarray]:
    """The digits model after answering N rows of its test set; no labels yet."""
    folder = make_repo(tmp_path_factory.mktemp("performance") / "repo")
    t = digits_table()
    x = np.stack([t.column(f).to_numpy() for f in FEATURES], axis=1)[1200:1200 + N]
    return folder, serve(folder, x), t.column("label").to_numpy()[1200:1200 + N]


@pytest.fixture
def copy(served: tuple[Path, list[str], np.ndarray], tmp_path: Path) -> tuple[Path, list[str], np.ndarray]:
    folder, ids, y = served
    shutil.copytree(folder, tmp_path / "repo")
    return tmp_path / "repo", ids, y


def _labels(path: Path, ids: list[str], values: list[object]) -> Path:
    table = pa.table({"request_id": ids, "label": values})
    if path.suffix == ".parquet":  # keeps text as text (a CSV reader would read "3" as a number)
        import pyarrow.parquet as pq

        pq.write_table(table, path)
    else:
        pacsv.write_csv(table, path)
    return path


def test_before_labels_the_estimate_comes_alone_with_an_interval_and_its_calibration_is_stored(
        copy: tuple[Path, list[str], np.ndarray]) -> None:
    folder, _, _ = copy
    repo = assay.Repo(folder)
    report = performance(repo, "digits", window="100")
    assert report.kind == "classifier" and [w.rows for w in report.windows] == [100, 100, 100]
    for w in report.windows:
        m = w.metrics
        assert w.labelled == 0 and not {"accuracy", "f1", "auc"} & set(m)
        assert m["estimated_accuracy_low"] < m["estimated_accuracy"] < m["estimated_accuracy_high"]
        assert m["estimated_f1_low"] <= m["estimated_f1"] <= m["estimated_f1_high"]
        assert 0.8 < m["estimated_accuracy"] < 1.0
    stored = registry.attachments(repo, "digits")["calibration"]
    assert stored["model"] == "digits" and stored["rows"] == len(digits_table()) - 1200
    commits = len(repo.log())
    assert performance(repo, "digits", window="100").to_dict() == report.to_dict()
    assert len(repo.log()) == commits  # read back, not fitted again
    assert calibration(repo, "digits").to_dict() == stored


def test_realised_metrics_match_scikit_learn_on_the_labelled_rows_beside_the_estimate(
        copy: tuple[Path, list[str], np.ndarray], tmp_path: Path) -> None:
    from sklearn.metrics import f1_score, roc_auc_score

    folder, ids, y = copy
    repo = assay.Repo(folder)
    label(repo, "digits", str(_labels(tmp_path / "l.csv", ids[:150], y[:150].tolist())))
    report = performance(repo, "digits")
    (w,) = report.windows
    assert (w.rows, w.labelled) == (N, 150)
    rows = production(repo, "digits", labels=True)
    have = rows.filter(pa.compute.invert(pa.compute.is_null(rows.column("label"))))
    truth, pred = have.column("label").to_numpy(), have.column("prediction").to_numpy()
    proba = np.array(have.column("proba").to_pylist())
    assert w.metrics["accuracy"] == pytest.approx(np.mean(truth == pred))
    assert w.metrics["f1"] == pytest.approx(f1_score(truth, pred, average="macro"))
    present = [k for k in range(10) if 0 < np.sum(truth == k) < len(truth)]
    assert w.metrics["auc"] == pytest.approx(np.mean([roc_auc_score(truth == k, proba[:, k]) for k in present]))
    assert abs(w.metrics["estimated_accuracy"] - w.metrics["accuracy"]) < 0.08
    values = performance_values(repo, "digits", rows)
    assert set(values) <= set(PERFORMANCE_METRICS) and all(set(v) == {"*"} for v in values.values())
    assert values["accuracy"]["*"] == pytest.approx(w.metrics["accuracy"])
    assert performance_values(repo, "digits", rows.slice(0, 0)) == {}


def test_labels_given_as_text_count_as_the_classes_they_name(copy: tuple[Path, list[str], np.ndarray],
                                                            tmp_path: Path) -> None:
    folder, ids, y = copy
    repo = assay.Repo(folder)
    label(repo, "digits", str(_labels(tmp_path / "l.parquet", ids, [f"{v}" for v in y])))
    assert production(repo, "digits", labels=True).column("label").type == pa.string()
    pred = production(repo, "digits").column("prediction").to_numpy()
    order = {r: i for i, r in enumerate(ids)}
    truth = y[[order[r] for r in production(repo, "digits").column("request_id").to_pylist()]]
    assert performance(repo, "digits").windows[0].metrics["accuracy"] == pytest.approx(np.mean(pred == truth))
    label(repo, "digits", str(_labels(tmp_path / "bad.parquet", ids[:5], ["seven"] * 5)))
    with pytest.raises(InputError, match="labels are values like 'seven' but the model predicts int"):
        performance(repo, "digits")


def test_labels_that_match_twice_or_nothing_are_refused_and_nothing_is_written(
        copy: tuple[Path, list[str], np.ndarray], tmp_path: Path) -> None:
    folder, ids, y = copy
    repo = assay.Repo(folder)
    head = repo.head()
    twice = _labels(tmp_path / "twice.csv", [ids[0], ids[1], ids[0]], [1, 2, 3])
    with pytest.raises(KeyViolation, match=rf"request id '{ids[0]}' two labels \(rows 1 and 3"):
        label(repo, "digits", str(twice))
    nothing = _labels(tmp_path / "nothing.csv", ["nope/0", "nope/1"], [1, 2])
    with pytest.raises(InputError, match=r"none of the 2 request ids .* 'nope/0'.*--id-column"):
        label(repo, "digits", str(nothing))
    assert repo.head() == head and labels_dataset("digits") not in repo.datasets("HEAD")
    some = label(repo, "digits", str(_labels(tmp_path / "some.csv", [ids[0], "nope/0"], [int(y[0]), 1])))
    assert (some.labelled, some.unknown) == (1, 1)  # the documented rule: unknown ids are counted, not written
    assert performance(repo, "digits").windows[0].labelled == 1


def test_no_rows_and_no_evaluation_version_are_clear_errors(copy: tuple[Path, list[str], np.ndarray]) -> None:
    folder, _, _ = copy
    repo = assay.Repo(folder)
    with pytest.raises(InputError, match=r"no logged predictions of 'digits'.*widen --since"):
        performance(repo, "digits", since="2999-01-01")
    onnx = registry.read_artifact(repo, "digits")
    registry.register(repo, "digits", onnx, train="digits-train@v1", label="label")  # version 2: no eval
    with pytest.raises(InputError, match=r"digits@2 was registered without an evaluation.*--eval DATASET@REV"):
        calibration(repo, "digits", version=2)
    got = calibration(repo, "digits", version=2, eval="digits-test@v1")
    assert got.version == 2 and got.rows == len(digits_table()) - 1200
    assert registry.attachments(repo, "digits@2")["calibration"] == got.to_dict()  # kept: it has no other


def _regressor(folder: Path) -> None:
    from sklearn.linear_model import Ridge

    from assay.models.onnx_export import export_onnx

    repo = assay.Repo(folder)
    t = digits_table()
    x = np.stack([t.column(f).to_numpy() for f in FEATURES], axis=1)[:1200]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = Ridge().fit(x, t.column("label").to_numpy()[:1200].astype(np.float64))
    registry.register(repo, "reg", export_onnx(model, sample_inputs=x[:4]).onnx, train="digits-train@v1",
                      eval="digits-test@v1", label="label")
    repo.close()


@pytest.mark.slow
def test_a_regressor_gets_mae_and_rmse_and_no_estimate(copy: tuple[Path, list[str], np.ndarray],
                                                        tmp_path: Path) -> None:
    folder, _, _ = copy
    _regressor(folder)
    t = digits_table()
    x = np.stack([t.column(f).to_numpy() for f in FEATURES], axis=1)[1200:1300]
    y = t.column("label").to_numpy()[1200:1300]
    with TestClient(create_app(folder, "reg", auth=False, flush_rows=10_000, flush_seconds=3600)) as c:
        r = c.post("/v1/models/reg/predict", json=[{"X": row.tolist()} for row in x])
        assert r.status_code == 200, r.text
        ids = [f"{r.json()['request_id']}/{i}" for i in range(len(x))]
    repo = assay.Repo(folder)
    before = performance(repo, "reg")
    assert before.kind == "regressor" and before.windows[0].metrics == {}
    label(repo, "reg", str(_labels(tmp_path / "l.csv", ids, y.tolist())))
    rows = production(repo, "reg")
    pred = rows.column("prediction").to_numpy()
    order = {rid: i for i, rid in enumerate(ids)}
    truth = y[[order[rid] for rid in rows.column("request_id").to_pylist()]]
    m = performance(repo, "reg").windows[0].metrics
    assert set(m) == {"mae", "rmse"}
    assert m["mae"] == pytest.approx(np.mean(np.abs(pred - truth)))
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((pred - truth) ** 2)))
    with pytest.raises(InputError, match=r"regressor .* labels are values like 'a'"):
        performance_values(repo, "reg", rows.append_column("label", pa.array(["a"] * rows.num_rows)))


def test_the_inputs_model_is_scikit_learns_gradient_boosting_evaluated_from_its_arrays() -> None:
    from sklearn.ensemble import GradientBoostingClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    hits = (x[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(np.float64)
    trees = Trees.fit(x, hits, ("a", "b", "score"))
    gb = GradientBoostingClassifier(n_estimators=80, max_depth=3, subsample=0.8, random_state=0)
    gb.fit(x.astype(np.float32), hits.astype(int))
    assert np.allclose(trees(x), gb.predict_proba(x.astype(np.float32))[:, 1])
    assert Trees.from_dict(json.loads(json.dumps(trees.to_dict())))(x[:5]).tolist() == trees(x[:5]).tolist()


@pytest.mark.slow
def test_the_command_prints_the_windows_and_json(copy: tuple[Path, list[str], np.ndarray]) -> None:
    folder, _, _ = copy

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "assay.cli", "-C", str(folder), "monitor", "performance",
                               "digits", *args], capture_output=True, text=True, timeout=120)

    table = run("--window", "150")
    assert table.returncode == 0, table.stderr
    assert "est. accuracy" in table.stdout and "calibrated on digits-test@" in table.stdout
    got = json.loads(run("--json", "--window", "150").stdout)
    assert [w["rows"] for w in got["windows"]] == [150, 150] and got["kind"] == "classifier"
    empty = run("--since", "2999-01-01")
    assert empty.returncode == 1 and "no logged predictions" in empty.stderr
