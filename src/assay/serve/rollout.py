"""Rollout: a server started on an alias (``digits@champion``) or on the newest version (``digits``) follows it.

Every ``poll_seconds`` the spec is resolved again; when it names another version, that version is loaded and
warmed (one call on zeros) beside the one serving, then swapped in: batches taken from then on run on it, a
batch already running finishes on the old one, and no request is dropped or failed. A spec with a version
number (``digits@3``) is pinned and never followed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from assay.models import get
from assay.models import model_lineage as lineage_of
from assay.repo.revisions import split_dataset_rev


def pinned(spec: str) -> bool:
    _, which = split_dataset_rev(spec)
    return which is not None and which.isdigit()


def warm(served: Any) -> None:
    """Run the model once on zeros, so that the first request it answers does not pay for its first call."""
    feeds = {}
    for spec in served.validator.signature.inputs:
        dims = [d if isinstance(d, int) else 1 for d in (spec.shape or (1,))[1:]]
        dtype = np.dtype(spec.dtype) if spec.dtype not in ("string", "str", "object") else np.dtype(object)
        feeds[spec.name] = np.zeros((1, *dims), dtype=dtype)
    served.session.run(served.outputs, feeds)


def changed(root: Path, spec: str, current: int, *, threads: int = 1) -> tuple[Any, dict[str, Any]] | None:
    """The version ``spec`` names now, loaded and warmed with its lineage, if it is not ``current``; else None."""
    from assay.repo.repository import Repository as Repo
    from assay.serve.app import load_served

    with Repo(root) as repo:
        if get(repo, spec).version == current:
            return None
        served = load_served(repo, spec, threads=threads)
        lineage = lineage_of(repo, served.version.spec).to_dict()
    warm(served)
    return served, lineage
