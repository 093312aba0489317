"""Repositories: commits, refs, branches, tags, merges, the catalog, and upkeep (fsck, gc, compact)."""

from assay.repo.catalog import Catalog, Ref, RefUpdate, SqlCatalog
from assay.repo.commits import Commit
from assay.repo.repository import MergeResult, Repository, Status, init

__all__ = ["Catalog", "Commit", "MergeResult", "Ref", "RefUpdate", "Repository", "SqlCatalog", "Status", "init"]
