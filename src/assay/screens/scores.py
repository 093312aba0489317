"""Scores as data: the results of a screen run as an Arrow table with one row per sample.

The schema is fixed (every built-in screen has its columns, null where it did not run), so that the
scores of successive batches append to one dataset, ``DATASET.scores``, versioned with the data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from assay.screens.registry import SCREENS, ScreenRun

SCORES_SUFFIX = ".scores"
BASE_FIELDS = [("sample", pa.string()), ("batch", pa.string()), ("action", pa.string()), ("reasons", pa.string())]


def scores_name(dataset: str) -> str:
    return dataset + SCORES_SUFFIX


def scores_schema() -> pa.Schema:
    fields = [pa.field(n, t) for n, t in BASE_FIELDS]
    for name, screen in SCREENS.items():
        fields += [pa.field(f"{name}_score", pa.float64()), pa.field(f"{name}_flag", pa.bool_())]
        fields += [pa.field(c, t) for c, t in screen.extra_columns.items()]
    return pa.schema(fields)


def scores_table(run: ScreenRun, rows: np.ndarray | None = None, *, batch: str = "",
                 actions: Sequence[str] | None = None) -> pa.Table:
    """The scores of the samples at ``rows`` (all when None) of ``run``, in the fixed schema."""
    idx = np.arange(run.data.n) if rows is None else np.asarray(rows, np.int64)
    schema = scores_schema()
    columns: dict[str, pa.Array] = {
        "sample": pa.array([run.data.ids[i] for i in idx], pa.string()),
        "batch": pa.array([batch] * len(idx), pa.string()),
        "action": pa.array(list(actions) if actions is not None else [""] * len(idx), pa.string()),
        "reasons": pa.array(["; ".join(flagged_reasons(run, int(i))) for i in idx], pa.string()),
    }
    for f in schema:
        if f.name in columns:
            continue
        columns[f.name] = _column(run, f, idx)
    return pa.table(columns, schema=schema)


def flagged_reasons(run: ScreenRun, i: int) -> list[str]:
    """``screen: reason`` for each screen that flagged sample ``i``."""
    return [f"{name}: {r.reason[i]}" for name, r in run.results.items() if r.flag[i] and r.reason[i]]


def _column(run: ScreenRun, f: pa.Field, idx: np.ndarray) -> pa.Array:
    for name, result in run.results.items():
        if f.name == f"{name}_score":
            return pa.array(result.score[idx], f.type)
        if f.name == f"{name}_flag":
            return pa.array(result.flag[idx], f.type)
        if f.name in result.columns:
            values = result.columns[f.name][idx]
            return pa.array([None if v is None or v == "" else v for v in values.tolist()], f.type)
    return pa.nulls(len(idx), f.type)
