"""The ``assay`` command line: a thin adapter that parses, calls the library once, and renders.

Errors from the library are turned into one-line messages at a single boundary (``main``).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from assay.cli._help import Typer
from assay.errors import AssayError, MergeConflict

EXIT_CODES = """Exit codes: 0 done; 1 an error, a failed check or fsck, or a batch the gate rejected;
2 a usage error (unknown command or option, missing argument); 3 a merge conflict; 130 interrupted."""

app = Typer(help="assay: version control, tests and monitoring for ML data and models.",
            epilog=EXIT_CODES, no_args_is_help=True, add_completion=False, rich_markup_mode=None)


def _console(stream: Any, **kwargs: Any) -> Console:
    """A terminal's width on a terminal; elsewhere (pipes, CI) wide enough that no value is cut or wrapped."""
    return Console(width=None if stream.isatty() else 100_000, **kwargs)


out = _console(sys.stdout)
err = _console(sys.stderr, stderr=True)
_state: dict[str, Any] = {"repo": "."}
GATE_BRANCHES = ("quarantine/", "staging/")  # the gate's own branches: listed by `branch --all` only

RepoOpt = Annotated[str, typer.Option("--repo", "-C", metavar="FOLDER",
                                      help="Repository folder (default: current folder).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"assay {version('assay')}", markup=False, highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(repo: RepoOpt = ".",
          _: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False) -> None:
    _state["repo"] = repo


def _repo() -> Any:
    from assay import Repo

    return Repo(_state["repo"])


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int], None]]:
    """A progress callback drawn as Rich progress bars on stderr (hidden when not a terminal)."""
    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=True, disable=not err.is_terminal)
    tasks: dict[str, Any] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total or None)
        bars.update(tasks[stage], completed=done, total=total or None)

    with bars:
        yield report


def _output(file: str) -> Path:
    """An output file named by an option (-o, --html): its folders are created."""
    path = Path(file)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))


def _short(oid: str | None) -> str:
    return oid[:12] if oid else "-"


def _when(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- repository ---------------------------------------------------------------------------------------------------


@app.command()
def init(path: Annotated[str, typer.Argument(help="Folder to create the repository in.")] = ".",
         catalog: Annotated[str | None, typer.Option(metavar="URL",
                                                     help="SQLAlchemy URL of a shared catalog.")] = None) -> None:
    """Create a repository (a .assay folder) in PATH."""
    from assay.repo import init as do_init

    repo = do_init(path, catalog_url=catalog)
    out.print(f"Initialised an empty assay repository in {repo.dir}")


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    source: Annotated[str, typer.Argument(help="Parquet, CSV, TSV, JSONL or Arrow file, or a folder of files.")],
    key: Annotated[list[str] | None, typer.Option("--key", "-k", metavar="COLUMN",
                                                  help="Key column(s); repeat or separate by "
                                                       "commas. Default: the row's content (files: the path).")] = None,
    mode: Annotated[str, typer.Option(metavar="MODE", help="replace | append | upsert | delete")] = "replace",
    labels: Annotated[str | None, typer.Option(metavar="FILE",
                                               help="Folders only: a CSV/JSONL/Parquet with a 'path' column "
                                                    "and label columns, joined on the path.")] = None,
    format: Annotated[str | None, typer.Option(metavar="FORMAT",
                                               help="Input format when the suffix does not tell.")] = None,
) -> None:
    """Stage a change to dataset NAME from SOURCE."""
    keys = [k.strip() for part in key or [] for k in part.split(",") if k.strip()] or None
    repo = _repo()
    with _progress() as report:
        result = repo.add(name, source, key=keys, mode=mode, labels=labels, format=format, progress=report)
    if not result.changed:
        out.print(f"{name}: no change ({result.manifest.rows} samples)")
        return
    out.print(f"{name}: +{result.added} added, ~{result.updated} changed, -{result.removed} removed, "
              f"{result.unchanged} unchanged; {result.manifest.rows} samples staged "
              f"({result.written_rows} rows written)")


