"""Tables of samples: ids, fragments, manifests, updates, diff, merge and readers (Arrow/Parquet).

The public names are loaded when first used (PEP 562): reading a manifest (``assay.table.manifest``) does not
import the readers, the update path or the CSV/Parquet sources.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from assay._lazy import by_module, lazy_names

if TYPE_CHECKING:
    from assay.table.diff import DatasetDiff, SampleChange, diff_manifests
    from assay.table.manifest import FragmentRef, Manifest
    from assay.table.merge import Conflict, merge_manifests
    from assay.table.reader import DatasetVersion, SampleView
    from assay.table.update import MODES, UpdateResult, apply_update

_LAZY = {
    "assay.table.diff": ("DatasetDiff", "SampleChange", "diff_manifests"),
    "assay.table.manifest": ("FragmentRef", "Manifest"),
    "assay.table.merge": ("Conflict", "merge_manifests"),
    "assay.table.reader": ("DatasetVersion", "SampleView"),
    "assay.table.update": ("MODES", "UpdateResult", "apply_update"),
}
__getattr__, __dir__ = lazy_names(__name__, by_module(_LAZY), globals())


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
