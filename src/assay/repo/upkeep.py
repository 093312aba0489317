"""Integrity and upkeep: fsck verifies every object and reference, gc removes what nothing reaches,
compact rewrites many small fragments into fewer."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay._types import Progress
from assay.errors import AssayError, CorruptObject, FormatError, ObjectNotFound, OutOfSpace
from assay.repo.commits import Commit
from assay.repo.graph import COMMIT, MANIFEST, Edge, kind_of, walk
from assay.table.compaction import rewrite
from assay.table.fragments import FRAGMENT_ROWS
from assay.table.manifest import Manifest

if TYPE_CHECKING:
    from assay.repo.catalog import Lease
    from assay.repo.repository import Repository



@dataclass
class FsckReport:
    objects: int = 0
    reachable: int = 0
    corrupt: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (oid, what refers to it)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    not_fetched: int = 0  # a partial clone: absent here, held by the remote it reads them from
    promisor: str | None = None  # that remote's name
    promisor_error: str | None = None  # why the remote could not be asked (its objects are counted missing)

    @property
    def ok(self) -> bool:
        return not (self.corrupt or self.missing or self.unreadable)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "objects": self.objects, "reachable": self.reachable, "corrupt": self.corrupt,
                "missing": [{"oid": o, "referenced_by": w} for o, w in self.missing],
                "unreadable": [{"oid": o, "error": e} for o, e in self.unreadable],
                "not_fetched": self.not_fetched, "promisor": self.promisor, "promisor_error": self.promisor_error}


def walk_reachable(repo: Repository, report: FsckReport | None = None) -> Iterator[tuple[str, str]]:
    """Yield every object reachable from refs, HEAD and staging, with what refers to it.

    In a partial clone, through the local objects only (nothing is fetched for upkeep): what lies below an
    object not fetched is not reached."""
    roots = [Edge(r.commit, COMMIT, f"{r.kind} {r.name}") for r in repo.catalog.list_refs()]
    head = repo.work.read_head()
    if "commit" in head:
        roots.append(Edge(head["commit"], COMMIT, "HEAD"))
    staging = repo.work.read_staging()
    roots += [Edge(s.manifest, MANIFEST, f"staged {n}") for n, s in staging.datasets.items() if s.manifest]
    roots += [Edge(oid, kind_of("suites").node, f"staged suite of {n}") for n, oid in staging.suites.items() if oid]
    store = getattr(repo.store, "local", repo.store)  # a partial clone's PartialStore: its local objects
    return walk(store, roots, on_error=_reporter(report) if report is not None else None)


def _reporter(report: FsckReport) -> Callable[[str, str, Exception], None]:
    def record(oid: str, why: str, error: Exception) -> None:
        if isinstance(error, ObjectNotFound):
            report.missing.append((oid, why))
        elif isinstance(error, CorruptObject):
            if oid not in report.corrupt:
                report.corrupt.append(oid)
        else:
            report.unreadable.append((oid, str(error)))

    return record


def fsck(repo: Repository, *, progress: Progress | None = None) -> FsckReport:
    """Verify the hash of every stored object and that everything referenced exists."""
    report = FsckReport()
    all_oids = list(repo.store.iter_oids())
    for i, oid in enumerate(all_oids):
        try:
            repo.store.verify(oid)
        except CorruptObject:
            report.corrupt.append(oid)
        except ObjectNotFound:  # a part of it (a chunk) is missing
            report.missing.append((oid, "a chunk of this object"))
        except AssayError as e:
            report.unreadable.append((oid, str(e)))
        if progress and i % 256 == 0:
            progress("verifying objects", i, len(all_oids))
    report.objects = len(all_oids)
    for name in sorted(getattr(repo.store, "damaged_packs", ())):
        report.unreadable.append((f"pack:{name}", "the pack index is damaged; its objects cannot be found"))
    stored = set(all_oids)
    for oid, why in walk_reachable(repo, report):
        report.reachable += 1
        if oid not in stored and not any(m[0] == oid for m in report.missing):
            report.missing.append((oid, why))
    ask = getattr(repo.store, "remote_missing", None)  # a partial clone's store (assay.remote.partial)
    if ask is not None and report.missing:  # absent here: not fetched yet, or lost (the remote lacks it too)?
        report.promisor = getattr(repo.store, "remote_name", None)
        absent = {o for o, _ in report.missing}
        try:
            later = absent - ask(absent)
        except AssayError as e:  # the remote cannot be asked: count them missing, and say why
            later, report.promisor_error = set(), str(e)
        report.not_fetched = len(later)
        report.missing = [(o, w) for o, w in report.missing if o not in later]
    return report


@dataclass
class GcReport:
    unreachable: int
    removed: int
    kept_recent: int
    tmp_removed: int

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def gc(repo: Repository, *, grace: float = 3600.0, dry_run: bool = False) -> GcReport:
    """Remove objects that nothing reaches and that are older than ``grace`` seconds.

    The grace period protects objects that a concurrent writer has stored but not yet committed.
    """
    limit = time.time() - grace
    # One gc at a time in every process and on every machine that shares the catalog; writers elsewhere are
    # protected by the grace period, writers in this folder also wait on its work lock (they stage what they write).
    with _gc_lock(repo) as lease, repo.work.locked():
        seen = FsckReport()
        reachable = {oid for oid, _ in walk_reachable(repo, seen)}
        stored = list(repo.store.iter_oids())
        _refuse_blind_gc(repo, seen, reachable.difference(stored))
        dead = [oid for oid in stored if oid not in reachable]
        recent = sum(1 for oid in dead if repo.store.stat(oid).mtime >= limit)
        if dry_run:
            return GcReport(len(dead), 0, recent, 0)
        if lease is not None:
            with contextlib.suppress(OutOfSpace):
                lease.renew()
        removed = repo.store.delete(dead, older_than=limit)
        if repo.copies is not None:  # what nothing reaches is not read again: its local copies go too
            repo.copies.drop(dead)
        tmp = repo.store.clean_tmp(limit) if hasattr(repo.store, "clean_tmp") else 0
    return GcReport(len(dead), removed, recent, tmp)


def _refuse_blind_gc(repo: Repository, seen: FsckReport, absent: set[str]) -> None:
    """Raise when an object that refs reach could not be read, or is not stored: what lies below it (a
    commit's history, a manifest's fragments) would look unreachable and be deleted, turning one damaged object
    into a lost repository. An address that is not stored may be the damage itself (a chunk list whose bytes
    changed names a chunk that does not exist, and the real one would look like garbage). In a partial clone
    objects not fetched are no damage: what lies below them is not here either."""
    partial = hasattr(repo.store, "remote_name")
    missing = () if partial else sorted({*(o for o, _ in seen.missing), *absent})
    damaged = [*seen.corrupt, *(o for o, _ in seen.unreadable), *missing]
    if damaged:
        shown = ", ".join(o[:12] for o in damaged[:5]) + (f" and {len(damaged) - 5} more" if len(damaged) > 5 else "")
        raise CorruptObject(
            f"gc deleted nothing: {len(damaged)} object(s) that refs reach are damaged or missing ({shown}), so "
            "what they refer to cannot be told from garbage. Run `assay fsck` to list the damage and "
            "`assay fsck --repair SOURCE` to restore those objects from a copy of the repository (a clone, a "
            "backup), then run gc again"
        )


@contextlib.contextmanager
def _gc_lock(repo: Repository) -> Iterator[Lease | None]:
    """The catalog's lock ``gc``; on a full disk (a SQLite catalog that cannot record it) none: gc is what frees
    the space, and the folder's work lock still keeps this folder's writers out."""
    held = repo.catalog.lock("gc")
    try:
        lease = held.__enter__()
    except OutOfSpace:
        yield None
        return
    try:
        yield lease
    finally:
        held.__exit__(None, None, None)


@dataclass
class CompactReport:
    datasets: dict[str, tuple[int, int]]  # name -> (fragments before, after)
    commit: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"datasets": {k: {"before": a, "after": b} for k, (a, b) in self.datasets.items()},
                "commit": self.commit}


def compact(repo: Repository, names: Sequence[str] | None, *, message: str, min_fragments: int = 2,
            progress: Progress | None = None) -> CompactReport:
    """Rewrite each dataset's live rows into full fragments; commits the result (same samples)."""
    from assay.repo.staging import StagedDataset

    head = repo.head()
    if head is None:
        return CompactReport({}, None)
    current = repo.read_commit(head).datasets
    done: dict[str, tuple[int, int]] = {}
    with repo.work.locked():
        staging = repo.work.read_staging()
        for name in names or sorted(current):
            m = repo.read_manifest(current[name])
            if not _needs_compaction(m, min_fragments):
                continue
            new = m.with_fragments(rewrite(repo.store, m, m.fragments, progress=progress))
            staging.datasets[name] = StagedDataset(repo.write_manifest(new), current[name], {"compacted": True})
            done[name] = (len(m.fragments), len(new.fragments))
        repo.work.write_staging(staging)
    commit = repo.commit(message) if done else None
    return CompactReport(done, commit)


