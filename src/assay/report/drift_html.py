"""A self-contained HTML report of drift (``assay monitor drift NAME --html FILE``): no script, no network.

One row per feature (and the predictions, and ``*`` for the multivariate signal) with its metrics, the
metrics over their thresholds, the significance and the verdict, drifted features first; then a chart of
each drifted feature's distribution in the window against the reference.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from assay.report.html import CSS, CURRENT, REFERENCE, _chart

if TYPE_CHECKING:
    from assay.monitor.drift import DriftReport, FeatureDrift


def drift_report_html(report: DriftReport, title: str | None = None, *, charts: int = 24) -> str:
    """The report as one HTML document; charts of the drifted features first (at most ``charts``)."""
    name = title or f"assay monitor drift: {report.model}"
    order = sorted(report.features, key=lambda f: (not f.drifted, f.feature))
    drifted = report.drifted
    verdict = (f'<span class="fail">{len(drifted)} drifted: {html.escape(", ".join(drifted[:20]))}</span>'
               if drifted else '<span class="pass">no drift</span>')
    rows = "".join(_row(f) for f in order)
    shown = [f for f in order if f.histogram][:charts]
    figures = "".join(_chart(f.feature, f.histogram or {}, _summary(f)) for f in shown)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(name)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(name)}</h1>"
            f"<div class=sub>{report.rows:,} production rows ({html.escape(report.window)}) against "
            f"{html.escape(report.reference)}</div><div class=verdict>{verdict}</div>"
            "<table><tr><th></th><th>feature</th><th>kind</th><th>metrics</th><th>over threshold</th>"
            f"<th>p-value</th><th>rows (nulls)</th></tr>{rows}</table>"
            f'<div class=legend><span style="background:{CURRENT}"></span>window'
            f'<span style="background:{REFERENCE}"></span>reference</div>'
            f"<div class=charts>{figures}</div></body></html>")


def _row(f: FeatureDrift) -> str:
    mark = '<span class="fail">DRIFT</span>' if f.drifted else '<span class="pass">ok</span>'
    metrics = ", ".join(f"{m} {v:.3f}" for m, v in f.values.items()) or html.escape(f.note)
    p = "" if f.p_value is None else f"{f.p_value:.2g}"
    return (f"<tr><td>{mark}</td><td>{html.escape(f.feature)}</td><td>{f.kind}</td><td>{metrics}</td>"
            f"<td>{html.escape(', '.join(f.over))}</td><td>{p}</td><td>{f.rows:,} ({f.nulls:,})</td></tr>")


def _summary(f: FeatureDrift) -> str:
    return ", ".join(f"{m} {v:.3f}" for m, v in f.values.items()) + (" (drifted)" if f.drifted else "")
