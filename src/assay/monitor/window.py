"""What monitoring reads: a model's prediction log as a table of features and predictions, cut into windows,
and the reference it is compared with (the model's training version, or any dataset version).

``production(repo, "digits", window=Window.parse("1h"))`` decodes the log rows (``inputs``/``outputs`` JSON,
see ``assay.serve.log``) into one column per feature the model was registered with (``Signature.features``;
the input tensor's positions ``x0..`` when it has none), plus:

- ``prediction``: the predicted class (classifiers: an integer or string output named ``label``, or the
  arg-max of the probabilities) or value (regressors: the first float output);
- ``score``: the confidence of the predicted class (the largest probability), null for regressors;
- ``proba``: the class probabilities as a list (classifiers that give them), for calibration and estimation;
- ``label``: the label joined from ``predictions.NAME.labels`` when ``labels=True`` (null until it arrives).

Every table keeps ``request_id``, ``time`` and ``version`` of the log.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay.errors import InputError, RefNotFound

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w|rows?)?\s*$", re.IGNORECASE)
LOG_COLUMNS = ["request_id", "time", "version", "inputs", "outputs"]


@dataclass(frozen=True)
class Window:
    """A window of the log: the last ``rows`` rows, or the rows of the last ``seconds`` seconds."""

    rows: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str | int | Window) -> Window:
        """``"1h"``, ``"30m"``, ``"2d"``, ``"90s"`` (a duration) or ``"10000"``, ``"10000 rows"`` (a count)."""
        if isinstance(text, Window):
            return text
        if isinstance(text, int):
            text = str(text)
        m = _WINDOW.match(text)
        if m is None or float(m.group(1)) <= 0:
            raise InputError(f"window {text!r} is neither a duration (1h, 30m, 2d, 90s) nor a row count (10000, "
                             "'10000 rows'); give one of those")
        unit = (m.group(2) or "rows").lower()
        if unit.startswith("row"):
            if not m.group(1).isdigit():
                raise InputError(f"window {text!r}: a row count is a whole number (10000)")
            return cls(rows=int(m.group(1)))
        return cls(seconds=float(m.group(1)) * _UNITS[unit])

    def __str__(self) -> str:
        return f"{self.rows} rows" if self.rows is not None else f"{self.seconds:g} s"


def parse_time(text: str | float | None, *, now: float | None = None) -> float | None:
    """``--since``: seconds since the epoch, an ISO 8601 time (UTC unless it says), or a duration ago (``2h``)."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    now = time.time() if now is None else now
    m = _WINDOW.match(text)
    if m and m.group(2) and not m.group(2).lower().startswith("row"):
        return now - float(m.group(1)) * _UNITS[m.group(2).lower()]
    try:
        return float(text)
    except ValueError:
        pass
    from datetime import UTC, datetime

    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"time {text!r} is not an ISO 8601 time (2026-12-03T10:00), seconds since the epoch, "
                         "or a duration ago (2h)") from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def log_table(repo: Any, model: str, *, rev: str | None = None, columns: Sequence[str] = LOG_COLUMNS) -> pa.Table:
    """The raw rows of ``predictions.MODEL`` at ``rev`` (default HEAD), sorted by time."""
    from assay.serve.log import dataset_name

    name = dataset_name(model)
    try:
        version = repo.dataset(name, rev)
    except (RefNotFound, KeyError) as e:
        raise RefNotFound(f"no prediction log {name!r}{f' at {rev!r}' if rev else ''}: serve the model "
                          f"(`assay serve {model}`) so that its predictions are logged") from e
    table = version.to_arrow(list(columns))
    return table.take(pc.sort_indices(table, [("time", "ascending")]))


def select(table: pa.Table, *, window: Window | None = None, since: float | None = None,
           until: float | None = None) -> pa.Table:
    """The rows of a time-sorted table in ``[since, until)`` and, of those, the last ``window``."""
    if since is not None:
        table = table.filter(pc.greater_equal(table.column("time"), since))
    if until is not None:
        table = table.filter(pc.less(table.column("time"), until))
    if window is not None and table.num_rows:
        if window.rows is not None:
            table = table.slice(max(0, table.num_rows - window.rows))
        elif window.seconds is not None:
            end = pc.max(table.column("time")).as_py()
            table = table.filter(pc.greater(table.column("time"), end - window.seconds))
    return table


def split(table: pa.Table, window: Window) -> Iterator[tuple[float, float, pa.Table]]:
    """Consecutive windows of a time-sorted table: ``(start, end, rows)``, oldest first; the last may be short."""
    if table.num_rows == 0:
        return
    t = table.column("time").to_numpy()
    if window.rows is not None:
        for start in range(0, table.num_rows, window.rows):
            part = table.slice(start, window.rows)
            yield float(t[start]), float(t[min(start + window.rows, table.num_rows) - 1]), part
        return
    assert window.seconds is not None
    edges = np.arange(t[0], t[-1] + window.seconds, window.seconds)
    cuts = np.searchsorted(t, edges[1:], side="left")
    begin = 0
    for i, cut in enumerate(cuts):
        if cut > begin:
            yield float(edges[i]), float(edges[i] + window.seconds), table.slice(begin, cut - begin)
        begin = int(cut)


