"""A folder of files (images, audio, any bytes) as a dataset: one sample per file, bytes stored as blobs.

Each sample has its relative path (the key), the blob address of its bytes, size, media type and a
label: the name of its first sub-folder, or a value joined from a labels file on the path. A stat
cache, like git's index, remembers the address of every file by (size, mtime, inode), so that a
re-add reads only the files that changed.
"""

from __future__ import annotations

import functools
import mimetypes
import os
import stat
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay.errors import InputError
from assay.store import ObjectStore, hash_bytes
from assay.store.fs import atomic_write
from assay.table.sources import Source, load_source

FILE_COLUMNS = ("path", "blob", "size", "media_type", "label")
FILE_SCHEMA = pa.schema([("path", pa.string()), ("blob", pa.string()), ("size", pa.int64()),
                         ("media_type", pa.string()), ("label", pa.string())])


class FileEntry(NamedTuple):
    """One file found in a dataset folder."""

    rel: str
    full: str
    size: int
    mtime_ns: int
    inode: int


class StatCache:
    """Per folder, the address of every file stored from it, valid while size, mtime and inode match.

    One Arrow IPC snapshot per folder (named by a hash of its absolute path), replaced atomically.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _file(self, root: Path) -> Path:
        return self.folder / f"{hash_bytes(str(root.resolve()).encode())[:32]}.arrow"

    def lookup(self, root: Path, entries: list[FileEntry]) -> dict[str, str]:
        """Cached addresses (by relative path) of the entries whose stat still matches."""
        try:
            with pa.memory_map(str(self._file(root))) as source:
                snap = pa.ipc.open_file(source).read_all()
        except (FileNotFoundError, pa.ArrowInvalid):
            return {}
        rels = snap.column("rel").to_pylist()
        columns = list(zip(*entries, strict=True)) if entries else [()] * 5
        if rels == list(columns[0]):  # the usual case: same files, compare stats as arrays
            same = np.ones(len(rels), bool)
            for i, c in ((2, "size"), (3, "mtime_ns"), (4, "inode")):
                same &= np.array(columns[i], dtype=np.int64) == snap.column(c).to_numpy()
            oids = snap.column("oid").to_pylist()
            return {rels[i]: oids[i] for i in np.flatnonzero(same).tolist()}
        known = {r: (s, m, i, o) for r, s, m, i, o in zip(*(snap.column(c).to_pylist() for c in _SNAP), strict=True)}
        hits = {}
        for e in entries:
            cached = known.get(e.rel)
            if cached is not None and cached[0] == e.size and cached[1] == e.mtime_ns and cached[2] == e.inode:
                hits[e.rel] = cached[3]
        return hits

    def remember(self, root: Path, entries: list[FileEntry], oids: list[str]) -> None:
        """Replace the folder's snapshot with ``entries`` and their addresses."""
        rel, _, size, mtime, inode = zip(*entries, strict=True) if entries else ((),) * 5
        snap = pa.table({"rel": pa.array(rel, pa.string()), "size": np.array(size, np.int64),
                         "mtime_ns": np.array(mtime, np.int64), "inode": np.array(inode, np.int64),
                         "oid": pa.array(oids, pa.string())})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, snap.schema) as writer:
            writer.write_table(snap)
        atomic_write(self._file(root), sink.getvalue().to_pybytes(), durable=False)


_SNAP = ("rel", "size", "mtime_ns", "inode", "oid")


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
    subfolders = []
    base = str(folder)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in os.listdir(fd):
            if name[0] == ".":
                continue
            st = os.lstat(name, dir_fd=fd)  # one call per entry: type, size, mtime and inode
            mode = st.st_mode
            if stat.S_ISLNK(mode):
                path = f"{base}/{name}"
                _check_link(root, Path(path), prefix + name)
                if os.path.isdir(path):  # a linked folder inside the dataset: its files are listed where they are
                    continue
                st = os.stat(path)
                mode = st.st_mode
            if stat.S_ISREG(mode):
                out.append(FileEntry(prefix + name, f"{base}/{name}", st.st_size, st.st_mtime_ns, st.st_ino))
            elif stat.S_ISDIR(mode):
                subfolders.append(name)
    finally:
        os.close(fd)
    for name in sorted(subfolders):
        _walk(root, folder / name, f"{prefix}{name}/", out, seen)


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
    hits = cache.lookup(root, entries) if cache else {}
    gone = store.missing(set(hits.values()))
    todo = [e for e in entries if e.rel not in hits or hits[e.rel] in gone]
    store.freshen(set(hits.values()) - gone)
    if todo:
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress("storing files", done, len(todo))

        oids = store.put_files([e.full for e in todo], callback=tick)
        hits.update({e.rel: o for e, o in zip(todo, oids, strict=True)})
    blobs = [hits[e.rel] for e in entries]
    if cache and todo:
        cache.remember(root, entries, blobs)
    paths = [e.rel for e in entries]
    table = pa.table({
        "path": paths,
        "blob": blobs,
        "size": pa.array([e.size for e in entries], pa.int64()),
        "media_type": [_media_type(p) for p in paths],
        "label": [p.split("/", 1)[0] if "/" in p else None for p in paths],
    }, schema=FILE_SCHEMA)
    if extra is not None:
        table = _join_labels(table, extra)
    listing = hash_bytes("\n".join(f"{p}\t{b}" for p, b in zip(paths, blobs, strict=True)).encode())
    labels_digest = hash_bytes(labels.read_bytes()) if labels else ""
    return Source(str(root), table.schema, lambda: iter(table.to_batches()),
                  digest=f"files:{listing}:{labels_digest}")


@functools.lru_cache(maxsize=1024)
def _suffix_type(suffix: str) -> str:
    return mimetypes.guess_type(f"x{suffix}")[0] or "application/octet-stream"


def _media_type(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return _suffix_type(name[name.rfind("."):].lower() if "." in name else "")


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
