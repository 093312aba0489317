"""Screens and the gate, side by side with cleanlab 2.x: label errors, backdoor poisoning, KNN-Shapley value
and near duplicates, on scikit-learn's bundled digits and breast_cancer (fixed seeds, no download).

cleanlab runs in its own virtual environment (``--cleanlab-python``), in a child process, on the same
out-of-fold probabilities or the same features; it is skipped when that python is absent. Create it with
`python3 -m venv /work/cleanlab-venv && /work/cleanlab-venv/bin/pip install 'cleanlab==2.*'`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from _common import fmt_bytes, parser, print_table, run_measured, scratch, setup

CLEANLAB_DEFAULT = "/work/cleanlab-venv/bin/python"
SEEDS = (0, 1, 2)
TARGET = 0  # the class a backdoor relabels to
NEAR_NOISE = 0.01  # near copies: Gaussian noise of this share of each feature's standard deviation


def flip(y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``share`` of the labels moved to another class at random; the noisy labels and the flipped mask."""
    rng = np.random.default_rng(seed)
    k = int(y.max()) + 1
    rows = rng.choice(len(y), round(share * len(y)), replace=False)
    noisy = y.copy()
    noisy[rows] = (y[rows] + rng.integers(1, k, len(rows))) % k
    mask = np.zeros(len(y), bool)
    mask[rows] = True
    return noisy, mask


def partners(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each class's most confusable partner: the other class it is most often mistaken for or with (the
    symmetrised confusion matrix of 5-fold out-of-fold predictions of a logistic regression on the clean
    labels, fixed folds), so the pairs come from the data rather than from a list."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    pred = cross_val_predict(model, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    k = int(y.max()) + 1
    confusion = np.zeros((k, k))
    np.add.at(confusion, (y, pred), 1.0)
    confusion = confusion + confusion.T
    np.fill_diagonal(confusion, -1.0)
    return np.asarray(confusion.argmax(axis=1))


