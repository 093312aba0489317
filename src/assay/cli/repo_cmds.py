"""Commands on the repository's history and refs: init, status, commit, reset, revert, log, show, branch, checkout,
tag, merge. Thin: parse, call the library once, render."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from assay.cli._common import (
    GATE_BRANCHES,
    EngineOpt,
    JsonOpt,
    _arrow_without_pandas,
    _print_json,
    _repo,
    _short,
    _table,
    _when,
    escape,
    out,
)
from assay.cli._help import Typer

app = Typer()


@app.command()
def init(path: Annotated[str, typer.Argument(help="Folder to create the repository in.")] = ".",
         catalog: Annotated[str | None, typer.Option(metavar="URL",
                                                     help="Catalog URL: sqlite:///FILE or postgresql://HOST/DB "
                                                          "(credentials from the environment, never stored).")]
         = None,
         store: Annotated[str | None, typer.Option(metavar="URL",
                                                   help="Object store URL: s3://BUCKET/PREFIX (endpoint from "
                                                        "AWS_ENDPOINT_URL, credentials from the AWS chain).")]
         = None) -> None:
    """Create a repository (a .assay folder) in PATH."""
    from assay.repo import init as do_init

    repo = do_init(path, catalog_url=catalog, store_url=store)
    out.print(f"Initialised an empty assay repository in {repo.dir}")


@app.command()
def reset(targets: Annotated[list[str] | None, typer.Argument(
              metavar="REV|DATASET",
              help="Datasets to unstage (none, or HEAD: all); with --hard or --soft, the revision to move to.")] = None,
          hard: Annotated[bool, typer.Option("--hard", help="Move the branch to REV and clear the staging area "
                                             "(refused while changes are staged, unless --force).")] = False,
          soft: Annotated[bool, typer.Option("--soft", help="Move the branch to REV; what differs from REV stays "
                                             "staged, to commit again.")] = False,
          force: Annotated[bool, typer.Option("--force", "-f", help="With --hard: drop staged changes.")] = False,
          as_json: JsonOpt = False) -> None:
    """Unstage changes (all, or those of DATASETs), or move the working branch to REV (--hard, --soft)."""
    from assay.errors import InputError
    from assay.repo import undo

    repo, names = _repo(), list(targets or [])
    if hard or soft:
        if (hard and soft) or len(names) > 1:
            raise InputError("give one of --hard and --soft, and at most one revision: assay reset --hard REV")
        moved = undo.reset(repo, names[0] if names else "HEAD", mode="hard" if hard else "soft", force=force)
        if as_json:
            _print_json(moved.to_dict())
        else:
            _print_moved(moved)
        return
    if force:
        raise InputError("--force goes with --hard (assay reset --hard REV --force); plain reset only unstages")
    unstaged, idle = undo.unstage(repo, names[1:] if names[:1] == ["HEAD"] else names)
    if as_json:
        _print_json({"unstaged": unstaged, "nothing_staged": idle})
        return
    if unstaged:
        out.print("unstaged " + ", ".join(unstaged), markup=False)
    for n in idle:
        out.print(f"{n}: nothing staged", markup=False)
    if not unstaged and not idle:
        out.print("nothing was staged; nothing changed")


def _print_moved(moved: Any) -> None:
    """What a reset, branch -f or checkout did: where it went, what is staged, and commits left behind."""
    where = f"branch {moved.branch}" if moved.branch else "HEAD"
    if not moved.changed:
        out.print(f"{where} is already at {_short(moved.commit)}; nothing changed", markup=False)
    elif moved.commit == moved.previous:
        out.print(f"{where} stays at {_short(moved.commit)}; the staging area was " +
                  ("rewritten" if moved.staged else "cleared"), markup=False)
    else:
        out.print(f"{where} is now at {_short(moved.commit)} (was {_short(moved.previous)})", markup=False)
    if moved.staged:
        out.print("staged: " + ", ".join(moved.staged) + " (commit them with `assay commit -m MESSAGE`)",
                  markup=False)
    _warn_left_behind(moved.left_behind)


def _warn_left_behind(lost: Any) -> None:
    if not lost:
        return
    from assay.cli._common import err

    shown = ", ".join(_short(o) for o in lost[:5]) + (f" and {len(lost) - 5} more" if len(lost) > 5 else "")
    err.print(f"warning: leaving {len(lost)} commit(s) behind, not reached by any branch or tag: {shown}\n"
              f"To keep them, make a branch there: assay branch NAME {_short(lost[0])}", markup=False,
              highlight=False, soft_wrap=True)


@app.command()
def revert(rev: Annotated[str, typer.Argument(help="The commit to undo.")],
           message: Annotated[str | None, typer.Option("--message", "-m", metavar="MESSAGE",
                                                       help="Commit message (default: Revert \"...\").")] = None,
           mainline: Annotated[int | None, typer.Option("--mainline", metavar="N",
                                                        help="Reverting a merge: the parent whose side is kept "
                                                             "(1 or 2).")] = None,
           no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the datasets' suites (recorded in "
                                                   "the commit).")] = False,
           as_json: JsonOpt = False) -> None:
    """Make a new commit that undoes REV (a three-way merge of HEAD with REV's parent; conflicts as on merge)."""
    from assay.repo import undo

    result = undo.revert(_repo(), rev, mainline=mainline, message=message, no_verify=no_verify)
    if as_json:
        _print_json(result.to_dict())
        return
    what = ", ".join(f"{n} ({how})" for n, how in sorted(result.datasets.items())) or "no dataset changed (suites "\
        "or other content only)"
    out.print(f"reverted {_short(result.reverted)} as {_short(result.commit)}: {what}", markup=False)


@app.command()
def status(as_json: JsonOpt = False) -> None:
    """Show the working branch, what is staged, and what changed in working folders of folder datasets."""
    from assay.repo.workdir import folder_changes

    repo = _repo()
    st, folders = repo.status(), folder_changes(repo)
    if as_json:
        _print_json({**st.to_dict(), "folders": [f.to_dict() for f in folders]})
        return
    where = f"On branch {st.branch}" if st.branch else f"HEAD detached at {_short(st.commit)}"
    out.print(f"{where}, at commit {_short(st.commit)}")
    _print_folders([f for f in folders if not f.clean])
    if not st.staged:
        out.print("Nothing staged.")
        return
    table = _table("dataset", "change", "samples", title="Staged")
    for n, s in sorted(st.staged.items()):
        table.add_row(n, _staged_change(s), str(s.get("rows", "")))
    out.print(table)
    out.print("commit them with `assay commit -m MESSAGE`; unstage with `assay reset [DATASET...]`")


def _print_folders(changed: list[Any]) -> None:
    for f in changed:
        if f.missing:
            out.print(f"{f.dataset}: its working folder {f.folder} is gone; `assay restore {f.dataset} --to DIR` "
                      "writes it again", markup=False)
            continue
        if f.problem:
            out.print(f"{f.dataset}: its working folder {f.folder} cannot be compared: {f.problem}", markup=False)
            continue
        out.print(f"Changes in the working folder of {f.dataset} ({f.folder}), not added:", markup=False)
        for mark, paths in (("new", f.added), ("modified", f.modified), ("deleted", f.deleted)):
            for p in paths[:20]:
                out.print(f"  {mark + ':':10} {p}", markup=False, highlight=False)
            if len(paths) > 20:
                out.print(f"  ... and {len(paths) - 20} more {mark}", markup=False)
        out.print(f"  `assay add {f.dataset} {f.folder}` records the folder as it is (files it lacks leave the "
                  f"dataset); `assay restore {f.dataset}` makes it match the dataset again", markup=False)


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
                                                   "the commit).")] = False,
           as_json: JsonOpt = False, engine: EngineOpt = None) -> None:
    """Record the staged changes as a commit (datasets with a suite are checked first)."""
    repo = _repo(engine)
    oid = repo.commit(message, author=author, no_verify=no_verify)
    if as_json:
        _print_json({"commit": oid, "branch": repo.branch, "message": message})
        return
    out.print(f"[{repo.branch or 'detached'} {_short(oid)}] {message}", markup=False)