def _version(repo: Any, model: str, version: int | str | None) -> Any:
    from assay.models import registry

    return registry.get(repo, model if version is None else f"{model}@{version}")


def feature_names(mv: Any) -> tuple[str, ...]:
    """The features a model version takes, as monitoring names them."""
    if mv.signature.features:
        return tuple(mv.signature.features)
    inputs = mv.signature.inputs
    if len(inputs) == 1 and inputs[0].shape and len(inputs[0].shape) > 2:
        return (inputs[0].name,)  # an image (or any array) per sample: one feature, profiled as an image
    if len(inputs) == 1 and inputs[0].shape and isinstance(inputs[0].shape[-1], int):
        return tuple(f"x{i}" for i in range(inputs[0].shape[-1]))
    return tuple(t.name for t in inputs)


def decode(table: pa.Table, mv: Any) -> pa.Table:
    """Log rows (``inputs``/``outputs`` JSON) as feature columns plus ``prediction``, ``score``, ``proba``.

    The JSON is parsed by Arrow's reader (C++, a column at a time), not row by row in Python."""
    features = feature_names(mv)
    cols: dict[str, Any] = {c: table.column(c) for c in ("request_id", "time", "version") if c in table.column_names}
    for name, column in zip(features, _feature_columns(_parse_json(table.column("inputs")), features), strict=True):
        cols[name] = column
    prediction, score, proba = _predictions(_parse_json(table.column("outputs")), mv.signature.classes)
    cols["prediction"] = prediction
    cols["score"] = score
    if proba is not None:
        cols["proba"] = proba
    return pa.table(cols)


def decode_outputs(table: pa.Table, mv: Any) -> tuple[pa.Array, pa.Array, Any]:
    """``prediction``, ``score`` and ``proba`` (None when the model gives no probabilities) of log rows, from
    their ``outputs`` alone (as ``decode`` gives them, without reading the inputs)."""
    return _predictions(_parse_json(table.column("outputs")), mv.signature.classes)


def _parse_json(column: pa.ChunkedArray) -> pa.Table:
    """One JSON object per row of a string column, as a table (one column per key)."""
    import io

    import pyarrow.json as pj

    if len(column) == 0:
        return pa.table({})
    data = "\n".join(column.to_pylist()).encode()
    longest = int(pc.max(pc.binary_length(column)).as_py() or 0)
    block = max(4 << 20, 2 * longest + 2)  # blocks are parsed on Arrow's threads; a row never spans two
    return pj.read_json(io.BytesIO(data), read_options=pj.ReadOptions(block_size=block))


