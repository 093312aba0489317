"""From an alert to the samples: the slice a planted shift lives in comes out on top, the nearest training samples
are the nearest, and bad input is a clear error."""

from __future__ import annotations

import base64
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as csv
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression, Ridge
from typer.testing import CliRunner

import assay
from assay.cli.app import app
from assay.errors import AssayError, InputError
from assay.models import register
from assay.models.onnx_export import export_onnx
from assay.monitor import production
from assay.monitor.explain import explain
from assay.serve.labels import label
from monitor_helpers import FEATURES, digits_table, make_repo, serve

LOW, HIGH = 12, 14  # the planted slice: production rows with 12 < p10 <= 14 (a decile bin of the training data)


def _pixels(table: pa.Table) -> np.ndarray:
    return np.stack([table.column(f).to_numpy() for f in FEATURES], axis=1).astype(np.float64)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Held-out digits served with p20 raised by 8 only where 12 < p10 <= 14; labels joined that are wrong
    exactly where the model predicted 3."""
    folder = make_repo(tmp_path_factory.mktemp("explain") / "repo")
    x = _pixels(digits_table())[1200:]
    inside = (x[:, 10] > LOW) & (x[:, 10] <= HIGH)
    x[inside, 20] += 8
    serve(folder, x)
    with assay.Repo(folder) as repo:
        rows = production(repo, "digits")
        pred = rows.column("prediction").to_numpy()
        wrong = np.where(pred == 3, (pred + 1) % 10, pred)
        label(repo, "digits", pa.table({"request_id": rows.column("request_id"), "label": pa.array(wrong)}))
    return folder


def test_a_shift_confined_to_one_range_of_another_feature_is_the_top_slice(served: Path) -> None:
    with assay.Repo(served) as repo:
        found = explain(repo, "digits", feature="p20")
    top = found.slices[0]
    assert (top.column, top.kind, top.low, top.high) == ("p10", "range", LOW, HIGH)
    assert top.effect > found.slices[1].effect + 0.05
    assert top.inside is not None and top.outside is not None and top.inside > 0.5 > 0.15 > top.outside
    assert found.chosen == 0 and found.mode == "drift" and found.production_rows == 597
    assert found.samples and all(LOW < s.values["p10"] <= HIGH for s in found.samples)
    assert all(s.values["p20"] > 16 for s in found.samples)  # the shifted rows come first
    assert json.loads(json.dumps(found.to_dict()))["slices"][0]["name"] == "12 < p10 <= 14"


def test_errors_confined_to_one_predicted_class_are_the_top_slice(served: Path) -> None:
    with assay.Repo(served) as repo:
        found = explain(repo, "digits", metric="accuracy")
        estimated = explain(repo, "digits", metric="estimated_accuracy", slice_rank=2)
    top = found.slices[0]
    assert (top.column, top.value) == ("prediction", 3)
    assert top.production_error == 1.0 and top.reference_error is not None and top.reference_error < 0.2
    assert found.mode == "performance" and all(s.prediction == 3 and s.label == 4 for s in found.samples)
    assert estimated.mode == "performance" and estimated.chosen == 1
    assert estimated.slices == sorted(estimated.slices, key=lambda s: -s.effect)


def _brute_nearest(values: dict[str, float], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest of the 1,200 training rows by brute force: (distances, row numbers), nearest first."""
    train = _pixels(digits_table().slice(0, 1200))
    mean, std = train.mean(axis=0), train.std(axis=0)
    scale = np.where(std > 0, std, 1.0)
    z = (np.array([values[f] for f in FEATURES]) - mean) / scale
    brute = np.sqrt((((train - mean) / scale - z) ** 2).sum(axis=1))
    order = np.argsort(brute, kind="stable")[:k]
    return brute[order], order


def test_the_nearest_training_samples_are_the_nearest(served: Path) -> None:
    with assay.Repo(served) as repo:
        found = explain(repo, "digits", feature="p20", samples=4, neighbours=5)
    train = _pixels(digits_table().slice(0, 1200))
    assert len(found.samples) == 4
    for s in found.samples:
        distances, rows = _brute_nearest(s.values, 5)
        assert np.allclose([n.distance for n in s.neighbours], distances)
        assert [n.key["id"] for n in s.neighbours] == [n.row for n in s.neighbours] == rows.tolist()
        assert all(n.values["p10"] == train[n.key["id"], 10] for n in s.neighbours)


