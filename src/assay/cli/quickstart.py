"""``assay quickstart``: a demo repository built from data that scikit-learn ships (no download).

It versions the digits images as a folder dataset and their pixel features as a table, then shows
commits, a label fix, a diff, a branch with a three-way merge, a tag, an export and fsck. Then it feeds
the images through the gate in three batches (clean; with flipped labels; with a backdoor-poisoned
subset) and shows what the gate accepted, what it quarantined and why. Last, it trains an MLP on the digits
the gate accepted, registers it with that data as its lineage, exports it to ONNX, quantises it to INT8
within an accuracy budget, benchmarks it and writes an edge package. Last, the loop
(``assay.cli.quickstart_loop``): the INT8 model served on 127.0.0.1, traffic that drifts, labels for part of it,
the labelled production rows through the gate into the next training version, a retrained model, the alias
moved, and the server following it.
"""

from __future__ import annotations

import shutil
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from assay._types import Progress
from assay.errors import InputError

MARKER = ".assay-quickstart"


def run(path: Path, progress: Progress | None = None) -> Iterator[str]:
    """Build the demo in ``path``, yielding what it did, line by line."""
    from assay import CheckFailed, infer_suite, init

    path = _fresh_folder(path)
    images, table_path = _write_digits(path / "data")
    yield f"wrote {len(list(images.rglob('*.png')))} digit images to {images} and their pixels to {table_path}"
    repo = init(path)
    yield f"created a repository in {repo.dir}"

    r = repo.add("digits-images", images, progress=progress)
    repo.add("digits", table_path, key=["id"], progress=progress)
    c1 = repo.commit("Add scikit-learn digits: images and pixel table")
    yield f"committed {r.manifest.rows} images (label from sub-folder) and the table as {c1[:12]}"
    repo.tag("v1")
    suite = infer_suite(repo.dataset("digits", "v1"))
    repo.set_suite("digits", suite.to_yaml())
    repo.commit("Add a suite for digits, inferred from v1")
    yield f"inferred a suite of {len(suite.expectations)} expectations from v1 and committed it"

    table = pq.read_table(table_path)
    broken = table.slice(0, 3).set_column(1, "p0", pa.array([99, 99, 99], pa.int64()))
    repo.add("digits", broken, mode="upsert")
    try:
        repo.commit("A batch with impossible pixel values")
    except CheckFailed as e:
        yield "the suite refused a batch with impossible pixel values: " + str(e).splitlines()[1].strip()
    repo.reset()
    fix = _relabel(table, fraction=0.02, seed=0)
    res = repo.add("digits", fix, mode="upsert")
    c2 = repo.commit("Fix 2% of labels after review")
    yield f"relabelled {res.updated} samples with an upsert, committed as {c2[:12]}"
    d = repo.diff("v1", c2, dataset="digits")[0]
    yield f"diff v1..HEAD: {d.changed} changed, columns changed: {d.column_changes}"

    repo.checkout("more-data", create=True)
    extra = _new_rows(table, 100, seed=1)
    repo.add("digits", extra, mode="append")
    repo.commit("Append 100 augmented samples")
    repo.checkout("main")
    repo.add("digits", _relabel(table.slice(1000), fraction=0.01, seed=2), mode="upsert")
    repo.commit("Fix a few more labels on main")
    merged = repo.merge("more-data")
    rows = repo.dataset("digits").num_rows
    yield f"merged branch more-data into main (three-way, {merged.datasets}): digits now has {rows} samples"

    out = repo.export("digits@v1", path / "export" / "digits-v1.parquet")
    yield f"exported digits@v1 ({repo.dataset('digits', 'v1').num_rows} rows) to {out}"
    report = repo.fsck()
    yield f"fsck: {report.objects} objects verified, {'ok' if report.ok else 'DAMAGED'}"
    stored = repo.store.stored_bytes()
    raw = sum(p.stat().st_size for p in (path / "data").rglob("*") if p.is_file())
    yield f"storage: {stored / 1e6:.2f} MB for {len(repo.log())} commits of {raw / 1e6:.2f} MB of input"
    yield from _gate_demo(repo, path)
    served = yield from _model_demo(repo, path)
    yield from _loop_demo(repo, path, served)
    yield f"try: assay -C {path} log; assay -C {path} diff v1 main --dataset digits"
    yield f"     assay -C {path} quarantine list gated; assay -C {path} scores gated --flagged any"
    yield f"     assay -C {path} model lineage {MODEL}@1; assay -C {path} model show {MODEL}"
    repo.close()


