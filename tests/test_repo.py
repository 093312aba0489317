"""Repository workflows: add modes, commits, log, revisions, diff, branches, tags, merge, export, upkeep."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import assay
from tests.conftest import make_table


def _sorted(t: pa.Table, key: str = "id") -> pa.Table:
    t = t.select(sorted(t.column_names))
    t = pa.table({n: (c.cast(pa.string()) if pa.types.is_dictionary(c.type) else c)
                  for n, c in zip(t.column_names, t.columns, strict=True)})
    return t.take(pc.sort_indices(t, [(key, "ascending")]))


def _eq(a: pa.Table, b: pa.Table) -> bool:
    return _sorted(a).to_pylist() == _sorted(b).to_pylist()


def test_init_twice_is_an_error(tmp_path: Path) -> None:
    assay.init(tmp_path)
    with pytest.raises(assay.RepositoryExists):
        assay.init(tmp_path)


def test_open_outside_repository(tmp_path: Path) -> None:
    with pytest.raises(assay.NotARepository, match="assay init"):
        assay.Repo(tmp_path)


def test_add_commit_read_back(repo: assay.Repo, table: pa.Table) -> None:
    res = repo.add("train", table, key="id")
    assert res.added == 100 and res.manifest.rows == 100
    oid = repo.commit("first")
    assert repo.head() == oid
    ds = repo.dataset("train")
    assert _eq(ds.to_arrow(), table)
    assert len(ds.to_pandas()) == 100
    assert ds.to_polars().height == 100
    assert ds.to_duckdb().aggregate("count(*)").fetchall() == [(100,)]
    assert ds.to_duckdb().aggregate("count(*)").fetchall() == [(100,)]
    assert sum(b.num_rows for b in ds.reader()) == 100
    assert sum(b.num_rows for b in ds.scan(batch_size=7)) == 100
    assert repo.status().staged == {}


def test_commit_records_author_time_and_code(repo: assay.Repo, table: pa.Table) -> None:
    repo.add("t", table, key="id")
    before = time.time()
    _, c = repo.show(repo.commit("msg"))
    assert c.author == "Test <test@example.com>"
    assert before - 1 <= c.time <= time.time() + 1
    assert c.code is not None and len(c.code["git_commit"]) == 40 and isinstance(c.code["dirty"], bool)


def test_nothing_to_commit(repo: assay.Repo) -> None:
    with pytest.raises(assay.NothingToCommit):
        repo.commit("empty")


def test_readding_unchanged_data_stages_nothing(repo: assay.Repo, table: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    repo.add("t", path, key="id")
    repo.commit("one")
    objects = set(repo.store.iter_oids())
    res = repo.add("t", path)
    assert not res.changed
    assert repo.status().staged == {}
    assert set(repo.store.iter_oids()) == objects
    res = repo.add("t", table)  # same rows from a frame: compared by id and hash
    assert not res.changed and res.written_rows == 0


def test_append_upsert_delete(repo: assay.Repo, table: pa.Table) -> None:
    repo.add("t", table, key="id")
    repo.commit("base")
    res = repo.add("t", make_table(10, seed=5, start=1000), mode="append")
    assert res.added == 10 and res.written_rows == 10
    with pytest.raises(assay.KeyViolation, match="upsert"):
        repo.add("t", make_table(3, start=0), mode="append")
    changed = make_table(5, seed=9, start=20)
    res = repo.add("t", changed, mode="upsert")
    assert res.updated == 5 and res.added == 0
    res = repo.add("t", pa.table({"id": [1, 2, 999999, 2]}), mode="delete")  # a key given twice: removed once
    assert res.removed == 2
    repo.commit("edits")
    got = repo.dataset("t").to_arrow()
    assert got.num_rows == 100 + 10 - 2
    row = got.filter(pc.equal(got.column("id"), 20)).to_pylist()[0]
    assert row["x"] == changed.column("x")[0].as_py()


def test_an_append_of_fresh_keys_reads_none_of_the_base_and_equals_a_checked_one(repo: assay.Repo,
                                                                                 table: pa.Table) -> None:
    """The prediction log's append: keys the caller guarantees are new; the base's id indexes are not read."""
    repo.add("t", table, key="id")
    repo.commit("base")
    base = repo.datasets()["t"]
    extra = make_table(10, seed=5, start=1000)
    checked, _ = repo.build_version("t", extra, base=base, key="id", mode="append")
    base_ids = {f.ids for f in repo.read_manifest(base).fragments}
    read: list[str] = []
    real_get, real_view = repo.store.get, repo.store.get_view

    def get(oid: str) -> bytes:
        read.append(oid)
        return real_get(oid)

    def get_view(oid: str) -> object:
        read.append(oid)
        return real_view(oid)

    repo.store.get, repo.store.get_view = get, get_view  # type: ignore[method-assign]
    try:
        fresh, result = repo.build_version("t", extra, base=base, key="id", mode="append", fresh_keys=True)
    finally:
        repo.store.get, repo.store.get_view = real_get, real_view  # type: ignore[method-assign]
    assert result.added == 10 and not base_ids & set(read)
    assert fresh == checked  # the same version, byte for byte
    with pytest.raises(assay.InputError, match="append by key"):
        repo.build_version("t", extra, base=base, key="id", mode="upsert", fresh_keys=True)


def test_replace_stores_only_the_change(repo: assay.Repo) -> None:
    big = make_table(20_000)
    repo.add("t", big, key="id")
    repo.commit("v1")
    size = repo.store.stored_bytes()
    idx = np.arange(0, 20_000, 100)
    labels = big.column("label").to_pylist()
    for i in idx:
        labels[i] = "fish"
    relabelled = big.set_column(4, "label", pa.array(labels))
    res = repo.add("t", relabelled)
    assert res.updated == len(idx) and res.written_rows == len(idx) and res.unchanged == 20_000 - len(idx)
    repo.commit("v2")
    assert repo.store.stored_bytes() - size < 0.1 * size
    assert _eq(repo.dataset("t").to_arrow(), relabelled)
    assert _eq(repo.dataset("t", "HEAD~1").to_arrow(), big)


def test_content_keyed_dataset_keeps_duplicates(repo: assay.Repo) -> None:
    t = pa.table({"text": ["a", "b", "a", "a"], "y": [1, 2, 1, 1]})
    repo.add("c", t)
    repo.commit("c")
    assert repo.dataset("c").num_rows == 4
    res = repo.add("c", pa.table({"text": ["a"], "y": [1]}), mode="append")
    assert res.added == 1
    repo.commit("more")
    ids = repo.dataset("c").to_arrow(with_ids=True).column("_assay_id").to_pylist()
    assert len(set(ids)) == 5
    res = repo.add("c", pa.table({"text": ["a", "b", "a", "a", "a"], "y": [1, 2, 1, 1, 1]}))
    assert not res.changed


def test_diff_reports_samples_schema_and_columns(repo: assay.Repo, table: pa.Table) -> None:
    repo.add("t", table, key="id")
    a = repo.commit("a")
    t2 = table.filter(pc.not_equal(table.column("id"), 3))
    t2 = t2.set_column(1, "x", pc.if_else(pc.equal(t2.column("id"), 5), 42.0, t2.column("x")))
    t2 = pa.concat_tables([t2, make_table(2, start=500)])
    t2 = t2.append_column("extra", pa.array([1] * t2.num_rows))
    repo.add("t", t2)
    b = repo.commit("b")
    (d,) = repo.diff(a, b)
    assert d.schema_changes == {"added_columns": ["extra"]}
    # a new column changes every row's content
    assert d.added == 2 and d.removed == 1 and d.changed == 99
    assert d.column_changes == {"x": 1, "extra": 99}
    assert len(d.samples) == 20 and [s.key["id"] for s in d.samples if s.key] == list(range(21))[:20]  # key order
    assert any(s.key == {"id": 3} for s in d.samples if s.status == "removed")
    (whole,) = repo.diff(a, b, limit=1000)
    assert {s.status for s in whole.samples} == {"added", "removed", "changed"} and len(whole.samples) == 102


def test_diff_lists_changed_columns_per_sample(repo: assay.Repo, table: pa.Table) -> None:
    repo.add("t", table, key="id")
    a = repo.commit("a")
    repo.add("t", pa.table({"id": [7], "x": [0.5], "count": [1], "name": ["sample-7"],
                            "label": ["cat"]}), mode="upsert")
    b = repo.commit("b")
    (d,) = repo.diff(a, b, dataset="t")
    assert (d.added, d.removed, d.changed, d.unchanged) == (0, 0, 1, 99)
    (s,) = d.samples
    assert s.key == {"id": 7}
    assert set(s.columns) <= {"x", "count", "label"} and "x" in s.columns and "name" not in s.columns


def test_diff_lists_samples_in_key_order_with_old_and_new_values(repo: assay.Repo, table: pa.Table) -> None:
    repo.add("t", table, key="id")
    a = repo.commit("a")
    staged = repo.add("t", pa.table({"id": [1002, 1001, 7, 1009], "x": [0.1, 0.2, 0.5, 0.3], "count": [1, 2, 3, 4],
                                     "name": ["n2", "n1", "sample-7", "n9"], "label": ["cat", "dog", "cat", "dog"]}),
                      mode="upsert")
    (d,) = repo.diff(a, None, dataset="t")
    assert (staged.added, staged.updated, staged.unchanged) == (d.added, d.changed, d.unchanged) == (3, 1, 99)
    assert [s.key["id"] for s in d.samples if s.key] == [7, 1001, 1002, 1009]  # by key, not by sample id
    (changed,) = [s for s in d.samples if s.status == "changed"]
    assert changed.values["x"][1] == 0.5 and changed.values["x"][0] != 0.5
    assert set(changed.values) == set(changed.columns)
    assert repo.diff(a, None, dataset="t", limit=0)[0].samples == ()  # counts only


def test_revisions_by_name_steps_prefix_and_time(repo: assay.Repo, table: pa.Table) -> None:
    repo.add("t", table, key="id")
    c1 = repo.commit("1")
    time.sleep(0.05)
    mid = dt.datetime.now(dt.UTC).isoformat()
    time.sleep(0.05)
    repo.add("t", make_table(5, start=900), mode="append")
    c2 = repo.commit("2")
    repo.tag("v1", c1)
    assert repo.resolve("HEAD~1") == c1 == repo.resolve("main^") == repo.resolve("v1")
    assert repo.resolve(c2[:8]) == c2
    assert repo.resolve(f"main@{{{mid}}}") == c1
    assert repo.dataset("t@v1").num_rows == 100
    assert repo.dataset("t", ref=f"@{{{mid}}}").num_rows == 100
    with pytest.raises(assay.RefNotFound, match="unknown revision"):
        repo.resolve("nope")
    with pytest.raises(assay.RefNotFound, match="further"):
        repo.resolve("HEAD~5")


def test_branch_checkout_and_fast_forward(repo: assay.Repo, table: pa.Table) -> None:
    repo.add("t", table, key="id")
    base = repo.commit("base")
    repo.checkout("feature", create=True)
    repo.add("t", make_table(3, start=300), mode="append")
    feat = repo.commit("feature work")
    assert repo.branches() == {"feature": feat, "main": base}
    repo.checkout("main")
    assert repo.dataset("t").num_rows == 100
    result = repo.merge("feature")
    assert result.fast_forward and repo.head() == feat
    repo.delete_branch("feature")
    assert "feature" not in repo.branches()


def test_checkout_refuses_to_drop_staged_changes(repo: assay.Repo, table: pa.Table) -> None:
    repo.add("t", table, key="id")
    repo.commit("base")
    repo.create_branch("b")
    repo.add("t", make_table(1, start=999), mode="append")
    with pytest.raises(assay.InputError, match="staged"):
        repo.checkout("b")
    repo.checkout("b", force=True)
    assert repo.status().staged == {}


def test_detached_checkout(repo: assay.Repo, table: pa.Table) -> None:
    repo.add("t", table, key="id")
    c1 = repo.commit("1")
    repo.add("t", make_table(1, start=999), mode="append")
    repo.commit("2")
    repo.checkout(c1[:10])
    assert repo.branch is None and repo.head() == c1
    assert repo.dataset("t").num_rows == 100


def test_three_way_merge_of_samples(repo: assay.Repo, table: pa.Table) -> None:
    repo.add("t", table, key="id")
    repo.add("other", make_table(10, seed=3), key="id")
    repo.commit("base")
    repo.checkout("b", create=True)
    repo.add("t", make_table(2, seed=1, start=10), mode="upsert")  # change 10, 11
    repo.add("t", make_table(3, start=200), mode="append")
    repo.add("t", pa.table({"id": [50]}), mode="delete")
    repo.commit("theirs")
    repo.checkout("main")
    repo.add("t", make_table(2, seed=2, start=20), mode="upsert")  # change 20, 21
    repo.add("t", make_table(1, start=300), mode="append")
    repo.add("other", make_table(10, seed=4), mode="replace")
    repo.commit("ours")
    result = repo.merge("b")
    assert not result.fast_forward and result.datasets == {"t": "merged"}
    merged = repo.dataset("t").to_arrow()
    ids = set(merged.column("id").to_pylist())
    assert ids == (set(range(100)) - {50}) | {200, 201, 202, 300}
    by_id = {r["id"]: r for r in merged.to_pylist()}
    assert by_id[10]["x"] == make_table(2, seed=1, start=10).column("x")[0].as_py()
    assert by_id[20]["x"] == make_table(2, seed=2, start=20).column("x")[0].as_py()
    _, c = repo.show()
    assert len(c.parents) == 2
    assert _eq(repo.dataset("other").to_arrow(), make_table(10, seed=4))
    assert repo.fsck().ok


def test_merge_conflict_is_reported_by_sample(repo: assay.Repo, table: pa.Table) -> None:
    repo.add("t", table, key="id")
    repo.commit("base")
    repo.checkout("b", create=True)
    repo.add("t", make_table(1, seed=1, start=5), mode="upsert")
    repo.add("t", pa.table({"id": [6]}), mode="delete")
    repo.commit("theirs")
    repo.checkout("main")
    repo.add("t", make_table(1, seed=2, start=5), mode="upsert")
    repo.add("t", make_table(1, seed=3, start=6), mode="upsert")
    head = repo.commit("ours")
    with pytest.raises(assay.MergeConflict) as info:
        repo.merge("b")
    keys = sorted(c.key["id"] for c in info.value.conflicts if c.key)
    assert keys == [5, 6]
    message = str(info.value)
    assert message.startswith("CONFLICT: 2 sample(s) changed differently on both sides")  # the word git users grep for
    lines = message.splitlines()
    (five,) = [line for line in lines if line.startswith("  CONFLICT (changed/changed): t: sample id=5: ours changed, "
                                                           "theirs changed (")]
    assert "x: ours " in five and ", theirs " in five  # both sides' values
    assert "  CONFLICT (changed/removed): t: sample id=6: ours changed, theirs removed" in lines
    assert "--ours" in message and "--resolve" in message  # the ways out
    (c5,) = [c for c in info.value.conflicts if c.key == {"id": 5}]
    assert c5.values["x"] == (make_table(1, seed=2, start=5)["x"][0].as_py(), make_table(1, seed=1, start=5)["x"][0]
                              .as_py())
    assert repo.head() == head  # nothing merged


def _conflicting_branches(repo: assay.Repo, table: pa.Table) -> str:
    """main and b both changed sample 5 (differently); b removed 6 and changed 7, main changed 6 and added 300."""
    repo.add("t", table, key="id")
    repo.commit("base")
    repo.checkout("b", create=True)
    repo.add("t", make_table(1, seed=1, start=5), mode="upsert")
    repo.add("t", make_table(1, seed=1, start=7), mode="upsert")
    repo.add("t", pa.table({"id": [6]}), mode="delete")
    repo.commit("theirs")
    repo.checkout("main")
    repo.add("t", make_table(1, seed=2, start=5), mode="upsert")
    repo.add("t", make_table(1, seed=3, start=6), mode="upsert")
    repo.add("t", make_table(1, start=300), mode="append")
    return repo.commit("ours")


def _row(repo: assay.Repo, rev: str, key: int) -> dict[str, object] | None:
    rows = [r for r in repo.dataset("t", rev).to_arrow().to_pylist() if r["id"] == key]
    return rows[0] if rows else None


@pytest.mark.parametrize("side", ["ours", "theirs"])
def test_merge_with_ours_or_theirs_takes_that_side_of_each_conflict(repo: assay.Repo, table: pa.Table,
                                                                    side: str) -> None:
    _conflicting_branches(repo, table)
    result = repo.merge("b", prefer=side)
    assert "2 conflict(s) taken from" in result.datasets["t"]
    expected = {5: (2 if side == "ours" else 1)}
    assert _row(repo, "HEAD", 5)["x"] == make_table(1, seed=expected[5], start=5)["x"][0].as_py()  # type: ignore[index]
    assert (_row(repo, "HEAD", 6) is None) == (side == "theirs")  # theirs removed it
    assert _row(repo, "HEAD", 7)["x"] == make_table(1, seed=1, start=7)["x"][0].as_py()  # type: ignore[index]
    assert _row(repo, "HEAD", 300) is not None  # the non-conflicting changes of both sides merge as usual
    assert repo.fsck().ok


def test_merge_resolve_rows_settle_each_conflict(repo: assay.Repo, table: pa.Table, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    head = _conflicting_branches(repo, table)
    fix = make_table(1, seed=9, start=5)
    pq.write_table(fix, tmp_path / "half.parquet")
    with pytest.raises(assay.MergeConflict, match="settles 1 of 2 conflict"):
        repo.merge("b", resolve={"t": str(tmp_path / "half.parquet")})
    pq.write_table(pa.concat_tables([fix, make_table(1, seed=9, start=40)]), tmp_path / "extra.parquet")
    with pytest.raises(assay.InputError, match="not conflicts of this merge"):
        repo.merge("b", resolve={"t": str(tmp_path / "extra.parquet")})
    assert repo.head() == head  # nothing merged
    both = pa.concat_tables([fix, make_table(1, seed=9, start=6)])
    result = repo.merge("b", resolve={"t": both})
    assert result.datasets["t"] == "merged, conflicts resolved"
    assert _row(repo, "HEAD", 5)["x"] == fix["x"][0].as_py()  # type: ignore[index]
    assert _row(repo, "HEAD", 6) is not None and _row(repo, "HEAD", 300) is not None
    assert _row(repo, "HEAD", 7)["x"] == make_table(1, seed=1, start=7)["x"][0].as_py()  # type: ignore[index]


def test_same_change_on_both_sides_is_not_a_conflict(repo: assay.Repo, table: pa.Table) -> None:
    repo.add("t", table, key="id")
    repo.commit("base")
    repo.checkout("b", create=True)
    repo.add("t", make_table(1, seed=7, start=5), mode="upsert")
    repo.add("t", make_table(1, start=400), mode="append")
    repo.commit("theirs")
    repo.checkout("main")
    repo.add("t", make_table(1, seed=7, start=5), mode="upsert")
    repo.add("t", make_table(1, start=401), mode="append")
    repo.commit("ours")
    repo.merge("b")
    assert repo.dataset("t").num_rows == 102


def _labelled_folder(folder: Path, per_label: int, repeat: int) -> Path:
    """``folder/cat/0.png`` ... and ``folder/dog/...``, ``per_label`` files each (distinct bytes, ``repeat`` times)."""
    for label in ("cat", "dog"):
        (folder / label).mkdir(parents=True)
        for i in range(per_label):
            (folder / label / f"{i}.png").write_bytes(f"{label}{i}".encode() * repeat)
    return folder


def test_folder_dataset_with_labels_stat_cache_and_export(repo: assay.Repo, tmp_path: Path) -> None:
    folder = _labelled_folder(tmp_path / "imgs", 5, 100)
    (folder / "cat" / "dup.png").write_bytes(b"dog0" * 100)  # same bytes as dog/0.png
    res = repo.add("imgs", folder)
    assert res.added == 11
    repo.commit("images")
    t = repo.dataset("imgs").to_arrow()
    assert set(t.column_names) == {"path", "blob", "size", "media_type", "label"}
    rows = {r["path"]: r for r in t.to_pylist()}
    assert rows["cat/3.png"]["label"] == "cat" and rows["cat/3.png"]["media_type"] == "image/png"
    assert rows["cat/dup.png"]["blob"] == rows["dog/0.png"]["blob"]
    assert not repo.add("imgs", folder).changed
    (folder / "dog" / "4.png").write_bytes(b"changed")
    res = repo.add("imgs", folder)
    assert res.updated == 1 and res.written_rows == 1
    repo.commit("one file changed")
    view = repo.dataset("imgs").torch()
    sample = next(s for s in view if s["path"] == "dog/4.png")
    assert sample["bytes"] == b"changed"
    out = repo.export("imgs@HEAD~1", tmp_path / "out")
    assert (out / "dog" / "4.png").read_bytes() == b"dog4" * 100
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label,split\ncat/0.png,tabby,train\ndog/1.png,puppy,test\n")
    repo.add("imgs", folder, labels=labels)
    t = {r["path"]: r for r in repo.dataset("imgs").to_arrow().to_pylist()}
    assert t["cat/0.png"]["label"] == "tabby" and t["dog/1.png"]["split"] == "test"
    assert t["cat/1.png"]["label"] is None


def test_readding_an_unchanged_folder_writes_nothing_to_the_store(repo: assay.Repo, tmp_path: Path) -> None:
    folder = _labelled_folder(tmp_path / "imgs", 3, 50)
    labels = tmp_path / "labels.csv"
    labels.write_text("path,split\ncat/0.png,train\ndog/1.png,test\n")
    repo.add("imgs", folder, labels=labels)
    repo.commit("images")
    store = repo.dir / "objects", repo.dir / "packs", repo.dir / "keep"

    def written() -> set[Path]:
        return {p for d in store if d.exists() for p in d.rglob("*")}

    before = written()
    for _ in range(2):  # committed, then staged-and-unchanged: each re-add stores and records nothing
        assert not repo.add("imgs", folder, labels=labels).changed
    assert written() == before and not repo.status().staged
    assert repo.dataset("imgs").to_arrow().column_names == ["path", "blob", "size", "media_type", "label", "split"]
    (folder / "cat" / "2.png").write_bytes(b"new bytes")
    res = repo.add("imgs", folder, labels=labels)
    assert res.updated == 1 and written() > before
    row = next(r for r in repo.dataset("imgs").to_arrow().to_pylist() if r["path"] == "cat/2.png")
    assert repo.store.get(row["blob"]) == b"new bytes"
    assert not repo.add("imgs", folder, labels=labels).changed  # staged now: the same again changes nothing


def test_quick_add_tells_an_unchanged_folder_from_its_stats_alone(repo: assay.Repo, tmp_path: Path) -> None:
    folder = _labelled_folder(tmp_path / "imgs", 3, 50)
    assert repo.quick_add("imgs", folder).rows is None  # no version yet
    repo.add("imgs", folder)
    repo.commit("images")
    assert repo.quick_add("imgs", folder).rows == 6
    assert repo.quick_add("imgs", folder, mode="append").rows is None  # appending again adds rows
    labels = tmp_path / "labels.csv"
    labels.write_text("path,split\ncat/0.png,train\n")
    assert repo.quick_add("imgs", folder, labels=labels).rows is None  # another input: the labels joined

    touched = folder / "cat" / "1.png"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))  # same bytes
    quick = repo.quick_add("imgs", folder)
    assert quick.rows is None
    assert not repo.add("imgs", folder, files=quick.files).changed  # hashed again: the same bytes
    assert repo.quick_add("imgs", folder).rows == 6  # and the summary knows the new stats now

    (folder / "dog" / "0.png").write_bytes(b"dog0" * 49 + b"cat!")  # same size, new bytes
    quick = repo.quick_add("imgs", folder)
    assert quick.rows is None
    assert repo.add("imgs", folder, files=quick.files).updated == 1
    assert repo.quick_add("imgs", folder).rows == 6 and repo.status().staged["imgs"]["updated"] == 1

    for summary in (repo.dir / "statcache").glob("*.json"):
        summary.write_bytes(b"{not json")  # a damaged summary: only a slower re-add
    assert repo.quick_add("imgs", folder).rows is None
    assert not repo.add("imgs", folder).changed
    assert repo.quick_add("imgs", folder).rows == 6


def test_export_parquet_csv_jsonl(repo: assay.Repo, table: pa.Table, tmp_path: Path) -> None:
    repo.add("t", table, key="id")
    repo.commit("c")
    p = repo.export("t@HEAD", tmp_path / "t.parquet")
    assert _eq(pq.read_table(p), table)
    assert (repo.export("t", tmp_path / "t.csv")).read_text().count("\n") == 101
    assert (repo.export("t", tmp_path / "t.jsonl")).read_text().count("\n") == 100


def test_torch_dataloader_consumes_the_view(repo: assay.Repo, table: pa.Table) -> None:
    import torch
    repo.add("t", table, key="id")
    repo.commit("c")
    loader = torch.utils.data.DataLoader(repo.dataset("t").torch(columns=["id", "x"]), batch_size=32)
    batches = list(loader)
    assert sum(len(b["id"]) for b in batches) == 100


def test_view_is_map_style_without_torch(repo: assay.Repo, table: pa.Table) -> None:
    repo.add("t", table, key="id")
    view = repo.dataset("t").torch(columns=["id"], transform=lambda r: r["id"] * 2)
    assert len(view) == 100
    assert sorted(view[i] for i in range(len(view))) == [2 * i for i in range(100)]
    with pytest.raises(IndexError):
        view[100]


def test_compact_keeps_samples_and_gc_removes_garbage(repo: assay.Repo) -> None:
    repo.add("t", make_table(50), key="id")
    repo.commit("0")
    for k in range(5):
        repo.add("t", make_table(10, seed=k, start=1000 + 10 * k), mode="append")
        repo.add("t", make_table(3, seed=k + 10, start=k), mode="upsert")
        repo.commit(f"{k}")
    before = repo.dataset("t").to_arrow()
    report = repo.compact()
    assert report.datasets["t"][1] == 1
    assert _eq(repo.dataset("t").to_arrow(), before)
    (d,) = repo.diff("HEAD~1", "HEAD") or [None]
    assert d is not None and d.is_empty
    repo.reset()
    staged = repo.add("t", make_table(5, start=5000), mode="append")
    repo.reset()
    gc = repo.gc(grace=0)
    assert gc.removed >= 1
    assert not repo.store.has(staged.manifest.fragments[-1].oid)
    assert _eq(repo.dataset("t").to_arrow(), before)
    assert _eq(repo.dataset("t", "HEAD~3").to_arrow(), repo.dataset("t", "HEAD~3").to_arrow())
    assert repo.fsck().ok


def test_merge_tail_keeps_the_samples_in_order_and_bounds_the_fragments(repo: assay.Repo) -> None:
    """A stream of small appends (the prediction log's flushes): merging the end in tiers keeps every sample with
    its id and content hash, in the order appended, in a bounded number of fragments."""
    from assay.table import DatasetVersion
    from assay.table.compaction import FAN_IN, merge_tail

    plain = merged = None
    counts, rewritten = [], 0
    for k in range(150):
        rows = make_table(3 + k % 5, seed=k, start=10 * k)
        plain, _ = repo.build_version("t", rows, base=plain, key="id", mode="append", fresh_keys=True)
        oid, result = repo.build_version("t", rows, base=merged, key="id", mode="append", fresh_keys=True)
        m = merge_tail(repo.store, result.manifest)
        assert (m is result.manifest) == (len(m.fragments) == len(result.manifest.fragments))
        rewritten += len(set(m.fragments) - set(result.manifest.fragments))
        merged = oid if m is result.manifest else repo.write_manifest(m)
        counts.append(len(m.fragments))
    a = DatasetVersion(repo.store, repo.read_manifest(plain)).to_arrow(with_ids=True)
    b = DatasetVersion(repo.store, repo.read_manifest(merged)).to_arrow(with_ids=True)
    assert a.num_rows == sum(3 + k % 5 for k in range(150))
    assert b.to_pylist() == a.to_pylist()  # same rows, ids and hashes, in the same order
    assert len(repo.read_manifest(plain).fragments) == 150
    # 150 appends in base FAN_IN: fewer than FAN_IN fragments of each size class (1 and FAN_IN appends' worth)
    assert max(counts) < 3 * FAN_IN and counts[-1] < 3 * FAN_IN
    assert rewritten < 150 // 2  # merges are rare: about one every FAN_IN appends, cascading now and then
    with pytest.raises(ValueError, match="fan_in"):
        merge_tail(repo.store, repo.read_manifest(merged), fan_in=1)


def test_remove_dataset(repo: assay.Repo, table: pa.Table) -> None:
    repo.add("t", table, key="id")
    repo.add("u", table, key="id")
    repo.commit("two")
    repo.remove("u")
    repo.commit("drop u")
    assert set(repo.datasets("HEAD")) == {"t"}
    assert set(repo.datasets("HEAD~1")) == {"t", "u"}


def test_log_filters_by_dataset(repo: assay.Repo, table: pa.Table) -> None:
    repo.add("t", table, key="id")
    repo.commit("t1")
    repo.add("u", table, key="id")
    repo.commit("u1")
    assert [c.message for _, c in repo.log(dataset="t")] == ["t1"]
    assert [c.message for _, c in repo.log(limit=1)] == ["u1"]


def test_invalid_names(repo: assay.Repo, table: pa.Table) -> None:
    with pytest.raises(assay.InputError, match="dataset name"):
        repo.add("../x", table)
    repo.add("t", table, key="id")
    repo.commit("c")
    with pytest.raises(assay.InputError, match="branch name"):
        repo.create_branch("bad..name")
    repo.tag("v1")
    with pytest.raises(assay.RefExists):
        repo.create_branch("v1")


def test_linked_folder_inside_the_dataset_is_listed_once(repo: assay.Repo, tmp_path: Path) -> None:
    folder = tmp_path / "pets"
    (folder / "cat").mkdir(parents=True)
    (folder / "cat" / "a.png").write_bytes(b"a")
    (folder / "kitten").symlink_to(folder / "cat", target_is_directory=True)
    (folder / "alias.png").symlink_to(folder / "cat" / "a.png")
    repo.add("pets", folder)
    paths = sorted(repo.dataset("pets").to_arrow().column("path").to_pylist())
    assert paths == ["alias.png", "cat/a.png"]


def test_readding_current_content_after_an_upsert_stages_nothing(repo: assay.Repo, table: pa.Table,
                                                                 tmp_path: Path) -> None:
    repo.add("t", table, key="id")
    repo.commit("base")
    fix = make_table(3, seed=8, start=10)
    repo.add("t", fix, mode="upsert")
    repo.commit("fix")
    current = tmp_path / "current.parquet"
    pq.write_table(repo.dataset("t").to_arrow(), current)
    for _ in range(2):  # the second time is answered from the memo of adds
        res = repo.add("t", current)
        assert not res.changed and res.manifest.rows == 100
        assert repo.status().staged == {}
    with pytest.raises(assay.NothingToCommit):
        repo.commit("nothing")


def test_readding_an_upsert_after_committing_it_reads_no_data(repo: assay.Repo, table: pa.Table,
                                                               tmp_path: Path) -> None:
    """The add that staged it knows the result: the same file again is answered without reading a fragment."""
    repo.add("t", table, key="id")
    repo.commit("base")
    fix = tmp_path / "fix.parquet"
    pq.write_table(make_table(3, seed=8, start=10), fix)
    assert repo.add("t", fix, mode="upsert").updated == 3
    repo.commit("fix")
    manifest = repo.read_manifest(repo.datasets()["t"])
    gone = [oid for f in manifest.fragments for oid in (f.oid, f.ids)]
    assert repo.store.delete(gone, older_than=time.time() + 60) == len(gone)  # no data left to read
    again = repo.add("t", fix, mode="upsert")
    assert not again.changed and again.manifest.rows == manifest.rows
    assert repo.status().staged == {}


def test_diff_columns_treat_nan_and_null_as_unchanged(repo: assay.Repo) -> None:
    t = pa.table({"id": [1, 2], "f": [float("nan"), None], "s": ["a", "b"]})
    repo.add("t", t, key="id")
    a = repo.commit("a")
    repo.add("t", pa.table({"id": [1, 2], "f": [float("nan"), None], "s": ["x", "y"]}))
    (d,) = repo.diff(a)
    assert d.changed == 2 and d.column_changes == {"s": 2}


def test_readding_an_exported_list_column_changes_nothing(repo: assay.Repo, tmp_path: Path) -> None:
    emb = pa.table({"id": [1, 2, 3], "emb": [[0.1, 0.2], [0.3, 0.4], None]})
    repo.add("t", emb, key="id")
    repo.commit("a")
    repo.export("t", tmp_path / "t.parquet")  # Parquet names a list's child "element", Arrow "item"
    again = repo.add("t", tmp_path / "t.parquet")
    assert (again.updated, again.unchanged, again.written_rows) == (0, 3, 0)
