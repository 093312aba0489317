"""A folder of files (images, audio, any bytes) as a dataset: one sample per file, bytes stored as blobs.

Each sample has its relative path (the key), the blob address of its bytes, size, media type and a
label: the name of its first sub-folder, or a value joined from a labels file on the path. A stat
cache, like git's index, remembers the address of every file by (size, mtime, inode), so that a
re-add reads only the files that changed.
"""

from __future__ import annotations

import mimetypes
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.compute as pc

from assay.errors import InputError
from assay.store import ObjectStore, hash_bytes
from assay.table.sources import Source, load_source

FILE_COLUMNS = ("path", "blob", "size", "media_type", "label")
FILE_SCHEMA = pa.schema([("path", pa.string()), ("blob", pa.string()), ("size", pa.int64()),
                         ("media_type", pa.string()), ("label", pa.string())])


@dataclass(frozen=True)
class FileEntry:
    rel: str
    full: str
    size: int
    mtime_ns: int
    inode: int


class StatCache:
    """Addresses of files already stored, keyed by path and checked against size, mtime and inode."""

    def __init__(self, path: Path):
        self.path = path
        self._con = sqlite3.connect(path, timeout=30, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, "
                          "mtime_ns INTEGER, inode INTEGER, oid TEXT)")

    def lookup(self, entries: list[FileEntry]) -> dict[str, str]:
        """Cached addresses of the entries whose stat still matches."""
        rows = self._con.execute("SELECT path, size, mtime_ns, inode, oid FROM files").fetchall()
        known = {r[0]: r[1:] for r in rows}
        hits = {}
        for e in entries:
            cached = known.get(e.full)
            if cached is not None and cached[:3] == (e.size, e.mtime_ns, e.inode):
                hits[e.full] = cached[3]
        return hits

    def remember(self, entries: list[FileEntry], oids: list[str]) -> None:
        with self._con:
            self._con.executemany(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
                [(e.full, e.size, e.mtime_ns, e.inode, o) for e, o in zip(entries, oids, strict=True)],
            )

    def close(self) -> None:
        self._con.close()


def scan_folder(root: Path) -> list[FileEntry]:
    """Every regular file under ``root`` (hidden names skipped), refusing links that leave it."""
    root = root.resolve()
    if not root.is_dir():
        raise InputError(f"{root} is not a folder")
    entries: list[FileEntry] = []
    seen_dirs: set[str] = set()
    _walk(root, root, "", entries, seen_dirs)
    entries.sort(key=lambda e: e.rel)
    return entries


def _walk(root: Path, folder: Path, prefix: str, out: list[FileEntry], seen: set[str]) -> None:
    real = os.path.realpath(folder)
    if real in seen:
        return
    seen.add(real)
    with os.scandir(folder) as it:
        for d in it:
            if d.name.startswith("."):
                continue
            rel = f"{prefix}{d.name}"
            if d.is_symlink():
                _check_link(root, Path(d.path), rel)
                if d.is_dir():  # a linked folder inside the dataset folder: its files are listed where they are
                    continue
            if d.is_dir():
                _walk(root, Path(d.path), rel + "/", out, seen)
            elif d.is_file():
                st = d.stat()
                out.append(FileEntry(rel, d.path, st.st_size, st.st_mtime_ns, st.st_ino))


def _check_link(root: Path, link: Path, rel: str) -> None:
    target = Path(os.path.realpath(link))
    if target != root and root not in target.parents:
        raise InputError(
            f"{rel} is a symbolic link to {target}, outside the dataset folder {root}. Copy the file into "
            "the folder, or remove the link; nothing was added."
        )


def folder_source(store: ObjectStore, root: Path, cache: StatCache | None, *,
                  labels: Path | None = None, progress: Callable[[str, int, int], None] | None = None) -> Source:
    """Store the folder's files (only those not already known) and describe them as a table."""
    entries = scan_folder(root)
    if not entries:
        raise InputError(f"{root} holds no files; nothing to add")
    extra = _read_labels(labels, {e.rel for e in entries}) if labels is not None else None  # before storing
    hits = cache.lookup(entries) if cache else {}
    todo = [e for e in entries if e.full not in hits or not store.has(hits[e.full])]
    store.freshen(hits[e.full] for e in entries if e.full in hits)
    if todo:
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress("storing files", done, len(todo))

        oids = store.put_files([e.full for e in todo], callback=tick)
        hits.update({e.full: o for e, o in zip(todo, oids, strict=True)})
        if cache:
            cache.remember(todo, oids)
    table = pa.table({
        "path": [e.rel for e in entries],
        "blob": [hits[e.full] for e in entries],
        "size": pa.array([e.size for e in entries], pa.int64()),
        "media_type": [mimetypes.guess_type(e.rel)[0] or "application/octet-stream" for e in entries],
        "label": [e.rel.split("/", 1)[0] if "/" in e.rel else None for e in entries],
    }, schema=FILE_SCHEMA)
    if extra is not None:
        table = _join_labels(table, extra)
    listing = hash_bytes(b"\n".join(f"{p}\t{b}".encode() for p, b in zip(
        table.column("path").to_pylist(), table.column("blob").to_pylist(), strict=True)))
    labels_digest = hash_bytes(labels.read_bytes()) if labels else ""
    return Source(str(root), table.schema, lambda: iter(table.to_batches()),
                  digest=f"files:{listing}:{labels_digest}")


def _read_labels(labels_path: Path, known: set[str]) -> pa.Table:
    """The labels file, its paths checked against the folder's files."""
    raw = pa.Table.from_batches(list(load_source(labels_path).open()))
    if "path" not in raw.column_names:
        raise InputError(f"{labels_path} needs a 'path' column naming each file relative to the folder; "
                         f"it has {raw.column_names}")
    paths = raw.column("path").cast(pa.string()).to_pylist()
    for row, p in enumerate(paths, start=1):
        _check_label_path(labels_path, row, p)
    missing = [p for p in paths if p not in known]
    if missing:
        raise InputError(f"{labels_path} names {len(missing)} file(s) not in the folder, e.g. {missing[0]!r}; "
                         "fix the paths (relative to the folder, with /) or remove those rows")
    if len(set(paths)) != len(paths):
        raise InputError(f"{labels_path} lists a path more than once; give each file one row")
    return raw.set_column(raw.column_names.index("path"), "path", pa.array(paths, pa.string()))


def _join_labels(table: pa.Table, extra: pa.Table) -> pa.Table:
    base = table.drop_columns(["label"]) if "label" in extra.column_names else table
    joined = base.join(extra, "path", join_type="left outer")
    order = pc.sort_indices(joined, [("path", "ascending")])
    return joined.take(order)


def _check_label_path(labels_path: Path, row: int, p: str | None) -> None:
    if p is None or p == "":
        raise InputError(f"{labels_path} row {row}: the path is empty; every row must name a file")
    pure = PurePosixPath(p)
    if pure.is_absolute() or ".." in pure.parts or "\\" in p:
        raise InputError(f"{labels_path} row {row}: path {p!r} must be relative to the folder, with no '..' "
                         "and no absolute part")
