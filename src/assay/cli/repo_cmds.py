"""Commands on the repository's history and refs: init, status, commit, reset, log, show, branch, checkout, tag,
merge. Thin: parse, call the library once, render."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from assay.cli._common import (
    GATE_BRANCHES,
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
    table = _table("dataset", "change", "samples", title="Staged")
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
                                                   "the commit).")] = False,
           as_json: JsonOpt = False) -> None:
    """Record the staged changes as a commit (datasets with a suite are checked first)."""
    repo = _repo()
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