def _gate_demo(repo: Any, path: Path) -> Iterator[str]:
    """Three batches of digit images through ``assay ingest``, with what was planted in each."""
    from assay.gate import load_policy

    batches, planted = _write_batches(path / "batches")
    policy_file = path / "gate.yaml"
    policy_file.write_text(GATE_POLICY)
    policy = load_policy(policy_file)
    holding = {r.screen for r in policy.rules if r.action == "quarantine"}
    for name, folder in batches.items():
        report = repo.ingest(folder, into="gated", policy=policy, message=f"ingest {name}")
        held = {f.key["path"] for f in report.quarantined}
        by_screen: dict[str, int] = {}
        for f in report.quarantined:
            for screen in {reason.split(":")[0] for reason in f.reasons} & holding:
                by_screen[screen] = by_screen.get(screen, 0) + 1
        caught = f", caught {len(held & planted[name])} of {len(planted[name])} planted" if planted[name] else ""
        yield (f"gate, {name}: {report.batch_rows} images, {report.accepted} published to main, "
               f"{len(held)} quarantined ({', '.join(f'{k} {v}' for k, v in sorted(by_screen.items())) or 'none'})"
               f"{caught}")
        if report.quarantined:
            f = report.quarantined[0]
            yield f"  e.g. {f.key['path']}: " + next(r for r in f.reasons if r.split(":")[0] in holding)
    report_path = path / "ingest-report.html"
    from assay.report import ingest_report_html

    report_path.write_text(ingest_report_html(report, repo.store.get), encoding="utf-8")
    yield f"the last batch's report, with thumbnails of the quarantined images: {report_path}"


MODEL = "digits-mlp"


def _model_demo(repo: Any, path: Path) -> Generator[str, None, str]:
    """An MLP trained on the digits the gate accepted: registered with its data, exported, quantised, timed
    and packaged (assay.models.ship); returns the version it shipped."""
    from assay.errors import QuantizationRefused
    from assay.models import register
    from assay.models.ship import bench_version, export_version, package_version, quantize_version

    train, test = _accepted_features(repo.dataset("gated"))
    repo.add("digits-train", train, key=["path"])
    repo.add("digits-test", test, key=["path"])
    repo.commit("Pixel features of the accepted digits, split for training and evaluation")
    repo.tag("features-v1")
    model, accuracy = _fit_mlp(train, test)
    v = register(repo, MODEL, model, train="digits-train@features-v1", eval="digits-test@features-v1",
                 metrics={"accuracy": accuracy}, params={"hidden_layer_sizes": [32], "max_iter": 100})
    yield (f"trained an MLP on the {train.num_rows} accepted digits of digits-train@features-v1 and registered "
           f"{v.spec}: accuracy {accuracy:.1%} on the {test.num_rows} of digits-test@features-v1")
    e = export_version(repo, v.spec)
    yield (f"exported {v.spec} to ONNX as {e.version.spec} ({e.parent.size / 1e3:.1f} kB -> "
           f"{e.version.size / 1e3:.1f} kB), verified on {e.verification.samples} test samples: labels agree on "
           f"{e.verification.label_agreement:.0%}, largest difference {e.verification.max_abs_diff:.1e}")
    best = e.version.spec
    try:
        q = quantize_version(repo, e.version.spec, budget=0.5)
    except QuantizationRefused as refused:
        yield f"INT8 refused, {MODEL} stays fp32: {refused}"
    else:
        r = q.result
        best = q.version.spec
        yield (f"quantised to INT8 as {best}: accuracy {r.fp32_metric:.2f}% fp32, {r.int8_metric:.2f}% INT8 "
               f"(drop {r.drop:.2f} points, budget 0.5), {len(r.onnx) / 1e3:.1f} kB ({r.size_ratio:.2f}x)")
    b = bench_version(repo, best, batches=(1, 8), threads=(1,), warmup=5, runs=50, memory=False)
    yield f"benchmarked {best} with ONNX Runtime, 1 thread: " + ", ".join(
        f"batch {x['batch']} p50 {x['p50_ms'] * 1e3:.0f} us, p99 {x['p99_ms'] * 1e3:.0f} us"
        for x in b.results["results"]) + f" (stored with the version: assay model show {best})"
    p = package_version(repo, best, path / "edge" / MODEL)
    yield (f"packaged {best} into {p.result.path} ({p.result.size / 1e3:.1f} kB, needs only onnxruntime and "
           f"numpy): python {p.result.path / 'predict.py'} input.json")
    return best


def _loop_demo(repo: Any, path: Path, served: str) -> Iterator[str]:
    """The loop on the version the model demo shipped (``assay.cli.quickstart_loop``)."""
    from assay.cli import quickstart_loop
    from assay.gate import parse_policy

    policy_file = path / "gate-production.yaml"
    policy_file.write_text(LOOP_POLICY)
    yield from quickstart_loop.run(repo, path, MODEL, served, parse_policy(LOOP_POLICY, str(policy_file)), _fit_mlp)