def flip_pairs(y: np.ndarray, partner: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-conditional noise: ``share`` of each class's samples relabelled to its partner class."""
    rng = np.random.default_rng(seed)
    noisy = y.copy()
    mask = np.zeros(len(y), bool)
    for j in range(int(y.max()) + 1):
        members = np.flatnonzero(y == j)
        rows = rng.choice(members, round(share * len(members)), replace=False)
        noisy[rows] = partner[j]
        mask[rows] = True
    return noisy, mask


def generated() -> tuple[np.ndarray, np.ndarray]:
    """A second data set: 6 Gaussian classes in 20 dimensions (10 informative), close enough that some pairs
    overlap (class_sep 1.5, fixed seed)."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=3000, n_features=20, n_informative=10, n_redundant=4, n_classes=6,
                               n_clusters_per_class=1, class_sep=1.5, random_state=0)
    return x, y


def prf(flag: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    tp = float((flag & truth).sum())
    p = tp / max(int(flag.sum()), 1)
    r = tp / max(int(truth.sum()), 1)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def frame(x: np.ndarray, y: np.ndarray | None, start: int = 0) -> pa.Table:
    cols: dict[str, Any] = {"id": pa.array(np.arange(start, start + len(x)), pa.int64())}
    for j in range(x.shape[1]):
        cols[f"f{j}"] = pa.array(x[:, j].astype(np.float64))
    if y is not None:
        cols["label"] = pa.array(y.astype(np.int64))
    return pa.table(cols)


def datasets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_breast_cancer, load_digits

    return {"digits": (load_digits().data, load_digits().target),
            "breast_cancer": (load_breast_cancer().data, load_breast_cancer().target)}


def cleanlab(python: str, code: str, *args: str) -> tuple[dict[str, Any] | None, int, float]:
    if not Path(python).exists():
        return None, 0, 0.0
    out, peak, wall = run_measured([python, "-c", code, *args])
    return json.loads(out.strip().splitlines()[-1]), peak, wall


CLEANLAB_ISSUES = """
import json, sys, numpy as np, cleanlab
from cleanlab.filter import find_label_issues
labels, probs = np.load(sys.argv[1]), np.load(sys.argv[2])
t = __import__("time").perf_counter()
found = find_label_issues(labels, probs)
print(json.dumps({"flag": found.tolist(), "seconds": __import__("time").perf_counter() - t,
                  "version": cleanlab.__version__}))
"""


def _label_issues_both(args: Any, root: Path, x: np.ndarray, noisy: np.ndarray, truth: np.ndarray,
                       seed: int) -> tuple[tuple[float, float, float], tuple[float, float, float] | None, float]:
    """assay's label_issue screen and cleanlab's find_label_issues on the same out-of-fold probabilities:
    (assay's P/R/F1, cleanlab's or None when absent, assay's seconds)."""
    from assay.screens import FeatureSpec, LabelIssueScreen, model_outputs, table_features

    data = table_features(frame(x, noisy), FeatureSpec(), key=["id"])
    t = time.perf_counter()
    result = LabelIssueScreen(seed=seed).fit(data).result_
    took = time.perf_counter() - t
    np.save(root / "labels.npy", noisy)
    np.save(root / "probs.npy", model_outputs(data, seed=seed).probs)
    out, _, _ = cleanlab(args.cleanlab_python, CLEANLAB_ISSUES, str(root / "labels.npy"), str(root / "probs.npy"))
    theirs = prf(np.array(out["flag"], bool), truth) if out is not None else None
    return prf(result.flag, truth), theirs, took


def label_errors(args: Any, root: Path) -> list[list[Any]]:
    rows = []
    for name, (x, y) in datasets().items():
        ours, theirs, seconds = [], [], []
        for seed in args.seeds:
            noisy, truth = flip(y, 0.10, seed)
            mine, cl, took = _label_issues_both(args, root, x, noisy, truth, seed)
            ours.append(mine)
            seconds.append(took)
            if cl is not None:
                theirs.append(cl)
        mean = np.mean(ours, axis=0)
        rows.append([name, "assay default pipeline", *(f"{v:.3f}" for v in mean), f"{np.mean(seconds):.1f} s",
                     " / ".join(f"{o[2]:.3f}" for o in ours),
                     ("F1 >= 0.90: " + ("yes" if mean[2] >= 0.90 else "NO")) if name == "digits" else ""])
        if theirs:
            tm = np.mean(theirs, axis=0)
            rows.append([name, "cleanlab find_label_issues, same probabilities", *(f"{v:.3f}" for v in tm), "",
                         " / ".join(f"{o[2]:.3f}" for o in theirs), ""])
    return rows


def pair_errors(args: Any, root: Path) -> list[list[Any]]:
    """Label errors under class-conditional noise: 20% of each class flipped to its most confusable partner."""
    from sklearn.datasets import load_digits

    rows = []
    sets = {"digits": (load_digits().data, load_digits().target), "generated (6 classes)": generated()}
    for name, (x, y) in sets.items():
        partner = partners(x, y)
        ours, theirs, seconds = [], [], []
        for seed in args.seeds:
            noisy, truth = flip_pairs(y, partner, 0.20, seed)
            mine, cl, took = _label_issues_both(args, root, x, noisy, truth, seed)
            ours.append(mine)
            seconds.append(took)
            if cl is not None:
                theirs.append(cl)
        pairs = ", ".join(f"{j}->{partner[j]}" for j in range(len(partner)))
        mean = np.mean(ours, axis=0)
        rows.append([name, pairs, "assay default pipeline", *(f"{v:.3f}" for v in mean),
                     f"{np.mean(seconds):.1f} s", " / ".join(f"{o[0]:.2f},{o[1]:.2f}" for o in ours),
                     "yes" if mean[1] >= 0.85 and mean[0] >= 0.90 else "NO"])
        if theirs:
            tm = np.mean(theirs, axis=0)
            rows.append([name, "", "cleanlab find_label_issues, same probabilities", *(f"{v:.3f}" for v in tm), "",
                         " / ".join(f"{o[0]:.2f},{o[1]:.2f}" for o in theirs),
                         "yes" if tm[1] >= 0.85 and tm[0] >= 0.90 else "NO"])
    return rows


def stamp(images: np.ndarray) -> np.ndarray:
    """The trigger: a bright 3x3 patch in the bottom-right corner of 8x8 digits."""
    out = images.reshape(-1, 8, 8).copy()
    out[:, 5:8, 5:8] = 16.0
    return out.reshape(len(images), 64)


def backdoor(args: Any, root: Path) -> list[list[Any]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import assay

    digits = load_digits()
    rows = []
    for share in (0.05, 0.10):
        caught, clean_held, asr_before, asr_after = [], [], [], []
        for seed in args.seeds:
            x_train, x_test, y_train, y_test = train_test_split(digits.data, digits.target, test_size=0.25,
                                                                stratify=digits.target, random_state=seed)
            rng = np.random.default_rng(seed)
            first = rng.permutation(len(y_train))
            accepted, batch = first[:800], first[800:]
            n_poison = round(share * (y_train == TARGET).sum())
            victims = rng.choice(batch[y_train[batch] != TARGET], n_poison, replace=False)
            x_poisoned, y_poisoned = x_train.copy(), y_train.copy()
            x_poisoned[victims] = stamp(x_train[victims])
            y_poisoned[victims] = TARGET
            repo = assay.init(root / f"backdoor-{share}-{seed}")
            assert repo.ingest(frame(x_poisoned[accepted], y_poisoned[accepted], 0), into="digits", key="id").ok
            batch_table = frame(x_poisoned[batch], y_poisoned[batch], 10_000)
            report = repo.ingest(batch_table, into="digits")
            held = {f.key["id"] - 10_000 for f in report.quarantined}
            poisoned_pos = {int(np.flatnonzero(batch == v)[0]) for v in victims}
            caught.append(len(held & poisoned_pos) / n_poison)
            clean_held.append(len(held - poisoned_pos) / (len(batch) - n_poison))
            published = repo.dataset("digits", "main").to_pandas()
            triggered = stamp(x_test[y_test != TARGET])
            asr_before.append(_attack_success(x_poisoned, y_poisoned, triggered, seed))
            features = published[[f"f{j}" for j in range(64)]].to_numpy()
            asr_after.append(_attack_success(features, published["label"].to_numpy(), triggered, seed))
            repo.close()
        rows.append([f"{share:.0%} of class {TARGET} ({n_poison} samples)", f"{np.mean(caught):.1%}",
                     f"{np.mean(clean_held):.2%}", f"{np.mean(asr_before):.1%}", f"{np.mean(asr_after):.1%}",
                     "yes" if min(caught) >= 0.9 and max(clean_held) <= 0.02 else "NO",
                     " / ".join(f"{c:.0%},{h:.1%}" for c, h in zip(caught, clean_held, strict=True))])
    return rows


def _attack_success(x: np.ndarray, y: np.ndarray, triggered: np.ndarray, seed: int) -> float:
    """Share of triggered test images (of other classes) that a model trained on ``x, y`` calls TARGET."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), MLPClassifier((128,), max_iter=400, random_state=seed)).fit(x, y)
    return float((model.predict(triggered) == TARGET).mean())


VALUE_CHILD = """
import json, sys, time, numpy as np
sys.path.insert(0, sys.argv[3])
x = np.load(sys.argv[1]); y = np.load(sys.argv[2])
from assay.screens import ScreenData, ValueScreen
data = ScreenData(x, [f"{i:032x}" for i in range(len(y))], y, list(range(int(y.max()) + 1)))
t = time.perf_counter()
r = ValueScreen().fit(data).result_
print(json.dumps({"seconds": time.perf_counter() - t, "negative": int((r.columns["value_shapley"] < 0).sum())}))
"""
CLEANLAB_VALUE = """
import json, sys, time, numpy as np, cleanlab
from cleanlab.data_valuation import data_shapley_knn
x = np.load(sys.argv[1]); y = np.load(sys.argv[2])
t = time.perf_counter()
try:
    v = data_shapley_knn(y, features=x, k=10)
    print(json.dumps({"seconds": time.perf_counter() - t, "ok": True}))
except MemoryError as e:
    print(json.dumps({"seconds": time.perf_counter() - t, "ok": False, "error": str(e)[:120]}))
"""


def value(args: Any, root: Path) -> tuple[list[list[Any]], list[list[Any]]]:
    from assay.screens import FeatureSpec, ValueScreen, table_features

    x, y = datasets()["digits"]
    quality = []
    for seed in args.seeds:
        noisy, truth = flip(y, 0.10, seed)
        r = ValueScreen(seed=seed).fit(table_features(frame(x, noisy), FeatureSpec(), key=["id"])).result_
        negative = r.columns["value_shapley"] < 0
        quality.append((negative[truth].mean(), negative[~truth].mean()))
    q = np.mean(quality, axis=0)
    quality_rows = [["digits, 10% flipped", f"{q[0]:.1%}", f"{q[1]:.1%}", "yes" if q[0] >= 0.85 else "NO",
                     " / ".join(f"{a:.1%}" for a, _ in quality)]]
    speed = []
    sizes = (10_000, 20_000) if args.quick else (20_000, 100_000)
    for n in sizes:
        rng = np.random.default_rng(0)
        centres = rng.normal(0, 3, (10, 64))
        labels = rng.integers(0, 10, n)
        feats = (centres[labels] + rng.normal(0, 1, (n, 64))).astype(np.float32)
        np.save(root / "x.npy", feats)
        np.save(root / "y.npy", labels)
        src = str(Path(__file__).resolve().parents[1] / "src")
        out, peak, _ = run_measured([sys.executable, "-c", VALUE_CHILD, str(root / "x.npy"), str(root / "y.npy"), src])
        ours = json.loads(out.strip().splitlines()[-1])
        speed.append([f"{n:,} x 64", "assay exact KNN-Shapley (2,000 validation points, k=10)",
                      f"{ours['seconds']:.1f} s", fmt_bytes(peak),
                      ("<= 60 s, <= 2 GB: " + ("yes" if ours["seconds"] <= 60 and peak <= 2 << 30 else "NO"))
                      if n == 100_000 else ""])
        theirs, their_peak, _wall = cleanlab(args.cleanlab_python, CLEANLAB_VALUE, str(root / "x.npy"),
                                            str(root / "y.npy"))
        if theirs is not None:
            what = f"{theirs['seconds']:.1f} s" if theirs["ok"] else f"failed after {theirs['seconds']:.0f} s: " \
                f"{theirs['error']}"
            speed.append([f"{n:,} x 64", "cleanlab data_shapley_knn (k=10)", what, fmt_bytes(their_peak), ""])
    return quality_rows, speed


def duplicates(args: Any, root: Path) -> list[list[Any]]:
    from assay.screens import DuplicateScreen, FeatureSpec, table_features

    rows = []
    for name, (x, y) in datasets().items():
        rng = np.random.default_rng(0)
        n = len(y)
        exact = rng.choice(n, n // 20, replace=False)
        near = rng.choice(np.setdiff1d(np.arange(n), exact), n // 20, replace=False)
        sigma = NEAR_NOISE * x.std(axis=0)
        copies = np.vstack([x[exact], x[near] + rng.normal(0, 1, (len(near), x.shape[1])) * sigma])
        data = table_features(frame(np.vstack([x, copies]), np.concatenate([y, y[exact], y[near]])), FeatureSpec(),
                              key=["id"])
        r = DuplicateScreen().fit(data).result_
        planted = np.zeros(data.n, bool)
        planted[n:] = True
        recall_exact = r.flag[n:n + len(exact)].mean()
        recall_near = r.flag[n + len(exact):].mean()
        rows.append([name, f"{len(exact)} exact + {len(near)} near (noise {NEAR_NOISE:.0%} of each std)",
                     f"{recall_exact:.1%}", f"{recall_near:.1%}", f"{r.flag[:n].mean():.2%}",
                     "yes" if r.flag[n:].mean() >= 0.95 else "NO"])
    return rows


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--cleanlab-python", default=CLEANLAB_DEFAULT,
                   help="python of a virtual environment with cleanlab 2.x (skipped when absent)")
    p.add_argument("--seeds", type=lambda v: tuple(int(s) for s in v.split(",")), default=SEEDS,
                   help="comma-separated seeds of the noise and the models (default: 0,1,2); others check that "
                        "figures were not tuned to the default ones")
    p.add_argument("--only", choices=("labels", "pairs", "backdoor", "value", "duplicates"), default=None)
    args = p.parse_args()
    setup(args, "bench_screens")
    seeds = ", ".join(map(str, args.seeds))
    with scratch(args, "bench-screens-") as root:
        if args.only in (None, "labels"):
            print_table(f"Label errors, 10% of labels flipped (mean of seeds {seeds})",
                        ["data", "method", "precision", "recall", "F1", "time", "F1 per seed", "goal"],
                        label_errors(args, root))
        if args.only in (None, "pairs"):
            print_table("Label errors, class-conditional: 20% of each class flipped to its most confusable "
                        f"partner (mean of seeds {seeds})",
                        ["data", "pairs (class->partner)", "method", "precision", "recall", "F1", "time",
                         "P,R per seed", "R >= 0.85 at P >= 0.90"], pair_errors(args, root))
        if args.only in (None, "backdoor"):
            print_table("Backdoor on digits: 3x3 trigger, relabelled to 0; the gate with the default policy "
                        f"(mean of seeds {seeds})",
                        ["poisoned", "quarantined", "clean held", "attack success before", "after", "goal met",
                         "per seed (caught, clean held)"], backdoor(args, root))
        if args.only in (None, "value"):
            quality, speed = value(args, root)
            print_table(f"KNN-Shapley value on digits with 10% flipped labels (mean of seeds {seeds})",
                        ["data", "flipped with value < 0", "clean with value < 0", ">= 85%", "per seed"], quality)
            print_table("KNN-Shapley at scale (one child process each, peak RSS)",
                        ["data", "method", "time", "peak RSS", "goal"], speed)
        if args.only in (None, "duplicates"):
            print_table("Planted duplicates", ["data", "planted", "recall exact", "recall near",
                                               "originals flagged", "recall >= 0.95"], duplicates(args, root))


if __name__ == "__main__":
    main()
