"""Screens: one conformance test over every built-in screen, then what each one must find."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sklearn.datasets import make_blobs

from assay.errors import ScreenError
from assay.screens import (
    SCREENS,
    FeatureSpec,
    ScreenData,
    find_label_issues,
    knn_shapley,
    label_wrong_probability,
    make_screen,
    run_screens,
    scores_schema,
    scores_table,
    table_features,
)
from tests.conftest import make_table


def blobs(n: int = 400, classes: int = 4, dims: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x, y = make_blobs(n_samples=n, centers=classes, n_features=dims, cluster_std=1.5, random_state=seed)
    return x.astype(np.float32), y.astype(np.int64)


def data_of(x: np.ndarray, y: np.ndarray | None, **kw: object) -> ScreenData:
    classes = sorted(set(y.tolist())) if y is not None else []
    return ScreenData(x, [f"{i:032x}" for i in range(len(x))], y, classes, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def noisy() -> tuple[ScreenData, np.ndarray]:
    x, y = blobs()
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(y), 20, replace=False)
    y = y.copy()
    y[flipped] = (y[flipped] + rng.integers(1, 4, len(flipped))) % 4
    return data_of(x, y), flipped


@pytest.mark.parametrize("name", list(SCREENS))
def test_every_screen_follows_the_contract(name: str, noisy: tuple[ScreenData, np.ndarray]) -> None:
    data, _ = noisy
    cls = SCREENS[name]
    assert cls.name == name and cls.description
    with pytest.raises(TypeError, match="no parameter 'bogus'"):
        cls(bogus=1)
    for key, spec in cls.params.items():  # every declared range is enforced
        if spec.high is not None:
            with pytest.raises(ValueError, match=key):
                cls(**{key: spec.high + 1})
        if spec.choices is not None:
            with pytest.raises(ValueError, match=key):
                cls(**{key: "no-such-choice"})
    screen = cls()
    assert screen.get_params() == {k: p.default for k, p in cls.params.items()}
    assert screen.fit(data) is screen
    r = screen.result_
    assert r.screen == name and len(r.score) == data.n and r.flag.dtype == bool
    assert np.all((r.score >= 0) & (r.score <= 1))
    assert all(bool(why and why.strip()) == bool(f) for why, f in zip(r.reason, r.flag, strict=True))
    assert set(r.columns) == set(cls.extra_columns)
    json.dumps(r.to_dict())
    again = cls().fit(data_of(data.features, data.labels)).result_  # deterministic
    assert np.array_equal(again.flag, r.flag) and np.allclose(again.score, r.score)
    if cls.needs_labels:
        with pytest.raises(ScreenError, match="needs labels"):
            cls().fit(data_of(data.features, None))
        with pytest.raises(ScreenError, match="at least 2 classes"):
            cls().fit(data_of(data.features, np.zeros(data.n, np.int64)))
        missing = data.labels.copy()  # type: ignore[union-attr]
        missing[3] = -1
        with pytest.raises(ScreenError, match="1 sample\\(s\\) have no label"):
            cls().fit(ScreenData(data.features, data.ids, missing, data.classes))


def test_scores_table_has_the_fixed_schema_with_nulls_for_screens_not_run(noisy: tuple[ScreenData, np.ndarray]
                                                                         ) -> None:
    data, _ = noisy
    run = run_screens(data, [make_screen("duplicate"), make_screen("outlier")])
    table = scores_table(run, batch="b1")
    assert table.schema.equals(scores_schema()) and table.num_rows == data.n
    assert table.column("label_issue_score").null_count == data.n
    assert table.column("duplicate_score").null_count == 0


def test_label_issue_finds_flipped_labels(noisy: tuple[ScreenData, np.ndarray]) -> None:
    data, flipped = noisy
    r = make_screen("label_issue").fit(data).result_
    found = set(r.flagged.tolist())
    recall = len(found & set(flipped.tolist())) / len(flipped)
    precision = len(found & set(flipped.tolist())) / max(len(found), 1)
    assert recall >= 0.8 and precision >= 0.7, (recall, precision)
    assert "labelled" in (r.reason[r.flagged[0]] or "")
    assert r.summary["model"].startswith("default model")


def test_label_issue_uses_the_users_probabilities() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1] * 5)
    probs = np.where(y[:, None] == np.arange(2), 0.97, 0.03)
    probs[[0, 9]] = probs[[0, 9]][:, ::-1]  # the model is sure these two labels are wrong
    probs[[4, 13]] = [[0.6, 0.4], [0.4, 0.6]]  # and leans against these, not enough for rarely-wrong labels
    data = data_of(np.random.default_rng(0).normal(size=(len(y), 3)), y, pred_probs=probs)
    r = make_screen("label_issue").fit(data).result_
    assert set(r.flagged.tolist()) == {0, 9}
    assert r.summary["model"] == "given"
    assert np.array_equal(find_label_issues(y, probs), r.flag)
    assert r.score[0] < 0.5 < r.score[4] < r.score[1]  # the probability that the given label is right


def test_label_wrong_probability_believes_disagreements_sooner_between_often_confused_classes() -> None:
    """Bayes' rule with the noise rates of the confident joint: the same model output is a label error
    between a pair whose labels are often swapped, and not between a pair whose labels are rarely wrong."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 100)
    probs = np.full((400, 4), 0.01)
    probs[np.arange(400), y] = 0.97
    noisy = y.copy()
    swapped = rng.choice(np.flatnonzero(y == 1), 25, replace=False)  # a quarter of class 1 labelled 0
    noisy[swapped] = 0
    ambiguous = [np.flatnonzero(noisy == 0)[0], np.flatnonzero(noisy == 2)[0]]  # a clean 0 and a clean 2
    probs[ambiguous[0]] = [0.15, 0.83, 0.01, 0.01]  # leans to 1, the class often mislabelled as 0
    probs[ambiguous[1]] = [0.01, 0.01, 0.15, 0.83]  # leans to 3: no 3 was ever labelled 2
    wrong = label_wrong_probability(noisy, probs)
    assert wrong[ambiguous[0]] > 0.5 > wrong[ambiguous[1]]
    assert np.all(wrong[swapped] > 0.9) and np.all(find_label_issues(noisy, probs)[swapped])
    assert find_label_issues(noisy, probs, "prune")[swapped].all()
    with pytest.raises(ValueError, match="unknown method"):
        find_label_issues(noisy, probs, "vote")


