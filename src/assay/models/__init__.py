"""Models: a registry of versioned models with lineage both ways (data and code -> model -> derived models,
and back from data to the models trained on it), and the shipping of a version: ONNX export, INT8 within an
accuracy budget, benchmarks and edge packages (``assay.models.ship``). See docs/models.md.

The public names are loaded when first used (PEP 562), so that a command that only reads the registry
(``assay model show``, ``lineage``, ``list``) does not pay for NumPy, Arrow or the shipping layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from assay._lazy import lazy_names

if TYPE_CHECKING:
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
        read_index,
        write_index,
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
    from assay.models.ship import (
        BenchReport,
        ExportReport,
        PackageReport,
        QuantizeReport,
        bench_version,
        export_version,
        package_version,
        quantize_version,
    )

# public name -> (module, the name there)
_LAZY: dict[str, tuple[str, str]] = {
    **{n: ("assay.models.adapters", n) for n in ("SUPPORTED", "check_onnx", "framework_of", "read_file")},
    **{n: ("assay.models.lineage", n) for n in ("LineageReport", "TrainedOn")},
    "ModelDiff": ("assay.models.queries", "ModelDiff"),
    "find_trained_on": ("assay.models.queries", "find_trained_on"),
    "diff_models": ("assay.models.queries", "diff"),
    **{n: ("assay.models.record", n) for n in ("Artifact", "DataRef", "IndexEntry", "Lineage", "ModelIndex",
                                                "ModelVersion", "ParentRef", "Signature", "TensorSpec",
                                                "read_index", "write_index")},
    **{n: ("assay.models.registry", n) for n in ("ModelSummary", "ModelView", "attach", "attachments", "data",
                                                  "describe", "get", "history", "list_models", "load",
                                                  "read_artifact", "register", "remove_alias", "set_alias")},
    "model_lineage": ("assay.models.registry", "lineage"),
    **{n: ("assay.models.ship", n) for n in ("BenchReport", "ExportReport", "PackageReport", "QuantizeReport",
                                              "bench_version", "export_version", "package_version",
                                              "quantize_version")},
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, globals())

__all__ = [
    "Artifact",
    "BenchReport",
    "DataRef",
    "ExportReport",
    "IndexEntry",
    "Lineage",
    "LineageReport",
    "ModelDiff",
    "ModelIndex",
    "ModelSummary",
    "ModelVersion",
    "ModelView",
    "PackageReport",
    "ParentRef",
    "QuantizeReport",
    "SUPPORTED",
    "Signature",
    "TensorSpec",
    "TrainedOn",
    "attach",
    "attachments",
    "bench_version",
    "check_onnx",
    "data",
    "describe",
    "diff_models",
    "export_version",
    "find_trained_on",
    "framework_of",
    "get",
    "history",
    "list_models",
    "load",
    "model_lineage",
    "package_version",
    "quantize_version",
    "read_artifact",
    "read_file",
    "read_index",
    "register",
    "remove_alias",
    "set_alias",
    "write_index",
]
