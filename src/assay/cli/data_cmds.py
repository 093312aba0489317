"""Commands on datasets: add, rm, datasets, diff, export, restore. Thin: parse, call the library once, render."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from assay.cli._common import (
    EngineOpt,
    JsonOpt,
    _arrow_without_pandas,
    _print_json,
    _progress,
    _repo,
    _table,
    escape,
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
    as_json: JsonOpt = False,
    engine: EngineOpt = None,
) -> None:
    """Stage a change to dataset NAME from SOURCE."""
    keys = [k.strip() for part in key or [] for k in part.split(",") if k.strip()] or None
    repo = _repo(engine)
    quick = repo.quick_add(name, source, key=keys, mode=mode, labels=labels) if os.path.isdir(source) else None
    if quick is not None and quick.rows is not None:  # told by the stat cache: no Arrow imported
        if as_json:
            _print_json({"dataset": name, "changed": False, "added": 0, "updated": 0, "removed": 0,
                         "unchanged": quick.rows, "rows": quick.rows, "written_rows": 0, "notes": []})
        else:
            out.print(f"{name}: no change ({quick.rows} samples)")
        return
    _arrow_without_pandas()
    with _progress() as report:
        result = repo.add(name, source, key=keys, mode=mode, labels=labels, format=format, progress=report,
                          files=quick.files if quick is not None else None)
    if as_json:
        _print_json({"dataset": name, "changed": result.changed, "added": result.added, "updated": result.updated,
                     "removed": result.removed, "unchanged": result.unchanged, "rows": result.manifest.rows,
                     "written_rows": result.written_rows, "notes": result.notes})
        return
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
    _arrow_without_pandas()
    repo = _repo()
    rows = {n: repo.read_manifest(m) for n, m in repo.datasets(rev).items()}
    if as_json:
        _print_json({n: {"rows": m.rows, "kind": m.kind, "key": m.key,
                         "columns": {f.name: str(f.type) for f in m.schema}} for n, m in rows.items()})
        return
    table = _table("dataset", "kind", "samples", "columns")
    for n, m in sorted(rows.items()):
        table.add_row(n, m.kind, str(m.rows), ", ".join(f"{f.name}:{f.type}" for f in m.schema))
    out.print(table)


@app.command()
def diff(a: Annotated[str | None, typer.Argument(metavar="FROM", help="From revision (default HEAD).")] = None,
         b: Annotated[str | None, typer.Argument(metavar="TO", help="To revision (default: working version).")] = None,
         dataset: Annotated[str | None, typer.Option(metavar="DATASET", help="Only this dataset.")] = None,
         limit: Annotated[int, typer.Option(metavar="N", help="List at most this many samples per dataset.")] = 20,
         stat: Annotated[bool, typer.Option("--stat", help="Counts only: no samples listed.")] = False,
         as_json: JsonOpt = False, engine: EngineOpt = None) -> None:
    """Show added, removed and changed samples between two versions, in key order, with old -> new values."""
    _arrow_without_pandas()
    diffs = _repo(engine).diff(a, b, dataset=dataset, limit=0 if stat else limit)
    if as_json:
        _print_json([d.to_dict() for d in diffs])
        return
    if not diffs:
        out.print("No differences.")
    styled = not out.is_plain  # into a pipe or file: the same lines without markup, so Rich is never loaded
    esc = escape if styled else str

    def say(line: str) -> None:
        out.print(line, markup=styled)

    def style(name: str, text: str) -> str:
        return f"[{name}]{text}[/]" if styled else text

    for d in diffs:
        say(f"{style('bold', esc(d.name))}: +{d.added} added, -{d.removed} removed, ~{d.changed} changed, "
            f"{d.unchanged} unchanged ({d.rows_a} -> {d.rows_b} samples)")
        for k, v in d.schema_changes.items():
            say(f"  schema {k.replace('_', ' ')}: {esc(str(v))}")
        if d.column_changes:
            say("  columns changed: " + ", ".join(f"{esc(c)} ({n})" for c, n in d.column_changes.items()))
        if stat:
            continue
        for s in d.samples:
            what = ", ".join(f"{k}={v!r}" for k, v in s.key.items()) if s.key else s.id[:12]
            mark = style({"added": "green", "removed": "red", "changed": "yellow"}[s.status],
                         {"added": "+", "removed": "-", "changed": "~"}[s.status])
            change = "  " + "; ".join(f"{c}: {_value(old)} -> {_value(new)}" for c, (old, new) in s.values.items()) \
                if s.values else (f"  [{', '.join(s.columns)}]" if s.columns else "")
            say(f"  {mark} {esc(what)}{esc(change)}")
        shown = len(d.samples)
        total = d.added + d.removed + d.changed
        if total > shown:
            say(f"  ... {total - shown} more (use --limit N, or --json)")


def _value(v: Any) -> str:
    """A value in a diff line: short and unambiguous (strings quoted, long ones cut, bytes by size)."""
    if isinstance(v, bytes):
        return f"<{len(v):,} bytes>"
    if isinstance(v, float):
        return f"{v:.6g}"
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


@app.command()
def export(spec: Annotated[str, typer.Argument(metavar="DATASET[@REV]", help="DATASET or DATASET@REV.")],
           to: Annotated[str, typer.Option("--to", metavar="PATH",
                                           help="A .parquet/.csv/.jsonl file, or a folder (folder "
                                                "datasets: recreates the files).")],
           force: Annotated[bool, typer.Option("--force", help="Replace the file TO if it exists (a folder "
                                               "must be new or empty).")] = False) -> None:
    """Write a dataset version to a file or folder."""
    _arrow_without_pandas()
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
