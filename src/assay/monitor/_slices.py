"""Slices of two tables (the reference and a production window) and their effects: the counting behind
``assay.monitor.explain``, vectorised (Arrow dictionary encoding, numpy bins and counts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BINS = 10  # quantile bins of a numeric column: its deciles in the reference
MAX_VALUES = 30  # values of a categorical column shown as slices; the rest form one slice "other"


@dataclass(frozen=True)
class Slice:
    """A set of rows: a value (``kind`` "value"), a range ``(low, high]`` ("range"), nulls ("null") or the rarer
    values ("other") of ``column``, with its effect (``inside - outside``, see the module docstring), counts and
    shares on both sides, and for performance the error in the slice on both sides."""

    column: str
    kind: str
    name: str
    effect: float
    reference_rows: int
    production_rows: int
    reference_share: float
    production_share: float
    value: Any = None
    low: float | None = None
    high: float | None = None
    reference_error: float | None = None
    production_error: float | None = None
    inside: float | None = None
    outside: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "kind": self.kind, "name": self.name, "effect": self.effect,
                "reference_rows": self.reference_rows, "production_rows": self.production_rows,
                "reference_share": self.reference_share, "production_share": self.production_share,
                "value": self.value, "low": self.low, "high": self.high,
                "reference_error": self.reference_error, "production_error": self.production_error,
                "inside": self.inside, "outside": self.outside}


@dataclass
class Codes:
    """One column's slices: a code per row on each side, and what each code means."""

    column: str
    ref: np.ndarray
    prod: np.ndarray
    defs: list[dict[str, Any]]  # kind, name, value, low, high


def floats(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), np.float64)


def is_numeric(t: pa.DataType) -> bool:
    return (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)) and not pa.types.is_boolean(t)


def is_array(t: pa.DataType) -> bool:
    """A column holding an array per sample (an image, a tensor)."""
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def codes_of(name: str, ref: pa.ChunkedArray, prod: pa.ChunkedArray, bins: int = BINS) -> Codes:
    if is_numeric(ref.type) and is_numeric(prod.type) and len(pc.unique(ref.slice(0, 50_000).drop_null())) > bins:
        return _range_codes(name, ref, prod, bins)
    return _value_codes(name, ref, prod)


def _range_codes(name: str, ref: pa.ChunkedArray, prod: pa.ChunkedArray, bins: int) -> Codes:
    r, p = floats(ref), floats(prod)
    finite = r[np.isfinite(r)]
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])) if len(finite) else np.zeros(0)
    k = len(edges)

    def code(x: np.ndarray) -> np.ndarray:
        c = np.searchsorted(edges, x, side="left")
        return np.where(np.isnan(x), k + 1, c)

    defs = []
    for i in range(k + 1):
        low = float(edges[i - 1]) if i > 0 else None
        high = float(edges[i]) if i < k else None
        text = (f"{name} <= {high:g}" if low is None else f"{name} > {low:g}" if high is None
                else f"{low:g} < {name} <= {high:g}")
        defs.append({"kind": "range", "name": text, "low": low, "high": high})
    defs.append({"kind": "null", "name": f"{name} is null"})
    return Codes(name, code(r), code(p), defs)


def _together(ref: pa.ChunkedArray, prod: pa.ChunkedArray) -> pa.Array:
    """Both columns as one array: of the reference's type, or as strings when production's does not cast to it."""
    if prod.type == ref.type:
        return pa.concat_arrays([ref.combine_chunks(), prod.combine_chunks()])
    for kind in (ref.type, prod.type, pa.string()):
        try:
            return pa.concat_arrays([ref.combine_chunks().cast(kind), prod.combine_chunks().cast(kind)])
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            continue
    raise AssertionError("every type casts to string")  # pragma: no cover


def _value_codes(name: str, ref: pa.ChunkedArray, prod: pa.ChunkedArray) -> Codes:
    encoded = pc.dictionary_encode(_together(ref, prod))
    values = encoded.dictionary.to_pylist()
    idx = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), np.int64)
    counts = np.bincount(idx[idx >= 0], minlength=len(values))
    keep = np.argsort(-counts, kind="stable")[:MAX_VALUES]
    position = np.full(len(values) + 1, len(keep), np.int64)  # the rest: "other"; index -1 is null
    position[keep] = np.arange(len(keep))
    position[-1] = len(keep) + 1
    codes = position[idx]
    defs = [{"kind": "value", "name": f"{name} = {values[i]!r}" if isinstance(values[i], str)
             else f"{name} = {values[i]}", "value": values[i]} for i in keep]
    defs.append({"kind": "other", "name": f"{name}: another value"})
    defs.append({"kind": "null", "name": f"{name} is null"})
    return Codes(name, codes[:len(ref)], codes[len(ref):], defs)


