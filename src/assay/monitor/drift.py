"""Drift: a window of production rows against the model's training version (or any dataset version).

Per feature and for the predictions, from the two profiles' sketches (``assay.monitor.profile``):

- numbers: ``psi`` (population stability index over the reference's deciles), ``ks`` (Kolmogorov-Smirnov
  statistic, the largest gap between the two CDFs) and ``wasserstein`` (earth mover's distance over the
  reference's standard deviation: a mean shift of 0.3 standard deviations gives 0.3);
- categories: ``chi2`` (Pearson's chi-squared divergence, sum of (q - p)^2 / p over the values: the chi-squared
  statistic per window row) and ``js`` (Jensen-Shannon distance, base 2, in [0, 1]);
- text and images: ``embedding`` (the distance between the mean embeddings, over the reference's spread; an
  image column, an array of numbers per sample, is embedded by the reference's principal components);
- ``multivariate`` (feature ``*``): the relative change of the mean reconstruction error of the reference's
  PCA (NannyML's data reconstruction drift): what changed in how the features go together.

A feature drifts when one of its metrics is over its threshold AND the change is significant for the rows
compared (a Kolmogorov-Smirnov test for numbers, with the sketches' rank error taken off its statistic; a
chi-squared test for categories; a z test of the mean error for the multivariate signal; a mean embedding
shift four times its noise for text; a chi-squared test of the shift of each principal component for images),
at ``alpha`` shared by all the features tested (Bonferroni). The thresholds alone decide on large windows;
significance keeps small windows from alarming on noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from assay.errors import InputError
from assay.monitor.profile import ColumnProfile, Profile, reference_profile, window_profile

DRIFT_METRICS = ("psi", "ks", "wasserstein", "chi2", "js", "embedding", "multivariate")
DEFAULT_THRESHOLDS: dict[str, float] = {"psi": 0.2, "ks": 0.1, "wasserstein": 0.1, "chi2": 0.1, "js": 0.1,
                                        "embedding": 0.1, "multivariate": 0.05, "alpha": 0.01}
_GRID = 128
_FLOOR = 1e-4  # shares below this count as this in PSI (as Evidently does)
_TEXT_SIGNIFICANT = 4.0


@dataclass(frozen=True)
class Thresholds:
    """The threshold of each metric (``DEFAULT_THRESHOLDS``), ``alpha``, and per-feature overrides."""

    metrics: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    features: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def load(cls, source: Thresholds | Mapping[str, Any] | str | Path | None) -> Thresholds:
        """From a mapping (``{psi: 0.25, features: {age: {wasserstein: 0.2}}}``) or a YAML file of one."""
        if source is None:
            return cls()
        if isinstance(source, Thresholds):
            return source
        if isinstance(source, (str, Path)):
            import yaml

            try:
                text = Path(source).read_text()
            except OSError as e:
                raise InputError(f"cannot read the thresholds file {str(source)!r}: {e.strerror}") from e
            try:
                source = yaml.safe_load(text) or {}
            except yaml.YAMLError as e:
                raise InputError(f"thresholds file {str(source)!r} is not YAML: {e}") from e
            if not isinstance(source, Mapping):
                raise InputError("a thresholds file is a mapping of metric to threshold (psi: 0.2)")
        metrics = dict(DEFAULT_THRESHOLDS)
        metrics.update(_numbers({k: v for k, v in source.items() if k != "features"}, "thresholds"))
        features = source.get("features") or {}
        if not isinstance(features, Mapping):
            raise InputError("thresholds: 'features' maps a feature to its own thresholds ({age: {psi: 0.3}})")
        return cls(metrics, {str(f): _numbers(m, f"thresholds of feature {f!r}") for f, m in features.items()})

    def of(self, feature: str, metric: str) -> float:
        return self.features.get(feature, {}).get(metric, self.metrics[metric])

    def to_dict(self) -> dict[str, Any]:
        return {**self.metrics, **({"features": self.features} if self.features else {})}


def _numbers(d: Any, what: str) -> dict[str, float]:
    if not isinstance(d, Mapping):
        raise InputError(f"{what}: a mapping of metric to threshold (psi: 0.2)")
    out = {}
    for k, v in d.items():
        if k not in DEFAULT_THRESHOLDS:
            raise InputError(f"{what}: unknown metric {k!r}; the metrics are {', '.join(DEFAULT_THRESHOLDS)}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
            raise InputError(f"{what}: {k} must be a number >= 0, not {v!r}")
        out[str(k)] = float(v)
    return out


@dataclass(frozen=True)
class FeatureDrift:
    """One feature (``prediction``, ``label``, or ``*`` for the multivariate signal) of one window."""

    feature: str
    kind: str  # numeric, categorical, text or multivariate
    values: dict[str, float]
    p_value: float | None
    drifted: bool
    over: tuple[str, ...]  # the metrics over their thresholds
    rows: int
    nulls: int
    reference_rows: int
    reference_nulls: int
    note: str = ""
    histogram: dict[str, Any] | None = None  # {"edges" or "categories", "current", "reference"}: shares

    def to_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "kind": self.kind, "values": self.values, "p_value": self.p_value,
                "drifted": self.drifted, "over": list(self.over), "rows": self.rows, "nulls": self.nulls,
                "reference_rows": self.reference_rows, "reference_nulls": self.reference_nulls, "note": self.note,
                "histogram": self.histogram}


@dataclass(frozen=True)
class DriftReport:
    """A window against a reference: each feature's drift, and which drifted."""

    model: str
    reference: str
    window: str
    rows: int
    start: float | None
    end: float | None
    features: tuple[FeatureDrift, ...]
    thresholds: Thresholds

    @property
    def drifted(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    def feature(self, name: str) -> FeatureDrift:
        for f in self.features:
            if f.feature == name:
                return f
        raise KeyError(name)

    def values(self) -> dict[str, dict[str, float]]:
        """``{metric: {feature: value}}``, as ``drift_values`` gives."""
        out: dict[str, dict[str, float]] = {}
        for f in self.features:
            for metric, value in f.values.items():
                out.setdefault(metric, {})[f.feature] = value
        return {m: out[m] for m in DRIFT_METRICS if m in out}

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "reference": self.reference, "window": self.window, "rows": self.rows,
                "start": self.start, "end": self.end, "drifted": self.drifted,
                "thresholds": self.thresholds.to_dict(), "features": [f.to_dict() for f in self.features]}


