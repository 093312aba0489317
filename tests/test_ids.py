"""Sample ids and row hashes: golden vectors, a row-by-row reference implementation, invariances."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import struct
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assay.table import ids


def reference_digest(domain: bytes, rows: list[dict[str, Any]], types: dict[str, str]) -> list[bytes]:
    """The spec of docs/ids.md written row by row with hashlib and struct."""
    names = sorted(types)
    tag = ("\x00".join(f"{n}:{types[n]}" for n in names) + "\x00\x00").encode()
    header = hashlib.sha256(domain + tag).digest()[:16]
    out = []
    for row in rows:
        words = [0] * ((len(names) + 63) // 64)
        values, tails = [], []
        for i, n in enumerate(names):
            v = row[n]
            if v is not None:
                words[i // 64] |= 1 << (i % 64)
            values.append(_value(types[n], v))
            if types[n] in ("string", "binary") and v is not None:
                tails.append(v.encode() if isinstance(v, str) else v)
        body = header + b"".join(struct.pack("<Q", w) for w in words) + b"".join(values) + b"".join(tails)
        out.append(hashlib.sha256(body).digest()[:16])
    return out


def _value(kind: str, v: Any) -> bytes:
    if v is None:
        return struct.pack("<Q", 0)
    if kind == "int":
        return struct.pack("<q", v)
    if kind == "bool":
        return struct.pack("<Q", int(v))
    if kind == "float":
        if math.isnan(v):
            return struct.pack("<Q", 0x7FF8000000000000)
        return struct.pack("<d", v + 0.0)
    if kind == "date":
        return struct.pack("<q", (v - dt.date(1970, 1, 1)).days)
    if kind.startswith("timestamp"):
        delta = v - dt.datetime(1970, 1, 1, tzinfo=v.tzinfo)
        return struct.pack("<q", (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000)
    if kind in ("string", "binary"):
        return struct.pack("<Q", len(v.encode() if isinstance(v, str) else v))
    raise AssertionError(kind)


GOLDEN_TABLE = pa.table({
    "id": pa.array([1, 2, None], pa.int64()),
    "name": ["a", None, "ü"],
    "score": [1.5, float("nan"), -0.0],
    "ok": [True, False, None],
})
# Pinned outputs of spec version 1; a change here breaks every stored dataset's ids.
GOLDEN_ROW_HASHES = [
    "7f58e5575c0f46b2f23681357fe6b017",
    "c3a6ad57382645b225455fc6431ce687",
    "d04258202a68ae32bb779f6aeaacc707",
]


def test_golden_vectors_match_reference() -> None:
    types = {"id": "int", "name": "string", "score": "float", "ok": "bool"}
    expected = reference_digest(ids.ROW_DOMAIN, GOLDEN_TABLE.to_pylist(), types)
    got = ids.row_hashes(GOLDEN_TABLE).to_pylist()
    assert got == expected
    assert [h.hex() for h in got] == GOLDEN_ROW_HASHES


def test_key_ids_match_reference() -> None:
    t = pa.table({"a": [1, 2, 3], "b": ["x", "y", None], "c": [0.1, 0.2, 0.3]})
    expected = reference_digest(ids.KEY_DOMAIN, t.select(["a", "b"]).to_pylist(), {"a": "int", "b": "string"})
    assert ids.key_ids(t, ["b", "a"]).to_pylist() == expected


def test_content_ids_count_occurrences() -> None:
    h = ids.row_hashes(pa.table({"v": [1, 1, 2, 1]}))
    cid = ids.content_ids(h).to_pylist()
    assert len(set(cid)) == 4
    occ_header = hashlib.sha256(ids.OCCURRENCE_DOMAIN).digest()[:16]
    hashes = h.to_pylist()
    want = [hashlib.sha256(occ_header + hashes[i] + struct.pack("<Q", k)).digest()[:16]
            for i, k in ((0, 0), (1, 1), (2, 0), (3, 2))]
    assert cid == want
    # appending continues the count from copies already stored
    more = ids.content_ids(h.slice(0, 1), {hashes[0]: 3}).to_pylist()
    assert more == [hashlib.sha256(occ_header + hashes[0] + struct.pack("<Q", 3)).digest()[:16]]


def test_dates_and_timestamps_match_reference() -> None:
    utc = dt.UTC
    t = pa.table({
        "d": pa.array([dt.date(2020, 1, 2), None], pa.date32()),
        "ts": pa.array([dt.datetime(2021, 5, 6, 7, 8, 9, 10, tzinfo=utc), None], pa.timestamp("us", "UTC")),
    })
    types = {"d": "date", "ts": "timestamp[UTC]"}
    assert ids.row_hashes(t).to_pylist() == reference_digest(ids.ROW_DOMAIN, t.to_pylist(), types)


def test_invariant_to_widths_encodings_order_and_chunks() -> None:
    a = pa.table({"n": pa.array([1, None, 3], pa.int64()), "s": ["x", "y", None], "f": [1.0, 2.0, 3.0]})
    b = pa.table({
        "f": pa.array([1.0, 2.0, 3.0], pa.float32()),
        "s": pa.array(["x", "y", None]).dictionary_encode(),
        "n": pa.array([1, None, 3], pa.int16()),
    })
    chunked = pa.concat_tables([a.slice(0, 1), a.slice(1)])
    large = a.set_column(1, "s", a.column("s").cast(pa.large_string()))
    base = ids.row_hashes(a)
    assert ids.row_hashes(b).equals(base)
    assert ids.row_hashes(chunked).equals(base)
    assert ids.row_hashes(large).equals(base)


def test_values_and_names_change_the_hash() -> None:
    a = pa.table({"n": [1, 2], "s": ["x", "y"]})
    renamed = a.rename_columns(["m", "s"])
    changed = pa.table({"n": [1, 3], "s": ["x", "y"]})
    typed = pa.table({"n": [1.0, 2.0], "s": ["x", "y"]})
    h = ids.row_hashes(a).to_pylist()
    assert ids.row_hashes(renamed).to_pylist()[0] != h[0]
    assert ids.row_hashes(changed).to_pylist() == [h[0], ids.row_hashes(changed).to_pylist()[1]]
    assert ids.row_hashes(changed).to_pylist()[1] != h[1]
    assert ids.row_hashes(typed).to_pylist()[0] != h[0]


def test_null_and_empty_string_differ() -> None:
    h = ids.row_hashes(pa.table({"s": ["", None]})).to_pylist()
    assert h[0] != h[1]


def test_nested_values_hash_as_json() -> None:
    t = pa.table({"l": [[1, 2], [2, 1], None]})
    h = ids.row_hashes(t).to_pylist()
    assert len(set(h)) == 3


def test_nested_types_hash_by_their_values_not_their_child_names_or_widths(tmp_path: Any) -> None:
    import pyarrow.parquet as pq

    values = [[1, 2], [3, 4], None]
    arrow = pa.table({"l": pa.array(values, pa.list_(pa.int64()))})
    pq.write_table(arrow, tmp_path / "l.parquet")
    parquet = pq.read_table(tmp_path / "l.parquet")  # a list's child comes back named "element"
    assert parquet.schema.field("l").type.value_field.name == "element"
    base = ids.row_hashes(arrow)
    for other in (parquet, pa.table({"l": pa.array(values, pa.large_list(pa.int32()))}),
                  pa.table({"l": pa.array(values, pa.list_(pa.field("x", pa.int16(), nullable=False), 2))})):
        assert ids.row_hashes(other).equals(base)
    struct = pa.table({"s": [{"a": 1, "b": [0.5]}]})
    assert ids.logical_type(struct.schema.field("s").type) == "json:struct<a: int, b: list<float>>"
    renamed = pa.table({"s": [{"c": 1, "b": [0.5]}]})
    assert ids.row_hashes(renamed).to_pylist() != ids.row_hashes(struct).to_pylist()  # a struct's names are values


rows_strategy = st.lists(
    st.fixed_dictionaries({
        "i": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
        "f": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
        "s": st.one_of(st.none(), st.text(max_size=20)),
        "b": st.one_of(st.none(), st.booleans()),
    }),
    min_size=1, max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(rows_strategy)
def test_vectorised_equals_reference(rows: list[dict[str, Any]]) -> None:
    schema = pa.schema([("i", pa.int64()), ("f", pa.float64()), ("s", pa.string()), ("b", pa.bool_())])
    t = pa.Table.from_pylist(rows, schema=schema)
    types = {"i": "int", "f": "float", "s": "string", "b": "bool"}
    assert ids.row_hashes(t).to_pylist() == reference_digest(ids.ROW_DOMAIN, rows, types)


def test_large_table_is_vectorised_and_consistent() -> None:
    n = 200_000
    rng = np.random.default_rng(1)
    t = pa.table({"a": rng.integers(0, 10, n), "b": pa.array(rng.choice(["u", "v"], n))})
    whole = ids.row_hashes(t)
    halves = pa.concat_arrays([ids.row_hashes(t.slice(0, n // 2)), ids.row_hashes(t.slice(n // 2))])
    assert whole.equals(halves)
    assert len(whole) == n


def test_missing_column_is_an_input_error() -> None:
    with pytest.raises(ValueError, match="not in the data"):
        ids.key_ids(pa.table({"a": [1]}), ["b"])


def test_small_inputs_hash_the_same_with_hashlib_as_with_duckdb() -> None:
    """A small input in a process without DuckDB is hashed with hashlib: the same ids, whatever the columns."""
    import duckdb  # noqa: F401  (loaded: _sha_prefix takes the DuckDB path)

    rng = np.random.default_rng(3)
    n = 300
    t = pa.table({
        "i": pa.array(rng.integers(-5, 5, n)), "f": pa.array(rng.random(n)).cast(pa.float32()),
        "s": pa.array([None if k % 7 == 0 else "x" * (k % 5) for k in range(n)]),
        "b": pa.array([bytes([k % 256]) * (k % 3) for k in range(n)]),
        "d": pa.array(rng.choice(["u", "v", None], n)).dictionary_encode(),
    }).slice(17, 250)  # offsets into the buffers
    for domain, columns in ((ids.ROW_DOMAIN, None), (ids.KEY_DOMAIN, ["s", "i"]), (ids.ROW_DOMAIN, ["i"])):
        inputs = [ids._digest_input(domain, t, columns, {})]
        assert ids._sha_prefix_hashlib(*inputs[0]).equals(ids._sha_prefix(inputs)[0]), columns


_NUMERIC = st.sampled_from([np.bool_, np.int8, np.int32, np.int64, np.uint32, np.uint64, np.float32, np.float64])


@given(dtype=_NUMERIC, values=st.lists(st.integers(0, 200), max_size=300), step=st.integers(1, 3))
@settings(max_examples=80, deadline=None)
def test_numpy_arrays_become_the_arrow_arrays_pa_array_makes(dtype: Any, values: list[int], step: int) -> None:
    """Strided views and booleans included: the same values and type as ``pa.array``, and a valid array."""
    arr = np.asarray(values).astype(dtype)[::step]
    got = ids.numpy_array(arr)
    got.validate(full=True)
    assert got.equals(pa.array(arr))


def test_numpy_arrays_in_the_other_byte_order_keep_their_values() -> None:
    """``pa.array`` refuses byte-swapped arrays; read as raw bytes they would give other numbers."""
    swapped = np.arange(5, dtype=np.dtype(np.uint32).newbyteorder("S"))
    assert ids.numpy_array(swapped).to_pylist() == [0, 1, 2, 3, 4]


@given(values=st.lists(st.integers(-50, 50), max_size=300), dtype=st.sampled_from([np.int64, np.uint32, np.int32]))
@settings(max_examples=80, deadline=None)
def test_sorted_unique_is_numpy_unique(values: list[int], dtype: Any) -> None:
    arr = np.asarray(values, np.int64)
    arr = (arr if dtype != np.uint32 else np.abs(arr)).astype(dtype)
    got = ids.sorted_unique(arr)
    assert got.dtype == arr.dtype and np.array_equal(got, np.unique(arr))
