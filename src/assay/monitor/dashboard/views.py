"""What the dashboard shows, as JSON-ready dicts: the repository (datasets, commits), the registry (models,
versions, lineage both ways), serving metrics per window of the prediction log, and the monitor parts (drift,
performance, alerts, explain), each read through its public function and imported lazily: a part that is not
installed gives ``{"available": False, "reason": "..."}`` instead of an error, so the page shows what it can.

Every function takes an open repository and only reads.
"""

from __future__ import annotations

import importlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay.errors import InputError, RefNotFound
from assay.monitor import window as win

MAX_WINDOWS = 2000  # windows a time series holds at most (the newest ones)
SERIES_WINDOWS = 100  # windows of drift and performance by default (each costs a computation; serving: all)
NICE_SECONDS = (1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400, 604800)
AUTO_WINDOWS = 100  # the automatic window gives at most this many windows
PERCENTILES = (50, 95, 99)
MAX_CLASSES = 12  # predicted classes shown by name; the rest are summed as "other"


def _part(module: str, name: str) -> tuple[Callable[..., Any] | None, str]:
    """``assay.monitor.MODULE.NAME`` if it is installed, else None and why not."""
    try:
        mod = importlib.import_module(f"assay.monitor.{module}")
    except ImportError as e:
        return None, f"not available: assay.monitor.{module} is not part of this build ({e})"
    fn = getattr(mod, name, None)
    if fn is None:
        return None, f"not available: assay.monitor.{module} has no {name}()"
    return fn, ""


def _unavailable(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason}


def _jsonable(value: Any) -> Any:
    """Plain JSON: NaN and infinities as null, numpy scalars as numbers, bytes as hex."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.hex()
    return value


def _record(obj: Any) -> dict[str, Any]:
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    return dict(obj)


# -- the repository ---------------------------------------------------------------------------------------------


def overview(repo: Any) -> dict[str, Any]:
    """The branch, its commit, and what the repository holds."""
    from assay.models import list_models

    head = repo.head()
    return {"root": str(repo.root), "branch": repo.branch, "head": head,
            "datasets": len(repo.datasets("HEAD")) if head else 0,
            "models": len(list_models(repo)) if head else 0}


def datasets(repo: Any) -> list[dict[str, Any]]:
    """The datasets at HEAD: name, rows, columns, key."""
    if repo.head() is None:
        return []
    out = []
    for name, oid in sorted(repo.datasets("HEAD").items()):
        m = repo.read_manifest(oid)
        out.append({"name": name, "rows": m.rows, "columns": len(m.schema.names), "key": list(m.key or ()),
                    "kind": m.kind, "manifest": oid})
    return out


def _commit(oid: str, c: Any) -> dict[str, Any]:
    return {"id": oid, "message": c.message, "author": c.author, "time": c.time, "parents": list(c.parents),
            "datasets": sorted(c.datasets), "models": sorted(c.models)}


def commits(repo: Any, *, dataset: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Commits reachable from HEAD, newest first (only those that changed ``dataset`` when given)."""
    return [_commit(oid, c) for oid, c in repo.log(limit=limit, dataset=dataset)]


def dataset(repo: Any, name: str) -> dict[str, Any]:
    """One dataset at HEAD: its schema, the commits that changed it, and the model versions trained on it."""
    from assay.models import find_trained_on

    version = repo.dataset(name, "HEAD")
    m = version.manifest
    trained = [t.to_dict() for t in find_trained_on(repo, f"{name}@HEAD")]
    return {"name": name, "rows": m.rows, "key": list(m.key or ()), "kind": m.kind,
            "schema": [{"name": f.name, "type": str(f.type)} for f in m.schema],
            "commits": commits(repo, dataset=name), "trained_on": trained}


# -- the registry -----------------------------------------------------------------------------------------------


def models(repo: Any) -> list[dict[str, Any]]:
    from assay.models import list_models

    if repo.head() is None:
        return []
    return [_jsonable({**s.to_dict(), "logged": _has_log(repo, s.name)}) for s in list_models(repo)]


