"""assay: version control, tests and monitoring for the data and models of ML systems."""

from assay._api import Repo, init
from assay.checks import CheckResult, Suite, infer_suite, load_suite, run_suite
from assay.errors import (
    AssayError,
    CheckFailed,
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
from assay.repo import Commit, MergeResult, Status
from assay.table import DatasetDiff, DatasetVersion, Manifest, UpdateResult

__version__ = "0.1.0"

__all__ = [
    "AssayError",
    "CheckFailed",
    "CheckResult",
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
    "Suite",
    "UpdateResult",
    "__version__",
    "infer_suite",
    "init",
    "load_suite",
    "run_suite",
]
