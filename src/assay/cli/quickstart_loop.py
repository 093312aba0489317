"""The quickstart's last part, the loop: the quantised digits model served over HTTP (uvicorn on 127.0.0.1, in a
thread), traffic whose distribution shifts (brighter, noisier digits), labels for part of it, the labelled
production rows through the gate into the next training version, a model retrained on it with lineage to that
data and to the model it replaces, the alias moved, and the server following the alias to the new version.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

ALIAS = "champion"
BATCH = 50  # instances per request
SHIFTED = 600  # requests after the shift
LABELLED = 300  # of those, the ones whose labels arrive
Fit = Callable[[pa.Table, pa.Table], tuple[Any, float]]


def run(repo: Any, path: Path, model: str, served: str, policy: Any, fit: Fit) -> Iterator[str]:
    """The loop on ``served`` (a version of ``model``), its server running on 127.0.0.1 throughout; ``fit``
    trains a model on a training and a test table (returns it and its test accuracy)."""
    from assay.models import set_alias

    first = set_alias(repo, model, served.rpartition("@")[2], ALIAS)
    with _server(repo.root, f"{model}@{ALIAS}") as url:
        yield f"serving {model}@{ALIAS} (version {first}) on {url} in this process (uvicorn, 127.0.0.1)"
        traffic = _traffic(repo)
        answers = {phase: _send(url, model, x) for phase, (x, _) in traffic.items()}
        _wait_for_log(repo, model, sum(len(x) for x, _ in traffic.values()))
        shown = ", ".join(f"{len(x)} {phase} digits (accuracy {_accuracy(answers[phase][1], y):.0%})"
                          for phase, (x, y) in traffic.items())
        yield f"sent {shown}; every prediction is logged in the dataset predictions.{model}"
        since = answers["brighter, noisier"][2]
        yield from monitor_step(repo, model, since)
        yield from _label(repo, path, model, answers["brighter, noisier"][0], traffic["brighter, noisier"][1])
        report = _ingest(repo, model, policy)
        yield report
        yield from _retrain(repo, path, model, served, traffic["brighter, noisier"], url, fit)


QUICKSTART_RULES = f"""\
format: 1
window: {SHIFTED} rows
rules:
  - name: inputs-drift
    metric: multivariate
    threshold: 0.05
    severity: error
  - name: predictions-drift
    metric: psi
    feature: prediction
    threshold: 0.2
    severity: warning
