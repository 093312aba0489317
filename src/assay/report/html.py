"""A self-contained HTML report of a check: no script, no network, charts as inline SVG.

Every expectation is a row with its verdict, observed value and failing samples; every distribution
expectation gets a chart of the two distributions it compares (current against reference), and every other
column profiled by the check (``run_suite(..., profile=True)``) a chart of its values.
"""

from __future__ import annotations

import html
import json
from typing import Any

from assay.checks import CheckResult, ExpectationResult

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1b1f24;background:#fff}
h1{font-size:20px;margin:0 0 4px} .sub{color:#57606a;margin-bottom:16px}
table{border-collapse:collapse;width:100%} th,td{padding:6px 8px;border-bottom:1px solid #d0d7de;
text-align:left;vertical-align:top} th{background:#f6f8fa}
.pass{color:#1a7f37;font-weight:600} .fail{color:#cf222e;font-weight:600} .warn{color:#9a6700;font-weight:600}
.verdict{font-size:16px;margin:12px 0} code{font-size:12px;color:#57606a}
.charts{display:flex;flex-wrap:wrap;gap:16px;margin-top:16px} figure{margin:0;border:1px solid #d0d7de;
padding:8px;border-radius:6px} figcaption{font-size:12px;color:#57606a}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
"""
CURRENT, REFERENCE = "#0969da", "#bf8700"


def check_report_html(result: CheckResult, title: str | None = None) -> str:
    """The report as one HTML document."""
    name = title or f"assay check: {result.dataset}"
    verdict = ('<span class="pass">passed</span>' if result.ok
               else f'<span class="fail">{len(result.failures)} error-level failure(s)</span>')
    rows = "".join(_row(r) for r in result.results)
    drift = [r for r in result.results if _histogram(r)]
    charted = {r.expectation.args.get("column") for r in drift}
    charts = "".join(_chart(r.expectation.label, _histogram(r) or {}, _stats(r)) for r in drift)
    charts += "".join(_chart(column, h, f"{sum(h['current']):,} values" + (" (a sample)" if sum(h["current"])
                                                                         < result.rows else ""))
                      for column, h in result.profiles.items() if column not in charted)
    where = f" at {html.escape(result.commit[:12])}" if result.commit else " (working version)"
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(name)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(name)}</h1>"
            f'<div class=sub>dataset {html.escape(result.dataset)}{where}, {result.rows:,} rows</div>'
            f'<div class=verdict>{verdict}, {len(result.warnings)} warning(s)</div>'
            f"<table><tr><th></th><th>expectation</th><th>severity</th><th>observed</th><th>failing</th>"
            f"<th>examples</th></tr>{rows}</table>"
            f'<div class=legend><span style="background:{CURRENT}"></span>current'
            + (f'<span style="background:{REFERENCE}"></span>reference' if drift else "") + "</div>"
            f"<div class=charts>{charts}</div></body></html>")


def _row(r: ExpectationResult) -> str:
    mark = ('<span class="pass">pass</span>' if r.success else
            '<span class="fail">FAIL</span>' if r.severity == "error" else '<span class="warn">warn</span>')
    observed = r.message or _observed(r.observed)
    examples = ", ".join(", ".join(f"{k}={v!r}" for k, v in key.items()) for key in r.sample_keys[:5]) or \
        ", ".join(i[:12] for i in r.sample_ids[:5])
    return (f"<tr><td>{mark}</td><td>{html.escape(r.expectation.label)}<br><code>"
            f"{html.escape(json.dumps(r.expectation.to_dict(), default=str))}</code></td>"
            f"<td>{r.severity}</td><td>{html.escape(observed)}</td>"
            f"<td>{'' if r.failing is None else r.failing}</td><td>{html.escape(examples)}</td></tr>")


def _observed(value: Any) -> str:
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k != "histogram"}
    text = json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:197] + "..."


def _histogram(r: ExpectationResult) -> dict[str, Any] | None:
    return r.observed.get("histogram") if isinstance(r.observed, dict) else None


def _stats(r: ExpectationResult) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in r.observed.items() if isinstance(v, float))


def _chart(label: str, h: dict[str, Any], stats: str, width: int = 420, height: int = 180) -> str:
    """Bars as shares of each side's values, in inline SVG: grouped (current, reference) when the histogram
    has a reference, the current values alone when it has not."""
    series = [(h["current"], CURRENT)] + ([(h["reference"], REFERENCE)] if "reference" in h else [])
    labels = h.get("categories") or [f"{a:.3g}" for a in h["edges"][:-1]]
    totals = [sum(values) or 1 for values, _ in series]
    top = max((v / t for (values, _), t in zip(series, totals, strict=True) for v in values), default=1.0) or 1.0
    slot = (width - 40) / max(len(labels), 1)
    width_of = slot / len(series)
    bars = []
    for i in range(len(labels)):
        x = 30 + i * slot
        for j, ((values, colour), total) in enumerate(zip(series, totals, strict=True)):
            share = values[i] / total
            bh = share / top * (height - 40)
            bars.append(f'<rect x="{x + j * width_of:.1f}" y="{height - 20 - bh:.1f}" '
                        f'width="{max(width_of - 1, 1):.1f}" height="{bh:.1f}" fill="{colour}">'
                        f"<title>{html.escape(str(labels[i]))}: {share:.1%}</title></rect>")
    axis = (f'<line x1="30" y1="{height - 20}" x2="{width - 10}" y2="{height - 20}" stroke="#57606a"/>'
            f'<text x="30" y="{height - 5}" font-size="10">{html.escape(str(labels[0]))}</text>'
            f'<text x="{width - 10}" y="{height - 5}" font-size="10" text-anchor="end">'
            f'{html.escape(str(labels[-1]))}</text>')
    return (f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="{html.escape(label)}">{"".join(bars)}{axis}</svg>'
            f"<figcaption>{html.escape(label)}: {html.escape(stats)}</figcaption></figure>")