@app.command()
def log(rev: Annotated[str | None, typer.Argument(help="Revision to start from (default HEAD).")] = None,
        limit: Annotated[int | None, typer.Option("--limit", "-n", metavar="N",
                                                  help="At most this many commits.")] = None,
        dataset: Annotated[str | None, typer.Option(metavar="DATASET",
                                                    help="Only commits that changed this dataset.")] = None,
        since: Annotated[str | None, typer.Option(metavar="DATE", help="Only commits made at or after this "
                                                  "time (ISO 8601, UTC unless it names a zone).")] = None,
        author: Annotated[str | None, typer.Option(metavar="NAME", help="Only commits whose author contains "
                                                   "NAME (any case).")] = None,
        oneline: Annotated[bool, typer.Option("--oneline", help="One line per commit: id and message.")] = False,
        graph: Annotated[bool, typer.Option("--graph", help="Draw the branches and merges at the left.")] = False,
        format_: Annotated[str, typer.Option("--format", metavar="FORMAT",
                                             help="text | oneline | json")] = "text",
        as_json: JsonOpt = False) -> None:
    """List commits, newest first."""
    from assay.errors import InputError
    from assay.repo import undo

    if format_ not in ("text", "oneline", "json"):
        raise InputError(f"--format {format_!r}: use text, oneline or json")
    style = "json" if as_json else "oneline" if oneline else format_
    entries = undo.log(_repo(), rev, limit=limit, dataset=dataset, since=since, author=author)
    if style == "json":
        _print_json([{"commit": o, **c.to_dict()} for o, c in entries])
        return
    if not entries:
        out.print("No commits yet." if rev is None and since is None and author is None else "No commits match.")
    from assay.cli._graph import graph_rows

    rows = graph_rows(entries) if graph else [(o, "") for o, _ in entries]
    commits = dict(entries)
    for oid, prefix in rows:
        if oid is None:
            out.print(prefix, markup=False, highlight=False)
        elif style == "oneline":
            first = commits[oid].message.splitlines()[0] if commits[oid].message else ""
            out.print(f"{escape(prefix)}[bold yellow]{_short(oid)}[/] {escape(first)}", highlight=False)
        else:
            _print_entry(oid, commits[oid], prefix)


