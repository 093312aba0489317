"""Tables of samples: ids, fragments, manifests, updates, diff, merge and readers (Arrow/Parquet).

The public names are loaded when first used (PEP 562): reading a manifest (``assay.table.manifest``) does not
import the readers, the update path or the CSV/Parquet sources.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
_HOME = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> Any:
    """Import a public name's module the first time the name is used, and keep the name here."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'assay.table' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))


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