@app.command()
def rm(name: Annotated[str, typer.Argument(metavar="DATASET", help="Dataset to remove.")]) -> None:
    """Stage the removal of a dataset."""
    _repo().remove(name)
    out.print(f"{name}: removal staged")


@app.command()
def reset(names: Annotated[list[str] | None, typer.Argument(metavar="DATASET",
                                                            help="Datasets to unstage (default: all).")] = None
          ) -> None:
    """Unstage staged changes."""
    _repo().reset(names)
    out.print("unstaged " + (", ".join(names) if names else "everything"))


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """Show the working branch and what is staged."""
    st = _repo().status()
    if as_json:
        _print_json(st.to_dict())
        return
    where = f"On branch {st.branch}" if st.branch else f"HEAD detached at {_short(st.commit)}"
    out.print(f"{where}, at commit {_short(st.commit)}")
    if not st.staged:
        out.print("Nothing staged.")
        return
    table = Table("dataset", "change", "samples", title="Staged")
    for n, s in sorted(st.staged.items()):
        table.add_row(n, _staged_change(s), str(s.get("rows", "")))
    out.print(table)
    out.print("commit them with `assay commit -m MESSAGE`; unstage with `assay reset [DATASET...]`")


def _staged_change(s: dict[str, Any]) -> str:
    """What is staged for one dataset: its removal or its samples' changes, and its suite."""
    parts = []
    if s.get("removed_dataset"):
        parts.append("dataset removed")
    elif "manifest" in s:
        parts.append(f"+{s.get('added', 0)} ~{s.get('updated', 0)} -{s.get('removed', 0)} samples"
                     + (f" ({s['mode']})" if s.get("mode") else ""))
    if "suite" in s:
        parts.append("suite removed" if s["suite"] == "removed" else f"suite staged ({_short(s['suite'])})")
    return "; ".join(parts)


@app.command()
def commit(message: Annotated[str, typer.Option("--message", "-m", metavar="MESSAGE", help="What changed and why.")],
           author: Annotated[str | None, typer.Option(metavar="AUTHOR",
                                                      help="Author (default: git user, or ASSAY_AUTHOR).")] = None,
           no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the datasets' suites (recorded in "
                                                   "the commit).")] = False) -> None:
    """Record the staged changes as a commit (datasets with a suite are checked first)."""
    repo = _repo()
    oid = repo.commit(message, author=author, no_verify=no_verify)
    out.print(f"[{repo.branch or 'detached'} {_short(oid)}] {message}", markup=False)


@app.command()
def log(rev: Annotated[str | None, typer.Argument(help="Revision to start from (default HEAD).")] = None,
        limit: Annotated[int | None, typer.Option("--limit", "-n", metavar="N",
                                                  help="At most this many commits.")] = None,
        dataset: Annotated[str | None, typer.Option(metavar="DATASET",
                                                    help="Only commits that changed this dataset.")] = None,
        as_json: JsonOpt = False) -> None:
    """List commits, newest first."""
    entries = _repo().log(rev, limit=limit, dataset=dataset)
    if as_json:
        _print_json([{"commit": o, **c.to_dict()} for o, c in entries])
        return
    if not entries:
        out.print("No commits yet.")
    for oid, c in entries:
        code = ""
        if c.code:
            code = f"  code {c.code['git_commit'][:10]}{' (dirty)' if c.code.get('dirty') else ''}"
        out.print(f"[bold yellow]{_short(oid)}[/] {_when(c.time)}  {escape(c.author)}{code}")
        out.print(f"    {escape(c.message)}")