def _needs_compaction(m: Manifest, min_fragments: int) -> bool:
    full = -(-m.rows // FRAGMENT_ROWS)
    return (len(m.fragments) >= min_fragments and len(m.fragments) > full) or any(f.deleted for f in m.fragments)


# -- rebuilding a damaged catalog ----------------------------------------------------------------------------------

_COMMIT_MAX = 8 << 20  # a commit is a small JSON object; larger objects are data, not read while scanning
RECOVERED_PREFIX = "recovered/"


@dataclass
class RebuildReport:
    """What ``rebuild_catalog`` did: where the old file went, the commits found, the refs it created."""

    catalog: str
    moved_to: list[str]  # the old database file (and its -wal/-shm/-journal files), renamed
    objects: int  # objects scanned
    commits: int
    heads: list[str]  # commits that are no other commit's parent, newest first
    refs: list[tuple[str, str, str, str]]  # (kind, name, commit, how: "kept" | "head" | "newest head")
    dropped: list[tuple[str, str]]  # refs read from the old file that name no stored commit: (name, commit)
    unreadable: int  # objects that could not be read while scanning (see `assay fsck`)
    head_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"catalog": self.catalog, "moved_to": self.moved_to, "objects": self.objects,
                "commits": self.commits, "heads": self.heads,
                "refs": [{"kind": k, "name": n, "commit": c, "how": h} for k, n, c, h in self.refs],
                "dropped": [{"name": n, "commit": c} for n, c in self.dropped], "unreadable": self.unreadable,
                "head_note": self.head_note}


