"""assay: version control, tests and monitoring for the data and models of ML systems.

The public names are loaded when first used (PEP 562), so that ``import assay`` (and a command line that needs
only the repository) does not pay for Arrow, DuckDB, NumPy or SciPy: ``from assay import Repo`` and ``assay.Repo``
work as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from assay._lazy import by_module, lazy_names
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

if TYPE_CHECKING:
    from assay._api import Repo, clone, init, screen
    from assay.checks import CheckResult, Suite, infer_suite, load_suite, run_suite
    from assay.gate import IngestReport, Policy, load_policy
    from assay.repo import Commit, MergeResult, Status
    from assay.screens import SCREENS, FeatureSpec, Screen, ScreenResult, ScreenRun
    from assay.table import DatasetDiff, DatasetVersion, Manifest, UpdateResult

__version__ = "0.1.0"

_LAZY = {
    "assay._api": ("Repo", "clone", "init", "screen"),
    "assay.checks": ("CheckResult", "Suite", "infer_suite", "load_suite", "run_suite"),
    "assay.gate": ("IngestReport", "Policy", "load_policy"),
    "assay.repo": ("Commit", "MergeResult", "Status"),
    "assay.screens": ("SCREENS", "FeatureSpec", "Screen", "ScreenResult", "ScreenRun"),
    "assay.table": ("DatasetDiff", "DatasetVersion", "Manifest", "UpdateResult"),
}
__getattr__, __dir__ = lazy_names(__name__, by_module(_LAZY), globals())


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
    "clone",
    "infer_suite",
    "init",
    "load_policy",
    "load_suite",
    "run_suite",
    "screen",
]