"""


def monitor_step(repo: Any, model: str, since: float) -> Iterator[str]:
    """Drift -> alert -> drill-down on the traffic logged since ``since`` (the shifted part)."""
    from assay.monitor.drift import drift
    from assay.monitor.evaluate import run
    from assay.monitor.explain import explain
    from assay.monitor.rules import parse_rules

    report = drift(repo, model, since=since)
    pixels = [f for f in report.features if f.drifted and f.feature not in ("*", "prediction", "label")]
    top = ", ".join(f"{f.feature} PSI {f.values['psi']:.1f}" for f in
                    sorted(pixels, key=lambda f: -f.values.get("psi", 0.0))[:3])
    yield (f"drift of the {report.rows} shifted requests against {report.reference}: {len(pixels)} of 64 pixels "
           f"drifted (most: {top}); assay monitor drift {model} --since 10m --html drift.html")
    evaluation = run(repo, model, parse_rules(QUICKSTART_RULES, "the quickstart's rules"), deliver_s=0)
    opened = sorted(evaluation.opened, key=lambda a: a.severity != "error")
    fired = "; ".join(f"{a.id[:8]} {a.rule} ({a.metric} {a.value:.2f} > {a.threshold:g}, {a.severity})"
                      for a in opened)
    yield f"alert rules evaluated (assay monitor run {model} --rules FILE): {len(opened)} opened: {fired or 'none'}"
    if not opened:
        return
    found = explain(repo, model, alert=opened[0].id)
    if found.chosen is None or not found.samples:
        return
    chosen = found.slices[found.chosen]
    sample = found.samples[0]
    near = sample.neighbours[0] if sample.neighbours else None
    beside = f", beside its nearest training sample (label {near.label}, distance {near.distance:.1f})" if near else ""
    yield (f"explained {opened[0].id[:8]}: the slice that moved most is {chosen.name} ({chosen.reference_share:.0%} "
           f"of training, {chosen.production_share:.0%} of production); e.g. request {sample.request_id[:8]} "
           f"predicted {sample.prediction}{beside}: assay monitor explain {model} --alert {opened[0].id[:8]}")


def _traffic(repo: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """What production sees: the evaluation digits as they are, then training digits made brighter and noisier
    (a sensor that drifted), which the model has never seen."""
    test = repo.dataset("digits-test").to_arrow()
    train = repo.dataset("digits-train").to_arrow()
    rng = np.random.default_rng(11)
    rows = rng.choice(train.num_rows, SHIFTED, replace=False)
    x = _pixels(train)[rows]
    shifted = np.clip(x + 4 + rng.normal(0, 1.5, x.shape), 0, 16).round(3)
    return {"as trained": (_pixels(test), test.column("label").to_numpy()),
            "brighter, noisier": (shifted, train.column("label").to_numpy()[rows])}


def _pixels(table: pa.Table) -> np.ndarray:
    return np.column_stack([table.column(f"p{j}").to_numpy() for j in range(64)])


@contextlib.contextmanager
def _server(root: Path, spec: str) -> Iterator[str]:
    """``assay serve SPEC --no-auth`` in a thread of this process, on a free port of 127.0.0.1; its URL."""
    import uvicorn

    from assay.serve import create_app

    app = create_app(root, spec, auth=False, poll_seconds=0.2, flush_seconds=0.2)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        if not server.started:
            raise RuntimeError("the quickstart's server did not start")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def _post(url: str, model: str, rows: np.ndarray) -> dict[str, Any]:
    body = json.dumps([{"X": r.tolist()} for r in rows]).encode()
    request = urllib.request.Request(f"{url}/v1/models/{model}/predict", body,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:  # our own server, on 127.0.0.1
        result: dict[str, Any] = json.loads(answer.read())
    return result


def _send(url: str, model: str, x: np.ndarray) -> tuple[list[str], np.ndarray, float]:
    """Send ``x`` in requests of ``BATCH`` instances: the logged request ids, the predictions, when it began."""
    began = time.time()
    ids: list[str] = []
    predicted: list[Any] = []
    for start in range(0, len(x), BATCH):
        answer = _post(url, model, x[start:start + BATCH])
        ids += [f"{answer['request_id']}/{i}" for i in range(len(answer["predictions"]))]
        predicted += [p["label"] for p in answer["predictions"]]
    return ids, np.asarray(predicted).ravel(), began


def _accuracy(predicted: np.ndarray, y: np.ndarray) -> float:
    return float((predicted == y).mean())


def _wait_for_log(repo: Any, model: str, rows: int, timeout: float = 30.0) -> None:
    """Until the server has committed ``rows`` predictions to the log (it flushes every 0.2 s here)."""
    from assay.serve.log import dataset_name

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(KeyError):
            if repo.dataset(dataset_name(model), repo.branch).num_rows >= rows:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the server did not log {rows} predictions within {timeout:.0f} s")


def _label(repo: Any, path: Path, model: str, ids: list[str], y: np.ndarray) -> Iterator[str]:
    """Labels arrive for part of the shifted traffic (``assay predictions label``)."""
    from assay.serve.labels import label

    labels = path / "labels.csv"
    pcsv.write_csv(pa.table({"request_id": ids[:LABELLED], "label": y[:LABELLED]}), labels)
    done = label(repo, model, labels)
    yield (f"labels arrived for {done.labelled} of the {len(ids)} shifted requests ({labels}), joined by request "
           f"id: assay predictions label {model} {labels.name}")


def _ingest(repo: Any, model: str, policy: Any) -> str:
    from assay.monitor.loop import ingest_predictions

    r = ingest_predictions(repo, model, into="digits-train", policy=policy)
    gate = r.gate
    assert gate is not None
    return (f"assay ingest predictions/{model} --into digits-train: of {r.rows} logged rows, {r.labelled} labelled "
            f"went through the gate ({gate.accepted} published, {len(gate.quarantined)} quarantined), "
            f"{r.unlabelled} wait for labels")


def _retrain(repo: Any, path: Path, model: str, served: str, shifted: tuple[np.ndarray, np.ndarray],
             url: str, fit: Fit) -> Iterator[str]:
    """Retrain on the new training version, ship it as the first version was, move the alias, and watch the
    server pick it up."""
    from assay.errors import QuantizationRefused
    from assay.models import register, set_alias
    from assay.models.ship import export_version, quantize_version

    repo.tag("features-v2")
    train, test = repo.dataset("digits-train", "features-v2").to_arrow(), repo.dataset("digits-test").to_arrow()
    fitted, accuracy = fit(train, test)
    x, y = shifted[0][LABELLED:], shifted[1][LABELLED:]  # the shifted digits whose labels did not arrive
    v = register(repo, model, fitted, train="digits-train@features-v2", eval="digits-test@features-v1",
                 parent=served, derived_by="retrained with labelled production data",
                 metrics={"accuracy": accuracy, "accuracy_shifted": _accuracy(fitted.predict(x), y)})
    yield (f"retrained on digits-train@features-v2 ({train.num_rows} rows, production rows included) as {v.spec}, "
           f"parent {served}: accuracy {accuracy:.1%} on digits-test, {v.metrics['accuracy_shifted']:.0%} on the "
           f"{len(x)} shifted digits nobody labelled")
    best = export_version(repo, v.spec).version
    with contextlib.suppress(QuantizationRefused):  # over the budget: the fp32 export is served
        best = quantize_version(repo, best.spec, budget=0.5).version
    set_alias(repo, model, best.version, ALIAS)
    moved = time.monotonic()
    while (answer := _post(url, model, x[:1]))["version"] != best.version and time.monotonic() - moved < 30:
        time.sleep(0.05)
    yield (f"exported and quantised it as {best.spec}, moved {model}@{ALIAS} to it: the running server answered "
           f"with version {answer['version']} {time.monotonic() - moved:.1f} s later, no restart")
    yield f"lineage: assay -C {path} model lineage {best.spec}; where its rows came from: assay -C {path} show " \
          "features-v2"
