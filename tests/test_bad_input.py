"""Bad input is refused with an error that names the file, row or column and says what to do; nothing is
written.

Each case builds its input by writing files, tries to add it, and checks the exception class, the message, and
that the staging area, the working and committed data and the set of stored objects are all unchanged.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import assay
from assay.errors import InputError, KeyViolation, SchemaConflict

# -- the repository every case starts from -------------------------------------------------------------------

TRAIN = pa.table({
    "id": pa.array([1, 2, 3], pa.int64()),
    "name": ["a", "b", "c"],
    "score": pa.array([10, 20, 30], pa.int64()),
})


@dataclass(frozen=True)
class Snapshot:
    """Everything an add could change."""

    head: str | None
    staged: dict[str, dict[str, Any]]
    oids: frozenset[str]
    working: dict[str, pa.Table]
    committed: dict[str, pa.Table]


def snapshot(repo: assay.Repo) -> Snapshot:
    working = {n: repo.dataset(n).to_arrow() for n in repo.datasets()}
    committed = {n: repo.dataset(n, ref="HEAD").to_arrow() for n in repo.datasets("HEAD")}
    return Snapshot(repo.head(), repo.status().staged, frozenset(repo.store.iter_oids()), working, committed)


def assert_nothing_written(repo: assay.Repo, before: Snapshot, *, objects: bool = True) -> None:
    after = snapshot(repo)
    assert after.head == before.head
    assert after.staged == before.staged
    assert after.working.keys() == before.working.keys()
    for name, table in before.working.items():
        assert after.working[name].equals(table), f"working version of {name!r} changed"
    assert after.committed.keys() == before.committed.keys()
    for name, table in before.committed.items():
        assert after.committed[name].equals(table), f"committed version of {name!r} changed"
    if objects:
        assert after.oids == before.oids, f"objects were stored: {sorted(after.oids - before.oids)}"


@pytest.fixture
def work(repo: assay.Repo, tmp_path: Path) -> tuple[assay.Repo, Path]:
    """A repository with a committed keyed dataset 'train' and a folder dataset 'images', plus a staged change
    (so that an unchanged staging area is not trivially empty), and a folder for input files."""
    images = tmp_path / "images"
    (images / "cat").mkdir(parents=True)
    (images / "dog").mkdir()
    (images / "cat" / "a.png").write_bytes(b"cat picture")
    (images / "dog" / "b.png").write_bytes(b"dog picture")
    repo.add("train", TRAIN, key="id")
    repo.add("images", images)
    repo.commit("first version")
    repo.add("train", pa.table({"id": pa.array([4], pa.int64()), "name": ["d"],
                                "score": pa.array([40], pa.int64())}), mode="append")
    assert repo.status().staged
    # a file the repository has not stored yet: an add that stored files before failing would change objects
    (images / "cat" / "new.png").write_bytes(b"a new cat picture")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    return repo, inputs


def write(folder: Path, name: str, data: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def parquet(folder: Path, name: str, table: pa.Table) -> Path:
    path = folder / name
    pq.write_table(table, path)
    return path


# -- the cases -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """An add of ``source`` to ``dataset`` that must fail with ``error`` and a message holding ``says``."""

    dataset: str
    source: Path
    error: type[InputError]
    says: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)


Builder = Callable[[Path, Path], Case]  # (inputs folder, images folder) -> case
CASES: dict[str, Builder] = {}


def case(fn: Builder) -> Builder:
    CASES[fn.__name__.removeprefix("case_")] = fn
    return fn


def _big_parquet(d: Path) -> bytes:
    table = pa.table({"id": pa.array(range(1000), pa.int64()), "name": [f"n{i}" for i in range(1000)],
                      "score": pa.array(range(1000), pa.int64())})
    pq.write_table(table, d / "good.parquet", compression="none")
    return (d / "good.parquet").read_bytes()


# malformed CSV / TSV / Parquet / JSONL / Arrow

@case
def case_csv_row_with_extra_field(d: Path, _: Path) -> Case:
    src = write(d, "extra.csv", "id,name,score\n5,e,50\n6,f,60,7\n7,g,70\n")
    return Case("train", src, InputError, ("extra.csv", "Expected 3 columns, got 4",
                                           "every row has the same number of fields"), {"mode": "append"})


@case
def case_csv_row_with_extra_field_new_dataset(d: Path, _: Path) -> Case:
    src = write(d, "extra.csv", "id,name\n1,a\n2,b,c\n")
    return Case("fresh", src, InputError, ("extra.csv", "Expected 2 columns, got 3",
                                           "every row has the same number of fields"), {"key": "id"})


@case
def case_tsv_row_with_extra_field(d: Path, _: Path) -> Case:
    src = write(d, "extra.tsv", "id\tname\n1\ta\n2\tb\tc\n")
    return Case("fresh", src, InputError, ("extra.tsv", "cannot read as TSV", "tab-separated"), {"key": "id"})


@case
def case_parquet_truncated(d: Path, _: Path) -> Case:
    data = _big_parquet(d)
    src = write(d, "truncated.parquet", data[: len(data) // 2])
    return Case("train", src, InputError, ("truncated.parquet", "not a readable Parquet file",
                                           "written completely, or re-export it"), {"mode": "upsert"})


@case
def case_parquet_not_parquet(d: Path, _: Path) -> Case:
    src = write(d, "text.parquet", "id,name\n1,a\n")
    return Case("fresh", src, InputError, ("text.parquet", "not a readable Parquet file", "re-export it"),
                {"key": "id"})


@case
def case_parquet_corrupt_pages(d: Path, _: Path) -> Case:
    data = _big_parquet(d)  # footer intact (the schema reads), data pages garbage
    footer = struct.unpack("<I", data[-8:-4])[0]
    end = len(data) - 8 - footer
    src = write(d, "pages.parquet", data[:4] + bytes(b ^ 0xFF for b in data[4:end]) + data[end:])
    return Case("fresh", src, InputError, ("pages.parquet", "cannot read as PARQUET", "re-export it"),
                {"key": "id"})


@case
def case_jsonl_line_not_json(d: Path, _: Path) -> Case:
    src = write(d, "bad.jsonl", '{"id": 5, "name": "e", "score": 50}\nnot json\n'
                                '{"id": 6, "name": "f", "score": 60}\n')
    return Case("train", src, InputError, ("bad.jsonl", "cannot read as JSONL",
                                           "each line must be one JSON object"), {"mode": "append"})


@case
def case_jsonl_truncated_line(d: Path, _: Path) -> Case:
    src = write(d, "cut.jsonl", '{"id": 1, "name": "a"}\n{"id": 2, "na')
    return Case("fresh", src, InputError, ("cut.jsonl", "cannot read as JSONL", "one JSON object"),
                {"key": "id"})


@case
def case_jsonl_type_changes_between_lines(d: Path, _: Path) -> Case:
    src = write(d, "mixed.jsonl", '{"id": 1, "name": "a"}\n{"id": "two", "name": "b"}\n')
    return Case("fresh", src, InputError, ("mixed.jsonl", "changed from number to string",
                                           "the same type per key"), {"key": "id"})


@case
def case_jsonl_line_is_an_array(d: Path, _: Path) -> Case:
    src = write(d, "array.jsonl", '{"id": 1}\n[1, 2]\n')
    return Case("fresh", src, InputError, ("array.jsonl", "each line must be one JSON object"), {"key": "id"})


@case
def case_arrow_not_arrow(d: Path, _: Path) -> Case:
    src = write(d, "junk.arrow", b"this is not an Arrow IPC file")
    return Case("fresh", src, InputError, ("junk.arrow", "cannot read as ARROW", "Arrow IPC file or stream"))


@case
def case_unknown_explicit_format(d: Path, _: Path) -> Case:
    src = write(d, "data.bin", "id\n1\n")
    return Case("fresh", src, InputError, ("data.bin", "unknown file type 'xlsx'", "--format"),
                {"format": "xlsx"})


# schemas that conflict with the dataset's

@case
def case_append_strings_into_int64_column(d: Path, _: Path) -> Case:
    src = write(d, "types.csv", "id,name,score\n5,e,high\n")
    return Case("train", src, SchemaConflict, ("types.csv", "column 'score'", "string", "int64", "convert it",
                                               "--mode replace"), {"mode": "append"})


@case
def case_upsert_parquet_strings_into_int64_column(d: Path, _: Path) -> Case:
    table = pa.table({"id": pa.array([1], pa.int64()), "name": ["a"], "score": ["x"]})
    src = parquet(d, "types.parquet", table)
    return Case("train", src, SchemaConflict, ("types.parquet", "column 'score'", "int64", "convert it"),
                {"mode": "upsert"})


@case
def case_append_floats_into_int64_column(d: Path, _: Path) -> Case:
    src = write(d, "floats.csv", "id,name,score\n5,e,1.5\n")
    return Case("train", src, SchemaConflict,
                ("floats.csv", "column 'score'", "double", "int64", "convert it"), {"mode": "append"})


@case
def case_upsert_parquet_missing_key_column(d: Path, _: Path) -> Case:
    src = parquet(d, "nokey.parquet", TRAIN.drop_columns(["id"]))
    return Case("train", src, SchemaConflict, ("nokey.parquet", "key column(s) ['id'] are missing",
                                               "Add the key column(s) to the input"), {"mode": "upsert"})


@case
def case_new_dataset_parquet_missing_key_column(d: Path, _: Path) -> Case:
    src = parquet(d, "nokey.parquet", TRAIN.drop_columns(["id"]))
    return Case("fresh", src, SchemaConflict, ("nokey.parquet", "['id']", "missing", "Add the key column(s)"),
                {"key": "id"})


@case
def case_append_missing_column(d: Path, _: Path) -> Case:
    src = write(d, "fewer.csv", "id,name\n5,e\n")
    return Case("train", src, SchemaConflict, ("fewer.csv", "missing ['score']", "--mode replace"),
                {"mode": "append"})


@case
def case_upsert_with_another_key(d: Path, _: Path) -> Case:
    src = write(d, "rekey.csv", "id,name,score\n5,e,50\n")
    return Case("train", src, SchemaConflict, ("keyed by ['id'], not ['name']", "--mode replace"),
                {"mode": "upsert", "key": "name"})


# duplicate or null keys

@case
def case_upsert_duplicate_keys(d: Path, _: Path) -> Case:
    src = write(d, "dup.csv", "id,name,score\n1,a,1\n7,x,2\n7,y,3\n")
    return Case("train", src, KeyViolation, ("rows 2 and 3", "id=7", "Keys must be unique",
                                             "drop or merge the duplicates"), {"mode": "upsert"})


@case
def case_new_dataset_duplicate_keys_parquet(d: Path, _: Path) -> Case:
    src = parquet(d, "dup.parquet", pa.table({"id": ["a", "b", "a"], "v": [1, 2, 3]}))
    return Case("fresh", src, KeyViolation, ("rows 1 and 3", "id='a'", "Keys must be unique"), {"key": "id"})


@case
def case_duplicate_composite_keys(d: Path, _: Path) -> Case:
    src = write(d, "dup2.csv", "a,b,v\n1,x,1\n1,y,2\n1,x,3\n")
    return Case("fresh", src, KeyViolation, ("rows 1 and 3", "a=1, b='x'", "Keys must be unique"),
                {"key": ["a", "b"]})


@case
def case_upsert_null_key_csv(d: Path, _: Path) -> Case:
    src = write(d, "nullkey.csv", "id,name,score\n1,a,1\n,x,2\n")
    return Case("train", src, KeyViolation,
                ("nullkey.csv", "key column 'id'", "row 2", "Fill it, or drop the row"), {"mode": "upsert"})


@case
def case_new_dataset_null_key_jsonl(d: Path, _: Path) -> Case:
    src = write(d, "nullkey.jsonl", '{"id": 1, "v": 1}\n{"id": 2, "v": 2}\n{"id": null, "v": 3}\n')
    return Case("fresh", src, KeyViolation, ("nullkey.jsonl", "key column 'id'", "row 3", "Fill it"),
                {"key": "id"})


@case
def case_append_keys_already_present(d: Path, _: Path) -> Case:
    src = write(d, "again.csv", "id,name,score\n3,c,30\n")
    return Case("train", src, KeyViolation, ("already in dataset 'train'", "id=3", "--mode upsert"),
                {"mode": "append"})


# text that is not UTF-8

@case
def case_latin1_csv(d: Path, _: Path) -> Case:
    src = write(d, "latin1.csv", "id,name,score\n5,plain,50\n6,café,60\n".encode("latin-1"))
    return Case("train", src, InputError, ("latin1.csv", "column 'name', row 2", "not valid UTF-8",
                                           "Re-encode the file as UTF-8", "iconv"), {"mode": "append"})


@case
def case_latin1_csv_header(d: Path, _: Path) -> Case:
    src = write(d, "header.csv", "id,café\n1,a\n".encode("latin-1"))
    return Case("fresh", src, InputError, ("header.csv", "not valid UTF-8", "Re-encode the file as UTF-8"),
                {"key": "id"})


@case
def case_latin1_jsonl(d: Path, _: Path) -> Case:
    src = write(d, "latin1.jsonl", '{"id": 1, "name": "ok"}\n{"id": 2, "name": "café"}\n'.encode("latin-1"))
    return Case("fresh", src, InputError, ("latin1.jsonl", "column 'name', row 2", "not valid UTF-8",
                                           "Re-encode the file as UTF-8"), {"key": "id"})


@case
def case_utf16_csv(d: Path, _: Path) -> Case:
    src = write(d, "utf16.csv", "id,name\n1,a\n".encode("utf-16"))
    return Case("fresh", src, InputError, ("utf16.csv", "UTF-16, not UTF-8", "iconv -f utf-16 -t utf-8"),
                {"key": "id"})


# empty input

@case
def case_zero_byte_csv(d: Path, _: Path) -> Case:
    src = write(d, "empty.csv", b"")
    return Case("train", src, InputError,
                ("empty.csv", "is empty (0 bytes)", "give the file that holds the data"), {"mode": "append"})


@case
def case_zero_byte_parquet(d: Path, _: Path) -> Case:
    src = write(d, "empty.parquet", b"")
    return Case("fresh", src, InputError, ("empty.parquet", "is empty", "give the file that holds the data"))


@case
def case_zero_byte_jsonl(d: Path, _: Path) -> Case:
    src = write(d, "empty.jsonl", b"")
    return Case("fresh", src, InputError, ("empty.jsonl", "is empty", "give the file that holds the data"))


@case
def case_csv_with_only_a_header(d: Path, _: Path) -> Case:
    src = write(d, "header-only.csv", "id,name,score\n")
    return Case("train", src, InputError, ("header-only.csv", "has no rows", "add rows to it"),
                {"mode": "upsert"})


@case
def case_parquet_with_no_rows(d: Path, _: Path) -> Case:
    src = parquet(d, "norows.parquet", TRAIN.slice(0, 0))
    return Case("train", src, InputError, ("norows.parquet", "has no rows", "at least one row"))


@case
def case_jsonl_blank_lines_only(d: Path, _: Path) -> Case:
    src = write(d, "blank.jsonl", "\n\n")
    return Case("fresh", src, InputError, ("blank.jsonl", "cannot read as JSONL", "one JSON object"))


@case
def case_empty_folder(d: Path, _: Path) -> Case:
    folder = d / "nothing"
    folder.mkdir()
    (folder / ".hidden").write_bytes(b"skipped")
    return Case("fresh", folder, InputError, ("nothing", "holds no files", "nothing to add"))


# labels files joined on path

def _labels(d: Path, bad_path: str) -> Path:
    return write(d, "labels.csv", f"path,label\ncat/a.png,cat\n{bad_path},dog\n")


@case
def case_labels_path_with_dotdot(d: Path, images: Path) -> Case:
    return Case("images", images, InputError,
                ("labels.csv row 2", "'../x.png'", "must be relative to the folder", "no '..'"),
                {"labels": _labels(d, "../x.png")})


@case
def case_labels_path_with_dotdot_inside(d: Path, images: Path) -> Case:
    return Case("images", images, InputError, ("labels.csv row 2", "'cat/../../x.png'", "no '..'"),
                {"labels": _labels(d, "cat/../../x.png")})


@case
def case_labels_absolute_path(d: Path, images: Path) -> Case:
    return Case("images", images, InputError, ("labels.csv row 2", "'/etc/passwd'", "no absolute part"),
                {"labels": _labels(d, "/etc/passwd")})


@case
def case_labels_backslash_path(d: Path, images: Path) -> Case:
    return Case("images", images, InputError, ("labels.csv row 2", "must be relative to the folder"),
                {"labels": _labels(d, "..\\x.png")})


@case
def case_labels_empty_path(d: Path, images: Path) -> Case:
    return Case("images", images, InputError, ("labels.csv row 2", "the path is empty", "must name a file"),
                {"labels": _labels(d, '""')})


@case
def case_labels_file_not_in_folder(d: Path, images: Path) -> Case:
    return Case("images", images, InputError, ("labels.csv", "'cat/missing.png'", "not in the folder",
                                               "fix the paths"), {"labels": _labels(d, "cat/missing.png")})


@case
def case_labels_without_path_column(d: Path, images: Path) -> Case:
    labels = write(d, "labels.csv", "file,label\ncat/a.png,cat\n")
    return Case("images", images, InputError, ("labels.csv", "needs a 'path' column"), {"labels": labels})


@case
def case_labels_latin1(d: Path, images: Path) -> Case:
    text = "path,label\ncat/a.png,chat noir\ndog/b.png,chien bébé\n"
    labels = write(d, "labels.csv", text.encode("latin-1"))
    return Case("images", images, InputError, ("labels.csv", "column 'label', row 2", "not valid UTF-8"),
                {"labels": labels})


@case
def case_labels_on_a_file_dataset(d: Path, _: Path) -> Case:
    src = write(d, "rows.csv", "id,name,score\n5,e,50\n")
    return Case("train", src, InputError, ("--labels applies to folders of files only",),
                {"mode": "append", "labels": _labels(d, "cat/a.png")})


# symbolic links that leave the dataset folder

def _outside(d: Path) -> Path:
    outside = d / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.png").write_bytes(b"not part of the dataset")
    return outside


@case
def case_symlink_to_file_outside(d: Path, images: Path) -> Case:
    os.symlink(_outside(d) / "secret.png", images / "cat" / "link.png")
    return Case("images", images, InputError, ("cat/link.png", "symbolic link", "outside the dataset folder",
                                               "Copy the file into the folder, or remove the link"))


@case
def case_relative_symlink_to_file_outside(d: Path, images: Path) -> Case:
    _outside(d)
    os.symlink(Path("..", "..", "inputs", "outside", "secret.png"), images / "cat" / "rel.png")
    return Case("images", images, InputError, ("cat/rel.png", "symbolic link", "remove the link"))


@case
def case_symlinked_folder_outside(d: Path, images: Path) -> Case:
    os.symlink(_outside(d), images / "more", target_is_directory=True)
    return Case("images", images, InputError, ("more is a symbolic link", "outside the dataset folder",
                                               "remove the link"))


@case
def case_nested_symlinked_folder_outside(d: Path, images: Path) -> Case:
    os.symlink(_outside(d), images / "dog" / "sub", target_is_directory=True)
    return Case("images", images, InputError, ("dog/sub is a symbolic link", "outside the dataset folder"))


@case
def case_symlink_to_the_folders_parent(d: Path, images: Path) -> Case:
    os.symlink(images.parent, images / "cat" / "up", target_is_directory=True)
    return Case("images", images, InputError, ("cat/up is a symbolic link", "outside the dataset folder"))


# file and folder names that are not UTF-8 (made with bytes paths, as a Latin-1 system or a zip would)

@case
def case_file_name_not_utf8(d: Path, images: Path) -> Case:
    with open(os.fsencode(images / "cat") + b"/bad\xff.png", "wb") as f:  # Path takes no bytes
        f.write(b"a picture with a Latin-1 name")
    return Case("images", images, InputError, ("cat/bad\\xff.png", "not valid UTF-8", "Rename it",
                                               "nothing was added"))


@case
def case_folder_name_not_utf8(d: Path, images: Path) -> Case:
    folder = os.fsencode(images) + b"/caf\xe9"
    os.mkdir(folder)
    with open(folder + b"/c.png", "wb") as f:
        f.write(b"a picture in a Latin-1 folder")
    return Case("images", images, InputError, ("/caf\\xe9", "not valid UTF-8", "Rename it"))


# -- the tests -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_refused_and_nothing_is_written(work: tuple[assay.Repo, Path], name: str) -> None:
    repo, inputs = work
    c = CASES[name](inputs, repo.root.parent / "images")
    before = snapshot(repo)
    with pytest.raises(c.error) as info:
        repo.add(c.dataset, c.source, **c.options)
    assert type(info.value) is c.error, f"expected {c.error.__name__}, got {type(info.value).__name__}"
    message = str(info.value)
    for part in c.says:
        assert part in message, f"{part!r} not in {message!r}"
    assert "Traceback" not in message
    assert_nothing_written(repo, before)


def test_symlink_inside_the_folder_is_accepted(work: tuple[assay.Repo, Path]) -> None:
    """The link check refuses only links that leave the folder (so the refusals above are not blanket)."""
    repo, _ = work
    images = repo.root.parent / "images"
    os.symlink(images / "cat" / "a.png", images / "dog" / "same.png")
    os.symlink(Path("..", "cat", "new.png"), images / "dog" / "relative.png")
    repo.add("images", images)
    paths = repo.dataset("images").to_arrow().column("path").to_pylist()
    assert sorted(paths) == ["cat/a.png", "cat/new.png", "dog/b.png", "dog/relative.png", "dog/same.png"]


def test_labels_with_good_paths_are_joined(work: tuple[assay.Repo, Path]) -> None:
    """The same labels file with good paths is accepted: the refusals are about the paths, not the file."""
    repo, inputs = work
    labels = _labels(inputs, "dog/b.png")
    repo.add("images", repo.root.parent / "images", labels=labels)
    table = repo.dataset("images").to_arrow()
    got = dict(zip(table.column("path").to_pylist(), table.column("label").to_pylist(), strict=True))
    assert got == {"cat/a.png": "cat", "cat/new.png": None, "dog/b.png": "dog"}


def test_later_good_add_still_works(work: tuple[assay.Repo, Path]) -> None:
    """A refused add leaves the repository usable: the staged change survives and can be committed."""
    repo, inputs = work
    with pytest.raises(KeyViolation):
        repo.add("train", write(inputs, "dup.csv", "id,name,score\n8,x,1\n8,y,2\n"), mode="upsert")
    repo.add("train", write(inputs, "ok.csv", "id,name,score\n8,x,1\n"), mode="upsert")
    repo.commit("second version")
    assert repo.dataset("train").to_arrow().column("id").to_pylist() == [1, 2, 3, 4, 8]
    assert repo.fsck().ok


# -- through the command line --------------------------------------------------------------------------------


def run_cli(repo: assay.Repo, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    code = "from assay.cli.app import main; main()"
    return subprocess.run([sys.executable, "-c", code, "-C", str(repo.root), *map(str, args)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "COLUMNS": "300"})


@pytest.mark.parametrize("name", [
    "csv_row_with_extra_field",
    "parquet_truncated",
    "append_strings_into_int64_column",
    "upsert_duplicate_keys",
    "upsert_null_key_csv",
    "latin1_csv",
    "zero_byte_csv",
    "labels_path_with_dotdot",
    "labels_absolute_path",
    "symlinked_folder_outside",
    "file_name_not_utf8",
])
def test_cli_refuses_bad_input(work: tuple[assay.Repo, Path], name: str) -> None:
    repo, inputs = work
    c = CASES[name](inputs, repo.root.parent / "images")
    before = snapshot(repo)
    args: list[str | os.PathLike[str]] = ["add", c.dataset, c.source]
    for option, value in c.options.items():
        for v in value if isinstance(value, list) else [value]:
            args += [f"--{option}", v]
    result = run_cli(repo, *args)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())  # the message is one line, but be robust to wrapping
    for part in c.says:
        assert " ".join(part.split()) in message, f"{part!r} not in {result.stderr!r}"
    assert result.stdout == ""
    with assay.Repo(repo.root) as fresh:
        assert_nothing_written(fresh, before)


def test_cli_message_keeps_brackets_in_file_names(work: tuple[assay.Repo, Path]) -> None:
    """Rich markup must not eat parts of a file name such as ``[bold]``."""
    repo, inputs = work
    src = write(inputs, "scores[bold].csv", "id,name,score\n1,a,1\n,x,2\n")
    before = snapshot(repo)
    result = run_cli(repo, "add", "train", src, "--mode", "upsert")
    assert result.returncode == 1
    assert "scores[bold].csv: key column 'id' is empty (null) in row 2" in result.stderr
    with assay.Repo(repo.root) as fresh:
        assert_nothing_written(fresh, before)
