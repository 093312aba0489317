"""Commands between repositories: the `remote` group (add, list, remove), clone, fetch, pull, push."""

from __future__ import annotations

from typing import Annotated

import typer

from assay.cli._common import JsonOpt, _print_json, _progress, _repo, _short, out
from assay.cli._help import Typer

app = Typer()
remote_app = Typer(help="Remotes: other repositories (folders, S3) to clone from, fetch from and push to.",
                   no_args_is_help=True)
RemoteArg = Annotated[str, typer.Argument(metavar="REMOTE", help="Remote name (default origin).")]
CatalogOpt = Annotated[str | None, typer.Option(
    "--catalog", metavar="URL", help="S3 remotes: keep the refs in this PostgreSQL catalog (postgresql://HOST/DB; "
    "the password from PGPASSWORD or ~/.pgpass) instead of in the bucket.")]
EndpointOpt = Annotated[str | None, typer.Option(
    "--endpoint-url", metavar="URL", help="S3 remotes: the server (default AWS_ENDPOINT_URL, else AWS).")]


@remote_app.command("add")
def remote_add(name: Annotated[str, typer.Argument(metavar="NAME", help="Name for the remote, e.g. origin.")],
               url: Annotated[str, typer.Argument(metavar="URL", help="A repository folder (path or file:// URL) "
                                                  "or S3 (s3://bucket/prefix).")],
               catalog: CatalogOpt = None, endpoint_url: EndpointOpt = None) -> None:
    """Remember another repository under NAME (no credentials are stored)."""
    from assay.remote import add_remote

    stored = add_remote(_repo(), name, url, catalog=catalog, endpoint_url=endpoint_url)
    out.print(f"added remote {name} -> {stored}", markup=False, highlight=False)


@remote_app.command("list")
def remote_list(as_json: JsonOpt = False) -> None:
    """List remotes, with the branches last fetched from each."""
    from assay.remote.remotes import read_remote_entries

    repo = _repo()
    remotes = read_remote_entries(repo)
    seen = {r.name: r.commit for r in repo.catalog.list_refs("remote")}
    if as_json:
        _print_json({n: {**e, "branches": {k.split("/", 2)[2]: v for k, v in seen.items()
                                           if k.startswith(f"remotes/{n}/")}} for n, e in remotes.items()})
        return
    if not remotes:
        out.print("No remotes; add one with `assay remote add NAME URL`.", markup=False)
    for n, e in remotes.items():
        extra = "".join(f"  ({k.replace('_', ' ')} {e[k]})" for k in ("endpoint_url", "catalog") if k in e)
        out.print(f"{n}  {e['url']}{extra}", markup=False, highlight=False)
        for k, v in sorted(seen.items()):
            if k.startswith(f"remotes/{n}/"):
                out.print(f"  {k[len('remotes/'):]}  {_short(v)}", markup=False, highlight=False)


@remote_app.command("remove")
def remote_remove(name: Annotated[str, typer.Argument(metavar="NAME", help="Remote to forget.")]) -> None:
    """Forget a remote and what was fetched of its branches (the objects stay until gc)."""
    from assay.remote import remove_remote

    remove_remote(_repo(), name)
    out.print(f"removed remote {name}", markup=False)


@app.command()
def clone(url: Annotated[str, typer.Argument(metavar="URL", help="The repository to copy (a folder, or "
                                             "s3://bucket/prefix).")],
          path: Annotated[str | None, typer.Argument(metavar="DIR", help="New folder (default: URL's last "
                                                     "part).")] = None,
          branch: Annotated[str | None, typer.Option("--branch", "-b", metavar="BRANCH",
                                                     help="Branch to check out (default: the remote's).")] = None,
          catalog: CatalogOpt = None, endpoint_url: EndpointOpt = None,
          datasets: Annotated[list[str] | None, typer.Option(
              "--datasets", metavar="A,B", help="A partial clone: the data of these datasets only (every commit "
              "and manifest still); the other datasets' data is read from the remote on first use.")] = None,
          lazy: Annotated[bool, typer.Option(
              "--lazy", help="A partial clone that fetches no data (fragments, blobs, model artifacts) until it "
              "is read, verified on arrival; with --datasets, theirs is fetched now.")] = False,
          as_json: JsonOpt = False) -> None:
    """Copy a repository: every object its branches and tags reach, its branches as origin/*, one checked out.

    --datasets and --lazy make a partial clone (as git's): a 1 TB repository with the part you need here."""
    from pathlib import Path

    from assay.remote import clone as do_clone

    target = path or Path(url.rstrip("/")).name or "clone"
    with _progress() as report:
        repo = do_clone(url, target, branch=branch, catalog=catalog, endpoint_url=endpoint_url, datasets=datasets,
                        lazy=lazy, progress=report)
    with repo:
        partial = None if not (datasets or lazy) else ("lazy" if lazy else "datasets")
        if as_json:
            _print_json({"path": str(repo.root), "branch": repo.branch, "commit": repo.head(), "partial": partial})
            return
        out.print(f"cloned {url} into {repo.root}, on branch {repo.branch} at {_short(repo.head())}",
                  markup=False, highlight=False)
        if partial:
            what = ("the data of " + ", ".join(n for d in datasets or () for n in d.split(",") if n)
                    if datasets else "no data")
            out.print(f"partial clone: fetched {what}; the rest is read from origin on first use",
                      markup=False, highlight=False)


