"""A self-contained HTML report of one ingest: the verdict, what each screen found, and examples of the
flagged samples with their reasons and scores (images as inline thumbnails). No script, no network.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from typing import Any

from assay.gate import Flagged, IngestReport
from assay.report.html import CSS

THUMB = 64
EXAMPLES = 48


def ingest_report_html(report: IngestReport, read_blob: Callable[[str], bytes] | None = None) -> str:
    """The report as one HTML document; ``read_blob`` gives the bytes of images for thumbnails."""
    title = f"assay ingest: {report.dataset} -> {report.branch}"
    if report.ok:
        verdict = (f'<span class="pass">published {report.accepted:,} of {report.batch_rows:,} samples</span>, '
                   f'<span class="fail">{len(report.quarantined):,} quarantined</span>, '
                   f'<span class="warn">{len(report.warned):,} with warnings</span>')
    else:
        verdict = '<span class="fail">batch rejected</span>: ' + "; ".join(html.escape(r) for r in report.rejected)
    screens = report.screens.get("screens", {})
    rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{s.get('flagged', 0):,}</td>"
                   f"<td><code>{html.escape(_summary(s))}</code></td></tr>" for n, s in screens.items())
    rows += "".join(f"<tr><td>{html.escape(n)}</td><td class=warn>not run</td><td>{html.escape(why)}</td></tr>"
                    for n, why in report.screens.get("not_run", {}).items())
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in report.warnings)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{CSS}{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<div class=verdict>{verdict}</div>"
            f"<h2>Screens</h2><table><tr><th>screen</th><th>flagged</th><th>summary</th></tr>{rows}</table>"
            + (f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else "")
            + _examples("Quarantined", report.quarantined, read_blob)
            + _examples("Warned", report.warned, read_blob) + "</body></html>")


_CSS = """
h2{font-size:16px;margin:20px 0 8px} .cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #d0d7de;border-radius:6px;padding:8px;width:300px;display:flex;gap:8px}
.card img{width:64px;height:64px;image-rendering:pixelated;border:1px solid #d0d7de;flex:none}
.card ul{margin:0;padding-left:16px;font-size:12px} .id{font:12px monospace;color:#57606a}
"""


def _summary(s: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in s.items() if k not in ("screen", "samples", "flagged"))


def _examples(heading: str, flagged: list[Flagged], read_blob: Callable[[str], bytes] | None) -> str:
    if not flagged:
        return ""
    cards = "".join(_card(f, read_blob) for f in flagged[:EXAMPLES])
    more = f"<p>and {len(flagged) - EXAMPLES:,} more</p>" if len(flagged) > EXAMPLES else ""
    return f"<h2>{heading} ({len(flagged):,})</h2><div class=cards>{cards}</div>{more}"


def _card(f: Flagged, read_blob: Callable[[str], bytes] | None) -> str:
    thumb = _thumbnail(read_blob(f.blob)) if f.blob and read_blob is not None else None
    image = f'<img alt="sample {html.escape(f.sample[:12])}" src="{thumb}">' if thumb else ""
    key = ", ".join(f"{k}={v}" for k, v in f.key.items())
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in f.reasons)
    scores = ", ".join(f"{k} {v:.2f}" for k, v in f.scores.items())
    return (f"<div class=card>{image}<div><div class=id>{html.escape(f.sample[:12])} {html.escape(key)}</div>"
            f"<ul>{reasons}</ul><div class=id>{html.escape(scores)}</div></div></div>")


def _thumbnail(data: bytes) -> str | None:
    """A PNG thumbnail as a data URI, or None when the bytes are not an image."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.thumbnail((THUMB, THUMB))
            buf = io.BytesIO()
            img.convert("RGB").save(buf, format="PNG")
    except (UnidentifiedImageError, OSError):
        return None
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
