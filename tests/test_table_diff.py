"""Which columns a diff says changed: read column by column and settled by content hash, it gives what reading
every column on both sides gives, and reads only the columns it needs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import assay
from assay.engines import default_engine
from assay.table import diff as table_diff


def _wide(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    f = rng.random(n)
    f[::7] = np.nan
    return pa.table({
        "id": pa.array(np.arange(n), pa.int64()),
        "f": pa.array(f, mask=np.arange(n) % 11 == 0),
        "z": pa.array(np.zeros(n)),
        "count": pa.array(rng.integers(0, 100, n), pa.int32()),
        "text": [f"a long sentence about sample {i} " * 8 for i in range(n)],
        "blob": [bytes([i % 256]) * (i % 5) for i in range(n)],
        "tags": [[f"t{i % 3}", f"u{i % 5}"] for i in range(n)],
        "label": pa.array(rng.choice(["cat", "dog", "bird"], n)).dictionary_encode(),
    })


def _edit(t: pa.Table, seed: int) -> pa.Table:
    """``t`` with a random set of columns changed in a random 5% of rows (some rows in several columns, -0.0 for
    0.0 in a few, NaN and null kept as they are)."""
    rng = np.random.default_rng(seed)
    cols = {c: t.column(c).to_pylist() for c in t.column_names}
    rows = rng.choice(t.num_rows, t.num_rows // 20, replace=False)
    for i in rows.tolist():
        for c in rng.choice(["f", "count", "text", "blob", "tags", "label", "z"], int(rng.integers(1, 4)),
                            replace=False).tolist():
            cols[c][i] = _changed(c, cols[c][i])
    return pa.table({c: pa.array(v, t.schema.field(c).type if c != "label" else pa.string()) for c, v in cols.items()})


def _changed(column: str, old: Any) -> Any:
    if column == "f":
        return (old or 0.0) + 1.0  # NaN stays NaN: not a change
    if column == "count":
        return (old or 0) + 1
    if column == "text":
        return f"{old}!"
    if column == "blob":
        return b"x" + old
    if column == "tags":
        return [*old, "new"]
    if column == "label":
        return "fish" if old != "fish" else "cat"
    return -0.0  # z: equal to 0.0, but other bytes


def _both(repo: assay.Repo, a: str, b: str) -> tuple[Any, Any]:
    """The comparison the diff makes, and the one that reads every common column on both sides."""
    ma, mb = (repo.read_manifest(repo.datasets(r)["t"]) for r in (a, b))
    joined = table_diff.id_level_diff(repo.store, ma, mb)
    fast = table_diff._compare_changed(repo.store, ma, mb, joined, default_engine())
    changed = joined["status"] == "changed"
    sides = {s: (m, joined[f"f{s}"][changed], joined[f"p{s}"][changed], joined[f"h{s}"][changed])
             for s, m in (("a", ma), ("b", mb))}
    every = table_diff._compare_all(repo.store, ma, mb, sides, default_engine())
    return fast, every


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_columns_settled_by_hash_are_those_reading_every_column_finds(tmp_path: Any, seed: int) -> None:
    repo = assay.init(tmp_path)
    base = _wide(400, seed)
    repo.add("t", base, key="id")
    a = repo.commit("a")
    repo.add("t", _edit(base, seed))
    b = repo.commit("b")
    for x, y in ((a, b), (b, a)):  # changed rows in a small new fragment on one side, scattered on the other
        fast, every = _both(repo, x, y)
        assert fast.matrix.shape[1] > 0
        assert {c: r.tolist() for c, r in zip(fast.names, fast.matrix, strict=True)} == \
            {c: r.tolist() for c, r in zip(every.names, every.matrix, strict=True)}
        assert fast.counts() == every.counts()
        (d,) = repo.diff(x, y, limit=1000)
        assert d.column_changes == every.counts()
        for s in d.samples:  # every listed change shows both values, read or kept from the comparison
            assert set(s.values) == set(s.columns) and all(old != new for old, new in s.values.values()
                                                           if not (isinstance(old, float) and old != old))


def test_relabel_reads_the_label_not_the_text(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = assay.init(tmp_path)
    base = _wide(2000)
    repo.add("t", base, key="id")
    a = repo.commit("a")
    labels = base.column("label").to_pylist()
    for i in range(0, 2000, 97):
        labels[i] = "fish"
    repo.add("t", base.set_column(base.schema.get_field_index("label"), "label", pa.array(labels)))
    b = repo.commit("b")
    old = repo.read_manifest(repo.datasets(a)["t"])
    read: list[str] = []
    real = table_diff.rows_at

    def recording(store: Any, m: Any, *args: Any, **kwargs: Any) -> pa.Table:
        table = real(store, m, *args, **kwargs)
        if m == old:
            read.extend(table.column_names)
        return table

    monkeypatch.setattr(table_diff, "rows_at", recording)
    (d,) = repo.diff(a, b, dataset="t")
    assert d.changed == 21 and d.column_changes == {"label": 21}
    assert "label" in read and "text" not in read and "tags" not in read
    assert all(s.values["label"][1] == "fish" for s in d.samples)


def test_a_changed_column_set_reads_every_common_column(tmp_path: Any) -> None:
    repo = assay.init(tmp_path)
    base = _wide(50)
    repo.add("t", base, key="id")
    a = repo.commit("a")
    repo.add("t", _edit(base, 4).drop_columns(["blob"]))
    b = repo.commit("b")
    fast, every = _both(repo, a, b)
    assert fast.counts() == every.counts() and every.counts()["blob"] == fast.matrix.shape[1]


def test_a_column_changed_in_every_row_is_read_without_hashing_every_row(tmp_path: Any,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    repo = assay.init(tmp_path)
    base = _wide(300)
    repo.add("t", base, key="id")
    a = repo.commit("a")
    repo.add("t", base.set_column(base.schema.get_field_index("count"), "count",
                                  pa.array(np.arange(300, dtype=np.int32) + 1000)))
    b = repo.commit("b")
    hashed: list[int] = []
    real = table_diff.ids.row_hashes
    monkeypatch.setattr(table_diff.ids, "row_hashes", lambda t, *a, **k: hashed.append(t.num_rows) or real(t, *a, **k))
    fast, every = _both(repo, a, b)
    assert fast.counts() == every.counts() == {"count": 300}
    assert hashed == []  # every row changed: reading the other columns is cheaper than re-hashing all rows