def rebuild_catalog(path: str | Path = ".", *, progress: Progress | None = None) -> RebuildReport:
    """Rebuild a SQLite catalog (refs and the commit index) from the commits in the object store.

    The old database file is renamed to ``catalog.db.damaged-<time>`` (never deleted) and a fresh one made. Refs
    still readable in the old file are kept where their commit exists; every head commit (one that is no other
    commit's parent) without a branch gets a branch ``recovered/<short id>``; ``main`` points at the newest head
    when it could not be kept. The reflog is not recovered.
    """
    import json

    from assay.errors import InputError
    from assay.repo.catalog import RefUpdate, open_catalog, parse_catalog_url
    from assay.repo.repository import ASSAY_DIR, find_root
    from assay.repo.staging import WorkState
    from assay.store import LocalObjectStore

    adir = find_root(Path(path).resolve()) / ASSAY_DIR
    url = json.loads((adir / "config.json").read_text())["catalog"].replace("{assay_dir}", str(adir))
    parsed = parse_catalog_url(url)
    if parsed.backend != "sqlite" or not parsed.database:
        raise InputError(f"the catalog is {parsed.public()}, not a SQLite file; "
                         "restore that database from its backup (rebuilding works for the default SQLite catalog)")
    db = Path(parsed.database)
    store = LocalObjectStore(adir)
    with WorkState(adir).locked():
        commits, objects, unreadable = _scan_commits(store, progress)
        old = _salvage_refs(db)
        moved = _move_aside(db)
        parents = {p for c in commits.values() for p in c.parents}
        heads = sorted((o for o in commits if o not in parents), key=lambda o: (-commits[o].time, o))
        refs: list[tuple[str, str, str, str]] = []
        dropped: list[tuple[str, str]] = []
        for kind, name, oid in old:
            if oid in commits:
                refs.append((kind, name, oid, "kept"))
            else:
                dropped.append((name, oid))
        tips = {oid for kind, _, oid, _ in refs if kind == "branch"}
        names = {name for _, name, _, _ in refs}
        if heads and "main" not in names:
            refs.append(("branch", "main", heads[0], "newest head"))
            names.add("main")
            tips.add(heads[0])
        for h in heads:
            name = RECOVERED_PREFIX + h[:12]
            if h not in tips and name not in names:
                refs.append(("branch", name, h, "head"))
        catalog = open_catalog(url)
        try:
            for oid, c in commits.items():
                catalog.record_commit(oid, c.time, c.message, c.parents)
            catalog.update_refs([RefUpdate(n, k, o, None) for k, n, o, _ in refs],
                                "rebuilt from the commits in the object store")
        finally:
            catalog.close()
        head = WorkState(adir).read_head()
        note = None
        if "branch" in head and head["branch"] not in names and heads:
            note = (f"HEAD is on branch {head['branch']!r}, which could not be recovered; "
                    "`assay checkout` one of the branches above")
    return RebuildReport(str(db), moved, objects, len(commits), heads, refs, dropped, unreadable, note)