def test_duplicate_finds_exact_and_near_copies_and_keeps_the_first() -> None:
    x, y = blobs(300)
    rng = np.random.default_rng(2)
    originals = rng.choice(300, 30, replace=False)
    copies = np.vstack([x[originals[:15]], x[originals[15:]] + rng.normal(0, 0.01, (15, x.shape[1]))])
    data = data_of(np.vstack([x, copies]), np.concatenate([y, y[originals]]))
    r = make_screen("duplicate").fit(data).result_
    planted = set(range(300, 330))
    assert len(planted & set(r.flagged.tolist())) / 30 >= 0.95
    assert not set(originals.tolist()) & set(r.flagged.tolist())  # the first of each cluster is kept
    assert r.summary["exact_copies"] == 15
    assert r.columns["duplicate_of"][300] == data.ids[originals[0]]
    assert r.columns["duplicate_cluster"][300] == r.columns["duplicate_cluster"][originals[0]] >= 0


def test_duplicate_finds_near_copies_of_text_with_minhash() -> None:
    rng = np.random.default_rng(5)
    words = ["apple", "river", "stone", "cloud", "lamp", "forest", "engine", "violet", "harbor", "quartz",
             "meadow", "signal", "copper", "winter", "falcon", "garden", "marble", "pepper", "saddle", "tunnel"]
    texts = [" ".join(rng.choice(words, 14)) for _ in range(60)]
    texts.append(texts[5].replace(" ", "  ", 1) + " again")
    table = pa.table({"text": texts, "label": [i % 2 for i in range(61)]})
    data = table_features(table, FeatureSpec())
    assert data.kind == "text" and data.texts is not None
    r = make_screen("duplicate", near=0.0).fit(data).result_  # MinHash only
    assert r.flag[60] and not r.flag[5] and r.flag.sum() == 1
    assert f"similar text, MinHash) of sample {data.ids[5][:12]}" in (r.reason[60] or "")


def test_outlier_flags_far_samples_only() -> None:
    x, _ = blobs(300)
    far = np.full((3, x.shape[1]), 60.0, np.float32) * np.array([[1], [-1], [0.5]], np.float32)
    r = make_screen("outlier").fit(data_of(np.vstack([x, far]), None)).result_
    assert set(r.flagged.tolist()) >= {300, 301, 302}
    assert r.flag[:300].mean() < 0.02
    with pytest.raises(ScreenError, match="at least 10 samples"):
        make_screen("outlier").fit(data_of(x[:5], None))


def _shapley_reference(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, k: int) -> np.ndarray:
    """Jia et al. (2019), Theorem 1, one validation point at a time, written as in the paper."""
    n = len(y)
    total = np.zeros(n)
    for point, label in zip(xv, yv, strict=True):
        order = np.argsort(((x - point) ** 2).sum(axis=1), kind="stable")
        s = np.zeros(n)
        s[order[-1]] = float(y[order[-1]] == label) / n
        for i in range(n - 2, -1, -1):
            rank = i + 1
            s[order[i]] = s[order[i + 1]] + (float(y[order[i]] == label) - float(y[order[i + 1]] == label)) / k \
                * min(k, rank) / rank
        total += s
    return total / len(yv)


def test_knn_shapley_matches_the_papers_recursion() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    xv = rng.normal(size=(7, 3)).astype(np.float32)
    yv = rng.integers(0, 3, 7)
    for k in (1, 3, 5):
        assert np.allclose(knn_shapley(x, y, xv, yv, k=k), _shapley_reference(x, y, xv, yv, k), atol=1e-9)


