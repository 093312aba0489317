"""Fragment statistics: computed when a fragment is written, combined across fragments, stored with a
format version; the layout they keep lets a read of some columns fetch and verify only their bytes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import assay
from assay.errors import CorruptObject, FormatError
from assay.table import Manifest
from assay.table.fragments import read_fragment, read_stats
from assay.table.stats import ColumnStats, FragmentStats, column_stats, combine
from tests.stats_helpers import SpyStore, floats, ints, texts, without_statistics


def _column(kind: str) -> st.SearchStrategy[pa.Array]:
    if kind == "float":
        return st.lists(floats, max_size=30).map(lambda v: pa.array(v, pa.float64()))
    if kind == "int":
        return st.lists(ints, max_size=30).map(lambda v: pa.array(v, pa.int64()))
    return st.lists(texts, max_size=30).map(lambda v: pa.array(v, pa.string()))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["float", "int", "text"]).flatmap(lambda k: st.tuples(_column(k), _column(k))))
def test_combined_statistics_equal_those_of_the_whole(parts: tuple[pa.Array, pa.Array]) -> None:
    a, b = parts
    whole = column_stats(pa.concat_arrays([a, b]))
    both = combine(column_stats(a), column_stats(b))
    assert both is not None
    for name in ("type", "rows", "nulls", "nans", "infs", "min", "max", "sum", "min_length", "max_length", "values"):
        assert getattr(both, name) == getattr(whole, name), name
    for name in ("mean", "m2"):
        x, y = getattr(both, name), getattr(whole, name)
        assert (x is None) == (y is None) and (x is None or _close(x, y)), name
    assert ColumnStats.from_dict(both.to_dict()) == both


def test_statistics_describe_the_rows() -> None:
    s = column_stats(pa.array([1.0, None, float("nan"), float("inf"), -2.0]))
    assert (s.rows, s.nulls, s.nans, s.infs, s.min, s.max, s.mean) == (5, 1, 1, 1, -2.0, float("inf"), None)
    s = column_stats(pa.array([2**63 - 1, 2**63 - 1, -3]))
    assert s.sum == 2 * (2**63 - 1) - 3 and s.values == ((-3, 1), (2**63 - 1, 2))
    s = column_stats(pa.array(["é", "e\u0301", None, "é"]).dictionary_encode())
    assert (s.min_length, s.max_length, s.values) == (1, 2, (("e\u0301", 1), ("é", 2)))
    assert column_stats(pa.array([str(i) for i in range(1000)])).values is None  # too many to keep
    assert ColumnStats.all_null("int64", 3) == column_stats(pa.array([None] * 3, pa.int64()))


def test_fragments_keep_statistics_and_old_manifests_still_read(repo: assay.Repo) -> None:
    repo.add("kept", pa.table({"id": [1, 2, 3], "x": [1.0, None, 3.0]}), key="id")
    version = repo.dataset("kept")
    (ref,) = version.manifest.fragments
    stats = read_stats(repo.store, ref)
    assert stats is not None and stats.rows == 3 and stats.columns["x"].nulls == 1
    assert FragmentStats.from_bytes(stats.to_bytes()) == stats
    assert version.manifest.format == 2 and Manifest.from_bytes(version.manifest.to_bytes()) == version.manifest
    old = without_statistics(version)
    assert old.manifest.to_dict()["format"] == 1 and "stats" not in old.manifest.to_dict()["fragments"][0]
    again = Manifest.from_bytes(old.manifest.to_bytes())
    assert again.fragments[0].stats is None and again.format == 1
    assert old.column_stats(["x"]) == {"x": None}
    assert old.to_arrow().equals(version.to_arrow())
    assert old.manifest.with_fragments(old.manifest.fragments).format == 2  # a new version: current format
    newer = json.loads(stats.to_bytes())
    newer["format"] = 99
    with pytest.raises(FormatError, match="upgrade assay"):
        FragmentStats.from_bytes(json.dumps(newer).encode())
    repo.commit("kept")
    repo.gc(grace=0)
    assert read_stats(repo.store, ref) == stats and repo.fsck().ok  # reachable, kept, verified


def test_a_read_of_some_columns_reads_and_verifies_only_their_bytes(repo: assay.Repo) -> None:
    n = 50_000
    rng = np.random.default_rng(1)
    repo.add("wide", pa.table({"id": np.arange(n), "a": rng.random(n), "b": rng.random(n), "c": rng.random(n)}),
             key="id")
    version = repo.dataset("wide")
    (ref,) = version.manifest.fragments
    stats = read_stats(repo.store, ref)
    assert stats is not None and stats.layout is not None
    spy = SpyStore(repo.store)
    assert read_fragment(spy, ref, ["a"]).column("a").equals(version.to_arrow(["a"]).column("a"))
    assert ref.oid not in spy.read and sum(n for _, n in spy.ranges) < stats.layout.size // 3
    offset, _ = stats.layout.columns["b"].ranges[0]
    path = Path(repo.store.root) / "objects" / ref.oid[:2] / ref.oid[2:]  # type: ignore[attr-defined]
    raw = bytearray(path.read_bytes())
    raw[1 + offset + 100] ^= 0xFF  # one byte of column b (after the codec byte)
    path.chmod(0o644)
    path.write_bytes(bytes(raw))
    assert len(read_fragment(repo.store, ref, ["a"])) == n  # a's bytes are intact
    with pytest.raises(CorruptObject):
        read_fragment(repo.store, ref, ["b"])


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