def _print_entry(oid: str, c: Any, prefix: str) -> None:
    code = ""
    if c.code:
        code = f"  code {c.code['git_commit'][:10]}{' (dirty)' if c.code.get('dirty') else ''}"
    merge = f"  merge {' '.join(_short(p) for p in c.parents)}" if len(c.parents) > 1 else ""
    out.print(f"{escape(prefix)}[bold yellow]{_short(oid)}[/] {_when(c.time)}  {escape(c.author)}{code}{merge}")
    rest = prefix.replace("*", "|")
    for line in c.message.splitlines() or [""]:
        out.print(f"{rest}    {line}", markup=False, highlight=False)


@app.command()
def show(rev: Annotated[str | None, typer.Argument(help="Revision (default HEAD).")] = None,
         as_json: JsonOpt = False) -> None:
    """Show a commit: its metadata and datasets."""
    _arrow_without_pandas()
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
    table = _table("dataset", "kind", "samples", "columns", "key", "fragments", "manifest")
    for n, m in sorted(manifests.items()):
        table.add_row(n, m.kind, str(m.rows), str(len(m.schema)), ",".join(m.key) if m.key else "(content)",
                      str(len(m.fragments)), _short(c.datasets[n]))
    out.print(table)


@app.command()
def branch(name: Annotated[str | None, typer.Argument(help="Branch to create (none: list branches).")] = None,
           start_point: Annotated[str | None, typer.Argument(metavar="REV",
                                                             help="Where it starts (default HEAD).")] = None,
           start: Annotated[str | None, typer.Option("--from", metavar="REV",
                                                     help="Start revision (default HEAD), as REV.")] = None,
           delete: Annotated[bool, typer.Option("--delete", "-d", help="Delete NAME.")] = False,
           force: Annotated[bool, typer.Option("--force", "-f", help="With -d: delete even if not merged; else "
                                               "move NAME to REV even if it exists.")] = False,
           all_: Annotated[bool, typer.Option("--all", "-a", help="Also list the gate's branches (quarantine/*, "
                                              "staging/*).")] = False) -> None:
    """List, create, move (-f) or delete branches."""
    from assay.errors import InputError

    repo = _repo()
    if name is None:
        current = repo.branch
        for n, oid in repo.branches().items():
            if all_ or n == current or not n.startswith(GATE_BRANCHES):
                out.print(f"{'*' if n == current else ' '} {n}  {_short(oid)}", markup=False, highlight=False)
        return
    if start is not None and start_point is not None:
        raise InputError(f"give the start revision once: assay branch {name} REV (or --from REV)")
    rev = start_point or start
    if delete:
        if rev is not None:
            raise InputError("assay branch -d NAME deletes a branch; it takes no revision")
        repo.delete_branch(name, force=force)
        out.print(f"deleted branch {name}")
        return
    if force:
        from assay.repo import undo

        _print_moved(undo.force_branch(repo, name, rev))
        return
    oid = repo.create_branch(name, rev)
    out.print(f"created branch {name} at {_short(oid)}")