def test_value_is_negative_for_flipped_labels_and_rare_classes_weigh_more(noisy: tuple[ScreenData, np.ndarray]
                                                                         ) -> None:
    data, flipped = noisy
    r = make_screen("value").fit(data).result_
    assert np.mean(r.columns["value_shapley"][flipped] < 0) >= 0.85
    assert r.flag[flipped].mean() >= 0.85
    x, y = blobs(330, classes=3)
    keep = np.concatenate([np.flatnonzero(y == 0)[:10], np.flatnonzero(y != 0)])  # class 0 is rare
    rare = make_screen("value", rarity=1.0).fit(data_of(x[keep], y[keep])).result_
    weighted, raw = rare.columns["value_weighted"], rare.columns["value_shapley"]
    ratio = np.divide(weighted, raw, out=np.full(len(raw), np.nan), where=raw != 0)
    assert np.nanmin(ratio[:10]) > np.nanmax(ratio[10:])


def test_poison_flags_a_small_separate_group_within_a_class() -> None:
    x, y = blobs(600, classes=3, dims=10)
    rng = np.random.default_rng(4)
    victims = rng.choice(np.flatnonzero(y != 0), 15, replace=False)
    x = x.copy()
    x[victims, :3] += 25.0  # a trigger: the same strong pattern on samples relabelled to class 0
    y = y.copy()
    y[victims] = 0
    r = make_screen("poison", representation="features").fit(data_of(x, y)).result_
    assert r.flag[victims].mean() >= 0.9
    clean = np.setdiff1d(np.arange(len(y)), victims)
    assert r.flag[clean].mean() <= 0.02


def test_features_from_a_table_impute_and_say_so() -> None:
    table = pa.table({"id": [1, 2, 3, 4], "a": [1.0, float("nan"), 3.0, None], "c": ["x", "y", "x", None],
                      "label": ["p", "q", "p", None]})
    data = table_features(table, FeatureSpec(), key=["id"])
    assert data.features.shape == (4, 1 + 3 + 1)  # a, and c one-hot (x, y, null, other)
    assert data.labels is not None and data.labels.tolist() == [0, 1, 0, -1] and data.classes == ["p", "q"]
    assert any("2 missing, NaN or infinite value(s) of 'a'" in n for n in data.notes)
    with pytest.raises(ScreenError, match="NaN or infinite"):
        ScreenData(np.array([[np.nan]]), ["0"])


def test_text_features_from_the_offline_minilm_model(monkeypatch: pytest.MonkeyPatch,
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may come from the network
    texts = ["the cat sat on the mat", "a cat was sitting on the mat", "stock markets fell sharply today"]
    many = texts + [f"note {i}: {w} and {v}" for i, (w, v) in enumerate(zip(["tea", "rain", "maps"] * 20,
                                                                           ["bikes", "owls", "jazz"] * 20,
                                                                           strict=True))]
    data = table_features(pa.table({"text": many}), FeatureSpec(text_model="minilm"))
    assert data.features.shape == (len(many), 384) and data.kind == "text"
    v = data.features[:3]
    assert float(v[0] @ v[1]) > 0.7 > float(v[0] @ v[2])  # paraphrases are close, other topics are not
    assert capfd.readouterr().err == ""  # no progress bar from the library


def test_poison_finds_a_backdoor_in_learned_representations_despite_label_noise() -> None:
    from sklearn.datasets import load_digits
    from threadpoolctl import threadpool_limits

    digits = load_digits()
    rng = np.random.default_rng(0)
    x, y = digits.data.copy(), digits.target.copy()
    noisy = rng.choice(len(y), len(y) // 10, replace=False)  # 10% of labels wrong besides the attack
    y[noisy] = (y[noisy] + rng.integers(1, 10, len(noisy))) % 10
    victims = rng.choice(np.setdiff1d(np.flatnonzero(y != 0), noisy), 18, replace=False)
    images = x[victims].reshape(-1, 8, 8)
    images[:, 0:2, 0:2] = 16.0  # a 2x2 trigger in the top-left corner, relabelled to 0
    x[victims] = images.reshape(-1, 64)
    y[victims] = 0
    std = x.std(axis=0)
    data = data_of(((x - x.mean(axis=0)) / np.where(std > 0, std, 1)).astype(np.float32), y)
    with threadpool_limits(1):
        r = make_screen("poison").fit(data).result_
    assert r.flag[victims].mean() >= 0.9 and r.summary["representations"] == 2
    clean = np.setdiff1d(np.arange(len(y)), np.concatenate([victims, noisy]))
    assert r.flag[clean].mean() <= 0.01


def test_the_default_model_screens_labels_it_prunes_down_to_one_sample_of_a_class(tmp_path: Path) -> None:
    """Labels that the features do not predict: the refit without the likely label errors leaves a fold with one
    sample of a class, which the SVC's calibration cannot split (it raised sklearn's ValueError); that fold is
    answered by the MLP alone, and every sample still gets a score."""
    import assay

    with assay.init(tmp_path) as repo:
        repo.add("train", make_table(300), key="id")
        repo.commit("first")
        repo.add("train", make_table(20, seed=5, start=300), mode="append")
        report = assay.screen(repo.dataset("train"), ["label_issue"])
    result = report.results["label_issue"]
    assert not report.errors and len(result.score) == 320
    assert np.isfinite(result.score).all() and ((result.score >= 0) & (result.score <= 1)).all()
