"""The metrics alert rules can name, and their values for one window of production rows.

Built in: ``rows`` (one value per window, feature ``*``) and ``null_share`` (per feature: the share of null or
NaN values). Drift metrics come from ``assay.monitor.drift.drift_values`` and performance metrics from
``assay.monitor.performance.performance_values``, both imported when first needed: where a part cannot be
imported here, its metric names are reported as missing, with the reason, rather than as unknown.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from assay.errors import AssayError

BUILTIN = ("rows", "null_share")
# the names the other parts of the monitor layer give (their modules' DRIFT_METRICS / PERFORMANCE_METRICS win)
DRIFT_NAMES = ("psi", "ks", "wasserstein", "chi2", "js", "embedding", "multivariate")
PERFORMANCE_NAMES = ("accuracy", "f1", "auc", "mae", "rmse", "estimated_accuracy", "estimated_accuracy_low",
                     "estimated_accuracy_high", "estimated_f1", "estimated_auc")
_HIGHER_IS_WORSE = ("mae", "rmse", "mse", "error")
NOT_FEATURES = ("request_id", "time", "version", "score", "proba", "label")


@dataclass(frozen=True)
class MetricInfo:
    name: str
    source: str  # builtin | drift | performance
    per_feature: bool
    direction: str  # the side that is bad: above or below

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "per_feature": self.per_feature,
                "direction": self.direction}


def _drift_module() -> tuple[Any, str | None]:
    try:
        drift = importlib.import_module("assay.monitor.drift")  # another part of the layer: may be missing
    except ImportError as e:
        return None, (f"comes from the drift part of the monitor layer (assay.monitor.drift), which cannot be "
                      f"imported here ({e}); install the monitor extra (`pip install 'assay[monitor]'`) or use an "
                      f"assay that has it")
    return drift, None


def _performance_module() -> tuple[Any, str | None]:
    try:
        performance = importlib.import_module("assay.monitor.performance")
    except ImportError as e:
        return None, (f"comes from the performance part of the monitor layer (assay.monitor.performance), which "
                      f"cannot be imported here ({e}); install the monitor extra (`pip install 'assay[monitor]'`) "
                      f"or use an assay that has it")
    return performance, None


def catalog() -> tuple[dict[str, MetricInfo], dict[str, str]]:
    """``(known, missing)``: the metrics rules may name, and the names whose part is missing -> why."""
    known = {"rows": MetricInfo("rows", "builtin", False, "below"),
             "null_share": MetricInfo("null_share", "builtin", True, "above")}
    missing: dict[str, str] = {}
    drift, why = _drift_module()
    names = tuple(getattr(drift, "DRIFT_METRICS", DRIFT_NAMES)) if drift else DRIFT_NAMES
    for n in names:
        if drift is None:
            missing[n] = why or ""
        else:
            known[n] = MetricInfo(n, "drift", n != "multivariate", "above")
    perf, why = _performance_module()
    names = tuple(getattr(perf, "PERFORMANCE_METRICS", PERFORMANCE_NAMES)) if perf else PERFORMANCE_NAMES
    for n in names:
        if perf is None:
            missing[n] = why or ""
        else:
            worse = "above" if any(n.endswith(h) or f"{h}_" in n for h in _HIGHER_IS_WORSE) else "below"
            known[n] = MetricInfo(n, "performance", False, worse)
    return known, missing


def window_values(repo: Any, model: str, rows: pa.Table, metrics: Iterable[str], *,
                  reference: str | None = None) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """``({metric: {feature: value}}, {source: error})`` for one window of decoded production rows.

    A window with no rows has ``rows`` 0 and no other value. A part that fails on this window (an
    ``AssayError``) leaves its metrics out and says why in the second mapping."""
    known, _ = catalog()
    wanted = {m for m in metrics if m in known}
    out: dict[str, dict[str, float]] = {}
    errors: dict[str, str] = {}
    if "rows" in wanted:
        out["rows"] = {"*": float(rows.num_rows)}
    if rows.num_rows == 0:
        return out, errors
    if "null_share" in wanted:
        out["null_share"] = null_share(rows)
    sources = {known[m].source for m in wanted}
    for source in ("drift", "performance"):
        if source not in sources:
            continue
        try:
            if source == "drift":
                module, _ = _drift_module()
                got = module.drift_values(repo, model, rows, reference=reference)
            else:
                module, _ = _performance_module()
                got = module.performance_values(repo, model, rows)
        except AssayError as e:
            errors[source] = f"{type(e).__name__}: {e}"
            continue
        out.update({m: {f: float(v) for f, v in got[m].items()} for m in got if m in wanted})
    return out, errors


def null_share(rows: pa.Table) -> dict[str, float]:
    """Per feature column (and prediction): the share of its values that are null or NaN."""
    out = {}
    for name in rows.column_names:
        if name in NOT_FEATURES:
            continue
        col = rows.column(name)
        if pa.types.is_floating(col.type):
            nulls = pc.sum(pc.is_null(col, nan_is_null=True)).as_py() or 0
        else:
            nulls = col.null_count
        out[name] = nulls / rows.num_rows
    return out
