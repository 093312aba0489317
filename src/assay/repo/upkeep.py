"""Integrity and upkeep: fsck verifies every object and reference, gc removes what nothing reaches,
compact rewrites many small fragments into fewer."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from assay.errors import AssayError, CorruptObject, ObjectNotFound
from assay.repo.graph import COMMIT, MANIFEST, Edge, kind_of, walk
from assay.table.fragments import FRAGMENT_ROWS, read_fragment, write_fragment
from assay.table.manifest import HASH_COLUMN, ID_COLUMN, Manifest

if TYPE_CHECKING:
    from assay.repo.repository import Repo

Progress = Callable[[str, int, int], None]


@dataclass
class FsckReport:
    objects: int = 0
    reachable: int = 0
    corrupt: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (oid, what refers to it)
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.corrupt or self.missing or self.unreadable)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "objects": self.objects, "reachable": self.reachable, "corrupt": self.corrupt,
                "missing": [{"oid": o, "referenced_by": w} for o, w in self.missing],
                "unreadable": [{"oid": o, "error": e} for o, e in self.unreadable]}


def walk_reachable(repo: Repo, report: FsckReport | None = None) -> Iterator[tuple[str, str]]:
    """Yield every object reachable from refs, HEAD and staging, with what refers to it."""
    roots = [Edge(r.commit, COMMIT, f"{r.kind} {r.name}") for r in repo.catalog.list_refs()]
    head = repo.work.read_head()
    if "commit" in head:
        roots.append(Edge(head["commit"], COMMIT, "HEAD"))
    staging = repo.work.read_staging()
    roots += [Edge(s.manifest, MANIFEST, f"staged {n}") for n, s in staging.datasets.items() if s.manifest]
    roots += [Edge(oid, kind_of("suites").node, f"staged suite of {n}") for n, oid in staging.suites.items() if oid]
    return walk(repo.store, roots, on_error=_reporter(report) if report is not None else None)


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


def fsck(repo: Repo, *, progress: Progress | None = None) -> FsckReport:
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
    return report


@dataclass
class GcReport:
    unreachable: int
    removed: int
    kept_recent: int
    tmp_removed: int

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def gc(repo: Repo, *, grace: float = 3600.0, dry_run: bool = False) -> GcReport:
    """Remove objects that nothing reaches and that are older than ``grace`` seconds.

    The grace period protects objects that a concurrent writer has stored but not yet committed.
    """
    limit = time.time() - grace
    with repo.work.locked():
        reachable = {oid for oid, _ in walk_reachable(repo)}
        dead = [oid for oid in repo.store.iter_oids() if oid not in reachable]
        recent = sum(1 for oid in dead if repo.store.stat(oid).mtime >= limit)
        if dry_run:
            return GcReport(len(dead), 0, recent, 0)
        removed = repo.store.delete(dead, older_than=limit)
        tmp = repo.store.clean_tmp(limit) if hasattr(repo.store, "clean_tmp") else 0
    return GcReport(len(dead), removed, recent, tmp)


@dataclass
class CompactReport:
    datasets: dict[str, tuple[int, int]]  # name -> (fragments before, after)
    commit: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"datasets": {k: {"before": a, "after": b} for k, (a, b) in self.datasets.items()},
                "commit": self.commit}


def compact(repo: Repo, names: Sequence[str] | None, *, message: str, min_fragments: int = 2,
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
            new = m.with_fragments(_rewrite(repo, m, progress))
            staging.datasets[name] = StagedDataset(repo.store.put(new.to_bytes()), current[name], {"compacted": True})
            done[name] = (len(m.fragments), len(new.fragments))
        repo.work.write_staging(staging)
    commit = repo.commit(message) if done else None
    return CompactReport(done, commit)


def _needs_compaction(m: Manifest, min_fragments: int) -> bool:
    full = -(-m.rows // FRAGMENT_ROWS)
    return (len(m.fragments) >= min_fragments and len(m.fragments) > full) or any(f.deleted for f in m.fragments)


def _rewrite(repo: Repo, m: Manifest, progress: Progress | None) -> list[Any]:
    from assay.table.reader import conform

    cols = [ID_COLUMN, HASH_COLUMN, *m.schema.names]
    pending: list[pa.Table] = []
    rows, out = 0, []
    for f in m.fragments:
        t = conform(read_fragment(repo.store, f, [c for c in cols]), _schema(m))
        pending.append(t)
        rows += t.num_rows
        while rows >= FRAGMENT_ROWS:
            table = pa.concat_tables(pending)
            out.append(write_fragment(repo.store, table.slice(0, FRAGMENT_ROWS)))
            rest = table.slice(FRAGMENT_ROWS)
            pending, rows = [rest], rest.num_rows
        if progress:
            progress(f"compacting {m.name}", len(out), 0)
    if rows:
        out.append(write_fragment(repo.store, pa.concat_tables(pending)))
    return out


def _schema(m: Manifest) -> pa.Schema:
    from assay.table.ids import ID_TYPE

    return pa.schema([pa.field(ID_COLUMN, ID_TYPE), pa.field(HASH_COLUMN, ID_TYPE), *m.schema])
