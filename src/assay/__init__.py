"""assay: version control, tests and monitoring for the data and models of ML systems."""

from assay._api import Repo, init, screen
from assay.checks import CheckResult, Suite, infer_suite, load_suite, run_suite
from assay.errors import (
    AssayError,
    BatchRejected,
    CatalogDamaged,
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
    PolicyError,
    RefExists,
    RefNotFound,
    RepositoryExists,
    SchemaConflict,
    ScreenError,
    SQLConditionError,
)
from assay.gate import IngestReport, Policy, load_policy
from assay.repo import Commit, MergeResult, Status
from assay.screens import SCREENS, FeatureSpec, Screen, ScreenResult, ScreenRun
from assay.table import DatasetDiff, DatasetVersion, Manifest, UpdateResult

__version__ = "0.1.0"

__all__ = [
    "AssayError",
    "BatchRejected",
    "CatalogDamaged",
    "CheckFailed",
    "CheckResult",
    "Commit",
    "ConflictError",
    "CorruptObject",
    "DatasetDiff",
    "DatasetVersion",
    "FeatureSpec",
    "FormatError",
    "IngestReport",
    "InputError",
    "KeyViolation",
    "Manifest",
    "MergeConflict",
    "MergeResult",
    "NotARepository",
    "NothingToCommit",
    "ObjectNotFound",
    "Policy",
    "PolicyError",
    "RefExists",
    "RefNotFound",
    "Repo",
    "RepositoryExists",
    "SCREENS",
    "SQLConditionError",
    "SchemaConflict",
    "Screen",
    "ScreenError",
    "ScreenResult",
    "ScreenRun",
    "Status",
    "Suite",
    "UpdateResult",
    "__version__",
    "infer_suite",
    "init",
    "load_policy",
    "load_suite",
    "run_suite",
    "screen",
]