@app.command()
def show(rev: Annotated[str | None, typer.Argument(help="Revision (default HEAD).")] = None,
         as_json: JsonOpt = False) -> None:
    """Show a commit: its metadata and datasets."""
    repo = _repo()
    oid, c = repo.show(rev)
    manifests = {n: repo.read_manifest(m) for n, m in c.datasets.items()}
    if as_json:
        _print_json({"commit": oid, **c.to_dict(),
                     "dataset_rows": {n: m.rows for n, m in manifests.items()}})
        return
    out.print(f"commit {oid}")
    if c.parents:
        out.print("parents " + " ".join(_short(p) for p in c.parents))
    out.print(f"author {c.author}\ndate   {_when(c.time)}")
    if c.code:
        out.print(f"code   {c.code['git_commit']}{' (dirty)' if c.code.get('dirty') else ''} in {c.code.get('path')}")
    if c.meta:
        out.print(f"meta   {json.dumps(c.meta)}")
    out.print(f"\n    {c.message}\n")
    table = Table("dataset", "kind", "samples", "columns", "key", "fragments", "manifest")
    for n, m in sorted(manifests.items()):
        table.add_row(n, m.kind, str(m.rows), str(len(m.schema)), ",".join(m.key) if m.key else "(content)",
                      str(len(m.fragments)), _short(c.datasets[n]))
    out.print(table)


@app.command()
def datasets(rev: Annotated[str | None, typer.Argument(help="Revision (default: working version).")] = None,
             as_json: JsonOpt = False) -> None:
    """List datasets with their size and schema."""
    repo = _repo()
    rows = {n: repo.read_manifest(m) for n, m in repo.datasets(rev).items()}
    if as_json:
        _print_json({n: {"rows": m.rows, "kind": m.kind, "key": m.key,
                         "columns": {f.name: str(f.type) for f in m.schema}} for n, m in rows.items()})
        return
    table = Table("dataset", "kind", "samples", "columns")
    for n, m in sorted(rows.items()):
        table.add_row(n, m.kind, str(m.rows), ", ".join(f"{f.name}:{f.type}" for f in m.schema))
    out.print(table)


@app.command()
def diff(a: Annotated[str | None, typer.Argument(metavar="FROM", help="From revision (default HEAD).")] = None,
         b: Annotated[str | None, typer.Argument(metavar="TO", help="To revision (default: working version).")] = None,
         dataset: Annotated[str | None, typer.Option(metavar="DATASET", help="Only this dataset.")] = None,
         limit: Annotated[int, typer.Option(metavar="N", help="List at most this many samples per dataset.")] = 20,
         as_json: JsonOpt = False) -> None:
    """Show added, removed and changed samples between two versions."""
    diffs = _repo().diff(a, b, dataset=dataset, limit=limit)
    if as_json:
        _print_json([d.to_dict() for d in diffs])
        return
    if not diffs:
        out.print("No differences.")
    for d in diffs:
        out.print(f"[bold]{d.name}[/]: +{d.added} added, -{d.removed} removed, ~{d.changed} changed, "
                  f"{d.unchanged} unchanged ({d.rows_a} -> {d.rows_b} samples)")
        for k, v in d.schema_changes.items():
            out.print(f"  schema {k.replace('_', ' ')}: {v}")
        if d.column_changes:
            out.print("  columns changed: " + ", ".join(f"{c} ({n})" for c, n in d.column_changes.items()))
        for s in d.samples:
            what = ", ".join(f"{k}={v!r}" for k, v in s.key.items()) if s.key else s.id
            cols = escape(f"  [{', '.join(s.columns)}]") if s.columns else ""
            mark = {"added": "[green]+[/]", "removed": "[red]-[/]", "changed": "[yellow]~[/]"}[s.status]
            out.print(f"  {mark} {escape(what)}{cols}")
        shown = len(d.samples)
        total = d.added + d.removed + d.changed
        if total > shown:
            out.print(f"  ... {total - shown} more (use --limit)")


@app.command()
def export(spec: Annotated[str, typer.Argument(metavar="DATASET[@REV]", help="DATASET or DATASET@REV.")],
           to: Annotated[str, typer.Option("--to", metavar="PATH",
                                           help="A .parquet/.csv/.jsonl file, or a folder (folder "
                                                "datasets: recreates the files).")],
           force: Annotated[bool, typer.Option("--force", help="Replace the file TO if it exists (a folder "
                                               "must be new or empty).")] = False) -> None:
    """Write a dataset version to a file or folder."""
    with _progress() as report:
        path = _repo().export(spec, to, force=force, progress=report)
    out.print(f"wrote {spec} to {path}")