def test_the_cli_prints_the_slices_and_samples_and_the_same_as_json(served: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["-C", str(served), "monitor", "explain", "digits", "--feature", "p20", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["slices"][0]["name"] == "12 < p10 <= 14" and len(data["samples"][0]["neighbours"]) == 3
    r = runner.invoke(app, ["-C", str(served), "monitor", "explain", "digits", "--metric", "accuracy", "--slice",
                            "2"])
    assert r.exit_code == 0, r.output
    assert "prediction = 3" in r.output and "production samples of" in r.output


def test_bad_input_is_a_clear_error(served: Path) -> None:
    with assay.Repo(served) as repo:
        with pytest.raises(InputError, match=r"no feature 'p99'.*p0, p1"):
            explain(repo, "digits", feature="p99")
        with pytest.raises(InputError, match=r"no production rows .* widen --window or --since"):
            explain(repo, "digits", feature="p20", since="2999-01-01")
        with pytest.raises(InputError, match=r"--alert ID, --feature F .* --metric M"):
            explain(repo, "digits")
        with pytest.raises(InputError, match=r"unknown metric 'psy'.*psi, ks"):
            explain(repo, "digits", feature="p20", metric="psy")
        with pytest.raises(InputError, match=r"slice 999 does not exist"):
            explain(repo, "digits", feature="p20", slice_rank=999)
        with pytest.raises(AssayError):  # no alerts module on this branch, or no such alert once there is
            explain(repo, "digits", alert="no-such-alert")


def _without_p5(log: pa.Table, where: np.ndarray) -> pa.Table:
    """The log with feature p5 sent as null in the rows ``where`` is true."""
    inputs = []
    for text, drop in zip(log.column("inputs").to_pylist(), where, strict=True):
        row = json.loads(text)
        (key,) = row
        if drop:
            row[key][5] = None
        inputs.append(json.dumps(row))
    return log.set_column(log.column_names.index("inputs"), "inputs", pa.array(inputs))


def test_a_feature_null_in_every_row_is_an_error_and_nulls_in_one_slice_are_found(served: Path,
                                                                                   tmp_path: Path) -> None:
    from assay.serve.log import dataset_name

    with assay.Repo(served) as repo:
        log = repo.dataset(dataset_name("digits")).to_arrow()
    p10 = np.array([json.loads(t)["X"][10] for t in log.column("inputs").to_pylist()])
    folder = make_repo(tmp_path / "repo")
    with assay.Repo(folder) as repo:
        repo.add(dataset_name("digits"), _without_p5(log, np.ones(log.num_rows, bool)), key=["request_id"])
        repo.commit("a log whose clients stopped sending p5")
        with pytest.raises(InputError, match=r"feature 'p5' is null in all 597 production rows"):
            explain(repo, "digits", feature="p5")
        assert explain(repo, "digits", feature="p20").slices[0].column == "p10"  # the other features still explain
        with pytest.raises(InputError, match=r"none of the 597 production rows .* has a label.*estimated_accuracy"):
            explain(repo, "digits", metric="accuracy")  # this log has no labels joined
        repo.add(dataset_name("digits"), _without_p5(log, (p10 > LOW) & (p10 <= HIGH)), key=["request_id"])
        repo.commit("a log whose clients send no p5 when 12 < p10 <= 14")
        found = explain(repo, "digits", feature="p5", metric="null_share")
    top = found.slices[0]
    assert (top.column, top.low, top.high) == ("p10", LOW, HIGH) and top.inside is not None and top.inside > 0.9
    assert all(s.values["p5"] is None for s in found.samples)


def test_training_samples_of_an_image_dataset_come_with_thumbnails(tmp_path: Path) -> None:
    """A training set of 8x8 PNGs with their pixels as feature columns (a labels file): the neighbours carry
    their blobs, and the JSON of the CLI their thumbnails."""
    t = digits_table().slice(0, 300)
    x, y = _pixels(t), np.asarray(t.column("label"))
    (tmp_path / "images").mkdir()
    for i, row in enumerate(x):
        Image.fromarray((row.reshape(8, 8) * 15).astype(np.uint8)).save(tmp_path / "images" / f"{i:03d}.png")
    meta = pa.table({"path": [f"{i:03d}.png" for i in range(len(x))],
                     **{f: pa.array(x[:, j].astype(np.float32)) for j, f in enumerate(FEATURES)}, "label": y})
    csv.write_csv(meta, tmp_path / "labels.csv")
    with assay.init(tmp_path / "repo") as repo:
        repo.add("digit-images", tmp_path / "images", labels=tmp_path / "labels.csv")
        repo.commit("digits as images, with their pixels")
        repo.tag("v1")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LogisticRegression(max_iter=40).fit(x, y)
        register(repo, "digits", export_onnx(model, sample_inputs=x[:4]).onnx, train="digit-images@v1",
                 features=FEATURES, label="label")
    serve(tmp_path / "repo", _pixels(digits_table())[1200:1300])
    r = CliRunner().invoke(app, ["-C", str(tmp_path / "repo"), "monitor", "explain", "digits", "--feature", "p20",
                                 "--samples", "2", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["blob_columns"] == ["blob"]
    for sample in data["samples"]:
        for near in sample["neighbours"]:
            uri = near["thumbnails"]["blob"]
            assert uri.startswith("data:image/png;base64,")
            with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as thumb:
                small = np.asarray(thumb.convert("L").resize((8, 8), Image.Resampling.NEAREST), np.float64)
            i = int(near["key"]["path"][:3])
            assert np.array_equal(small, x[i].reshape(8, 8) * 15)  # the thumbnail is that training sample
            assert near["values"]["p20"] == x[i, 20]


def test_a_large_reference_is_sampled_for_the_slices_but_not_for_the_neighbours(served: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import assay.monitor.explain as module

    monkeypatch.setattr(module, "MAX_REFERENCE", 600)
    with assay.Repo(served) as repo:
        found = explain(repo, "digits", feature="p20", samples=10, neighbours=1)
    assert found.reference_rows == 600 and "600 rows of the reference's 1,200" in found.notes[0]
    assert found.slices[0].column == "p10"
    for s in found.samples:
        assert [n.row for n in s.neighbours] == _brute_nearest(s.values, 1)[1].tolist()


def test_a_regressor_whose_errors_grew_in_one_range_is_explained_by_that_range(tmp_path: Path) -> None:
    t = digits_table()
    x, y = _pixels(t), np.asarray(t.column("label"), np.float64)
    with assay.init(tmp_path / "repo") as repo:
        repo.add("digits-train", t.slice(0, 1200), key=["id"])
        repo.add("digits-test", t.slice(1200), key=["id"])
        repo.commit("digits")
        repo.tag("v1")
        onnx = export_onnx(Ridge().fit(x[:1200], y[:1200]), sample_inputs=x[:4]).onnx
        register(repo, "digits", onnx, train="digits-train@v1", eval="digits-test@v1", label="label")
    serve(tmp_path / "repo", x[1200:])
    with assay.Repo(tmp_path / "repo") as repo:
        rows = production(repo, "digits")
        p10 = rows.column("p10").to_numpy()
        truth = rows.column("prediction").to_numpy() + np.where((p10 > LOW) & (p10 <= HIGH), 3.0, 0.0)
        label(repo, "digits", pa.table({"request_id": rows.column("request_id"), "label": pa.array(truth)}))
        found = explain(repo, "digits", metric="mae")
        with pytest.raises(InputError, match="a regressor gives no confidence"):
            explain(repo, "digits", metric="estimated_accuracy")
    top = found.slices[0]
    assert (top.column, top.low, top.high) == ("p10", LOW, HIGH) and top.production_error == pytest.approx(3.0)
    assert found.samples[0].score is None and found.samples[0].label == pytest.approx(found.samples[0].prediction + 3)


def test_a_category_production_brought_is_a_slice_and_types_that_differ_still_slice() -> None:
    from assay.monitor._slices import codes_of, drift_slices

    rng = np.random.default_rng(0)
    ref = pa.chunked_array([pa.array(rng.choice(["a", "b", "c"], 3000))])
    prod = pa.chunked_array([pa.array(np.concatenate([rng.choice(["a", "b", "c"], 900), ["new"] * 100]))])
    found, _ = drift_slices([codes_of("city", ref, prod)], None, 20)
    top = max(found, key=lambda s: s.effect)
    assert (top.name, top.value, top.reference_rows, top.production_rows) == ("city = 'new'", "new", 0, 100)
    assert top.effect == pytest.approx(0.1)
    mixed = codes_of("code", pa.chunked_array([pa.array([1, 2, 2, 3])]), pa.chunked_array([pa.array(["2", "x"])]))
    assert [mixed.defs[i]["value"] for i in mixed.prod] == ["2", "x"]  # compared as text
    assert [mixed.defs[i]["value"] for i in mixed.ref] == ["1", "2", "2", "3"]


def test_a_shift_of_every_row_shows_as_drift_outside_every_slice(tmp_path: Path) -> None:
    """No slice confines a shift of every row: the drift outside each slice stays high (where F's values were
    narrow the shift moves all of them, so those slices still rank first), and F's own top range gains its share."""
    folder = make_repo(tmp_path / "repo")
    x = _pixels(digits_table())[1200:]
    x[:, 20] += 6
    serve(folder, x)
    with assay.Repo(folder) as repo:
        found = explain(repo, "digits", feature="p20", top=50)
    others = [s for s in found.slices if s.column != "p20"]
    assert others and all(s.outside is not None and s.outside > 0.4 for s in others)
    own = next(s for s in found.slices if s.column == "p20" and s.low == 16 and s.high is None)
    assert own.reference_rows == 0 and own.production_share > 0.3 and found.slices.index(own) < 5
