"""Commands on datasets: add, rm, datasets, diff, export, restore. Thin: parse, call the library once, render."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from assay.cli._common import (
    JsonOpt,
    _print_json,
    _progress,
    _repo,
    out,
)
from assay.cli._help import Typer

app = Typer()


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
def restore(spec: Annotated[str, typer.Argument(metavar="DATASET[@REV]", help="A folder dataset, at REV "
                                                "(default: its working version).")],
            to: Annotated[str | None, typer.Option("--to", metavar="DIR",
                                                   help="Folder to write into (default: the folder the dataset "
                                                        "was added from).")] = None,
            force: Annotated[bool, typer.Option("--force", help="Also overwrite or remove files whose bytes the "
                                                "repository does not hold.")] = False,
            as_json: JsonOpt = False) -> None:
    """Write a folder dataset's files as of a version into its working folder, changing only what differs."""
    print_restored(spec, to, force, as_json)


def print_restored(spec: str, to: str | None, force: bool, as_json: bool = False) -> None:
    """Restore (``assay restore``, ``assay checkout DATASET@REV --to DIR``) and say what changed."""
    from assay.repo.workdir import restore as do_restore

    with _progress() as report:
        r = do_restore(_repo(), spec, to, force=force, progress=report)
    if as_json:
        _print_json(r.to_dict())
        return
    if not r.written and not r.removed:
        out.print(f"{r.folder} already holds {spec} ({r.unchanged} files); nothing changed", markup=False)
        return
    out.print(f"{spec} -> {r.folder}: {len(r.written)} file(s) written, {len(r.removed)} removed, "
              f"{r.unchanged} unchanged", markup=False)
