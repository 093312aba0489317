"""Models: a registry of versioned models with lineage both ways (data and code -> model -> derived models,
and back from data to the models trained on it). See docs/models.md."""

from assay.models.adapters import SUPPORTED, check_onnx, framework_of, read_file
from assay.models.lineage import LineageReport, TrainedOn
from assay.models.queries import ModelDiff, find_trained_on
from assay.models.queries import diff as diff_models
from assay.models.record import (
    Artifact,
    DataRef,
    IndexEntry,
    Lineage,
    ModelIndex,
    ModelVersion,
    ParentRef,
    Signature,
    TensorSpec,
)
from assay.models.registry import (
    ModelSummary,
    ModelView,
    attach,
    attachments,
    data,
    describe,
    get,
    history,
    list_models,
    load,
    read_artifact,
    register,
    remove_alias,
    set_alias,
)
from assay.models.registry import lineage as model_lineage

__all__ = [
    "Artifact",
    "DataRef",
    "IndexEntry",
    "Lineage",
    "LineageReport",
    "ModelDiff",
    "ModelIndex",
    "ModelSummary",
    "ModelVersion",
    "ModelView",
    "ParentRef",
    "SUPPORTED",
    "Signature",
    "TensorSpec",
    "TrainedOn",
    "attach",
    "attachments",
    "check_onnx",
    "data",
    "describe",
    "diff_models",
    "find_trained_on",
    "framework_of",
    "get",
    "history",
    "list_models",
    "load",
    "model_lineage",
    "read_artifact",
    "read_file",
    "register",
    "remove_alias",
    "set_alias",
]
