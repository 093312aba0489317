"""Undo and move: reset a branch (``--soft``/``--hard``), revert a commit, force a branch, check out with a
warning for commits left behind, and the log filtered as git users ask for it (``--since``, ``--author``).

Each takes the repository explicitly and moves refs by compare-and-swap, as commits and merges do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assay.errors import InputError, MergeConflict, NothingToCommit, RefNotFound
from assay.repo import revisions
from assay.repo.commits import Commit, merge_contents
from assay.repo.staging import StagedDataset, Staging

if TYPE_CHECKING:  # the table layer (Arrow) is imported by the functions that diff or merge samples
    from assay.repo.repository import Repository as Repo
    from assay.table.merge import Conflict

RESET_MODES = ("soft", "hard")


@dataclass(frozen=True)
class Moved:
    """Where HEAD (or a branch) went, from where, and the commits no branch or tag reaches any more."""

    commit: str | None
    previous: str | None
    branch: str | None = None  # the branch that moved (None: HEAD, detached)
    changed: bool = True
    left_behind: tuple[str, ...] = ()  # newest first
    staged: tuple[str, ...] = ()  # what a soft reset left staged

    def to_dict(self) -> dict[str, Any]:
        return {"commit": self.commit, "previous": self.previous, "branch": self.branch, "changed": self.changed,
                "left_behind": list(self.left_behind), "staged": list(self.staged)}


@dataclass(frozen=True)
class RevertResult:
    commit: str
    reverted: str
    datasets: dict[str, str] = field(default_factory=dict)  # dataset -> "restored", "removed", "merged"

    def to_dict(self) -> dict[str, Any]:
        return {"commit": self.commit, "reverted": self.reverted, "datasets": self.datasets}


# -- commits no ref reaches ---------------------------------------------------------------------------------------


def left_behind(repo: Repo, oid: str | None) -> tuple[str, ...]:
    """The commits reachable from ``oid`` that no branch or tag (nor HEAD) reaches, newest first."""
    if oid is None:
        return ()
    starts = [r.commit for r in repo.catalog.list_refs()] + [h for h in [repo.head()] if h]
    reached = _ancestors(repo, starts)
    if oid in reached:
        return ()
    lost = _ancestors(repo, [oid], stop=reached)
    return tuple(sorted(lost, key=lambda o: repo.read_commit(o).time, reverse=True))


def _ancestors(repo: Repo, starts: Iterable[str], stop: set[str] | None = None) -> set[str]:
    seen: set[str] = set()
    stack = list(starts)
    while stack:
        cur = stack.pop()
        if cur in seen or (stop is not None and cur in stop):
            continue
        seen.add(cur)
        stack.extend(repo.read_commit(cur).parents)
    return seen


# -- reset ---------------------------------------------------------------------------------------------------------


def reset(repo: Repo, rev: str = "HEAD", *, mode: str = "hard", force: bool = False) -> Moved:
    """Move the working branch (or a detached HEAD) to ``rev``.

    ``hard``: the staging area is cleared; refused while changes are staged unless ``force``. ``soft``: what
    differs between the working version (HEAD plus staged changes) and ``rev`` is left staged, so that a commit
    records it again (datasets and suites; other kinds of content follow ``rev``).
    """
    if mode not in RESET_MODES:
        raise InputError(f"unknown reset mode {mode!r}; use one of {', '.join(RESET_MODES)}")
    with repo.work.locked():
        staging = repo.work.read_staging()
        head_info = repo.work.read_head()
        old, target = repo.head(), repo.resolve(rev)
        if mode == "hard" and staging and not force:
            names = ", ".join(sorted(set(staging.datasets) | set(staging.suites)))
            raise InputError(f"there are staged changes ({names}); `reset --hard` would drop them. Commit them, "
                             "unstage them with `assay reset`, or give --force to drop them; nothing moved")
        new_staging = _soft_staging(repo, target) if mode == "soft" else Staging()
        if target == old and _same(new_staging, staging):
            return Moved(target, old, head_info.get("branch"), changed=False)
        if target != old:
            repo._move_head(head_info, old, target, f"reset --{mode}: moving to {rev}")
        repo.work.write_staging(new_staging)
    staged = tuple(sorted(set(new_staging.datasets) | set(new_staging.suites)))
    return Moved(target, old, head_info.get("branch"), left_behind=left_behind(repo, old), staged=staged)


def _same(a: Staging, b: Staging) -> bool:
    """Whether two staging areas stage the same versions (their summaries aside)."""
    return ({n: s.manifest for n, s in a.datasets.items()}, a.suites) == \
        ({n: s.manifest for n, s in b.datasets.items()}, b.suites)


def _soft_staging(repo: Repo, target: str) -> Staging:
    """The staging area that makes the working version of now, staged against ``target``."""
    working, suites = repo.datasets(), repo.suites()
    there = repo.read_commit(target)
    out = Staging()
    for name in sorted(set(working) | set(there.datasets)):
        now, then = working.get(name), there.datasets.get(name)
        if now != then:
            out.datasets[name] = StagedDataset(now or "", then, _summary(repo, name, then, now))
    for name in sorted(set(suites) | set(there.suites)):
        if suites.get(name) != there.suites.get(name):
            out.suites[name] = suites.get(name, "")
    return out


def _summary(repo: Repo, name: str, before: str | None, after: str | None) -> dict[str, Any]:
    if after is None:
        return {"removed_dataset": True, "mode": "reset --soft"}
    from assay.table import diff_manifests

    a = repo.read_manifest(before) if before else None
    b = repo.read_manifest(after)
    with repo.store.cache_scope():
        d = diff_manifests(repo.store, name, a, b, limit=0)
    return {"added": d.added, "removed": d.removed, "updated": d.changed, "rows": b.rows, "mode": "reset --soft"}


def unstage(repo: Repo, names: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """Unstage everything, or the datasets ``names``: (what was unstaged, names known but with nothing staged).

    A name that is neither staged nor a dataset of the working version is an error; nothing is unstaged then.
    """
    staging = repo.work.read_staging()
    staged = set(staging.datasets) | set(staging.suites)
    if not names:
        repo.reset(None)
        return sorted(staged), []
    known = set(repo.datasets()) | set(repo.datasets("HEAD") if repo.head() else {})
    unknown = [n for n in names if n not in staged and n not in known]
    for n in unknown:
        if _is_revision(repo, n):
            raise InputError(f"{n!r} is a revision, not a staged dataset: to move the branch there, give "
                             f"`assay reset --hard {n}` (drops staged changes) or `assay reset --soft {n}` (what "
                             "differs stays staged); nothing was unstaged")
    if unknown:
        raise InputError(f"{', '.join(map(repr, unknown))}: neither a staged dataset nor a dataset of the working "
                         "version (see `assay status`); to move the branch to a revision, give `--hard REV` or "
                         "`--soft REV`; nothing was unstaged")
    repo.reset([n for n in names if n in staged])
    return [n for n in names if n in staged], [n for n in names if n not in staged]


def _is_revision(repo: Repo, name: str) -> bool:
    try:
        repo.resolve(name)
    except RefNotFound:
        return False
    return True


# -- branch -f ----------------------------------------------------------------------------------------------------


def force_branch(repo: Repo, name: str, rev: str | None = None) -> Moved:
    """Point branch ``name`` at ``rev`` (default HEAD), creating it or moving it wherever it was."""
    revisions.check_ref_name(name)
    ref = repo.catalog.get_ref(name)
    if ref is not None and ref.kind != "branch":
        raise InputError(f"{name!r} is a {ref.kind}, not a branch; give the branch another name")
    if name == repo.branch:
        raise InputError(f"branch {name!r} is checked out; move it with `assay reset --hard {rev or 'REV'}` (or "
                         "`--soft`) instead")
    oid = repo.resolve(rev)
    old = ref.commit if ref else None
    if old != oid:
        repo.catalog.update_ref(name, "branch", oid, old, f"branch -f: to {rev or 'HEAD'}")
    return Moved(oid, old, name, changed=old != oid, left_behind=left_behind(repo, old))


# -- checkout with a warning --------------------------------------------------------------------------------------


def checkout(repo: Repo, rev: str, *, create: bool = False, force: bool = False) -> Moved:
    """``Repo.checkout``, and the commits of a detached HEAD that leaving it left behind (as git warns)."""
    detached = "commit" in repo.work.read_head()
    old = repo.head()
    oid = repo.checkout(rev, create=create, force=force)
    lost = left_behind(repo, old) if detached and old != oid else ()
    return Moved(oid, old, repo.branch, changed=old != oid, left_behind=lost)


# -- revert -------------------------------------------------------------------------------------------------------


def revert(repo: Repo, rev: str, *, mainline: int | None = None, message: str | None = None,
           author: str | None = None, no_verify: bool = False) -> RevertResult:
    """A new commit on the working branch that undoes the commit ``rev``.

    For each dataset (and suite, model, ...) that commit changed, its inverse is applied on top of HEAD: a
    three-way merge of HEAD with the commit's parent, the commit as base; samples changed since then on both
    sides are conflicts (MergeConflict, nothing committed). A merge commit needs ``mainline``: the parent (1 or
    2) whose side is kept. Datasets with a suite are checked first, as on commit.
    """
    with repo.work.locked():
        if repo.work.read_staging():
            raise InputError("commit or unstage (`assay reset`) your staged changes before reverting")
        head_info, ours = repo.work.read_head(), repo.head()
        if ours is None:
            raise RefNotFound("there are no commits yet: nothing to revert")
        target = repo.resolve(rev)
        undone = repo.read_commit(target)
        parent = _parent(repo, target, undone, mainline)
        head, before = repo.read_commit(ours), repo.read_commit(parent) if parent else None
        datasets, origin = _revert_datasets(repo, undone, head, before)
        content = _revert_content(undone, head, before)
        if datasets == head.datasets and all(content[k] == head.content().get(k, {}) for k in content):
            raise NothingToCommit(f"reverting {target[:12]} changes nothing: its changes are not in HEAD "
                                  f"({ours[:12]}) any more")
        changed = {n for n in set(datasets) | set(head.datasets) if datasets.get(n) != head.datasets.get(n)}
        changed |= {n for n in set(content["suites"]) | set(head.suites)
                    if content["suites"].get(n) != head.suites.get(n)}
        extra = repo._verify(changed, datasets, content["suites"], no_verify)
        text = message or f'Revert "{undone.message.splitlines()[0] if undone.message else target[:12]}"\n\n' \
                          f"This reverts commit {target}."
        oid = repo.derive(parents=(ours,), message=text, author=author, meta={"revert": target, **extra},
                          datasets=datasets, kinds=content, verify=False)  # checked just above
        repo._move_head(head_info, ours, oid, f"revert {target[:12]}")
    return RevertResult(oid, target, origin)


def _parent(repo: Repo, oid: str, c: Commit, mainline: int | None) -> str | None:
    if len(c.parents) > 1 and mainline is None:
        raise InputError(f"commit {oid[:12]} is a merge of {len(c.parents)} parents; give --mainline N (1: keep the "
                         "branch it was merged into, undoing what the merge brought in)")
    if mainline is None:
        return c.parents[0] if c.parents else None
    if not 1 <= mainline <= len(c.parents):
        raise InputError(f"--mainline {mainline}: commit {oid[:12]} has {len(c.parents)} parent(s)")
    return c.parents[mainline - 1]


def _revert_datasets(repo: Repo, undone: Commit, head: Commit, before: Commit | None
                     ) -> tuple[dict[str, str], dict[str, str]]:
    """HEAD's datasets with the commit's changes undone: merge(base=commit, ours=HEAD, theirs=parent)."""
    from assay.table import merge_manifests

    then = before.datasets if before else {}
    out, origin = dict(head.datasets), {}
    conflicts: list[Conflict] = []
    for name in sorted(set(undone.datasets) | set(then)):
        bo, to = undone.datasets.get(name), then.get(name)
        if bo == to:
            continue  # the commit did not change it
        oo = head.datasets.get(name)
        if oo == to:
            continue  # already as it was before the commit
        if oo == bo:
            result: str | None = to
        else:
            mb, mo, mt = (repo.read_manifest(x) if x else None for x in (bo, oo, to))
            with repo.store.cache_scope():
                m, found = merge_manifests(repo.store, name, mb, mo, mt, bo, oo, to)
            conflicts.extend(found)
            if found:
                continue
            result = repo.store.put(m.to_bytes()) if m is not None else None
        if result is None:
            out.pop(name, None)
        else:
            out[name] = result
        origin[name] = "removed" if result is None else "restored" if oo == bo else "merged"
    if conflicts:
        listing = "\n".join(f"  CONFLICT ({c.ours}/{c.theirs}): {c}" for c in conflicts[:20])
        more = f"\n  ... and {len(conflicts) - 20} more" if len(conflicts) > 20 else ""
        raise MergeConflict(f"CONFLICT: {len(conflicts)} sample(s) changed since the reverted commit differently; "
                            f"revert failed, nothing was committed:\n{listing}{more}\n"
                            "Undo those samples by hand (`assay add ... --mode upsert`) and commit.", conflicts)
    return out, origin


def _revert_content(undone: Commit, head: Commit, before: Commit | None) -> dict[str, dict[str, str]]:
    """Every kind of content but datasets with the commit's changes undone, entry by entry."""
    b, o = undone.content(), head.content()
    t = before.content() if before else {}
    out, conflicts = merge_contents(b, o, t)
    if conflicts:
        listing = "\n".join(f"  {c}" for c in conflicts)
        raise MergeConflict(f"{len(conflicts)} entr(ies) changed since the reverted commit; nothing was committed:\n"
                            f"{listing}\nSet them by hand (e.g. `assay suite set`) and commit.", conflicts)
    out.setdefault("suites", {})
    return out


# -- log ----------------------------------------------------------------------------------------------------------


def log(repo: Repo, rev: str | None = None, *, limit: int | None = None, dataset: str | None = None,
        since: str | None = None, author: str | None = None) -> list[tuple[str, Commit]]:
    """``Repo.log`` filtered: commits made at or after ``since`` (ISO 8601) and whose author contains ``author``
    (case-insensitive), at most ``limit`` of them."""
    if limit is not None and limit < 0:
        raise InputError(f"--limit {limit}: give a number of commits, 0 or more")
    if since is None and author is None:
        return repo.log(rev, limit=limit, dataset=dataset)
    after = revisions.parse_time(since) if since is not None else None
    who = author.lower() if author is not None else None
    out = [(o, c) for o, c in repo.log(rev, dataset=dataset)
           if (after is None or c.time >= after) and (who is None or who in c.author.lower())]
    return out if limit is None else out[:limit]


__all__ = ["Moved", "RevertResult", "checkout", "force_branch", "left_behind", "log", "reset", "revert", "unstage"]
