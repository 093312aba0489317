"""Sample ids as users see them: one type (32 hex digits) in reads, diff, scores and quarantine, so that
they join; scores carry the dataset's key columns (or the path of a folder dataset)."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import assay
from assay.errors import InputError
from assay.gate import ingest, parse_policy, quarantined, read_scores, screen_version
from assay.table.ids import from_hex, key_ids, to_hex
from tests.conftest import make_table, write_images
from tests.test_gate import FAST, samples

HEX = re.compile(r"^[0-9a-f]{32}$")


def test_hex_ids_are_the_stored_bytes_in_hex_and_back() -> None:
    stored = key_ids(pa.table({"k": list(range(50))}), ["k"])
    for part in (stored, stored.slice(7, 20), pa.chunked_array([stored.slice(0, 3), stored.slice(3)])):
        expected = [b.hex() for b in part.to_pylist()]
        shown = to_hex(part)
        assert shown.type == pa.string() and shown.to_pylist() == expected
        assert from_hex(expected).to_pylist() == part.to_pylist()
    assert to_hex(stored.slice(0, 0)).to_pylist() == []
    with pytest.raises(InputError, match="32 hex digits"):
        from_hex(["not hex"])


def test_reads_and_diff_show_ids_as_hex_strings(repo: assay.Repo) -> None:
    repo.add("t", make_table(20), key="id")
    a = repo.commit("a")
    version = repo.dataset("t")
    arrow = version.to_arrow(["id"], with_ids=True)
    assert arrow.schema.field("_assay_id").type == pa.string() == arrow.schema.field("_assay_hash").type
    ids = arrow.column("_assay_id").to_pylist()
    assert all(HEX.match(i) for i in ids) and len(set(ids)) == 20
    frame = version.to_pandas(with_ids=True)
    assert list(frame.columns[:2]) == ["_assay_id", "_assay_hash"] and frame["_assay_id"].tolist() == ids
    scanned = [i for b in version.scan(["id"], with_ids=True) for i in b.column(0).to_pylist()]
    assert scanned == ids and version.to_polars(with_ids=True)["_assay_id"].to_list() == ids
    repo.add("t", make_table(20).filter(pc.not_equal(pc.field("id"), 4)))
    (d,) = repo.diff(a)
    (gone,) = [s for s in d.samples if s.status == "removed"]
    assert gone.id == ids[arrow.column("id").to_pylist().index(4)]


def test_a_score_row_joins_to_its_sample_and_carries_the_key(repo: assay.Repo) -> None:
    assert ingest(repo, samples(200), into="points", key="id", policy=FAST).ok
    scores = read_scores(repo, "points@main")
    assert scores.column_names[:2] == ["sample", "id"] and scores.schema.field("id").type == pa.int64()
    data = repo.dataset("points", "main").to_pandas(with_ids=True)
    joined = scores.to_pandas().merge(data, left_on="sample", right_on="_assay_id", suffixes=("", "_data"))
    assert len(joined) == 200 and (joined["id"] == joined["id_data"]).all()
    assert read_scores(repo, "points@main", where="id < 10", sort="id").column("id").to_pylist() == list(range(10))
    copies = samples(200).slice(0, 2).set_column(0, "id", pa.array([900, 901], pa.int64()))
    allow = parse_policy("max_quarantined: 1.0\nscreens:\n  duplicate: {action: quarantine}\n")
    ingest(repo, copies, into="points", policy=allow)
    held = quarantined(repo, "points")
    assert sorted(held.column("id").to_pylist()) == [900, 901]
    stored = repo.dataset("points", "quarantine/points").to_arrow(["id"], with_ids=True)
    assert dict(zip(held.column("sample").to_pylist(), held.column("id").to_pylist(), strict=True)) == \
        dict(zip(stored.column("_assay_id").to_pylist(), stored.column("id").to_pylist(), strict=True))


def test_scores_of_a_folder_dataset_carry_the_path(repo: assay.Repo, tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", {"a": 180, "b": 0}, 12)
    assert ingest(repo, tmp_path / "imgs", into="images", policy=FAST).ok
    scores = read_scores(repo, "images@main")
    paths = repo.dataset("images", "main").to_arrow(["path"], with_ids=True)
    assert scores.column_names[1] == "path"
    assert dict(zip(scores.column("sample").to_pylist(), scores.column("path").to_pylist(), strict=True)) == \
        dict(zip(paths.column("_assay_id").to_pylist(), paths.column("path").to_pylist(), strict=True))


def test_a_key_named_like_a_score_column_is_added_as_key_name(repo: assay.Repo) -> None:
    batch = samples(60).rename_columns(["batch", *samples(60).column_names[1:]])
    repo.add("b", batch, key="batch")
    repo.commit("b")
    screen_version(repo, "b", FAST, save=True)
    repo.commit("scores")
    scores = read_scores(repo, "b", sort="key_batch")
    assert scores.column("key_batch").to_pylist() == list(range(60))
    assert set(scores.column("batch").to_pylist()) != set(range(60))  # the scores' own column is untouched
