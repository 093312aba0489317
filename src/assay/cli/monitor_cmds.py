"""``assay monitor``: drift, performance and alerts of a served model against the data it was trained on.

Thin: parse, call ``assay.monitor``, render. Each part of the monitor layer has its section below.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from assay.cli._common import JsonOpt, _print_json, _repo, _when, out
from assay.cli._help import Typer

app = Typer(name="monitor", no_args_is_help=True,
            help="Monitor a served model: `assay monitor drift NAME` compares its logged inputs and predictions "
                 "with its training version, `assay monitor performance NAME` gives realised and estimated "
                 "metrics, `assay monitor run NAME` evaluates the alert rules.")

# -- profiles and drift ----------------------------------------------------------------------------------------

# -- performance -----------------------------------------------------------------------------------------------

# -- alerts ----------------------------------------------------------------------------------------------------

_ModelArg = Annotated[str, typer.Argument(metavar="NAME", help="The model.")]
rules_app = Typer(name="rules", no_args_is_help=True,
                  help="The default alert rules of a model, committed in the repository (dataset "
                       "alerts.NAME.rules): `assay monitor rules set NAME FILE`, `assay monitor rules show NAME`.")
app.add_typer(rules_app, name="rules")


@app.command("run")
def run_cmd(model: _ModelArg,
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
def alerts_cmd(model: _ModelArg,
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
def rules_set(model: _ModelArg,
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
def rules_show(model: _ModelArg, as_json: JsonOpt = False) -> None:
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