@app.command()
def branch(name: Annotated[str | None, typer.Argument(help="Branch to create (none: list branches).")] = None,
           start: Annotated[str | None, typer.Option("--from", metavar="REV",
                                                     help="Start revision (default HEAD).")] = None,
           delete: Annotated[bool, typer.Option("--delete", "-d", help="Delete NAME.")] = False,
           force: Annotated[bool, typer.Option(help="With -d: delete even if not merged.")] = False,
           all_: Annotated[bool, typer.Option("--all", "-a", help="Also list the gate's branches (quarantine/*, "
                                              "staging/*).")] = False) -> None:
    """List, create or delete branches."""
    repo = _repo()
    if name is None:
        current = repo.branch
        for n, oid in repo.branches().items():
            if all_ or n == current or not n.startswith(GATE_BRANCHES):
                out.print(f"{'*' if n == current else ' '} {n}  {_short(oid)}", markup=False, highlight=False)
        return
    if delete:
        repo.delete_branch(name, force=force)
        out.print(f"deleted branch {name}")
        return
    oid = repo.create_branch(name, start)
    out.print(f"created branch {name} at {_short(oid)}")


@app.command()
def checkout(rev: Annotated[str, typer.Argument(help="Branch to work on, or any revision (detached).")],
             create: Annotated[bool, typer.Option("-b", help="Create the branch first.")] = False,
             force: Annotated[bool, typer.Option(help="Drop staged changes.")] = False) -> None:
    """Switch the working branch (or detach HEAD at a revision)."""
    repo = _repo()
    oid = repo.checkout(rev, create=create, force=force)
    where = f"branch {repo.branch}" if repo.branch else f"detached HEAD at {_short(oid)}"
    out.print(f"now on {where}")


@app.command()
def tag(name: Annotated[str | None, typer.Argument(help="Tag to create (none: list tags).")] = None,
        rev: Annotated[str | None, typer.Argument(help="Revision to tag (default HEAD).")] = None,
        delete: Annotated[bool, typer.Option("--delete", "-d", help="Delete NAME.")] = False) -> None:
    """List, create or delete tags."""
    repo = _repo()
    if name is None:
        for n, oid in repo.tags().items():
            out.print(f"{n}  {_short(oid)}")
        return
    if delete:
        repo.delete_tag(name)
        out.print(f"deleted tag {name}")
        return
    out.print(f"tagged {_short(repo.tag(name, rev))} as {name}")


@app.command()
def merge(rev: Annotated[str, typer.Argument(help="Branch or revision to merge into the working branch.")],
          message: Annotated[str | None, typer.Option("--message", "-m", metavar="MESSAGE",
                                                      help="Merge commit message.")] = None,
          no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the datasets' suites (recorded in "
                                                  "a merge commit).")] = False) -> None:
    """Merge a branch: fast-forward when possible, else three-way on samples (datasets with a suite are checked)."""
    result = _repo().merge(rev, message=message, no_verify=no_verify)
    if result.fast_forward:
        out.print(f"fast-forward to {_short(result.commit)}")
    elif result.up_to_date:
        out.print(f"already up to date at {_short(result.commit)}")
    elif not result.datasets:
        out.print(f"merged {rev} as {_short(result.commit)} (no dataset changed)")
    else:
        out.print(f"merged {rev} as {_short(result.commit)}: " +
                  ", ".join(f"{n} ({how})" for n, how in sorted(result.datasets.items())))