def null_codes(name: str, ref: pa.ChunkedArray, prod: pa.ChunkedArray) -> Codes:
    def code(col: pa.ChunkedArray) -> np.ndarray:
        missing = np.asarray(pc.is_null(col, nan_is_null=True).to_numpy(zero_copy_only=False), bool)
        return missing.astype(np.int64)

    return Codes(name, code(ref), code(prod), [{"kind": "value", "name": f"{name} is not null", "value": True},
                                                {"kind": "null", "name": f"{name} is null"}])


def drift_slices(columns: list[Codes], target: Codes | None,
                  min_rows: int) -> tuple[list[Slice], dict[str, np.ndarray]]:
    """Slices with their drift effect, and per column the excess ``p(b|S) - q(b|S)`` of each (slice, bin)."""
    out, excess = [], {}
    for c in columns:
        n_ref, n_prod = len(c.ref), len(c.prod)
        ref_rows, prod_rows = np.bincount(c.ref, minlength=len(c.defs)), np.bincount(c.prod, minlength=len(c.defs))
        shares = (ref_rows / max(n_ref, 1), prod_rows / max(n_prod, 1))
        if target is None or c.column == target.column:
            effect = np.abs(shares[1] - shares[0])
            inside = outside = np.full(len(c.defs), np.nan)
            excess[c.column] = (shares[1] - shares[0]).reshape(-1, 1)
            enough = (ref_rows + prod_rows) > 0
        else:
            nb = len(target.defs)
            q = np.bincount(c.ref * nb + target.ref, minlength=len(c.defs) * nb).reshape(len(c.defs), nb)
            p = np.bincount(c.prod * nb + target.prod, minlength=len(c.defs) * nb).reshape(len(c.defs), nb)
            inside = _tv(p, q)
            outside = _tv(p.sum(axis=0) - p, q.sum(axis=0) - q)
            effect = inside - outside
            excess[c.column] = _conditional(p) - _conditional(q)
            enough = ((prod_rows >= min_rows) & (n_prod - prod_rows >= min_rows) & (ref_rows >= min_rows)
                      & (n_ref - ref_rows >= min_rows))
        for i, d in enumerate(c.defs):
            if enough[i]:
                out.append(_slice(c.column, d, float(effect[i]), int(ref_rows[i]), int(prod_rows[i]), n_ref, n_prod,
                                  inside=_num(inside[i]), outside=_num(outside[i])))
    return out, excess


def _conditional(counts: np.ndarray) -> np.ndarray:
    """Rows of counts as shares of their row (zero rows stay zero)."""
    total = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, total, out=np.zeros(counts.shape), where=total > 0)


def _tv(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Total variation between the rows of two count tables, each row as a distribution."""
    return 0.5 * np.abs(_conditional(p) - _conditional(q)).sum(axis=-1)


def _num(v: float) -> float | None:
    return None if np.isnan(v) else float(v)


def performance_slices(columns: list[Codes], err_ref: np.ndarray, err_prod: np.ndarray,
                        min_rows: int) -> list[Slice]:
    """Slices with the change of error inside them less the change outside them."""
    out = []
    for c in columns:
        n_ref, n_prod = len(c.ref), len(c.prod)
        ref_rows, prod_rows = np.bincount(c.ref, minlength=len(c.defs)), np.bincount(c.prod, minlength=len(c.defs))
        ref_sum = np.bincount(c.ref, weights=err_ref, minlength=len(c.defs))
        prod_sum = np.bincount(c.prod, weights=err_prod, minlength=len(c.defs))
        with np.errstate(invalid="ignore", divide="ignore"):
            e_ref, e_prod = ref_sum / ref_rows, prod_sum / prod_rows
            o_ref = (ref_sum.sum() - ref_sum) / (n_ref - ref_rows)
            o_prod = (prod_sum.sum() - prod_sum) / (n_prod - prod_rows)
        inside, outside = e_prod - e_ref, o_prod - o_ref
        enough = ((prod_rows >= min_rows) & (n_prod - prod_rows >= min_rows) & (ref_rows >= min_rows)
                  & (n_ref - ref_rows >= min_rows))
        for i, d in enumerate(c.defs):
            if enough[i]:
                out.append(_slice(c.column, d, float(inside[i] - outside[i]), int(ref_rows[i]), int(prod_rows[i]),
                                  n_ref, n_prod, float(e_ref[i]), float(e_prod[i]), float(inside[i]),
                                  float(outside[i])))
    return out


def _slice(column: str, d: dict[str, Any], effect: float, ref_rows: int, prod_rows: int, n_ref: int, n_prod: int,
           e_ref: float | None = None, e_prod: float | None = None, inside: float | None = None,
           outside: float | None = None) -> Slice:
    return Slice(column, d["kind"], d["name"], effect, ref_rows, prod_rows, ref_rows / max(n_ref, 1),
                 prod_rows / max(n_prod, 1), d.get("value"), d.get("low"), d.get("high"), e_ref, e_prod, inside,
                 outside)
