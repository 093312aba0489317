"""The public Repo: a repository whose commits are checked against the suites of their datasets."""

from __future__ import annotations

import os
from typing import Any

from assay.checks.gate import verify_staged
from assay.repo import repository as _repository


class Repo(_repository.Repo):
    """An assay repository (``Repo(path)`` opens the one at ``path`` or a parent folder).

    Commits of datasets that have a suite are checked first (see ``Repo.commit``).
    """

    def __init__(self, path: str | os.PathLike[str] = ".", **kwargs: Any):
        super().__init__(path, **kwargs)
        self.verifier = verify_staged


def init(path: str | os.PathLike[str] = ".", *, catalog_url: str | None = None) -> Repo:
    """Create a repository in ``path`` (a ``.assay`` folder) and return it."""
    _repository.init(path, catalog_url=catalog_url).close()
    return Repo(path)
