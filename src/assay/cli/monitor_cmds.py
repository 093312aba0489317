"""``assay monitor``: drift, performance and alerts of a served model against the data it was trained on.

Thin: parse, call ``assay.monitor``, render. Each part of the monitor layer has its section below.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from assay.cli._help import Typer

app = Typer(name="monitor", no_args_is_help=True,
            help="Monitor a served model: `assay monitor drift NAME` compares its logged inputs and predictions "
                 "with its training version, `assay monitor performance NAME` gives realised and estimated "
                 "metrics, `assay monitor run NAME` evaluates the alert rules.")

# -- profiles and drift ----------------------------------------------------------------------------------------

# -- performance -----------------------------------------------------------------------------------------------


@app.command("performance")
def performance_cmd(
        model: Annotated[str, typer.Argument(metavar="NAME", help="The served model.")],
        window: Annotated[str | None, typer.Option(metavar="1h|10000", help="Cut the rows into consecutive windows "
                                                   "of this duration (1h, 30m, 2d) or row count (default: one "
                                                   "window of all of them).")] = None,
        since: Annotated[str | None, typer.Option(metavar="TIME", help="Only rows logged since then: ISO 8601, "
                                                  "seconds since the epoch, or a duration ago.")] = None,
        eval: Annotated[str | None, typer.Option("--eval", metavar="DATASET@REV", help="Calibrate the estimate on "
                                                 "this labelled dataset version instead of the model's evaluation "
                                                 "version.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """Realised metrics of NAME's logged predictions where labels have arrived (accuracy, F1, AUC; MAE and RMSE
    for regressors) beside the accuracy and F1 estimated from its calibrated confidence, per window."""
    from assay.cli._common import _print_json, _repo
    from assay.monitor.performance import performance

    with _repo() as repo:
        report = performance(repo, model, window=window, since=since, eval=eval)
    if as_json:
        _print_json(report.to_dict())
        return
    _print_performance(report)


def _print_performance(report: Any) -> None:
    from assay.cli._common import _table, _when, escape, out

    def pct(m: dict[str, float], name: str) -> str:
        return f"{100 * m[name]:.1f}" if name in m else "-"

    def interval(m: dict[str, float], name: str) -> str:
        if name not in m:
            return "-"
        return f"{pct(m, name)} [{pct(m, name + '_low')}, {pct(m, name + '_high')}]"

    if report.kind == "regressor":
        table = _table("window start", "rows", "labelled", "MAE", "RMSE")
        for w in report.windows:
            table.add_row(_when(w.start), str(w.rows), str(w.labelled), *(f"{w.metrics[k]:.4g}" if k in w.metrics
                                                                            else "-" for k in ("mae", "rmse")))
    else:
        table = _table("window start", "rows", "labelled", "est. accuracy % [95%]", "accuracy %", "est. F1 %",
                       "F1 %", "AUC")
        for w in report.windows:
            m = w.metrics
            table.add_row(_when(w.start), str(w.rows), str(w.labelled), interval(m, "estimated_accuracy"),
                          pct(m, "accuracy"), interval(m, "estimated_f1"), pct(m, "f1"),
                          f"{m['auc']:.3f}" if "auc" in m else "-")
    out.print(table)
    for c in report.calibrations:
        how = "the inputs and score" if c["confidence"] == "inputs" else "the scores"
        out.print(escape(f"estimate of version {c['version']} calibrated on {c['eval']} ({c['rows']} rows, "
                         f"accuracy {100 * c['accuracy']:.1f}% there), from {how}"), highlight=False)


# -- alerts ----------------------------------------------------------------------------------------------------

# -- explain ---------------------------------------------------------------------------------------------------