@app.command()
def fsck(as_json: JsonOpt = False,
         repair: Annotated[str | None, typer.Option(
             "--repair", metavar="SOURCE",
             help="Replace damaged or missing objects with good bytes from SOURCE: a copy of the repository "
                  "(a folder with .assay) or a file or folder of the original files.")] = None,
         rebuild_catalog: Annotated[bool, typer.Option(
             "--rebuild-catalog", help="Rebuild a damaged catalog (branches, tags) from the commits in the object "
             "store; the old file is kept, renamed.")] = False) -> None:
    """Verify every object's hash and every reference; --repair mends damaged objects, --rebuild-catalog refs."""
    if rebuild_catalog:
        _rebuild_catalog(as_json)
        return
    if repair is not None:
        with _progress() as report:
            fixed = _repo().repair(repair, progress=report)
        if not as_json:
            out.print(f"repaired {len(fixed.repaired)} of {fixed.wanted} damaged or missing objects from {repair}")
    with _progress() as report:
        r = _repo().fsck(progress=report)
    if as_json:
        _print_json(r.to_dict())
    else:
        out.print(f"checked {r.objects} objects, {r.reachable} reachable")
        for oid in r.corrupt:
            out.print(f"[red]corrupt[/] {oid}")
        for oid, why in r.missing:
            out.print(f"[red]missing[/] {oid} (referenced by {why})")
        for oid, e in r.unreadable:
            out.print(f"[red]unreadable[/] {oid}: {e}")
        out.print("[green]ok[/]" if r.ok else "[red]repository is damaged[/]")
    if not r.ok:
        raise typer.Exit(1)


def _rebuild_catalog(as_json: bool) -> None:
    from assay.repo.upkeep import rebuild_catalog

    with _progress() as report:
        r = rebuild_catalog(_state["repo"], progress=report)
    if as_json:
        _print_json(r.to_dict())
        return
    for moved in r.moved_to:
        out.print(f"moved the old catalog file to {moved}", markup=False, soft_wrap=True)
    out.print(f"created a new catalog {r.catalog}", markup=False, soft_wrap=True)
    out.print(f"found {r.commits} commits in {r.objects} objects, {len(r.heads)} of them heads")
    for kind, name, oid, how in r.refs:
        why = {"kept": "read from the old catalog", "head": "a head commit",
               "newest head": "the newest head commit"}[how]
        out.print(f"{kind} {name} -> {_short(oid)} ({why})", markup=False)
    for name, oid in r.dropped:
        out.print(f"[yellow]dropped[/] {escape(name)} -> {_short(oid)}: that commit is not in the object store")
    if r.unreadable:
        out.print(f"[yellow]{r.unreadable} objects could not be read[/]; run `assay fsck`")
    if r.head_note:
        out.print(escape(r.head_note))
    if not r.heads:
        out.print("no commits found: the new catalog is empty")


@app.command()
def gc(grace: Annotated[float, typer.Option(metavar="SECONDS",
                                            help="Keep unreachable objects younger than this many seconds.")]
       = 3600.0,
       dry_run: Annotated[bool, typer.Option(help="Only count what would be removed.")] = False) -> None:
    """Remove objects that no branch, tag or staged change reaches."""
    r = _repo().gc(grace=grace, dry_run=dry_run)
    out.print(f"{r.unreachable} unreachable objects; removed {r.removed}, kept {r.kept_recent} younger than "
              f"{grace:g} s; {r.tmp_removed} temporary files removed")


@app.command()
def compact(names: Annotated[list[str] | None, typer.Argument(metavar="DATASET",
                                                              help="Datasets (default: all).")] = None) -> None:
    """Rewrite many small fragments (and deleted rows) into fewer, full fragments; commits the result."""
    with _progress() as report:
        r = _repo().compact(names, progress=report)
    if not r.datasets:
        out.print("nothing to compact")
    for n, (before, after) in r.datasets.items():
        out.print(f"{n}: {before} -> {after} fragments")
    if r.commit:
        out.print(f"committed {_short(r.commit)}")


suite_app = Typer(help="Suites: the expectations a dataset must meet, versioned with it.",
                  no_args_is_help=True)