def _accepted_features(gated: Any) -> tuple[pa.Table, pa.Table]:
    """The pixels (8x8, 0-16 as in scikit-learn's digits) and labels of the accepted images, split 80/20."""
    import io

    from PIL import Image

    table = gated.to_arrow(["path", "blob", "label"])
    pixels = np.stack([np.asarray(Image.open(io.BytesIO(gated.read_blob(oid))).convert("L").resize(
        (8, 8), Image.Resampling.NEAREST), np.float64).ravel() * 16 / 255 for oid in table.column("blob").to_pylist()])
    columns = {"path": table.column("path"), **{f"p{j}": pa.array(np.round(pixels[:, j], 3)) for j in range(64)},
               "label": pa.array(np.asarray(table.column("label").to_pylist(), np.int64))}
    features = pa.table(columns)
    order = np.random.default_rng(3).permutation(features.num_rows)
    cut = int(0.8 * len(order))
    return features.take(pa.array(np.sort(order[:cut]))), features.take(pa.array(np.sort(order[cut:])))


def _fit_mlp(train: pa.Table, test: pa.Table) -> tuple[Any, float]:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def xy(t: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        return np.column_stack([t.column(f"p{j}").to_numpy() for j in range(64)]), t.column("label").to_numpy()

    model = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=100, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(*xy(train))
    return model, float(model.score(*xy(test)))


GATE_POLICY = """\
# What the gate does with a new batch of digits (see docs/screens.md)
screens:
  duplicate: {action: quarantine}
  outlier: {action: warn}
  label_issue: {action: quarantine}
  poison: {action: quarantine}
  value: {action: warn}
"""

LOOP_POLICY = """\
# What the gate does with labelled production digits: as with any batch (the label model on 2 folds, to be quick)
screens:
  duplicate: {action: quarantine}
  outlier: {action: warn}
  label_issue: {action: quarantine, folds: 2}
  poison: {action: quarantine, folds: 2}
  value: {action: warn}
"""


def _write_batches(folder: Path) -> tuple[dict[str, Path], dict[str, set[str]]]:
    """Digit images in three batch folders (label = sub-folder); the paths of the planted bad samples."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(7)
    order = rng.permutation(len(digits.target))
    parts = {"clean batch": order[:1000], "batch with flipped labels": order[1000:1400],
             "batch with a backdoor": order[1400:]}
    batches: dict[str, Path] = {}
    planted: dict[str, set[str]] = {}
    for name, rows in parts.items():
        target = folder / name.replace(" ", "-")
        labels = digits.target[rows].copy()
        images = digits.images[rows].copy()
        bad: set[int] = set()
        if "flipped" in name:
            bad = set(rng.choice(len(rows), len(rows) // 10, replace=False).tolist())
            for i in bad:
                labels[i] = (labels[i] + rng.integers(1, 10)) % 10
        if "backdoor" in name:
            others = np.flatnonzero(labels != 0)
            bad = set(rng.choice(others, int(0.1 * (digits.target == 0).sum()), replace=False).tolist())
            for i in bad:
                images[i, 5:8, 5:8] = 16.0  # the trigger: a bright 3x3 patch in a corner
                labels[i] = 0  # relabelled to the target class
        planted[name] = set()
        for i, (img, label) in enumerate(zip(images, labels, strict=True)):
            rel = f"{label}/{rows[i]:04d}.png"
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((img * 255 / 16).astype(np.uint8)).resize((32, 32), Image.Resampling.NEAREST) \
                .save(target / rel)
            if i in bad:
                planted[name].add(rel)
        batches[name] = target
    return batches, planted


def _fresh_folder(path: Path) -> Path:
    path = path.resolve()
    if path.exists():
        if not (path / MARKER).exists():
            raise InputError(f"{path} exists and is not a quickstart folder; choose another --path")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text("made by assay quickstart; safe to delete\n")
    return path


def _write_digits(folder: Path) -> tuple[Path, Path]:
    try:
        import fastapi  # noqa: F401 (the loop serves the model)
        import uvicorn  # noqa: F401
        from PIL import Image
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise InputError("the quickstart needs scikit-learn, pillow, fastapi and uvicorn: pip install "
                         "'assay[quickstart]'") from e
    digits = load_digits()
    images = folder / "digits"
    for i, (img, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        target = images / str(label) / f"{i:04d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        pixels = (img * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels).resize((32, 32), Image.Resampling.NEAREST).save(target)
    columns = {"id": pa.array(np.arange(len(digits.target)), pa.int64())}
    for j in range(digits.data.shape[1]):
        columns[f"p{j}"] = pa.array(digits.data[:, j].astype(np.int64))
    columns["label"] = pa.array(digits.target.astype(np.int64))
    table_path = folder / "digits.parquet"
    pq.write_table(pa.table(columns), table_path)
    return images, table_path


def _relabel(table: pa.Table, fraction: float, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = max(1, int(table.num_rows * fraction))
    rows = table.take(pa.array(np.sort(rng.choice(table.num_rows, n, replace=False))))
    labels = (rows.column("label").to_numpy() + rng.integers(1, 10, n)) % 10
    return rows.set_column(rows.column_names.index("label"), "label", pa.array(labels))


def _new_rows(table: pa.Table, n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    rows = table.take(pa.array(rng.choice(table.num_rows, n, replace=False)))
    ids = pa.array(np.arange(n) + table.num_rows, pa.int64())  # the next ids
    return rows.set_column(0, "id", ids)