# -- the comparisons ---------------------------------------------------------------------------------------


def compare(reference: Profile, window: Profile, thresholds: Thresholds | Mapping[str, Any] | None = None,
            ) -> list[FeatureDrift]:
    """Each column both profiles have, and the multivariate signal, of ``window`` against ``reference``."""
    th = Thresholds.load(thresholds)
    names = [n for n in reference.columns if n in window.columns
             and not (n == "label" and window.columns[n].values == 0)]  # labels not arrived yet: not drift
    tested = len(names) + (1 if reference.pca is not None and window.errors[0] else 0)
    alpha = th.metrics["alpha"] / max(tested, 1)
    out = [_column(n, reference.columns[n], window.columns[n], th, alpha) for n in names]
    if reference.pca is not None and window.errors[0]:
        out.append(_multivariate(reference, window, th, alpha))
    return out


def _column(name: str, ref: ColumnProfile, win: ColumnProfile, th: Thresholds, alpha: float) -> FeatureDrift:
    base: dict[str, Any] = {"feature": name, "kind": ref.kind, "rows": win.count, "nulls": win.nulls,
            "reference_rows": ref.count, "reference_nulls": ref.nulls}
    if win.values == 0 or ref.values == 0:
        drifted = win.values == 0 and ref.values > 0
        note = (f"all {win.count} value(s) null in the window (the reference has "
                f"{ref.nulls / max(ref.count, 1):.1%} null)") if win.values == 0 else \
            "no value in the reference to compare with"
        return FeatureDrift(**base, values={}, p_value=None, drifted=drifted, over=(), note=note)
    p: float | None
    if ref.kind == "numeric":
        values, p, hist = _numeric(ref, win)
    elif ref.kind == "categorical":
        values, p, hist = _categorical(ref, win)
    elif ref.kind == "image":
        values, p = _image(ref, win)
        hist = None
    else:
        values, p, hist = _text(ref, win), None, None
    over = tuple(m for m, v in values.items() if v > th.of(name, m))
    significant = (p < alpha) if p is not None else \
        values.get("embedding", 0.0) ** 2 / (1 / max(_n(win), 1) + 1 / max(_n(ref), 1)) > _TEXT_SIGNIFICANT ** 2
    return FeatureDrift(**base, values=values, p_value=p, drifted=bool(over) and significant, over=over,
                        histogram=hist)