@app.command()
def fetch(remote: RemoteArg = "origin", as_json: JsonOpt = False) -> None:
    """Copy the objects of a remote's branches and tags that are missing here; move REMOTE/* to them."""
    from assay.remote import fetch as do_fetch

    with _progress() as report:
        r = do_fetch(_repo(), remote, progress=report)
    if as_json:
        _print_json(r.to_dict())
        return
    out.print(f"fetched {r.received.objects} objects ({r.received.bytes:,} bytes) from {remote}", markup=False)
    for b, (old, new) in sorted(r.branches.items()):
        out.print(f"  {remote}/{b}: {_short(old)} -> {_short(new)}", markup=False, highlight=False)
    for t in sorted(r.tags):
        out.print(f"  new tag {t}", markup=False, highlight=False)


@app.command()
def pull(remote: RemoteArg = "origin",
         branch: Annotated[str | None, typer.Argument(metavar="BRANCH", help="Remote branch (default: the "
                                                      "working branch's name).")] = None,
         as_json: JsonOpt = False) -> None:
    """Fetch, then merge REMOTE/BRANCH into the working branch (fast-forward or three-way)."""
    from assay.remote import pull as do_pull

    with _progress() as report:
        fetched, merged = do_pull(_repo(), remote, branch, progress=report)
    if as_json:
        _print_json({"fetch": fetched.to_dict(), "merge": merged.to_dict()})
        return
    how = "already up to date" if merged.up_to_date else "fast-forward" if merged.fast_forward else "merged"
    out.print(f"fetched {fetched.received.objects} objects from {remote}; {how} at {_short(merged.commit)}",
              markup=False)


@app.command()
def push(remote: RemoteArg = "origin",
         branch: Annotated[str | None, typer.Argument(metavar="BRANCH", help="Branch to push (default: the "
                                                      "working one).")] = None,
         force: Annotated[bool, typer.Option("--force", help="Move the remote branch even if it holds commits "
                                             "this branch does not (they become unreachable there).")] = False,
         tags: Annotated[bool, typer.Option("--tags", help="Push every tag the remote does not have "
                                            "(instead of a branch).")] = False,
         as_json: JsonOpt = False) -> None:
    """Send a branch's missing objects to a remote, then move the remote branch (refused if not a fast-forward)."""
    from assay.remote import push as do_push
    from assay.remote import push_tags

    repo = _repo()
    if tags:
        with _progress() as report:
            new = push_tags(repo, remote, progress=report)
        if as_json:
            _print_json({"tags": new})
            return
        out.print(f"pushed {len(new)} tag(s) to {remote}" + (": " + ", ".join(sorted(new)) if new else ""),
                  markup=False)
        return
    with _progress() as report:
        r = do_push(repo, remote, branch, force=force, progress=report)
    if as_json:
        _print_json(r.to_dict())
        return
    if r.up_to_date:
        out.print(f"{remote}/{r.branch} is up to date at {_short(r.new)}", markup=False)
        return
    forced = " (forced)" if r.forced else ""
    out.print(f"pushed {r.branch} to {remote}{forced}: {_short(r.old)} -> {_short(r.new)}, {r.sent.objects} objects "
              f"({r.sent.bytes:,} bytes) sent", markup=False, highlight=False)
