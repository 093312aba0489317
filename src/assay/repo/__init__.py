"""Repositories: commits, refs, branches, tags, merges, the catalog, and upkeep (fsck, gc, compact)."""

from typing import Any

from assay.repo.catalog import Catalog, Ref, RefUpdate, SqliteCatalog, open_catalog
from assay.repo.commits import Commit
from assay.repo.repository import MergeResult, Repository, Status, init

__all__ = ["Catalog", "Commit", "MergeResult", "Ref", "RefUpdate", "Repository", "SqlCatalog", "SqliteCatalog",
           "Status", "init", "open_catalog"]


def __getattr__(name: str) -> Any:
    if name == "SqlCatalog":  # the SQLAlchemy catalog, for servers: importing it imports SQLAlchemy
        from assay.repo.catalog.sql import SqlCatalog

        return SqlCatalog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