def _n(c: ColumnProfile) -> int:
    return int(c.embedding["n"]) if c.embedding else 0


def _numeric(ref: ColumnProfile, win: ColumnProfile) -> tuple[dict[str, float], float, dict[str, Any]]:
    rs, ws = ref.sketch, win.sketch
    grid = (np.arange(_GRID) + 0.5) / _GRID
    qr, qw = np.asarray(rs.get_quantiles(grid)), np.asarray(ws.get_quantiles(grid))
    spread = ref.std or abs(ref.mean) or 1.0
    wasserstein = float(np.mean(np.abs(qr - qw)) / spread)
    points = np.unique(np.concatenate([qr, qw, [rs.get_min_value(), ws.get_min_value()]])).tolist()
    ks = 0.0
    for inclusive in (True, False):
        fr, fw = np.asarray(rs.get_cdf(points, inclusive)[:-1]), np.asarray(ws.get_cdf(points, inclusive)[:-1])
        ks = max(ks, float(np.abs(fr - fw).max()))
    edges = np.unique(np.asarray(rs.get_quantiles(np.arange(1, 10) / 10, True))).tolist()
    pr, pw = (np.diff(np.concatenate([[0.0], s.get_cdf(edges, True)])) for s in (rs, ws))
    pr, pw = np.maximum(pr, _FLOOR), np.maximum(pw, _FLOOR)
    psi = float(np.sum((pw - pr) * np.log(pw / pr)))
    n, m = ref.values, win.values
    gap = max(0.0, ks - ref.rank_error() - win.rank_error())
    from scipy.special import kolmogorov

    p = float(kolmogorov(gap * math.sqrt(n * m / (n + m))))
    hist = {"edges": [rs.get_min_value(), *edges, rs.get_max_value()], "current": pw.tolist(),
            "reference": pr.tolist()}
    return {"psi": psi, "ks": ks, "wasserstein": wasserstein}, p, hist


def _categorical(ref: ColumnProfile, win: ColumnProfile) -> tuple[dict[str, float], float, dict[str, Any]]:
    rc, wc = ref.counts(), win.counts()
    cats = sorted(set(rc) | set(wc), key=lambda c: (-rc.get(c, 0.0), c))
    a = np.array([rc.get(c, 0.0) for c in cats])
    b = np.array([wc.get(c, 0.0) for c in cats])
    p = (a + 0.5) / (a.sum() + 0.5 * len(cats))
    q = b / b.sum()
    chi2_div = float(np.sum((q - p) ** 2 / p))
    from scipy.special import chdtrc  # scipy.special, not scipy.stats: a tenth of its import time and memory

    js = _jensen_shannon(a / a.sum(), q)
    table = np.stack([a, b])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    keep = expected.min(axis=0) > 0
    stat = float(((table[:, keep] - expected[:, keep]) ** 2 / expected[:, keep]).sum())
    pvalue = float(chdtrc(max(int(keep.sum()) - 1, 1), stat)) if keep.sum() > 1 else 1.0
    hist = {"categories": [c or "(other)" for c in cats][:30], "current": q.tolist()[:30],
            "reference": (a / a.sum()).tolist()[:30]}
    return {"chi2": chi2_div, "js": js}, pvalue, hist


def _jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """The Jensen-Shannon distance (base 2: in [0, 1]) between two distributions over the same values."""
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return math.sqrt(max((kl(p) + kl(q)) / 2, 0.0))


