"""The catalog: refs (branches and tags) moved by compare-and-swap, a reflog, the commits with their parents, and
locks shared by every process of a repository.

``open_catalog(url)`` opens one (see ``urls``): a SQLite file with the standard library for the default
repository, PostgreSQL through SQLAlchemy (imported only then) for a shared one. Its schema is versioned
(``migrations``) and upgraded when opened.
"""

from __future__ import annotations

from typing import Any

from assay.repo.catalog.base import Catalog, CommitNode, Lease, Ref, RefUpdate
from assay.repo.catalog.migrations import LATEST as SCHEMA_VERSION
from assay.repo.catalog.sqlite import SqliteCatalog
from assay.repo.catalog.urls import ENV_URL, config_url, open_catalog, parse_catalog_url, register_catalog_scheme

__all__ = [
    "ENV_URL",
    "SCHEMA_VERSION",
    "Catalog",
    "CommitNode",
    "Lease",
    "Ref",
    "RefUpdate",
    "SqlCatalog",
    "SqliteCatalog",
    "config_url",
    "open_catalog",
    "parse_catalog_url",
    "register_catalog_scheme",
]


def __getattr__(name: str) -> Any:
    if name == "SqlCatalog":  # the SQLAlchemy catalog: importing it imports SQLAlchemy
        from assay.repo.catalog.sql import SqlCatalog

        return SqlCatalog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