def model(repo: Any, name: str, *, version: str | None = None) -> dict[str, Any]:
    """A model's versions and, for one (the newest by default), its lineage both ways: the data and code it came
    from, the versions it derives from and those derived from it."""
    from assay.models import describe, history, model_lineage

    spec = name if version is None else f"{name}@{version}"
    view = describe(repo, spec)
    versions = [{"version": v.version, "spec": v.spec, "created": v.created, "framework": v.framework,
                 "metrics": v.metrics, "size": v.size,
                 "train": v.lineage.train.spec if v.lineage.train else None,
                 "derived_by": v.lineage.derived_by} for v in history(repo, name)]
    aliases = {a: view.version.version for a in view.aliases}
    return _jsonable({"name": name, "selected": view.version.version, "aliases": aliases, "versions": versions,
                      "lineage": model_lineage(repo, spec).to_dict(), "logged": _has_log(repo, name)})


def _has_log(repo: Any, name: str) -> bool:
    from assay.serve.log import dataset_name

    return dataset_name(name) in repo.datasets("HEAD")


# -- windows of the prediction log --------------------------------------------------------------------------------


def auto_window(times: np.ndarray) -> win.Window:
    """The smallest round duration that cuts the log into at most AUTO_WINDOWS windows."""
    span = float(times[-1] - times[0]) if len(times) else 0.0
    for s in NICE_SECONDS:
        if span / s < AUTO_WINDOWS:
            return win.Window(seconds=float(s))
    return win.Window(seconds=float(NICE_SECONDS[-1]))


def _log(repo: Any, name: str, columns: list[str]) -> pa.Table:
    try:
        return win.log_table(repo, name, columns=columns)
    except RefNotFound:
        raise
    except KeyError as e:
        raise InputError(f"the prediction log of {name!r} lacks a column: {e}") from e


def _windows(table: pa.Table, window: str | None) -> tuple[win.Window, list[tuple[int, float, float, pa.Table]]]:
    """The window and the newest MAX_WINDOWS windows of ``table``, each with the row it starts at."""
    w = win.Window.parse(window) if window and window != "auto" else auto_window(table.column("time").to_numpy())
    parts, at = [], 0
    for start, end, part in win.split(table, w):  # consecutive slices: each starts where the last ended
        parts.append((at, start, end, part))
        at += part.num_rows
    return w, parts[-MAX_WINDOWS:]


def serving(repo: Any, name: str, *, window: str | None = None) -> dict[str, Any]:
    """Per window of the log: rows, latency percentiles (``latency_s``), and the share of each predicted class."""
    from assay.models import get

    table = _log(repo, name, ["request_id", "time", "version", "latency_s", "outputs"])
    w, parts = _windows(table, window)
    classes, codes = _class_codes(table, get(repo, name))
    latency = table.column("latency_s").to_numpy(zero_copy_only=False).astype(np.float64) * 1000
    bounds = np.array([[offset, offset + part.num_rows] for offset, _, _, part in parts], np.int64).reshape(-1, 2)
    out: dict[str, Any] = {"model": name, "window": str(w), "start": [p[1] for p in parts],
                           "end": [p[2] for p in parts], "rows": [p[3].num_rows for p in parts]}
    for q, values in zip(PERCENTILES, _percentiles(latency, bounds, PERCENTILES), strict=True):
        out[f"p{q}"] = values
    counts = [np.bincount(codes[a:b], minlength=len(classes)) for a, b in bounds]
    out["classes"], out["shares"] = _shares(classes, counts)
    out["total_rows"] = table.num_rows
    return _jsonable(out)