def _image(ref: ColumnProfile, win: ColumnProfile) -> tuple[dict[str, float], float | None]:
    """The distance between the mean embeddings over the reference's spread, as for text; and the p-value of
    the shift of the means, each component against its reference variance (the components of a PCA are
    uncorrelated, so the sum of their squared z scores is chi-squared with as many degrees of freedom)."""
    from scipy import stats

    assert ref.embedding is not None and win.embedding is not None
    nr, nw = _n(ref), _n(win)
    mr = np.asarray(ref.embedding["sum"]) / nr
    mw = np.asarray(win.embedding["sum"]) / nw
    var = np.maximum(np.asarray(ref.embedding["each"]) / nr - mr * mr, 1e-12)
    gap = mw - mr
    distance = float(np.linalg.norm(gap) / math.sqrt(float(var.sum())))
    statistic = float((gap * gap / (var * (1 / nw + 1 / nr))).sum())
    return {"embedding": distance}, float(stats.chi2.sf(statistic, len(var)))


def _text(ref: ColumnProfile, win: ColumnProfile) -> dict[str, float]:
    if not (_n(ref) and _n(win)):
        return {}
    assert ref.embedding is not None and win.embedding is not None
    mr = np.asarray(ref.embedding["sum"]) / _n(ref)
    mw = np.asarray(win.embedding["sum"]) / _n(win)
    spread = math.sqrt(max(ref.embedding["squares"] / _n(ref) - float(mr @ mr), 1e-12))
    return {"embedding": float(np.linalg.norm(mw - mr) / spread)}


def _multivariate(reference: Profile, window: Profile, th: Thresholds, alpha: float) -> FeatureDrift:
    pca = reference.pca
    assert pca is not None
    n, total, _ = window.errors
    mean = total / n
    value = (mean - pca.error_mean) / pca.error_mean if pca.error_mean > 0 else 0.0
    noise = pca.error_std * math.sqrt(1 / n + 1 / pca.rows) or 1e-12
    from scipy.special import ndtr

    p = float(ndtr(-(mean - pca.error_mean) / noise))
    over = ("multivariate",) if value > th.of("*", "multivariate") else ()
    return FeatureDrift("*", "multivariate", {"multivariate": float(value)}, p, bool(over) and p < alpha, over,
                        n, 0, pca.rows, 0, note=f"mean PCA reconstruction error {mean:.4g} (reference "
                                                 f"{pca.error_mean:.4g}, {len(pca.components)} of "
                                                 f"{len(pca.columns)} components)")


# -- on the repository -------------------------------------------------------------------------------------


def _rows(repo: Any, model: str, rows: pa.Table | None, window: Any, since: Any) -> tuple[pa.Table, str]:
    from assay.monitor.window import Window, production

    if rows is not None:
        return rows, f"{rows.num_rows} rows given"
    w = Window.parse(window) if window is not None else None
    got = production(repo, model, window=w, since=since)
    shown = f"the last {w}" if w is not None else "the whole log"
    return got, shown + (f" since {since}" if since is not None else "")


def drift(repo: Any, model: str, *, window: Any = None, since: Any = None, reference: str | None = None,
          thresholds: Thresholds | Mapping[str, Any] | str | Path | None = None, rows: pa.Table | None = None,
          save: bool = True) -> DriftReport:
    """Drift of ``model``'s production rows (the last ``window`` of its log, since ``since``; or ``rows``,
    decoded as ``window.production`` gives them) against its training version or ``reference``."""
    th = Thresholds.load(thresholds)
    table, shown = _rows(repo, model, rows, window, since)
    if table.num_rows == 0:
        raise InputError(f"no production rows of {model} in {shown}: widen --window or --since, or serve the "
                         "model until it has logged requests")
    ref = reference_profile(repo, model, reference=reference, save=save)
    win = window_profile(ref, table)
    times = table.column("time") if "time" in table.column_names else None
    start = float(np.min(times.to_numpy())) if times is not None else None
    end = float(np.max(times.to_numpy())) if times is not None else None
    return DriftReport(ref.meta.get("model", model), ref.meta.get("reference", reference or "train"), shown,
                       table.num_rows, start, end, tuple(compare(ref, win, th)), th)


def drift_values(repo: Any, model: str, rows: pa.Table, *, reference: str | None = None,
                 save: bool = True) -> dict[str, dict[str, float]]:
    """``{metric: {feature: value}}`` for one window of decoded production rows (``DRIFT_METRICS``;
    ``prediction`` among the features, ``*`` for the multivariate signal)."""
    return drift(repo, model, rows=rows, reference=reference, save=save).values()
