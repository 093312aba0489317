"""Commands on suites and checks: the `suite` group (infer, set, show) and `check`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from assay.cli._common import (
    EngineOpt,
    JsonOpt,
    _output,
    _print_json,
    _repo,
    _spec,
    _table,
    err,
    escape,
    out,
)
from assay.cli._help import Typer

app = Typer()


suite_app = Typer(help="Suites: the expectations a dataset must meet, versioned with it.",
                  no_args_is_help=True)



@suite_app.command("infer")
def suite_infer(spec: Annotated[str, typer.Argument(metavar="DATASET[@REV]",
                                                    help="DATASET or DATASET@REV of known-good data.")],
                out_file: Annotated[str | None, typer.Option("--output", "-o", metavar="FILE",
                                                             help="Write the YAML here.")] = None,
                reference: Annotated[str | None, typer.Option(metavar="REV",
                                                              help="Also expect each column's distribution to stay "
                                                                   "close to this revision (warnings).")] = None,
                stage: Annotated[bool, typer.Option(help="Stage it as the dataset's suite.")] = False) -> None:
    """Write a suite inferred from a good version, to edit before use."""
    from assay import infer_suite

    repo = _repo()
    text = infer_suite(repo.dataset(spec), reference=reference).to_yaml()
    if out_file:
        _output(out_file).write_text(text, encoding="utf-8")
        err.print(f"wrote {out_file}")
    else:
        out.print(text, markup=False, highlight=False, end="")
    if stage:
        name = _spec(spec).name
        repo.set_suite(name, text)
        err.print(f"staged as the suite of {name}")


@suite_app.command("set")
def suite_set(dataset: Annotated[str, typer.Argument(help="Dataset the suite tests.")],
              file: Annotated[str, typer.Argument(help="The suite's YAML file.")]) -> None:
    """Stage a suite for a dataset (validated first); it is committed with the next commit."""
    from assay import load_suite
    from assay.errors import InputError

    suite = load_suite(Path(file))
    if suite.dataset != dataset:
        raise InputError(f"{file} is a suite for dataset {suite.dataset!r}, not {dataset!r}; fix its 'dataset:' line "
                         "or name the right dataset")
    _repo().set_suite(dataset, suite.source)
    out.print(f"{dataset}: suite with {len(suite.expectations)} expectations staged")


@suite_app.command("show")
def suite_show(spec: Annotated[str, typer.Argument(metavar="DATASET[@REV]", help="DATASET or DATASET@REV.")]) -> None:
    """Print a dataset's suite."""
    from assay.errors import RefNotFound

    name, rev = _spec(spec).name, _spec(spec).rev
    text = _repo().suite_text(name, rev)
    if text is None:
        raise RefNotFound(f"dataset {name!r} has no suite; write one with `assay suite infer {name} -o FILE`")
    out.print(text, markup=False, highlight=False, end="")


@app.command()
def check(spec: Annotated[str, typer.Argument(metavar="DATASET[@REV]",
                                              help="DATASET (the working version) or DATASET@REV.")],
          suite: Annotated[str | None, typer.Option(metavar="FILE",
                                                    help="Suite file (default: the dataset's own suite).")] = None,
          html_file: Annotated[str | None, typer.Option("--html", metavar="FILE",
                                                        help="Also write a self-contained HTML report "
                                                             "(with distribution charts) to this file.")] = None,
          show_all: Annotated[bool, typer.Option("--all", help="List every expectation, passes too.")] = False,
          as_json: JsonOpt = False, engine: EngineOpt = None) -> None:
    """Check a dataset version against a suite; exits with 1 when an error-level expectation fails."""
    from assay import load_suite, run_suite
    from assay.errors import RefNotFound

    repo = _repo(engine)
    name, rev = _spec(spec).name, _spec(spec).rev
    if suite is None:
        text = repo.suite_text(name, rev)
        if text is None:
            raise RefNotFound(f"dataset {name!r} has no suite; give --suite FILE or stage one with `assay suite set`")
        loaded = load_suite(text)
    else:
        loaded = load_suite(Path(suite))
    result = run_suite(repo.dataset(spec), loaded, other=repo.dataset,
                       reference=lambda ref: repo.dataset(name, ref), profile=html_file is not None,
                       engine=repo.engine)
    if html_file:
        from assay.report import check_report_html

        _output(html_file).write_text(check_report_html(result), encoding="utf-8")
        err.print(f"wrote {html_file}")
    if as_json:
        _print_json(result.to_dict())
    else:
        _print_check(result, show_all=show_all)
    if not result.ok:
        raise typer.Exit(1)


def _print_check(result: Any, *, show_all: bool = False) -> None:
    """Failures and warnings, one line each with what failed and examples; passes summed up in one line
    (every expectation with ``--all``)."""
    from assay.checks.gate import describe

    rows = result.results if show_all else [r for r in result.results if not r.success]
    if rows:
        table = _table("", "expectation", "severity", "result", title=f"{result.dataset}: {result.rows} rows")
        for r in rows:
            mark = "[green]pass[/]" if r.success else ("[red]FAIL[/]" if r.severity == "error" else "[yellow]warn[/]")
            table.add_row(mark, escape(r.expectation.label), r.severity, escape(_outcome(r, describe)))
        out.print(table)
    passed = [r for r in result.results if r.success]
    summary = f"{len(passed)} of {len(result.results)} expectations passed"
    if passed and not show_all:
        summary += " (list them with --all)"
    verdict = "[green]ok[/]" if result.ok else f"[red]{len(result.failures)} error-level failure(s)[/]"
    out.print(f"{result.dataset}: {verdict}, {len(result.warnings)} warning(s); {summary}")


def _outcome(r: Any, describe: Any) -> str:
    """What a result says in words: a failure's description without its label; a pass's observed value."""
    from assay.checks.gate import readable

    if r.success:
        return "passed" if r.observed is None else f"passed: {readable(r.observed)}"
    text = describe(r)
    label = r.expectation.label
    return text[len(label) + 2:] if text.startswith(label + ": ") else text

