"""The commit graph from the catalog: ancestors, log order and merge bases without reading commits one by one.

The catalog records each commit's time and parents. A commit it does not know (indexed before it kept parents,
or never indexed) is read from the object store once and recorded, so later walks need the catalog only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from assay.errors import AssayError, OutOfSpace
from assay.repo.catalog import Catalog, CommitNode
from assay.repo.commits import Commit

ReadCommit = Callable[[str], Commit]


def ancestry(catalog: Catalog, read_commit: ReadCommit, start: str) -> dict[str, CommitNode]:
    """``start`` and every ancestor: oid -> (time, parents)."""
    graph: dict[str, CommitNode] = {}
    pending = [start]
    while pending:
        oid = pending.pop()
        if oid in graph:
            continue
        found = catalog.ancestry(oid)
        if oid not in found:
            c = read_commit(oid)
            found = {oid: CommitNode(c.time, tuple(c.parents))}
            with contextlib.suppress(OutOfSpace):  # a read-only catalog: the walk still works, it just reads
                catalog.record_commit(oid, c.time, c.message, c.parents)
        graph.update(found)
        pending.extend(p for node in found.values() for p in node.parents if p not in graph)
    return graph


def log_order(graph: dict[str, CommitNode], start: str) -> Iterator[str]:
    """Commits from ``start`` newest first, following every parent (as ``git log`` orders them by date)."""
    seen: set[str] = set()
    frontier = [start]
    while frontier:
        frontier.sort(key=lambda o: graph[o].time, reverse=True)
        oid = frontier.pop(0)
        if oid in seen:
            continue
        seen.add(oid)
        yield oid
        frontier.extend(p for p in graph[oid].parents if p not in seen)


def merge_base(catalog: Catalog, read_commit: ReadCommit, a: str, b: str) -> str | None:
    """The newest common ancestor of two commits."""
    left, right = ancestry(catalog, read_commit, a), ancestry(catalog, read_commit, b)
    common = set(left) & set(right)
    return max(common, key=lambda o: (left[o].time, o), default=None) if common else None


def backfill(catalog: Catalog, read_commit: ReadCommit) -> int:
    """Record the parents of every indexed commit that lacks them (after the upgrade that added them)."""
    missing = catalog.unknown_parents()
    known = {}
    for oid in missing:
        with contextlib.suppress(AssayError, ValueError, KeyError):  # unreadable: fsck's to report
            known[oid] = read_commit(oid).parents
    with contextlib.suppress(OutOfSpace):
        catalog.record_parents(known)
    return len(known)
