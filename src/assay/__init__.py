"""assay: version control, tests and monitoring for the data and models of ML systems."""

from assay.errors import (
    AssayError,
    ConflictError,
    CorruptObject,
    FormatError,
    InputError,
    KeyViolation,
    MergeConflict,
    NotARepository,
    NothingToCommit,
    ObjectNotFound,
    RefExists,
    RefNotFound,
    RepositoryExists,
    SchemaConflict,
)
from assay.repo import Commit, MergeResult, Repo, Status, init
from assay.table import DatasetDiff, DatasetVersion, Manifest, UpdateResult

__version__ = "0.1.0"

__all__ = [
    "AssayError",
    "Commit",
    "ConflictError",
    "CorruptObject",
    "DatasetDiff",
    "DatasetVersion",
    "FormatError",
    "InputError",
    "KeyViolation",
    "Manifest",
    "MergeConflict",
    "MergeResult",
    "NotARepository",
    "NothingToCommit",
    "ObjectNotFound",
    "RefExists",
    "RefNotFound",
    "Repo",
    "RepositoryExists",
    "SchemaConflict",
    "Status",
    "UpdateResult",
    "__version__",
    "init",
]