@app.command()
def checkout(rev: Annotated[str, typer.Argument(metavar="REV|DATASET@REV",
                                                help="Branch to work on, or any revision (detached); with --to, "
                                                     "the folder dataset version to write.")],
             create: Annotated[bool, typer.Option("-b", help="Create the branch first.")] = False,
             to: Annotated[str | None, typer.Option("--to", metavar="DIR",
                                                    help="Write the files of DATASET@REV into DIR (only what "
                                                         "differs; as `assay restore`) instead of switching.")] = None,
             force: Annotated[bool, typer.Option(help="Drop staged changes (with --to: overwrite files the "
                                                 "repository does not hold).")] = False) -> None:
    """Switch the working branch (or detach HEAD at a revision), or write a folder dataset's files (--to)."""
    if to is not None:
        from assay.cli.data_cmds import print_restored

        if create:
            from assay.errors import InputError

            raise InputError("-b creates a branch; with --to, checkout writes files and moves no branch")

        print_restored(rev, to, force)
        return
    from assay.repo import undo

    if "@" in rev.replace("@{", "") and not rev.startswith("@"):
        from assay.errors import InputError

        raise InputError(f"{rev!r} names a dataset version: give --to DIR to write its files there "
                         f"(assay checkout {rev} --to DIR); to switch, check out a branch, tag or commit")
    moved = undo.checkout(_repo(), rev, create=create, force=force)
    where = f"branch {moved.branch}" if moved.branch else f"detached HEAD at {_short(moved.commit)}"
    out.print(f"now on {where}")
    _warn_left_behind(moved.left_behind)


@app.command()
def tag(name: Annotated[str | None, typer.Argument(help="Tag to create (none: list tags).")] = None,
        rev: Annotated[str | None, typer.Argument(help="Revision to tag (default HEAD).")] = None,
        delete: Annotated[bool, typer.Option("--delete", "-d", help="Delete NAME.")] = False,
        as_json: JsonOpt = False) -> None:
    """List, create or delete tags."""
    repo = _repo()
    if name is None and as_json:
        _print_json(repo.tags())
        return
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
                                                  "a merge commit).")] = False,
          ours: Annotated[bool, typer.Option("--ours", help="Conflicting samples keep the working branch's "
                                             "version.")] = False,
          theirs: Annotated[bool, typer.Option("--theirs", help="Conflicting samples take REV's version.")] = False,
          resolve: Annotated[list[str] | None, typer.Option(
              "--resolve", metavar="DATASET=FILE",
              help="Settle DATASET's conflicts with FILE's rows: every conflicting sample's key and final "
                   "values (CSV, Parquet, JSONL); repeat per dataset.")] = None,
          as_json: JsonOpt = False) -> None:
    """Merge a branch: fast-forward when possible, else three-way on samples (datasets with a suite are checked)."""
    from assay.errors import InputError

    if ours and theirs:
        raise InputError("give --ours or --theirs, not both")
    settle = {}
    for item in resolve or []:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise InputError(f"--resolve {item!r}: write DATASET=FILE, e.g. --resolve train=fixes.csv")
        settle[name] = file
    result = _repo().merge(rev, message=message, no_verify=no_verify,
                           prefer="ours" if ours else "theirs" if theirs else None, resolve=settle)
    if as_json:
        _print_json(result.to_dict())
        return
    if result.fast_forward:
        out.print(f"fast-forward to {_short(result.commit)}")
    elif result.up_to_date:
        out.print(f"already up to date at {_short(result.commit)}")
    elif not result.datasets:
        out.print(f"merged {rev} as {_short(result.commit)} (no dataset changed)")
    else:
        out.print(f"merged {rev} as {_short(result.commit)}: " +
                  ", ".join(f"{n} ({how})" for n, how in sorted(result.datasets.items())))