app.add_typer(suite_app, name="suite")


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
        repo.set_suite(spec.partition("@")[0], text)
        err.print(f"staged as the suite of {spec.partition('@')[0]}")


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

    name, _, rev = spec.partition("@")
    text = _repo().suite_text(name, rev or None)
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
          as_json: JsonOpt = False) -> None:
    """Check a dataset version against a suite; exits with 1 when an error-level expectation fails."""
    from assay import load_suite, run_suite
    from assay.errors import RefNotFound

    repo = _repo()
    name, _, rev = spec.partition("@")
    if suite is None:
        text = repo.suite_text(name, rev or None)
        if text is None:
            raise RefNotFound(f"dataset {name!r} has no suite; give --suite FILE or stage one with `assay suite set`")
        loaded = load_suite(text)
    else:
        loaded = load_suite(Path(suite))
    result = run_suite(repo.dataset(spec), loaded, other=repo.dataset,
                       reference=lambda ref: repo.dataset(name, ref))
    if html_file:
        from assay.report import check_report_html

        _output(html_file).write_text(check_report_html(result), encoding="utf-8")
        err.print(f"wrote {html_file}")
    if as_json:
        _print_json(result.to_dict())
    else:
        _print_check(result)
    if not result.ok:
        raise typer.Exit(1)


def _print_check(result: Any) -> None:
    from assay.checks.gate import describe

    table = Table("", "expectation", "severity", "observed", "failing", title=f"{result.dataset}: {result.rows} rows")
    for r in result.results:
        mark = "[green]pass[/]" if r.success else ("[red]FAIL[/]" if r.severity == "error" else "[yellow]warn[/]")
        observed = r.message or json.dumps(r.observed, default=str)[:60]
        table.add_row(mark, escape(r.expectation.label), r.severity, escape(observed),
                      "" if r.failing is None else str(r.failing))
    out.print(table)
    for r in result.failures + result.warnings:
        out.print(escape(describe(r)))
    verdict = "[green]ok[/]" if result.ok else f"[red]{len(result.failures)} error-level failure(s)[/]"
    out.print(f"{verdict}, {len(result.warnings)} warning(s)")


@app.command()
def quickstart(path: Annotated[str, typer.Option(metavar="FOLDER",
                                                 help="Folder for the demo repository.")] = "assay-quickstart"
               ) -> None:
    """Build a demo repository from bundled data (scikit-learn digits) and show what assay does."""
    from assay.cli.quickstart import run

    with _progress() as report:
        for line in run(Path(path), progress=report):
            out.print(line, markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point: run the app, turning assay errors and usage errors into messages and exit codes."""
    try:
        code = app(standalone_mode=False, prog_name="assay")  # click returns typer.Exit's code
        sys.exit(code if isinstance(code, int) else 0)
    except AssayError as e:
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(1 if not isinstance(e, MergeConflict) else 3)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(130)
    except typer.TyperException as e:  # usage errors (typer's own click): the usage, the error, exit code 2
        show = getattr(e, "show", None)
        if callable(show):
            show()
        else:
            err.print(f"error: {e.format_message()}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except Exception as e:
        if _disk_full(e):
            err.print(f"[red]error:[/] {escape(str(_full_error(e)))}", highlight=False, markup=True, soft_wrap=True)
            sys.exit(1)
        raise


def _disk_full(e: BaseException) -> bool:
    """A full filesystem seen by the store (OSError ENOSPC) or by SQLite ("database or disk is full")."""
    from assay.store.fs import is_full

    return is_full(e) or "database or disk is full" in str(e)


def _full_error(e: BaseException) -> BaseException:
    from assay.store.fs import out_of_space

    where = getattr(e, "filename", None) or "the repository"
    return out_of_space(where) if not isinstance(e, AssayError) else e


from assay.cli import gate_cmds  # noqa: E402,F401  (registers ingest, quarantine, scores, screen)
from assay.cli.model_cmds import app as model_app  # noqa: E402

app.add_typer(model_app, name="model")
