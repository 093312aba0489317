"""``assay monitor``: drift, performance and alerts of a served model against the data it was trained on.

Thin: parse, call ``assay.monitor``, render. Each part of the monitor layer has its section below.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

import typer

from assay.cli._common import JsonOpt, _print_json, _repo, _table, _when, escape, out
from assay.cli._help import Typer

app = Typer(name="monitor", no_args_is_help=True,
            help="Monitor a served model: `assay monitor drift NAME` compares its logged inputs and predictions "
                 "with its training version, `assay monitor performance NAME` gives realised and estimated "
                 "metrics, `assay monitor run NAME` evaluates the alert rules.")

# -- profiles and drift ----------------------------------------------------------------------------------------

# -- performance -----------------------------------------------------------------------------------------------

# -- alerts ----------------------------------------------------------------------------------------------------

# -- explain ---------------------------------------------------------------------------------------------------


@app.command()
def explain(name: Annotated[str, typer.Argument(metavar="NAME", help="The served model.")],
            alert: Annotated[str | None, typer.Option(metavar="ID", help="Explain what this alert fired on (its "
                                                      "metric, feature and window).")] = None,
            feature: Annotated[str | None, typer.Option(metavar="F", help="Explain the drift of this feature "
                                                        "(or 'prediction').")] = None,
            metric: Annotated[str | None, typer.Option(metavar="M", help="Explain a drop of this metric: accuracy, "
                                                       "f1, mae, ... (labels joined) or estimated_accuracy "
                                                       "(before labels).")] = None,
            window: Annotated[str | None, typer.Option(metavar="1h|10000", help="The last rows or time of the "
                                                       "log (default: all).")] = None,
            since: Annotated[str | None, typer.Option(metavar="T", help="Rows logged since T (ISO time, epoch "
                                                      "seconds, or 2h ago).")] = None,
            reference: Annotated[str | None, typer.Option(metavar="DATASET@REV", help="Compare with this data "
                                                          "instead of the model's training version.")] = None,
            slice_: Annotated[int, typer.Option("--slice", metavar="N", help="Show the samples of the N-th "
                                                "slice (1: the top one).")] = 1,
            samples: Annotated[int, typer.Option(metavar="N", help="Production samples shown.")] = 5,
            as_json: JsonOpt = False) -> None:
    """The slices (values and ranges of columns) that explain a drifted feature or a drop in performance, then
    the production samples of one slice beside their nearest training samples."""
    from assay.monitor.explain import explain as run_explain

    with _repo() as repo:
        found = run_explain(repo, name, feature=feature, metric=metric, window=window, since=since, alert=alert,
                            reference=reference, slice_rank=slice_, samples=samples)
        if as_json:
            _print_json(_explain_json(repo, found))
            return
    _print_explanation(found)


def _explain_json(repo: Any, found: Any) -> dict[str, Any]:
    """The explanation as JSON, with thumbnails (PNG data URIs) of the training samples' images."""
    data = found.to_dict()
    if found.blob_columns:
        from assay.report.ingest_html import _thumbnail

        for sample in data["samples"]:
            for near in sample["neighbours"]:
                near["thumbnails"] = {c: _thumbnail(repo.store.get(oid)) for c, oid in near["blobs"].items()}
    return cast(dict[str, Any], data)


def _print_explanation(found: Any) -> None:
    what = f"drift of {found.feature}" if found.mode == "drift" and found.feature else \
        f"the drop of {found.metric}" if found.mode == "performance" else "the change of shares"
    out.print(f"{found.model} v{found.version}: {what}, {found.production_rows:,} production rows against "
              f"{found.reference} ({found.reference_rows:,} rows)"
              + (f", alert {found.alert}" if found.alert else ""), highlight=False, markup=False)
    perf = found.mode == "performance"
    extra = ("error: production / reference", "error change inside", "outside") if perf else \
        ("drift inside", "drift outside")
    table = _table("#", "slice", "effect", "production rows", "reference rows", *extra, title="slices, by effect")
    for i, s in enumerate(found.slices):
        mark = "*" if i == found.chosen else ""
        figures = [_figure(s, "inside"), _figure(s, "outside")]
        if perf:
            figures.insert(0, f"{_figure(s, 'production_error')} / {_figure(s, 'reference_error')}")
        table.add_row(f"{i + 1}{mark}", escape(s.name), f"{s.effect:+.3f}",
                      f"{s.production_rows:,} ({s.production_share:.1%})",
                      f"{s.reference_rows:,} ({s.reference_share:.1%})", *figures)
    out.print(table)
    for note in found.notes:
        out.print(f"note: {note}", highlight=False, markup=False)
    chosen = found.slice
    columns = list(dict.fromkeys(c for c in (found.feature, chosen.column) if c and c != "prediction"))
    samples = _table("request", "time", "prediction", "label", *columns, "nearest training samples (distance)",
                     title=f"production samples of {chosen.name}")
    for s in found.samples:
        near = "; ".join(" ".join([_key(n), f"label {n.label}", *(_value(n.values, c) for c in columns),
                                   f"({n.distance:.2f})"]) for n in s.neighbours)
        samples.add_row(s.request_id, _when(s.time), f"{s.prediction}" + (f" ({s.score:.2f})" if s.score
                                                                                else ""),
                        "-" if s.label is None else str(s.label), *(_value(s.values, c, bare=True) for c in columns),
                        escape(near))
    out.print(samples)


def _figure(s: Any, which: str) -> str:
    v = getattr(s, which)
    return "" if v is None else f"{v:.3f}"


def _key(n: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in n.key.items()) or n.sample_id[:12]


def _value(values: dict[str, Any], column: str, *, bare: bool = False) -> str:
    v = values.get(column)
    text = f"{v:g}" if isinstance(v, float) else str(v)
    return text if bare else f"{column}={text}"
