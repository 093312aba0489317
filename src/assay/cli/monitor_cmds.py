"""``assay monitor``: drift, performance and alerts of a served model against the data it was trained on.

Thin: parse, call ``assay.monitor``, render. Each part of the monitor layer has its section below.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from assay.cli._common import JsonOpt, _print_json, _repo, _table, _when, escape, out
from assay.cli._help import Typer

app = Typer(name="monitor", no_args_is_help=True,
            help="Monitor a served model: `assay monitor drift NAME` compares its logged inputs and predictions "
                 "with its training version, `assay monitor performance NAME` gives realised and estimated "
                 "metrics, `assay monitor run NAME` evaluates the alert rules.")

# -- profiles and drift ----------------------------------------------------------------------------------------

_ModelArg = Annotated[str, typer.Argument(metavar="NAME[@VERSION|@ALIAS]", help="The model version.")]
_ReferenceOpt = Annotated[str | None, typer.Option("--reference", metavar="DATASET@REV",
                                                   help="Compare with this dataset version instead of the "
                                                        "version's training data.")]


@app.command("profile")
def profile_cmd(spec: _ModelArg, reference: _ReferenceOpt = None,
                json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
                ) -> None:
    """Compute and store the reference profile of a model version (its training data, or --reference): the
    sketches drift compares production with. `assay monitor drift` computes it when missing."""
    from assay.cli._common import _print_json, _repo, escape, out
    from assay.monitor.profile import reference_key, reference_profile, stored_profiles

    repo = _repo()
    profile = reference_profile(repo, spec, reference=reference, recompute=True)
    from assay.models import registry

    mv = registry.get(repo, spec)
    entry = stored_profiles(repo, mv)[reference_key(repo, mv, reference)[0]]
    kinds: dict[str, list[str]] = {}
    for c in profile.columns.values():
        kinds.setdefault(c.kind, []).append(c.name)
    if json_out:
        _print_json({"model": mv.spec, "reference": profile.meta.get("reference"), "rows": profile.rows,
                     "object": entry["oid"], "columns": {k: v for k, v in kinds.items()},
                     "pca_components": len(profile.pca.components) if profile.pca else 0,
                     "predictions": profile.meta.get("predictions")})
        return
    parts = ", ".join(f"{len(v)} {k}" for k, v in kinds.items())
    pca = f"; PCA of {len(profile.pca.columns)} features, {len(profile.pca.components)} components" \
        if profile.pca else ""
    out.print(f"profiled {escape(str(profile.meta.get('reference')))} for {escape(mv.spec)}: {profile.rows:,} rows, "
              f"{parts} column(s){pca}; predictions: {escape(str(profile.meta.get('predictions')))}; stored as "
              f"{entry['oid'][:12]}", highlight=False, soft_wrap=True)


@app.command("drift")
def drift_cmd(spec: _ModelArg,
              window: Annotated[str | None, typer.Option(metavar="1h|10000", help="The last rows of the log: a "
                                                         "duration (1h, 30m, 2d) or a row count.")] = None,
              since: Annotated[str | None, typer.Option(metavar="TIME", help="Only rows logged since then: ISO "
                                                        "8601, seconds since the epoch, or a duration ago.")] = None,
              reference: _ReferenceOpt = None,
              thresholds: Annotated[str | None, typer.Option(metavar="FILE", help="YAML of thresholds (psi: 0.2, "
                                                             "alpha: 0.01; per feature under features).")] = None,
              json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
              html_file: Annotated[str | None, typer.Option("--html", metavar="FILE",
                                                            help="Also write an HTML report.")] = None) -> None:
    """Drift of a served model's logged inputs and predictions against its training version (or --reference):
    PSI, Kolmogorov-Smirnov and Wasserstein for numbers, chi-squared and Jensen-Shannon for categories, an
    embedding distance for text, and PCA reconstruction error over all features."""
    from assay.cli._common import _output, _print_json, _repo, err
    from assay.monitor.drift import drift

    report = drift(_repo(), spec, window=window, since=since, reference=reference, thresholds=thresholds)
    if html_file:
        from assay.report import drift_report_html

        _output(html_file).write_text(drift_report_html(report), encoding="utf-8")
        err.print(f"wrote {html_file}")
    if json_out:
        _print_json(report.to_dict())
        return
    _print_drift(report)


def _print_drift(report: Any) -> None:
    from assay.cli._common import _table, escape, out

    table = _table("", "feature", "kind", "metrics", "p-value", "rows", "nulls")
    for f in sorted(report.features, key=lambda f: (not f.drifted, f.feature)):
        metrics = ", ".join(f"{m} {v:.3f}" for m, v in f.values.items()) or f.note
        table.add_row("[red]DRIFT[/]" if f.drifted else "ok", escape(f.feature), f.kind, escape(metrics),
                      "" if f.p_value is None else f"{f.p_value:.2g}", f"{f.rows:,}", f"{f.nulls:,}")
    out.print(f"{escape(report.model)}: {report.rows:,} production rows ({escape(report.window)}) against "
              f"{escape(report.reference)}", highlight=False, soft_wrap=True)
    out.print(table)
    drifted = report.drifted
    out.print(f"{len(drifted)} of {len(report.features)} drifted" + (f": {escape(', '.join(drifted))}" if drifted
                                                                     else ""), highlight=False, soft_wrap=True)


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

_NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The model.")]
rules_app = Typer(name="rules", no_args_is_help=True,
                  help="The default alert rules of a model, committed in the repository (dataset "
                       "alerts.NAME.rules): `assay monitor rules set NAME FILE`, `assay monitor rules show NAME`.")
app.add_typer(rules_app, name="rules")


@app.command("run")
def run_cmd(model: _NameArg,
            rules: Annotated[str | None, typer.Option("--rules", metavar="FILE", help="A rules file (default: the "
                                                      "rules set with `assay monitor rules set`).")] = None,
            deliver_timeout: Annotated[float, typer.Option(metavar="SECONDS", help="Stop starting webhook "
                                                           "deliveries after this long (what is left is kept and "
                                                           "retried on the next run).")] = 10.0,
            as_json: JsonOpt = False) -> None:
    """Evaluate the alert rules of NAME once (for cron): exit 1 when an error-severity rule fires."""
    from assay.monitor.evaluate import run
    from assay.monitor.rules import load_rules

    ruleset = load_rules(rules) if rules is not None else None
    with _repo() as repo:
        evaluation = run(repo, model, ruleset, deliver_s=deliver_timeout)
    if as_json:
        _print_json(evaluation.to_dict())
    else:
        _print_evaluation(evaluation)
    if evaluation.failed:
        raise typer.Exit(1)


def _print_evaluation(evaluation: Any) -> None:
    from rich.table import Table

    table = Table("rule", "metric", "feature", "severity", "value", "threshold", "status")
    for r in evaluation.results:
        if r.status == "ok" and r.feature != "*" and len(evaluation.results) > 20:
            continue  # per-feature rules: the features that fire or lack data only
        value = "-" if r.value is None else f"{r.value:.4g}"
        table.add_row(r.rule, r.metric, r.feature, r.severity, value, f"{r.direction} {r.threshold:g}",
                      r.status if r.error is None else f"error: {r.error}")
    out.print(table)
    firing = sum(r.firing for r in evaluation.results)
    d = evaluation.delivery
    sent = f"; webhooks: {d.delivered} delivered, {d.pending} waiting" if d and (d.delivered or d.pending) else ""
    out.print(f"{firing} firing; alerts {len(evaluation.opened)} opened, {len(evaluation.updated)} updated, "
              f"{len(evaluation.resolved)} resolved{sent}", markup=False, highlight=False)


@app.command("alerts")
def alerts_cmd(model: _NameArg,
               state: Annotated[str | None, typer.Option(metavar="firing|resolved",
                                                         help="Only alerts in this state.")] = None,
               as_json: JsonOpt = False) -> None:
    """List the alerts of NAME (newest first), as `assay monitor run` and a monitoring server stored them."""
    from assay.monitor.alerts import list_alerts

    with _repo() as repo:
        alerts = list_alerts(repo, model, state=state)
    if as_json:
        _print_json([a.to_dict() for a in alerts])
        return
    from rich.table import Table

    table = Table("id", "rule", "metric", "feature", "severity", "value", "threshold", "state", "fired")
    for a in alerts:
        table.add_row(a.id, a.rule, a.metric, a.feature, a.severity, f"{a.value:.4g}",
                      f"{a.direction} {a.threshold:g}", a.state, _when(a.fired_at))
    out.print(table)


@rules_app.command("set")
def rules_set(model: _NameArg,
              file: Annotated[str, typer.Argument(metavar="FILE", help="The rules file (YAML).")]) -> None:
    """Check FILE against the model and commit it as the default rules of NAME."""
    from pathlib import Path

    from assay.monitor.alerts import set_rules
    from assay.monitor.evaluate import check
    from assay.monitor.rules import load_rules

    text = load_rules(file).source
    with _repo() as repo:
        commit = set_rules(repo, model, text, where=file, check=lambda r: check(repo, model, r))
    out.print(f"rules of {model} set from {Path(file).name} (commit {commit[:12]})", markup=False, highlight=False)


@rules_app.command("show")
def rules_show(model: _NameArg, as_json: JsonOpt = False) -> None:
    """Print the default rules of NAME."""
    from assay.errors import RulesError
    from assay.monitor.alerts import stored_rules

    with _repo() as repo:
        rules = stored_rules(repo, model)
    if rules is None:
        raise RulesError(f"model {model!r} has no rules set; set them with `assay monitor rules set {model} FILE`")
    if as_json:
        _print_json(rules.to_dict())
    else:
        out.print(rules.source, markup=False, highlight=False, end="")


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
    """The explanation as JSON, with thumbnails (PNG data URIs) of the samples' images."""
    from assay.monitor.explain import with_thumbnails

    return with_thumbnails(repo, found)


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
