"""Upkeep commands: fsck (with --repair and --rebuild-catalog), gc, compact."""

from __future__ import annotations

from typing import Annotated

import typer

from assay.cli._common import (
    JsonOpt,
    _print_json,
    _progress,
    _repo,
    _short,
    _state,
    escape,
    out,
)
from assay.cli._help import Typer

app = Typer()


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
        if r.not_fetched:
            out.print(f"{r.not_fetched} objects not fetched yet (a partial clone: read from {r.promisor} on first "
                      "use)", markup=False)
        if r.promisor_error:
            out.print(f"could not ask remote {r.promisor} about the objects absent here ({r.promisor_error}); "
                      "they are listed as missing", markup=False)
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
       dry_run: Annotated[bool, typer.Option(help="Only count what would be removed.")] = False,
       as_json: JsonOpt = False) -> None:
    """Remove objects that no branch, tag or staged change reaches."""
    r = _repo().gc(grace=grace, dry_run=dry_run)
    if as_json:
        _print_json(r.to_dict())
        return
    out.print(f"{r.unreachable} unreachable objects; removed {r.removed}, kept {r.kept_recent} younger than "
              f"{grace:g} s; {r.tmp_removed} temporary files removed")


@app.command()
def compact(names: Annotated[list[str] | None, typer.Argument(metavar="DATASET",
                                                              help="Datasets (default: all).")] = None,
            as_json: JsonOpt = False) -> None:
    """Rewrite many small fragments (and deleted rows) into fewer, full fragments; commits the result."""
    with _progress() as report:
        r = _repo().compact(names, progress=report)
    if as_json:
        _print_json(r.to_dict())
        return
    if not r.datasets:
        out.print("nothing to compact")
    for n, (before, after) in r.datasets.items():
        out.print(f"{n}: {before} -> {after} fragments")
    if r.commit:
        out.print(f"committed {_short(r.commit)}")
