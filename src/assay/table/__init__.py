"""Tables of samples: ids, fragments, manifests, updates, diff, merge and readers (Arrow/Parquet)."""

from assay.table.diff import DatasetDiff, SampleChange, diff_manifests
from assay.table.manifest import FragmentRef, Manifest
from assay.table.merge import Conflict, merge_manifests
from assay.table.reader import DatasetVersion, SampleView
from assay.table.update import MODES, UpdateResult, apply_update

__all__ = [
    "Conflict",
    "DatasetDiff",
    "DatasetVersion",
    "FragmentRef",
    "MODES",
    "Manifest",
    "SampleChange",
    "SampleView",
    "UpdateResult",
    "apply_update",
    "diff_manifests",
    "merge_manifests",
]