def _scan_commits(store: Any, progress: Progress | None) -> tuple[dict[str, Commit], int, int]:
    commits: dict[str, Commit] = {}
    oids = list(store.iter_oids())
    unreadable = 0
    for i, oid in enumerate(oids):
        if progress and i % 256 == 0:
            progress("scanning objects for commits", i, len(oids))
        try:
            if store.stat(oid).size > _COMMIT_MAX:
                continue
            data = store.get(oid)
        except AssayError:
            unreadable += 1
            continue
        if data[:1] != b"{" or b'"type":"commit"' not in data:
            continue
        try:
            commits[oid] = Commit.from_bytes(data, oid)
        except (FormatError, ValueError, KeyError, TypeError):
            unreadable += 1
    return commits, len(oids), unreadable


def _salvage_refs(db: Path) -> list[tuple[str, str, str]]:
    """The refs still readable in the old database file, best effort: (kind, name, commit)."""
    import sqlite3

    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT kind, name, \"commit\" FROM refs ORDER BY name").fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return []
    return [(str(k), str(n), str(c)) for k, n, c in rows if k in ("branch", "tag") and n and c]


def _move_aside(db: Path) -> list[str]:
    """Rename the database and its side files to ``<name>.damaged-<time>``; never delete them."""
    import os

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base, n = f"{db.name}.damaged-{stamp}", 1
    while any((db.parent / (base + s)).exists() for s in ("", "-wal", "-shm", "-journal")):
        n += 1
        base = f"{db.name}.damaged-{stamp}-{n}"
    moved = []
    for suffix in ("", "-wal", "-shm", "-journal"):  # SQLite finds a database's side files by its name
        src = db.parent / (db.name + suffix)
        if src.exists():
            os.rename(src, db.parent / (base + suffix))
            moved.append(str(db.parent / (base + suffix)))
    return moved