def _percentiles(values: np.ndarray, bounds: np.ndarray, qs: tuple[int, ...]) -> list[list[float | None]]:
    """Percentiles ``qs`` of ``values[a:b]`` for each row ``(a, b)`` of ``bounds`` (consecutive segments), NaN
    left out, linear as numpy's default; None for a segment with no value. One sort for all segments."""
    segment = np.repeat(np.arange(len(bounds)), bounds[:, 1] - bounds[:, 0])
    x = values[bounds[0, 0]:bounds[-1, 1]] if len(bounds) else values[:0]
    keep = ~np.isnan(x)
    x, segment = x[keep], segment[keep]
    order = np.lexsort((x, segment))
    x = x[order]
    n = np.bincount(segment, minlength=len(bounds))
    first = np.concatenate([[0], np.cumsum(n)[:-1]]) if len(n) else n
    out = []
    for q in qs:
        pos = (n - 1).clip(min=0) * (q / 100)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, (n - 1).clip(min=0))
        frac = pos - lo
        at_lo = x[np.minimum(first + lo, max(len(x) - 1, 0))] if len(x) else np.zeros(len(n))
        at_hi = x[np.minimum(first + hi, max(len(x) - 1, 0))] if len(x) else np.zeros(len(n))
        got = at_lo + (at_hi - at_lo) * frac
        out.append([float(v) if k else None for v, k in zip(got, n, strict=True)])
    return out


def _class_codes(table: pa.Table, mv: Any) -> tuple[list[str], np.ndarray]:
    """The predicted classes (as text) and, per log row, the index of its predicted class; "other" beyond the
    MAX_CLASSES most frequent."""
    prediction, _, _ = win.decode_outputs(table, mv)
    encoded = pc.cast(prediction, pa.string()).dictionary_encode()
    names = [str(v) for v in encoded.dictionary.to_pylist()]
    codes = encoded.indices.fill_null(len(names)).to_numpy(zero_copy_only=False).astype(np.int64)
    if (codes == len(names)).any():
        names.append("none")
    freq = np.bincount(codes, minlength=len(names))
    top = sorted(np.argsort(-freq, kind="stable")[:MAX_CLASSES].tolist(), key=lambda i: _class_order(names[i]))
    keep = [names[i] for i in top]
    remap = np.full(len(names), len(keep), np.int64)
    remap[top] = np.arange(len(keep))
    if len(names) > len(keep):
        keep.append("other")
    return keep, remap[codes]


def _shares(classes: list[str], counts: list[np.ndarray]) -> tuple[list[str], dict[str, list[float]]]:
    if not counts:
        return classes, {c: [] for c in classes}
    m = np.stack(counts).astype(np.float64)
    m /= np.maximum(m.sum(axis=1, keepdims=True), 1)
    return classes, {c: m[:, i].tolist() for i, c in enumerate(classes)}


def _class_order(k: str) -> tuple[int, float | str]:
    try:
        return 0, float(k)
    except ValueError:
        return 1, k


class _Cache:
    """Values of closed windows, computed once: a window is named by its first and last request ids and its rows
    (the log only grows and is sorted by time, so those rows never change), plus what else the value depends on
    (the model's index, the labels, the reference). The newest ``size`` entries are kept."""

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self.values: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        with self.lock:
            if key in self.values:
                self.values.move_to_end(key)
                return self.values[key]
        value = compute()
        with self.lock:
            self.values[key] = value
            while len(self.values) > self.size:
                self.values.popitem(last=False)
        return value


_CACHE = _Cache()


