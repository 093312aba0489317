"""Commits that change datasets at the tip of a branch, made again on the new tip whenever another writer
moved the branch first: how the prediction log, labels and alerts write beside a running server.

``build(tip, datasets)`` is called with the tip's commit and its datasets (name -> manifest oid) and returns a
``Change``: the datasets of the new commit (or None for nothing to commit), its message and meta, and a result
handed back to the caller. The commit is moved by compare-and-swap; when the branch moved meanwhile, ``build``
runs again on the new tip. These commits record data as it arrived (``verify=False``): a suite reports on it
(`assay check`), it does not refuse what a server already acknowledged.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from assay.errors import ConflictError
from assay.repo.catalog import RefUpdate

ATTEMPTS = 200


@dataclass(frozen=True)
class Change:
    datasets: Mapping[str, str] | None  # the new commit's datasets; None: nothing to commit
    message: str = ""
    result: Any = None
    meta: dict[str, Any] | None = None


def commit_on_branch(repo: Any, branch: str, build: Callable[[str | None, dict[str, str]], Change], *,
                     refused: str, provenance: tuple[str, dict[str, Any] | None] | None = None
                     ) -> tuple[str | None, Any]:
    """``(commit, result)`` of the change ``build`` makes at the tip of ``branch`` (commit None: nothing to
    commit); ConflictError with ``refused`` when the branch kept moving through every attempt. ``provenance``:
    the author and code reference to record (see ``Repository.derive``)."""
    for attempt in range(ATTEMPTS):
        ref = repo.catalog.get_ref(branch)
        tip = ref.commit if ref else None
        change = build(tip, dict(repo.read_commit(tip).datasets) if tip else {})
        if change.datasets is None:
            return None, change.result
        commit = repo.derive(parents=[tip] if tip else [], message=change.message, datasets=change.datasets,
                             meta=change.meta, verify=False, provenance=provenance)
        try:
            repo.move_refs([RefUpdate(branch, "branch", commit, tip)], change.message)
        except ConflictError:
            time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 20)))
            continue
        return str(commit), change.result
    raise ConflictError(refused)
