"""A self-contained HTML report of one ingest: the verdict, what each screen found, and examples of the
flagged samples with their reasons and scores (images as inline thumbnails). No script, no network.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from assay.gate import Flagged, IngestReport
from assay.report.html import CSS
from assay.screens.thumbnails import THUMB, image_thumbnail

EXAMPLES = 48


def ingest_report_html(report: IngestReport, read_blob: Callable[[str], bytes] | None = None) -> str:
    """The report as one HTML document; ``read_blob`` gives the bytes of images for thumbnails."""
    title = f"assay ingest into dataset {report.dataset}"
    quarantine = f"quarantine/{report.dataset}"
    if report.ok:
        verdict = (f'<span class="pass">published {report.accepted:,} of the batch\'s {report.batch_rows:,} '
                   f'samples</span> on branch {html.escape(report.branch)} '
                   f'(<span class="warn">{len(report.warned):,} of them with warnings</span>); '
                   f'<span class="fail">{len(report.quarantined):,} quarantined</span>: held back on branch '
                   f'{html.escape(quarantine)}, not trained on')
    else:
        verdict = ('<span class="fail">batch rejected, nothing published</span>: '
                   + "; ".join(html.escape(r) for r in report.rejected))
    screens = report.screens.get("screens", {})
    actions = {n: r.get("action", "") for n, r in report.policy.get("screens", {}).items()}
    rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{html.escape(_ACTIONS.get(actions.get(n, ''), ''))}</td>"
                   f"<td>{s.get('batch_flagged', 0):,}</td><td>{s.get('flagged', 0):,}</td>"
                   f"<td>{html.escape(_summary(s))}</td></tr>" for n, s in screens.items())
    rows += "".join(f"<tr><td>{html.escape(n)}</td><td class=warn>not run</td><td></td><td></td>"
                    f"<td>{html.escape(why)}</td></tr>" for n, why in report.screens.get("not_run", {}).items())
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in report.warnings)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{CSS}{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<div class=verdict>{verdict}</div>"
            "<h2>Screens</h2><table><tr><th>screen</th><th>what the policy does with a flagged sample</th>"
            "<th>flagged in this batch</th><th>flagged in the whole dataset</th><th>what it measured</th></tr>"
            f"{rows}</table><p class=note>A sample flagged by several screens is counted by each of them and "
            "shown once below; quarantine wins over a warning. Scores run from 0 (bad: a copy, an outlier, a "
            "likely wrong label) to 1 (fine).</p>"
            + (f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else "")
            + _examples("Quarantined", report.quarantined, read_blob)
            + _examples("Published with warnings", report.warned, read_blob) + "</body></html>")


_ACTIONS = {"quarantine": "quarantine it", "warn": "publish it with a warning", "reject": "reject the batch",
            "off": "nothing (off)"}
_CSS = f"""
h2{{font-size:16px;margin:20px 0 8px}} .cards{{display:flex;flex-wrap:wrap;gap:12px}}
.card{{border:1px solid #d0d7de;border-radius:6px;padding:8px;width:340px;display:flex;gap:8px}}
.card img{{width:{THUMB}px;height:{THUMB}px;image-rendering:pixelated;border:1px solid #d0d7de;flex:none;
object-fit:contain}}
.card ul{{margin:0;padding-left:16px;font-size:12px}} .id{{font:12px monospace;color:#57606a}}
.note{{font-size:12px;color:#57606a}}
"""


def _summary(s: dict[str, Any]) -> str:
    """A screen's figures in words, numbers rounded: 'exact copies 3, typical distance 0.888'."""
    skip = ("screen", "samples", "flagged", "batch_flagged")
    return ", ".join(f"{k.replace('_', ' ')} {_number(v)}" for k, v in s.items() if k not in skip)


def _number(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _examples(heading: str, flagged: list[Flagged], read_blob: Callable[[str], bytes] | None) -> str:
    if not flagged:
        return ""
    cards = "".join(_card(f, read_blob) for f in flagged[:EXAMPLES])
    more = f"<p>and {len(flagged) - EXAMPLES:,} more</p>" if len(flagged) > EXAMPLES else ""
    return f"<h2>{heading} ({len(flagged):,})</h2><div class=cards>{cards}</div>{more}"


def _card(f: Flagged, read_blob: Callable[[str], bytes] | None) -> str:
    thumb = image_thumbnail(read_blob(f.blob)) if f.blob and read_blob is not None else None
    image = f'<img alt="sample {html.escape(f.sample[:12])}" src="{thumb}">' if thumb else ""
    key = ", ".join(f"{k}={v}" for k, v in f.key.items())
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in f.reasons)
    scores = ", ".join(f"{k} {v:.2f}" for k, v in f.scores.items())
    return (f"<div class=card>{image}<div><div class=id>{html.escape(f.sample[:12])} {html.escape(key)}</div>"
            f"<ul>{reasons}</ul><div class=id>scores (0 bad, 1 fine): {html.escape(scores)}</div></div></div>")
