"""The public Repo (the only ``Repo``): the repository core (``assay.repo.Repository``) with the suite checker
installed, so that commits and merges are checked against the suites of their datasets; with the gate
(``ingest``) and the scores of its datasets; and ``screen``, which scores any dataset version."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from assay._types import Progress
from assay.checks.gate import verify_staged
from assay.engines import Engine
from assay.gate import IngestReport, Policy, load_policy, read_scores
from assay.gate import ingest as _ingest
from assay.repo import Repository
from assay.repo import init as _init
from assay.screens import FeatureSpec, Screen, ScreenRun, make_screen, run_screens, screen_data
from assay.table import DatasetVersion


class Repo(Repository):
    """An assay repository (``Repo(path)`` opens the one at ``path`` or a parent folder).

    Commits of datasets that have a suite are checked first (see ``Repo.commit``). ``engine`` runs the work
    split by fragment (default: threads in this process).
    """

    def __init__(self, path: str | os.PathLike[str] = ".", *, engine: Engine | None = None, **kwargs: Any):
        super().__init__(path, engine=engine, verifier=verify_staged, **kwargs)

    def ingest(self, batch: Any, *, into: str, policy: Policy | str | Path | None = None, **kwargs: Any
               ) -> IngestReport:
        """Audit ``batch`` for dataset ``into``: publish what passes, quarantine what is flagged.

        ``policy`` is a Policy, a policy file, or None (every screen). See ``assay.gate.ingest``.
        """
        chosen = policy if isinstance(policy, Policy) else load_policy(policy)
        return _ingest(self, batch, into=into, policy=chosen, **kwargs)

    def scores(self, spec: str, *, where: str | None = None, sort: str | None = None, descending: bool = False,
               flagged: str | None = None, limit: int | None = None) -> Any:
        """The per-sample scores of ``DATASET[@REV]`` as a pandas frame (filtered, sorted)."""
        return read_scores(self, spec, where=where, sort=sort, descending=descending, flagged=flagged,
                           limit=limit).to_pandas()


def init(path: str | os.PathLike[str] = ".", *, catalog_url: str | None = None) -> Repo:
    """Create a repository in ``path`` (a ``.assay`` folder) and return it."""
    _init(path, catalog_url=catalog_url).close()
    return Repo(path)


def screen(version: DatasetVersion, screens: Sequence[str | Screen] = ("duplicate", "outlier", "label_issue",
                                                                      "value", "poison"),
           *, features: FeatureSpec | None = None, progress: Progress | None = None
           ) -> ScreenRun:
    """Score every sample of ``version`` with ``screens`` (names or configured Screen objects)."""
    data = screen_data(version, features, progress=progress)
    chosen = [make_screen(s) if isinstance(s, str) else s for s in screens]
    return run_screens(data, chosen, progress=progress)
