"""CLI commands of the gate and screens: ingest, quarantine, scores, screen. Thin: parse, call, render."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from assay.cli._common import (
    EngineOpt,
    JsonOpt,
    _output,
    _print_json,
    _progress,
    _repo,
    _spec,
    _table,
    err,
    escape,
    out,
)
from assay.cli._help import Typer
from assay.errors import InputError

app = Typer()

quarantine_app = Typer(help="The samples the gate held back, per dataset, on branch quarantine/DATASET.",
                       no_args_is_help=True)
PolicyOpt = Annotated[str | None, typer.Option(metavar="FILE",
                                               help="Policy file: which screens run and what their flags do "
                                                    "(default: every screen; see `assay help screens`).")]


@app.command()
def ingest(batch: Annotated[str, typer.Argument(
               metavar="BATCH", help="File, folder or Parquet of new samples, or predictions/NAME: the labelled "
                                     "production rows of served model NAME (its prediction log).")],
           into: Annotated[str, typer.Option(metavar="DATASET", help="Dataset the batch is for.")],
           policy: PolicyOpt = None,
           branch: Annotated[str | None, typer.Option(metavar="BRANCH",
                                                      help="Branch to publish to (default: the working one).")]
           = None,
           key: Annotated[list[str] | None, typer.Option(metavar="COLUMN",
                                                         help="Key column(s), for a new dataset.")] = None,
           mode: Annotated[str, typer.Option(metavar="MODE",
                                             help="append (new samples) or upsert (new or changed).")] = "append",
           labels: Annotated[str | None, typer.Option(metavar="FILE",
                                                      help="Labels file, for a folder of files; for "
                                                           "predictions/NAME, labels joined to the log by request "
                                                           "id first (as `assay predictions label`).")] = None,
           since: Annotated[str | None, typer.Option(metavar="TIME", help="predictions/NAME: rows logged since "
                                                     "then (ISO 8601, epoch seconds, or a duration ago: 2h).")]
           = None,
           id_column: Annotated[str, typer.Option(metavar="COLUMN", help="predictions/NAME: the labels file's "
                                                  "request id column.")] = "request_id",
           label_column: Annotated[str, typer.Option(metavar="COLUMN", help="predictions/NAME: the labels "
                                                     "file's label column.")] = "label",
           message: Annotated[str | None, typer.Option("--message", "-m", metavar="MESSAGE",
                                                       help="Commit message.")] = None,
           html_file: Annotated[str | None, typer.Option("--html", metavar="FILE",
                                                         help="Also write an HTML report (with "
                                                              "thumbnails of flagged images) to this file.")] = None,
           as_json: JsonOpt = False, engine: EngineOpt = None) -> None:
    """Audit a batch against the accepted data; publish what passes, quarantine what is flagged.

    `assay ingest predictions/NAME --into DATASET` takes the labelled production rows of model NAME (those not
    ingested before) through the gate; unlabelled rows wait for their labels. Exits with 1 when the whole batch
    is rejected.
    """
    from assay.gate import ingest as do_ingest
    from assay.gate import load_policy

    repo = _repo(engine)
    if batch.startswith(PREDICTIONS) and not Path(batch).exists():
        if key or mode != "append":
            raise InputError("--key and --mode do not apply to predictions/NAME: production rows are appended to "
                             "the dataset with keys derived from their request ids")
        _ingest_log(repo, batch.removeprefix(PREDICTIONS), into, load_policy(policy), branch, since, labels,
                    id_column, label_column, message, html_file, as_json)
        return
    with _progress() as report:
        result = do_ingest(repo, batch, into=into, policy=load_policy(policy), branch=branch, key=key, mode=mode,
                           labels=labels, message=message, progress=report)
    if html_file:
        from assay.report import ingest_report_html

        _output(html_file).write_text(ingest_report_html(result, repo.store.get), encoding="utf-8")
        err.print(f"wrote {html_file}")
    if as_json:
        _print_json(result.to_dict())
    else:
        _print_ingest(result)
    if not result.ok:
        raise typer.Exit(1)


PREDICTIONS = "predictions/"


def _ingest_log(repo: Any, model: str, into: str, policy: Any, branch: str | None, since: str | None,
                labels: str | None, id_column: str, label_column: str, message: str | None, html_file: str | None,
                as_json: bool) -> None:
    from assay.monitor.loop import ingest_predictions

    with _progress() as report:
        result = ingest_predictions(repo, model, into=into, since=since, labels=labels, id_column=id_column,
                                    label_column=label_column, branch=branch, policy=policy, message=message,
                                    progress=report)
    if html_file and result.gate is not None:
        from assay.report import ingest_report_html

        _output(html_file).write_text(ingest_report_html(result.gate, repo.store.get), encoding="utf-8")
        err.print(f"wrote {html_file}")
    if as_json:
        _print_json(result.to_dict())
    else:
        if result.labels is not None:
            out.print(f"joined {result.labels.labelled} label(s) to the log of {escape(model)}")
        out.print(f"{result.rows} production row(s) of {escape(model)}: {result.labelled} labelled, "
                  f"{result.unlabelled} without a label (not ingested), {result.already} ingested before")
        for note in result.notes:
            out.print(f"[yellow]note:[/] {escape(note)}")
        if result.gate is not None:
            _print_ingest(result.gate)
    if not result.ok:
        raise typer.Exit(1)


def _print_ingest(r: Any) -> None:
    table = _table("screen", "flagged: batch", "accepted data", "summary",
                  title=f"ingest into {r.dataset}: {r.batch_rows} new sample(s)")
    for name, s in r.screens.get("screens", {}).items():
        summary = ", ".join(f"{k}={_short(v)}" for k, v in s.items()
                            if k not in ("screen", "samples", "flagged", "batch_flagged"))
        batch = s.get("batch_flagged", 0)
        table.add_row(name, str(batch), str(s["flagged"] - batch), escape(summary[:120]))
    for name, why in r.screens.get("not_run", {}).items():
        table.add_row(name, "[yellow]not run[/]", "", escape(why[:120]))
    out.print(table)
    for f in r.quarantined[:10]:
        out.print(f"[red]quarantined[/] {f.sample[:12]} {escape(_key(f.key))}: {escape('; '.join(f.reasons))}")
    if len(r.quarantined) > 10:
        out.print(f"... and {len(r.quarantined) - 10} more: assay quarantine list {r.dataset}")
    for w in r.warnings:
        out.print(f"[yellow]warning:[/] {escape(w)}")
    if r.ok:
        out.print(f"[green]published[/] {r.accepted} sample(s) to {r.branch}; {len(r.quarantined)} quarantined, "
                  f"{len(r.warned)} with warnings")
    else:
        out.print("[red]batch rejected[/]: " + escape("; ".join(r.rejected)))
        out.print(f"nothing was published; the staged batch is commit {r.staged[:12] if r.staged else '-'} (until "
                  "`assay gc`); --json or --html FILE keep this report")


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _key(key: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in key.items())


@quarantine_app.command("list")
def quarantine_list(dataset: Annotated[str, typer.Argument(help="Dataset whose quarantine to list.")],
                    limit: Annotated[int, typer.Option(metavar="N", help="Show at most this many.")] = 50,
                    as_json: JsonOpt = False) -> None:
    """List the quarantined samples of a dataset with their reasons."""
    from assay.gate import quarantined

    rows = quarantined(_repo(), dataset).select(["label", "sample", "batch", "reasons"]).to_pylist()
    if as_json:
        _print_json(rows[:limit])
        return
    table = _table("sample", "id", "batch", "reasons", title=f"quarantine of {dataset}: {len(rows)} sample(s)")
    for row in rows[:limit]:
        table.add_row(escape(row["label"] or ""), row["sample"][:12], row["batch"], escape(row["reasons"] or ""))
    out.print(table)


@quarantine_app.command("show")
def quarantine_show(dataset: Annotated[str, typer.Argument(help="Dataset.")],
                    sample: Annotated[str, typer.Argument(
                        metavar="SAMPLE",
                        help="The sample's key (id=80, or 80), its path, or the first characters of its id.")],
                    as_json: JsonOpt = False) -> None:
    """Show one quarantined sample: its values, scores and reasons."""
    from assay.gate import show

    info = show(_repo(), dataset, sample)
    if as_json:
        _print_json(info)
        return
    out.print(f"sample {escape(info['label'] or '')} (id {info['sample']})" if info["label"]
              else f"sample {info['sample']}")
    out.print("reasons: " + escape(info["scores"].get("reasons") or ""))
    table = _table("field", "value")
    for k, v in {**info["values"], **{k: v for k, v in info["scores"].items() if v is not None}}.items():
        table.add_row(escape(k), escape(str(v))[:100])
    out.print(table)


SamplesArg = Annotated[list[str] | None, typer.Argument(
    metavar="SAMPLE", help="Samples by key (id=80, or 80), path, or the first characters of their ids.")]
AllOpt = Annotated[bool, typer.Option("--all", help="Every sample in the quarantine.")]


@quarantine_app.command("release")
def quarantine_release(dataset: Annotated[str, typer.Argument(help="Dataset.")], samples: SamplesArg = None,
                       all_: AllOpt = False,
                       branch: Annotated[str | None, typer.Option(metavar="BRANCH",
                                                                  help="Branch to release into (default: the "
                                                                       "working one).")] = None) -> None:
    """Release quarantined samples into the dataset (they join it with their scores)."""
    from assay.gate import release

    done = release(_repo(), dataset, _chosen(samples, all_), branch=branch)
    out.print(f"released {done['samples']} sample(s) into {dataset}")


@quarantine_app.command("drop")
def quarantine_drop(dataset: Annotated[str, typer.Argument(help="Dataset.")], samples: SamplesArg = None,
                    all_: AllOpt = False) -> None:
    """Drop quarantined samples: they leave the quarantine (its history keeps them)."""
    from assay.gate import drop

    done = drop(_repo(), dataset, _chosen(samples, all_))
    out.print(f"dropped {done['samples']} sample(s) from the quarantine of {dataset}")


def _chosen(samples: list[str] | None, all_: bool) -> list[str] | None:
    from assay.errors import InputError

    if bool(samples) == all_:
        raise InputError("name the samples to act on, or give --all (not both)")
    return None if all_ else list(samples or [])


@app.command()
def scores(spec: Annotated[str, typer.Argument(metavar="DATASET[@REV]", help="DATASET or DATASET@REV.")],
           where: Annotated[str | None, typer.Option(
               metavar="SQL", help="DuckDB condition on the score columns: one expression, no files, subqueries "
                                   "or table functions.")] = None,
           sort: Annotated[str | None, typer.Option(metavar="COLUMN",
                                                    help="Column to sort by, e.g. value_score.")] = None,
           desc: Annotated[bool, typer.Option("--desc", help="Sort descending.")] = False,
           flagged: Annotated[str | None, typer.Option(metavar="SCREEN",
                                                       help="Only samples this screen flagged ('any': any).")]
           = None,
           limit: Annotated[int, typer.Option(metavar="N", help="Show at most this many.")] = 20,
           as_json: JsonOpt = False) -> None:
    """Show the per-sample scores of a dataset version, filtered and sorted."""
    from assay.gate import read_scores

    table = read_scores(_repo(), spec, where=where, sort=sort, descending=desc, flagged=flagged, limit=limit)
    if as_json:
        _print_json(table.to_pylist())
        return
    screens = [c.removesuffix("_score") for c in table.column_names if c.endswith("_score")]
    grid = _table("sample", "action", *screens, "flagged by",
                 title=f"scores of {spec}: {table.num_rows} shown (low is bad; * flagged)")
    for column in grid.columns[2:2 + len(screens)]:
        column.no_wrap = True
    for row in table.to_pylist():
        by = [s for s in screens if row.get(f"{s}_flag")]
        grid.add_row(row["sample"][:12], row["action"], *(_num(row[f"{s}_score"], s in by) for s in screens),
                     ", ".join(by) or "-")
    out.print(grid)
    out.print("the reasons: --json; for a quarantined sample also `assay quarantine show DATASET SAMPLE`")


def _num(v: float | None, flagged: bool) -> str:
    return "-" if v is None else f"[red]{v:.2f}*[/]" if flagged else f"{v:.2f}"


@app.command()
def screen(spec: Annotated[str, typer.Argument(metavar="DATASET[@REV]",
                                               help="DATASET or DATASET@REV.")], policy: PolicyOpt = None,
           save: Annotated[bool, typer.Option(help="Stage the scores as DATASET.scores (then commit).")] = False,
           as_json: JsonOpt = False, engine: EngineOpt = None) -> None:
    """Score every sample of a dataset version with the screens (duplicates, outliers, labels, value, poison)."""
    from assay.gate import load_policy, screen_version

    with _progress() as report:
        run = screen_version(_repo(engine), spec, load_policy(policy), save=save, progress=report)
    if as_json:
        _print_json(run.to_dict())
        return
    table = _table("screen", "flagged", "summary", title=f"screens over {spec}: {run.data.n} samples")
    for name, r in run.results.items():
        summary = ", ".join(f"{k}={v}" for k, v in r.summary.items())
        table.add_row(name, str(int(r.flag.sum())), escape(summary[:100]))
    for name, why in run.errors.items():
        table.add_row(name, "[yellow]not run[/]", escape(why[:100]))
    out.print(table)
    for note in run.data.notes:
        out.print(f"[yellow]note:[/] {escape(note)}")
    if save:
        out.print(f"staged the scores as {_spec(spec).name}.scores; commit them with assay commit")


@app.command("help")
def help_(topic: Annotated[str, typer.Argument(metavar="TOPIC", help="screens: the gate's policy file and every "
                                               "screen's parameters.")]) -> None:
    """Print a topic of the manual (installed copies have no docs folder): assay help screens."""
    from assay.errors import InputError

    if topic != "screens":
        raise InputError(f"no help topic {topic!r}; the topics: screens")
    out.print(_screens_text(), markup=False, highlight=False, soft_wrap=True)


def _screens_text() -> str:
    """The policy file (the docstring of assay.gate.policy) and each screen's parameters, from the screens."""
    import textwrap

    from assay.gate import policy
    from assay.screens import SCREENS

    head, _, body = (policy.__doc__ or "").partition("\n")
    lines = [head, textwrap.dedent(body).replace("::\n", "A policy file (assay ingest --policy FILE):\n"),
             "The screens (a per-sample score in [0, 1], low is bad) and their parameters:"]
    for name, screen in SCREENS.items():
        lines.append(f"\n  {name}: {screen.description}")
        for param, p in screen.params.items():
            lines.append(f"    {param} (default {p.default}{_allowed(p)})" + (f": {p.doc}" if p.doc else ""))
    return "\n".join(lines).replace("``", "`")


def _allowed(p: Any) -> str:
    if p.choices:
        return f", one of {', '.join(map(str, p.choices))}"
    if p.low is not None and p.high is not None:
        return f", from {p.low} to {p.high}"
    return f", at least {p.low}" if p.low is not None else f", at most {p.high}" if p.high is not None else ""

