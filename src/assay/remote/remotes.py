"""Remotes: named other repositories to clone from, fetch from and push to, as git users expect.

A remote is a name and a URL kept in ``.assay/remotes.json`` (never credentials). What was last seen of a
remote's branches is kept as refs of kind ``remote`` named ``remotes/NAME/BRANCH`` in the local catalog;
``NAME/BRANCH`` names them as a revision (``assay merge origin/main``).

- **fetch** copies the objects of every remote branch and tag the local store lacks, then moves the tracking
  refs (and creates tags the local repository does not have yet).
- **push** copies the objects of a local branch the remote lacks, then moves the remote branch by
  compare-and-swap from the commit it was seen at: a push whose remote branch moved to a commit that the
  local branch does not contain is refused as non-fast-forward unless ``force``.
- **pull** fetches, then merges the tracking ref into the working branch with the usual three-way merge.
- **clone** makes a new repository and fetches into it; with ``datasets`` or ``lazy`` a partial one, which
  reads what it left out from the remote on first use (``assay.remote.partial``).

Remote kinds (``assay.remote.ends``): another repository folder (a path or ``file://`` URL), a bare remote on
S3 (``s3://bucket/prefix``: refs moved by S3 conditional writes), and S3 with its refs in a PostgreSQL catalog.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from assay.errors import ConflictError, InputError, NonFastForward, RefNotFound
from assay.remote.ends import RemoteEnd, _safe, normalise_catalog, normalise_url, open_url
from assay.remote.transfer import Filter, TransferReport, send
from assay.repo.catalog import RefUpdate
from assay.repo.revisions import check_ref_name
from assay.store.fs import atomic_write

if TYPE_CHECKING:
    from assay.repo.repository import Repository as Repo

Progress = Callable[[str, int, int], None]
REMOTES_FILE = "remotes.json"
TRACKING = "remotes/"


@dataclass
class PushResult:
    remote: str
    branch: str
    old: str | None
    new: str
    sent: TransferReport
    forced: bool = False

    @property
    def up_to_date(self) -> bool:
        return self.old == self.new

    def to_dict(self) -> dict[str, Any]:
        return {"remote": self.remote, "branch": self.branch, "old": self.old, "new": self.new,
                "up_to_date": self.up_to_date, "forced": self.forced, **self.sent.to_dict()}


@dataclass
class FetchResult:
    remote: str
    received: TransferReport
    branches: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # branch -> (was, now)
    tags: dict[str, str] = field(default_factory=dict)  # tags created here

    def to_dict(self) -> dict[str, Any]:
        return {"remote": self.remote, **self.received.to_dict(),
                "branches": {b: {"old": o, "new": n} for b, (o, n) in self.branches.items()}, "tags": self.tags}


# -- configuration ------------------------------------------------------------------------------------------------


def read_remote_entries(repo: Repo) -> dict[str, dict[str, str]]:
    """Remote name -> its entry: ``url``, and ``catalog`` and ``endpoint_url`` where given (no credentials)."""
    path = repo.dir / REMOTES_FILE
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")).get("remotes", {}))


def read_remotes(repo: Repo) -> dict[str, str]:
    """Remote name -> URL."""
    return {n: e["url"] for n, e in read_remote_entries(repo).items()}


def _write_remotes(repo: Repo, remotes: dict[str, dict[str, str]]) -> None:
    data = {"format": 1, "remotes": dict(sorted(remotes.items()))}
    atomic_write(repo.dir / REMOTES_FILE, json.dumps(data, indent=2).encode())


def add_remote(repo: Repo, name: str, url: str, *, catalog: str | None = None,
               endpoint_url: str | None = None) -> str:
    """Remember ``url`` as remote ``name``; ``catalog`` (an S3 remote's refs on PostgreSQL) and ``endpoint_url``
    (a non-AWS S3 server) are kept with it. Credentials never are: a URL holding them is refused."""
    check_ref_name(name, "remote")
    if "/" in name:
        raise InputError(f"{name!r} is not a valid remote name: no '/' (it names remote branches as NAME/BRANCH)")
    entry = {"url": normalise_url(url)}
    if (catalog or endpoint_url) and not entry["url"].startswith("s3://"):
        raise InputError("--catalog and --endpoint-url are for S3 remotes (s3://bucket/prefix); a folder remote "
                         "has its own store and catalog")
    if catalog:
        entry["catalog"] = normalise_catalog(catalog) or ""
    if endpoint_url:
        entry["endpoint_url"] = _endpoint(endpoint_url)
    with repo.work.locked():
        remotes = read_remote_entries(repo)
        if name in remotes:
            raise InputError(f"remote {name!r} exists ({remotes[name]['url']}); remove it first with "
                             f"`assay remote remove {name}`")
        remotes[name] = entry
        _write_remotes(repo, remotes)
    return entry["url"]


def _endpoint(url: str) -> str:
    p = urlparse(url)
    if p.scheme not in ("http", "https") or not p.netloc or p.username or p.password:
        raise InputError(f"{_safe(url)} is not an S3 endpoint URL: write http(s)://HOST[:PORT], without "
                         "credentials (they come from the AWS credential chain)")
    return url.rstrip("/")


def remove_remote(repo: Repo, name: str) -> None:
    with repo.work.locked():
        remotes = read_remote_entries(repo)
        if name not in remotes:
            raise RefNotFound(_unknown(name, read_remotes(repo)))
        del remotes[name]
        _write_remotes(repo, remotes)
        stale = [RefUpdate(r.name, "remote", None, r.commit) for r in repo.catalog.list_refs("remote")
                 if r.name.startswith(f"{TRACKING}{name}/")]
        if stale:
            repo.catalog.update_refs(stale, f"remote remove {name}")


def _unknown(name: str, remotes: dict[str, str]) -> str:
    known = ", ".join(sorted(remotes)) or "none"
    return f"no remote {name!r} (remotes: {known}); add one with `assay remote add {name} URL`"


def open_remote(repo: Repo, name: str, *, create: bool = False) -> RemoteEnd:
    entries = read_remote_entries(repo)
    if name not in entries:
        raise RefNotFound(_unknown(name, read_remotes(repo)))
    e = entries[name]
    return open_url(e["url"], catalog=e.get("catalog"), endpoint_url=e.get("endpoint_url"), create=create)


# -- fetch, push, pull ---------------------------------------------------------------------------------------------


def fetch(repo: Repo, name: str = "origin", *, progress: Progress | None = None) -> FetchResult:
    """Copy what the remote's branches and tags reach, then move the tracking refs ``remotes/NAME/*``.

    In a partial clone, a fetch from the remote it came from applies the clone's filter."""
    from assay.remote.partial import read_partial

    promisor = read_partial(repo.dir)
    only = promisor[1] if promisor is not None and promisor[0] == name else None
    with open_remote(repo, name) as remote:
        branches = {r.name: r.commit for r in remote.catalog.list_refs("branch")}
        tags = {r.name: r.commit for r in remote.catalog.list_refs("tag")}
        received = send(remote.store, getattr(repo.store, "local", repo.store),
                        sorted(set(branches.values()) | set(tags.values())), progress=progress,
                        stage=f"fetch {name}", only=only)
    seen = {r.name: r.commit for r in repo.catalog.list_refs("remote") if r.name.startswith(f"{TRACKING}{name}/")}
    updates = [RefUpdate(f"{TRACKING}{name}/{b}", "remote", oid, seen.get(f"{TRACKING}{name}/{b}"))
               for b, oid in branches.items() if seen.get(f"{TRACKING}{name}/{b}") != oid]
    updates += [RefUpdate(ref, "remote", None, oid) for ref, oid in seen.items()
                if ref[len(TRACKING) + len(name) + 1:] not in branches]  # branches deleted on the remote
    local_tags = {r.name for r in repo.catalog.list_refs("tag")}
    new_tags = {t: oid for t, oid in tags.items() if t not in local_tags and repo.catalog.get_ref(t) is None}
    updates += [RefUpdate(t, "tag", oid, None) for t, oid in new_tags.items()]
    if updates:
        repo.catalog.update_refs(updates, f"fetch {name}")
    return FetchResult(name, received, {b: (seen.get(f"{TRACKING}{name}/{b}"), oid) for b, oid in branches.items()
                                        if seen.get(f"{TRACKING}{name}/{b}") != oid}, new_tags)


def push(repo: Repo, name: str = "origin", branch: str | None = None, *, force: bool = False,
         progress: Progress | None = None) -> PushResult:
    """Send ``branch`` (default: the working one) to the remote and move the remote branch to it."""
    branch = branch or repo.branch
    if branch is None:
        raise InputError("HEAD is detached: name the branch to push (`assay push REMOTE BRANCH`)")
    ref = repo.catalog.get_ref(branch)
    if ref is None or ref.kind != "branch":
        raise RefNotFound(f"no branch {branch!r} here to push; see `assay branch`")
    with open_remote(repo, name, create=True) as remote:
        theirs = remote.catalog.get_ref(branch)
        old = theirs.commit if theirs else None
        if old == ref.commit:
            return PushResult(name, branch, old, ref.commit, TransferReport())
        if old is not None and not force and not _contains(repo, ref.commit, old):
            raise NonFastForward(
                f"push of {branch} to {name} refused: the remote's {branch} is at {old[:12]}, which your {branch} "
                f"does not contain (someone pushed since you last fetched). Run `assay pull {name} {branch}` to "
                f"merge it, then push again; or `assay push {name} {branch} --force` to replace it (their commits "
                "would be left unreachable)")
        sent = send(repo.store, remote.store, [ref.commit], progress=progress, stage=f"push {name}")
        try:
            remote.catalog.update_ref(branch, "branch", ref.commit, old, f"push from {repo.root}")
        except ConflictError as e:
            raise NonFastForward(f"push of {branch} to {name} refused: the remote's {branch} moved while pushing. "
                                 f"Run `assay pull {name} {branch}`, then push again (the objects sent stay there; "
                                 "the next push sends only what is missing)") from e
    tracking = f"{TRACKING}{name}/{branch}"
    seen = repo.catalog.get_ref(tracking)
    repo.catalog.update_ref(tracking, "remote", ref.commit, seen.commit if seen else None, f"push {name}")
    return PushResult(name, branch, old, ref.commit, sent, forced=force and old is not None)


def push_tags(repo: Repo, name: str = "origin", *, progress: Progress | None = None) -> dict[str, str]:
    """Send every local tag the remote does not have (an existing tag is never moved)."""
    tags = {r.name: r.commit for r in repo.catalog.list_refs("tag")}
    with open_remote(repo, name, create=True) as remote:
        theirs = {r.name: r.commit for r in remote.catalog.list_refs("tag")}
        moved = sorted(t for t in tags if t in theirs and theirs[t] != tags[t])
        if moved:
            raise ConflictError(f"tag(s) {', '.join(moved)} point at other commits on {name}; tags do not move. "
                                "Delete them there or here, then push again")
        new = {t: oid for t, oid in tags.items() if t not in theirs}
        send(repo.store, remote.store, sorted(set(new.values())), progress=progress, stage=f"push tags {name}")
        if new:
            remote.catalog.update_refs([RefUpdate(t, "tag", oid, None) for t, oid in new.items()], "push --tags")
    return new


def pull(repo: Repo, name: str = "origin", branch: str | None = None, *,
         progress: Progress | None = None) -> tuple[FetchResult, Any]:
    """Fetch, then merge ``NAME/BRANCH`` (default: the working branch's name) into the working branch."""
    branch = branch or repo.branch
    if branch is None:
        raise InputError("HEAD is detached: check out the branch to pull into, or name it")
    fetched = fetch(repo, name, progress=progress)
    tracking = f"{TRACKING}{name}/{branch}"
    if repo.catalog.get_ref(tracking) is None:
        raise RefNotFound(f"remote {name} has no branch {branch!r}; see `assay remote list`")
    return fetched, repo.merge(tracking)


def clone(url: str, path: str | os.PathLike[str], *, branch: str | None = None, name: str = "origin",
          catalog: str | None = None, endpoint_url: str | None = None, datasets: Sequence[str] | None = None,
          lazy: bool = False, progress: Progress | None = None) -> Repo:
    """A new repository at ``path`` holding everything the repository at ``url`` has, on ``branch``
    (``catalog``, ``endpoint_url``: as for ``add_remote``).

    ``datasets`` or ``lazy`` make a partial clone: every commit, manifest and model record, and the fragments
    and blobs of ``datasets`` only (``lazy``: of none, nor model artifacts); the rest is read from the remote
    on first use, verified, and kept (``assay.remote.partial``)."""
    from assay.remote.partial import PartialStore, write_partial
    from assay.repo.repository import init

    only = Filter(None if datasets is None else frozenset(_dataset_names(datasets)), lazy)

    target = Path(path)
    if target.exists() and any(target.iterdir()):
        raise InputError(f"{target} exists and is not empty; clone into a new or empty folder")
    with open_url(url, catalog=normalise_catalog(catalog), endpoint_url=endpoint_url) as remote:
        default = remote.branch or "main"
    made = not target.exists()
    repo = init(target)
    try:
        add_remote(repo, name, url, catalog=catalog, endpoint_url=endpoint_url)
        if not only.full:
            write_partial(repo.dir, name, only)
            repo.store = PartialStore(repo.store, repo.dir, name)
        fetched = fetch(repo, name, progress=progress)
        if only.datasets:
            _check_datasets(repo, only.datasets, url)
        want = branch or default
        tracking = repo.catalog.get_ref(f"{TRACKING}{name}/{want}")
        if tracking is None:
            if branch is not None:
                raise RefNotFound(f"{url} has no branch {branch!r}; branches: "
                                  + (", ".join(sorted(fetched.branches)) or "none"))
        else:
            repo.catalog.update_ref(want, "branch", tracking.commit, None, f"clone {url}")
        repo.work.write_head({"branch": want})
    except BaseException:
        repo.close()
        import shutil

        shutil.rmtree(target if made else target / ".assay", ignore_errors=True)  # nothing half-made is left
        raise
    return repo


def _dataset_names(names: Sequence[str]) -> list[str]:
    out = [n.strip() for part in names for n in part.split(",") if n.strip()]
    if not out:
        raise InputError("--datasets names no dataset: give their names, comma-separated (--datasets train,test); "
                         "or --lazy to fetch no dataset's data until it is read")
    return out


def _check_datasets(repo: Repo, names: frozenset[str], url: str) -> None:
    """Refuse a partial clone whose datasets no branch or tag of the remote has (most likely a typo)."""
    known: set[str] = set()
    for r in repo.catalog.list_refs():
        known |= set(repo.read_commit(r.commit).datasets)
    unknown = sorted(names - known)
    if unknown:
        raise RefNotFound(f"{url} has no dataset {', '.join(map(repr, unknown))} on any branch or tag; its "
                          f"datasets: {', '.join(sorted(known)) or 'none'}")


def _contains(repo: Repo, tip: str, oid: str) -> bool:
    """Whether commit ``oid`` is ``tip`` or one of its ancestors (False when ``oid`` is not stored here)."""
    if not repo.store.has(oid):
        return False
    return oid in repo._ancestors(tip)
