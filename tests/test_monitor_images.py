"""Images drift through their embedding: a column holding an array per sample (pixels, or any tensor a model
takes) is profiled by its principal components on a basis fitted on the reference, and a window is compared
with it by the distance between the mean embeddings, as text is."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from starlette.testclient import TestClient

import assay
from assay.errors import InputError
from assay.monitor import production
from assay.monitor.drift import compare, drift
from assay.monitor.profile import Profile, window_profile


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits in a random order (they come grouped by writer: the first 1,200 and the rest are
    drawn by different people, a real shift)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(7).permutation(len(y))
    return x[order].astype(np.float32), y[order].astype(np.int64)


def _images(x: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])


def test_an_array_column_is_an_image_feature_compared_by_its_embedding() -> None:
    x, y = _digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    ref_rows, fresh_rows = order[:1200], order[1200:]
    ref = Profile.build(pa.table({"pixels": _images(x[ref_rows])}))
    column = ref.columns["pixels"]
    assert column.kind == "image" and column.embedding is not None
    assert len(column.embedding["components"]) == 32 and len(column.embedding["center"]) == 64

    fresh = compare(ref, window_profile(ref, pa.table({"pixels": _images(x[fresh_rows])})))[0]
    assert fresh.kind == "image" and not fresh.drifted and fresh.values["embedding"] < 0.1
    inverted = compare(ref, window_profile(ref, pa.table({"pixels": _images(16 - x[fresh_rows])})))[0]
    assert inverted.drifted and inverted.values["embedding"] > 1.0
    # a change of what is drawn, not of how: only zeros and ones, as a broken camera feed might send
    few = fresh_rows[np.isin(y[fresh_rows], [0, 1])]
    classes = compare(ref, window_profile(ref, pa.table({"pixels": _images(x[few])})))[0]
    assert classes.drifted and classes.values["embedding"] > fresh.values["embedding"] * 3


def test_a_streamed_reference_shares_one_basis_and_other_bases_do_not_merge() -> None:
    x, _ = _digits()
    table = pa.table({"pixels": _images(x)})
    streamed = Profile.build_stream(table.to_batches(max_chunksize=400))
    whole = Profile.build(table)
    s, w = streamed.columns["pixels"], whole.columns["pixels"]
    assert s.embedding is not None and w.embedding is not None
    assert s.embedding["n"] == w.embedding["n"] == len(x)
    window = window_profile(streamed, table.slice(0, 300))
    assert window.columns["pixels"].embedding["components"] == s.embedding["components"]  # type: ignore[index]
    other = Profile.build(table.slice(900))  # its own basis
    with pytest.raises(InputError, match="different bases"):
        window.columns["pixels"].merge(other.columns["pixels"])


def test_arrays_of_another_length_or_with_nulls_are_clear_errors() -> None:
    x, _ = _digits()
    ref = Profile.build(pa.table({"pixels": _images(x[:500])}))
    with pytest.raises(InputError, match="arrays of 16 values where its reference holds 64"):
        window_profile(ref, pa.table({"pixels": _images(x[:50, :16])}))
    holes = pa.FixedSizeListArray.from_arrays(pa.array([1.0, None, 3.0, 4.0]), 2)
    with pytest.raises(InputError, match="null values"):
        window_profile(ref, pa.table({"pixels": holes}))
    nulls = window_profile(ref, pa.table({"pixels": pa.array([None, x[0].tolist()],
                                                             pa.list_(pa.float32(), 64))}))
    assert nulls.columns["pixels"].nulls == 1 and nulls.columns["pixels"].values == 1


@pytest.fixture(scope="module")
def image_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Model ``glyphs``, trained on a dataset whose one feature column holds each digit's 8x8 pixels."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    from assay.models import register
    from assay.models.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp("images")
    x, y = _digits()
    table = pa.table({"id": pa.array(np.arange(len(y)), pa.int64()), "pixels": _images(x), "label": pa.array(y)})
    with assay.init(folder) as repo:
        repo.add("glyphs", table.slice(0, 1200), key=["id"])
        repo.add("glyphs-test", table.slice(1600), key=["id"])
        repo.commit("digits as images")
        repo.tag("v1")
        with warnings.catch_warnings(), threadpool_limits(1):
            warnings.simplefilter("ignore")  # ConvergenceWarning: a few iterations are enough here
            model = LogisticRegression(max_iter=60).fit(x[:1200], y[:1200])
        register(repo, "glyphs", export_onnx(model, sample_inputs=x[:4]).onnx, train="glyphs@v1",
                 eval="glyphs-test@v1", label="label")
    return folder


def test_the_logged_images_of_a_served_model_drift_as_one_image_feature(image_model: Path) -> None:
    from assay.serve import create_app

    x, _ = _digits()
    with assay.Repo(image_model) as repo:
        assert repo.model("glyphs").signature.features == ("pixels",)
    held_out, inverted = x[1200:1600], 16 - x[1200:1600]
    with TestClient(create_app(image_model, "glyphs", auth=False, flush_rows=10_000, flush_seconds=3600)) as c:
        for rows in (held_out, inverted):
            for start in range(0, len(rows), 50):
                r = c.post("/v1/models/glyphs/predict", json=[{"X": v.tolist()} for v in rows[start:start + 50]])
                assert r.status_code == 200, r.text
    with assay.Repo(image_model) as repo:
        logged = production(repo, "glyphs")
        assert logged.num_rows == 800 and pa.types.is_fixed_size_list(logged.schema.field("pixels").type)
        calm = drift(repo, "glyphs", rows=logged.slice(0, 400)).feature("pixels")
        assert calm.kind == "image" and calm.rows == 400 and not calm.drifted
        late = drift(repo, "glyphs", window="400")
        assert "pixels" in late.drifted and late.feature("pixels").values["embedding"] > 1.0


def test_images_at_the_command_line_and_explained_by_their_nearest_training_images(image_model: Path) -> None:
    import json

    from typer.testing import CliRunner

    from assay.cli.app import app
    from assay.monitor.explain import explain

    r = CliRunner().invoke(app, ["-C", str(image_model), "monitor", "drift", "glyphs", "--window", "400", "--json"])
    assert r.exit_code == 0, r.output
    pixels = next(f for f in json.loads(r.output)["features"] if f["feature"] == "pixels")
    assert pixels["kind"] == "image" and pixels["drifted"] and pixels["p_value"] < 1e-6
    r = CliRunner().invoke(app, ["-C", str(image_model), "monitor", "performance", "glyphs", "--window", "400",
                                 "--json"])
    assert r.exit_code == 0, r.output  # estimated from the calibrated confidence, the images run through the model
    windows = json.loads(r.output)["windows"]
    assert len(windows) == 2 and all(0 < w["metrics"]["estimated_accuracy"] <= 1 for w in windows)
    with assay.Repo(image_model) as repo:
        found = explain(repo, "glyphs", feature="pixels", window="400", samples=3, neighbours=2)
    assert found.samples and all(len(s.neighbours) == 2 for s in found.samples)


@pytest.mark.parametrize("seed", range(5))
def test_fresh_images_of_the_reference_distribution_give_no_alarm(seed: int) -> None:
    x, _ = _digits()
    order = np.random.default_rng(seed).permutation(len(x))
    ref = Profile.build(pa.table({"pixels": _images(x[order[:1200]])}))
    for n in (100, 597):
        fresh = compare(ref, window_profile(ref, pa.table({"pixels": _images(x[order[1200:1200 + n]])})))[0]
        assert not fresh.drifted, (n, fresh)


def test_the_json_of_an_explanation_draws_the_images_of_samples_and_neighbours(image_model: Path) -> None:
    import base64
    import io

    from PIL import Image

    from assay.monitor.explain import explain, with_thumbnails

    with assay.Repo(image_model) as repo:
        data = with_thumbnails(repo, explain(repo, "glyphs", feature="pixels", window="400", samples=2,
                                             neighbours=1))
    uris = [s["thumbnails"]["pixels"] for s in data["samples"]] + \
        [n["thumbnails"]["pixels"] for s in data["samples"] for n in s["neighbours"]]
    assert len(uris) == 4
    for uri in uris:
        img = Image.open(io.BytesIO(base64.b64decode(uri.removeprefix("data:image/png;base64,"))))
        assert img.size == (96, 96)  # 8x8 pixels, each drawn 12x12
        assert len(np.unique(np.asarray(img.convert("L")))) > 2  # a digit, not a blank square


def test_the_dashboard_drill_down_shows_the_images(image_model: Path) -> None:
    from tests.test_dashboard import _page, _server

    with _server(image_model) as url, _page(url + "/?window=400") as (page, errors):
        page.select_option("#drift-metric", "embedding")  # the metric of images (and text)
        page.locator("#chart-drift button[data-feature='pixels']").click()
        page.wait_for_selector("#slices tbody tr.clickable", timeout=60_000)
        page.locator("#slices tbody tr.clickable").first.click()
        page.wait_for_selector("#samples img.thumb", timeout=60_000)
        drawn = page.eval_on_selector_all("#samples img.thumb", "imgs => imgs.map(i => i.complete && i.naturalWidth)")
        assert len(drawn) >= 2 and all(w == 96 for w in drawn)
        assert "[64 values]" in page.locator("#samples").inner_text()
    assert errors == []
