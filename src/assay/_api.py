"""The public Repo (the only ``Repo``): the repository core (``assay.repo.Repository``) with the suite checker
installed, so that commits and merges are checked against the suites of their datasets; with the gate
(``ingest``) and the scores of its datasets; and ``screen``, which scores any dataset version."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay.repo import repository as _repository

if TYPE_CHECKING:  # the layers below are imported where they are used, so that opening a Repo stays cheap
    from assay._types import Progress
    from assay.engines import Engine
    from assay.gate import IngestReport, Policy
    from assay.models import LineageReport, ModelDiff, ModelSummary, ModelVersion, TrainedOn
    from assay.screens import FeatureSpec, Screen, ScreenRun
    from assay.table import DatasetVersion


class Repo(_repository.Repository):
    """An assay repository (``Repo(path)`` opens the one at ``path`` or a parent folder).

    Commits of datasets that have a suite are checked first (see ``Repo.commit``). ``engine`` runs the work
    split by fragment (default: threads in this process).
    """

    def __init__(self, path: str | os.PathLike[str] = ".", *, engine: Engine | None = None, **kwargs: Any):
        super().__init__(path, engine=engine, verifier=_verify_staged, **kwargs)
        if "store" not in kwargs and (self.dir / "partial.json").exists():  # a partial clone: the rest is remote
            from assay.remote.partial import promise

            promise(self)

    def ingest(self, batch: Any, *, into: str, policy: Policy | str | Path | None = None, **kwargs: Any
               ) -> IngestReport:
        """Audit ``batch`` for dataset ``into``: publish what passes, quarantine what is flagged.

        ``policy`` is a Policy, a policy file, or None (every screen). See ``assay.gate.ingest``.
        """
        from assay.gate import Policy, load_policy
        from assay.gate import ingest as _ingest

        chosen = policy if isinstance(policy, Policy) else load_policy(policy)
        return _ingest(self, batch, into=into, policy=chosen, **kwargs)

    def scores(self, spec: str, *, where: str | None = None, sort: str | None = None, descending: bool = False,
               flagged: str | None = None, limit: int | None = None) -> Any:
        """The per-sample scores of ``DATASET[@REV]`` as a pandas frame (filtered, sorted)."""
        from assay.gate import read_scores

        return read_scores(self, spec, where=where, sort=sort, descending=descending, flagged=flagged,
                           limit=limit).to_pandas()

    # -- models (assay.models.registry; see docs/models.md) ----------------------------------------------------

    def register_model(self, name: str, model: Any, *, train: str | None = None, eval: str | None = None,
                       metrics: dict[str, Any] | None = None, params: dict[str, Any] | None = None,
                       example_input: Any = None, parent: str | ModelVersion | None = None,
                       **kwargs: Any) -> ModelVersion:
        """Register ``model`` (scikit-learn, PyTorch with ``example_input``, ONNX) as the next version of ``name``,
        trained on ``train`` and evaluated on ``eval`` (``DATASET@REV``). See ``assay.models.register``."""
        from assay.models import registry as _registry

        return _registry.register(self, name, model, train=train, eval=eval, metrics=metrics, params=params,
                                  example_input=example_input, parent=parent, **kwargs)

    def model(self, spec: str, *, rev: str | None = None) -> ModelVersion:
        """The version ``NAME[@VERSION|@ALIAS]`` names (the newest by default)."""
        from assay.models import registry as _registry

        return _registry.get(self, spec, rev=rev)

    def models(self, *, rev: str | None = None) -> list[ModelSummary]:
        """Every registered model: versions, aliases, newest version."""
        from assay.models import registry as _registry

        return _registry.list_models(self, rev=rev)

    def load_model(self, spec: str) -> Any:
        """The live model of a version (unpickling a scikit-learn model runs code from its stored bytes)."""
        from assay.models import registry as _registry

        return _registry.load(self, spec)

    def set_model_alias(self, name: str, version: int | str, alias: str) -> int:
        """Point ``alias`` (e.g. ``champion``) of model ``name`` at ``version``, atomically."""
        from assay.models import registry as _registry

        return _registry.set_alias(self, name, version, alias)

    def model_lineage(self, spec: str) -> LineageReport:
        from assay.models import registry as _registry

        return _registry.lineage(self, spec)

    def model_diff(self, a: str, b: str) -> ModelDiff:
        from assay.models import queries as _model_queries

        return _model_queries.diff(self, a, b)

    def trained_on(self, spec: str, *, sample: str | None = None) -> list[TrainedOn]:
        """Model versions whose training data holds ``DATASET@REV`` (or, with ``sample``, that sample)."""
        from assay.models import queries as _model_queries

        return _model_queries.find_trained_on(self, spec, sample=sample)


def _verify_staged(repo: _repository.Repository, manifests: dict[str, str], suites: dict[str, str]) -> dict[str, Any]:
    """The commit gate (``assay.checks.gate.verify_staged``), imported only when a commit has suites to check."""
    from assay.checks.gate import verify_staged

    return verify_staged(repo, manifests, suites)


def clone(url: str, path: str | os.PathLike[str], *, branch: str | None = None,
          datasets: Sequence[str] | None = None, lazy: bool = False, catalog: str | None = None,
          endpoint_url: str | None = None, progress: Progress | None = None) -> Repo:
    """Copy the repository at ``url`` (a folder, ``s3://bucket/prefix``) into the new folder ``path`` and open it;
    ``datasets`` or ``lazy`` make a partial clone that reads the rest from ``url`` on first use. See
    ``assay.remote.clone``."""
    from assay.remote import clone as _clone

    _clone(url, path, branch=branch, datasets=datasets, lazy=lazy, catalog=catalog, endpoint_url=endpoint_url,
           progress=progress).close()
    return Repo(path)


def init(path: str | os.PathLike[str] = ".", *, catalog_url: str | None = None,
         store_url: str | None = None) -> Repo:
    """Create a repository in ``path`` (a ``.assay`` folder) and return it; ``store_url`` and ``catalog_url``
    put its objects and refs elsewhere (``s3://bucket/prefix``, ``postgresql://host/db``)."""
    _repository.init(path, catalog_url=catalog_url, store_url=store_url).close()
    return Repo(path)


def screen(version: DatasetVersion, screens: Sequence[str | Screen] = ("duplicate", "outlier", "label_issue",
                                                                      "value", "poison"),
           *, features: FeatureSpec | None = None, progress: Progress | None = None,
           engine: Engine | None = None) -> ScreenRun:
    """Score every sample of ``version`` with ``screens`` (names or configured Screen objects); ``engine`` runs
    the nearest-neighbour queries (default: in one piece, in this process)."""
    from assay.screens import make_screen, run_screens, screen_data

    data = screen_data(version, features, progress=progress, engine=engine)
    chosen = [make_screen(s) if isinstance(s, str) else s for s in screens]
    return run_screens(data, chosen, progress=progress)