def _series(repo: Any, name: str, window: str | None, part: str, fn: Callable[..., Any], *, labels: bool,
            last: int, **kwargs: Any) -> dict[str, Any]:
    """``fn(repo, name, rows, **kwargs)`` for each of the newest ``last`` windows (the same windows as the
    serving metrics): {metric: {feature: [value per window]}}. The newest window is computed each time, the
    others once (``_Cache``)."""
    from assay.models import get
    from assay.serve.labels import labels_dataset

    table = _log(repo, name, win.LOG_COLUMNS)
    w, parts = _windows(table, window)
    parts = parts[-last:]
    mv = get(repo, name)
    head = repo.read_commit(repo.head())
    depends = (str(repo.root), part, head.models.get(name), tuple(sorted(kwargs.items())),
               head.datasets.get(labels_dataset(name)) if labels else None)
    values: dict[str, dict[str, list[float | None]]] = {}
    for i, (_, _, _, rows) in enumerate(parts):
        def compute(rows: pa.Table = rows) -> dict[str, dict[str, float]]:
            decoded = win.decode(rows, mv)
            if labels:
                decoded = win.join_labels(repo, name, decoded)
            return fn(repo, name, decoded, **kwargs) if decoded.num_rows else {}

        ids = rows.column("request_id")
        key = (*depends, ids[0].as_py(), ids[-1].as_py(), rows.num_rows)
        got = compute() if i == len(parts) - 1 else _CACHE.get(key, compute)
        for metric, by_feature in got.items():
            for feature, value in by_feature.items():
                values.setdefault(metric, {}).setdefault(feature, [None] * i).append(value)
        for by_feature in values.values():
            for series in by_feature.values():
                series.extend([None] * (i + 1 - len(series)))
    return _jsonable({"available": True, "model": name, "window": str(w), "start": [p[1] for p in parts],
                      "end": [p[2] for p in parts], "metrics": values})


def _check_last(last: int) -> None:
    if not 1 <= last <= MAX_WINDOWS:
        raise InputError(f"windows={last}: give a number of windows from 1 to {MAX_WINDOWS}")


def drift(repo: Any, name: str, *, window: str | None = None, reference: str | None = None,
          last: int = SERIES_WINDOWS) -> dict[str, Any]:
    """Drift in each of the newest ``last`` windows against the training version, or ``reference``
    (``assay.monitor.drift.drift_values``)."""
    _check_last(last)
    fn, why = _part("drift", "drift_values")
    if fn is None:
        return _unavailable(why)
    return _series(repo, name, window, "drift", fn, labels=False, last=last, reference=reference)


def performance(repo: Any, name: str, *, window: str | None = None, last: int = SERIES_WINDOWS) -> dict[str, Any]:
    """Realised and estimated performance in each of the newest ``last`` windows
    (``assay.monitor.performance.performance_values``)."""
    _check_last(last)
    fn, why = _part("performance", "performance_values")
    if fn is None:
        return _unavailable(why)
    return _series(repo, name, window, "performance", fn, labels=True, last=last)


def alerts(repo: Any, name: str) -> dict[str, Any]:
    """The model's stored alerts (``assay.monitor.alerts.list_alerts``), newest first."""
    fn, why = _part("alerts", "list_alerts")
    if fn is None:
        return _unavailable(why)
    found = [_record(a) for a in fn(repo, name)]
    found.sort(key=lambda a: a.get("fired_at") or 0, reverse=True)
    return _jsonable({"available": True, "model": name, "alerts": found})


def alert(repo: Any, name: str, alert_id: str) -> dict[str, Any]:
    fn, why = _part("alerts", "get_alert")
    if fn is None:
        return _unavailable(why)
    return _jsonable({"available": True, "alert": _record(fn(repo, name, alert_id))})


def explain(repo: Any, name: str, *, alert: str | None = None, feature: str | None = None,
            metric: str | None = None, slice_rank: int = 1) -> dict[str, Any]:
    """The drill-down: the slices behind an alert (or a feature, or a metric) and the samples of one slice
    beside their nearest training samples (``assay.monitor.explain.explain``)."""
    fn, why = _part("explain", "explain")
    if fn is None:
        return _unavailable(why)
    if slice_rank < 1:
        raise InputError(f"slice {slice_rank} does not exist: slices are ranked from 1")
    got = fn(repo, name, alert=alert, feature=feature, metric=metric, slice_rank=slice_rank)
    thumbnails, _ = _part("explain", "with_thumbnails")
    return _jsonable({"available": True, **(thumbnails(repo, got) if thumbnails is not None else _record(got))})


def check_window(text: str | None) -> str | None:
    """``window``: ``auto`` or anything ``Window.parse`` takes (errors say what is accepted)."""
    if text and text != "auto":
        win.Window.parse(text)
    return text