def _flat(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray | pa.Array, int]:
    """A column of (nested) fixed-length lists as an (n, k) matrix, or a scalar column as itself and 1."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n, width = len(arr), 1
    while pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        lengths = pc.list_value_length(arr)
        if pc.min(lengths).as_py() != pc.max(lengths).as_py():
            raise InputError("the logged requests hold lists of different lengths where the model takes a fixed "
                             "shape: were they logged by another version of the model? Name one with --version")
        width *= int(pc.max(lengths).as_py() or 0)
        arr = pc.list_flatten(arr)
    if width == 1:
        return arr, 1
    if arr.null_count:  # a null sent inside the list stays null (not NaN): a masked array keeps it
        mask = arr.is_null().to_numpy(zero_copy_only=False).reshape(n, width)
        return np.ma.masked_array(arr.fill_null(0).to_numpy(zero_copy_only=False).reshape(n, width), mask), width
    return arr.to_numpy(zero_copy_only=False).reshape(n, width), width


def _feature_columns(ins: pa.Table, features: Sequence[str]) -> list[pa.Array]:
    if ins.num_columns == 0:
        return [pa.array([], pa.float64()) for _ in features]
    names = ins.column_names
    if len(names) == 1:
        values, width = _flat(ins.column(0))
        if len(features) == 1 and width > 1:  # one feature holding an array (an image): kept whole
            return [_as_arrays(values, width)]
        if width != len(features):
            raise InputError(f"a logged request has {width} input values where the model takes {len(features)} "
                             "features: was it logged by another version of the model? Name one with --version")
        if width == 1:
            return [values]
        if isinstance(values, np.ma.MaskedArray):
            mask = np.ma.getmaskarray(values)
            return [pa.array(values.data[:, j], mask=mask[:, j]) for j in range(width)]
        return [pa.array(values[:, j]) for j in range(width)]
    chosen = list(features) if set(features) <= set(names) else names
    if len(chosen) != len(features):
        raise InputError(f"a logged request has {len(chosen)} input values where the model takes {len(features)} "
                         "features: was it logged by another version of the model? Name one with --version")
    out = []
    for name in chosen:
        values, width = _flat(ins.column(name))
        out.append(values if width == 1 else _as_arrays(values, width))
    return out


def _as_arrays(values: np.ndarray | pa.Array, width: int) -> pa.Array:
    """An (n, width) matrix as a column of fixed-size lists (a null value inside stays null)."""
    if isinstance(values, np.ma.MaskedArray):
        flat = pa.array(values.data.ravel(), mask=np.ma.getmaskarray(values).ravel())
    else:
        flat = pa.array(np.asarray(values).ravel())
    return pa.FixedSizeListArray.from_arrays(flat, width)


_LABELS = ("label", "labels", "output_label")


def _predictions(outs: list[dict[str, Any]] | pa.Table, classes: Sequence[Any] | None
                 ) -> tuple[pa.Array, pa.Array, Any]:
    """``prediction``, ``score`` and ``proba`` (or None) of a model's outputs (a table, or one dict per row)."""
    table = outs if isinstance(outs, pa.Table) else pa.Table.from_pylist(outs)
    n = table.num_rows
    if n == 0:
        return pa.array([], pa.float64()), pa.array([], pa.float64()), None
    label_key = next((k for k in table.column_names if k.lower() in _LABELS), None)
    proba_key, p = None, None
    for k in table.column_names:
        if k != label_key and pa.types.is_list(table.schema.field(k).type):
            values, width = _flat(table.column(k))
            if width > 1:
                proba_key, p = k, np.asarray(values, dtype=np.float64)
                break
    proba = None
    if proba_key is not None and p is not None:
        if p.min() < 0 or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
            e = np.exp(p - p.max(axis=1, keepdims=True))  # logits: the softmax gives probabilities
            p = e / e.sum(axis=1, keepdims=True)
        proba = pa.FixedSizeListArray.from_arrays(pa.array(p.ravel()), p.shape[1]).cast(pa.list_(pa.float64()))
        score = pa.array(p.max(axis=1))
        if label_key is None:
            idx = p.argmax(axis=1)
            labels = pa.array(np.asarray(classes, dtype=object)[idx].tolist()) if classes else pa.array(idx)
            return labels, score, proba
    if label_key is not None:
        label, _ = _flat(table.column(label_key))
        return label, score if proba is not None else pa.nulls(n, pa.float64()), proba
    first, _ = _flat(table.column(0))
    return pc.cast(first, pa.float64()), pa.nulls(n, pa.float64()), None


def production(repo: Any, model: str, *, window: Window | str | None = None, since: float | str | None = None,
               until: float | str | None = None, version: int | str | None = None, labels: bool = False,
               rev: str | None = None) -> pa.Table:
    """The decoded production rows of ``model`` (see the module docstring), sorted by time."""
    mv = _version(repo, model, version)
    table = select(log_table(repo, model, rev=rev), window=Window.parse(window) if window is not None else None,
                   since=parse_time(since), until=parse_time(until))
    if version is not None:
        table = table.filter(pc.equal(table.column("version"), mv.version))
    decoded = decode(table, mv)
    if labels:
        decoded = join_labels(repo, model, decoded, rev=rev)
    return decoded


def join_labels(repo: Any, model: str, table: pa.Table, *, rev: str | None = None) -> pa.Table:
    """``table`` with a ``label`` column from ``predictions.MODEL.labels`` (null where none has arrived)."""
    from assay.serve.labels import labels_dataset

    try:
        got = repo.dataset(labels_dataset(model), rev).to_arrow(["request_id", "label"])
    except (RefNotFound, KeyError):
        return table.append_column("label", pa.nulls(table.num_rows))
    index = pc.index_in(table.column("request_id"), value_set=got.column("request_id"))
    return table.append_column("label", pc.take(got.column("label"), index))


def reference(repo: Any, model: str, *, reference: str | None = None, role: str = "train",
              version: int | str | None = None) -> pa.Table:
    """The reference rows: ``reference`` (``dataset@rev``) or the model version's training (``role``) data,
    as its feature columns plus ``label`` when the data has the label column."""
    from assay.models import registry
    from assay.repo.revisions import split_dataset_rev

    mv = _version(repo, model, version)
    if reference is not None:
        name, rev = split_dataset_rev(reference)
        data = repo.dataset(name, rev)
    else:
        data = registry.data(repo, mv, role)
        if data is None:
            raise InputError(f"{mv.spec} was registered without a {role} dataset version, so there is nothing to "
                             f"compare production with: name a reference with --reference DATASET@REV, or register "
                             f"the model with --{role} DATASET@REV")
    features = feature_names(mv)
    missing = [f for f in features if f not in data.schema.names]
    if missing:
        raise InputError(f"the reference {data.name} has no column {missing[0]!r} of the features {mv.spec} takes; "
                         "name a dataset version with those columns")
    label = mv.signature.label
    cols = list(features) + ([label] if label and label in data.schema.names else [])
    table = data.to_arrow(cols)
    if label and label in table.column_names and label != "label":
        table = table.rename_columns([*features, "label"])
    return table
