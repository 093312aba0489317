"""A folder of files (images, audio, any bytes) as a dataset: one sample per file, bytes stored as blobs.

Each sample has its relative path (the key), the blob address of its bytes, size, media type and a
label: the name of its first sub-folder, or a value joined from a labels file on the path. A stat
cache, like git's index, remembers the address of every file by (size, mtime, inode), so that a
re-add reads only the files that changed.
"""

from __future__ import annotations

import contextlib
import functools
import mimetypes
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay._types import Progress
from assay.errors import InputError
from assay.store import ObjectStore, hash_bytes
from assay.store.fs import atomic_write
from assay.table.sources import Source, load_source

FILE_SCHEMA = pa.schema([("path", pa.string()), ("blob", pa.string()), ("size", pa.int64()),
                         ("media_type", pa.string()), ("label", pa.string())])


@dataclass
class Listing:
    """The files found in a dataset folder, column by column, in tree order (names sorted per folder)."""

    rels: list[str] = field(default_factory=list)
    fulls: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    mtimes: list[int] = field(default_factory=list)
    inodes: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rels)


class StatCache:
    """Per folder, the address of every file stored from it, valid while size, mtime and inode match.

    One Arrow IPC snapshot per folder (named by a hash of its absolute path), replaced atomically.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _file(self, root: Path) -> Path:
        return self.folder / f"{hash_bytes(str(root.resolve()).encode())[:32]}.arrow"

    def lookup(self, root: Path, files: Listing) -> dict[str, str]:
        """Cached addresses (by relative path) of the files whose stat still matches."""
        try:
            with pa.memory_map(str(self._file(root))) as source:
                snap = pa.ipc.open_file(source).read_all()
        except (FileNotFoundError, pa.ArrowInvalid):
            return {}
        rels = snap.column("rel").to_pylist()
        if rels == files.rels:  # the usual case: same files, compare stats as arrays
            same = np.ones(len(rels), bool)
            for now, c in ((files.sizes, "size"), (files.mtimes, "mtime_ns"), (files.inodes, "inode")):
                same &= np.array(now, dtype=np.int64) == snap.column(c).to_numpy()
            oids = snap.column("oid").to_pylist()
            return {rels[i]: oids[i] for i in np.flatnonzero(same).tolist()}
        known = {r: (s, m, i, o) for r, s, m, i, o in zip(*(snap.column(c).to_pylist() for c in _SNAP), strict=True)}
        hits = {}
        for rel, size, mtime, inode in zip(files.rels, files.sizes, files.mtimes, files.inodes, strict=True):
            cached = known.get(rel)
            if cached is not None and cached[:3] == (size, mtime, inode):
                hits[rel] = cached[3]
        return hits

    def remember(self, root: Path, files: Listing, oids: list[str]) -> None:
        """Replace the folder's snapshot with ``files`` and their addresses."""
        snap = pa.table({"rel": pa.array(files.rels, pa.string()), "size": np.array(files.sizes, np.int64),
                         "mtime_ns": np.array(files.mtimes, np.int64), "inode": np.array(files.inodes, np.int64),
                         "oid": pa.array(oids, pa.string())})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, snap.schema) as writer:
            writer.write_table(snap)
        atomic_write(self._file(root), sink.getvalue().to_pybytes(), durable=False)


_SNAP = ("rel", "size", "mtime_ns", "inode", "oid")


def scan_folder(root: Path) -> Listing:
    """Every regular file under ``root`` (hidden names skipped), refusing links that leave it."""
    root = root.resolve()
    if not root.is_dir():
        raise InputError(f"{_shown(str(root))} is not a folder")
    _check_utf8(str(root), str(root))
    files = Listing()
    _walk(root, root, "", files, set())
    return files


def _walk(root: Path, folder: Path, prefix: str, out: Listing, seen: set[str]) -> None:
    real = os.path.realpath(folder)
    if real in seen:
        return
    seen.add(real)
    base = str(folder)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in sorted(os.listdir(fd)):
            if name[0] == ".":
                continue
            _check_utf8(name, f"{base}/{name}")
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
                out.rels.append(prefix + name)
                out.fulls.append(f"{base}/{name}")
                out.sizes.append(st.st_size)
                out.mtimes.append(st.st_mtime_ns)
                out.inodes.append(st.st_ino)
            elif stat.S_ISDIR(mode):
                _walk(root, folder / name, f"{prefix}{name}/", out, seen)
    finally:
        os.close(fd)


def _check_utf8(name: str, path: str) -> None:
    """Refuse a name that is not valid UTF-8 (``os.listdir`` gives its bad bytes as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{_shown(path)}: the name is not valid UTF-8 (its bad bytes shown as \\xNN); assay "
                         "stores paths as UTF-8 text. Rename it and add again; nothing was added.") from None


def _shown(path: str) -> str:
    """A path printable as text, bytes that are not UTF-8 escaped as \\xNN."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _check_link(root: Path, link: Path, rel: str) -> None:
    target = Path(os.path.realpath(link))
    if target != root and root not in target.parents:
        raise InputError(
            f"{rel} is a symbolic link to {target}, outside the dataset folder {root}. Copy the file into "
            "the folder, or remove the link; nothing was added."
        )


def folder_oids(root: Path, cache: StatCache | None) -> tuple[Listing, list[str]]:
    """Every file under ``root`` and its object address, hashing only the files whose stat the cache does not
    know (the cache is then refreshed, as ``git status`` refreshes its index)."""
    from assay.store.hashing import hash_file

    files = scan_folder(root) if root.is_dir() else Listing()
    hits = cache.lookup(root, files) if cache else {}
    oids = [hits.get(rel) or hash_file(full) for rel, full in zip(files.rels, files.fulls, strict=True)]
    if cache and len(hits) < len(files):
        with contextlib.suppress(OSError):  # a read-only repository: the cache only saves time
            cache.remember(root, files, oids)
    return files, oids


def folder_source(store: ObjectStore, root: Path, cache: StatCache | None, *,
                  labels: Path | None = None, progress: Progress | None = None,
                  known: Callable[[str], bool] | None = None) -> Source:
    """Store the folder's files (only those not already known) and describe them as a table.

    ``known(digest)`` says whether an input of that digest is what the version it is added to holds already:
    when the stat cache knows every file and it does, nothing is looked up, stored or recorded as reused (that
    version, staged or committed, keeps its blobs), and the table is built only if it is read.
    """
    files = scan_folder(root)
    if not files:
        raise InputError(f"{root} holds no files; nothing to add")
    extra = _read_labels(labels, set(files.rels)) if labels is not None else None  # before storing
    hits = cache.lookup(root, files) if cache else {}
    if known is not None and len(hits) == len(files):
        blobs = [hits[r] for r in files.rels]
        digest = _source_digest(pa.array(files.rels, pa.string()), pa.array(blobs, pa.string()), labels)
        if known(digest):
            return _files_source(root, files, blobs, extra, digest)
    gone = store.missing(set(hits.values()))
    todo = [i for i, rel in enumerate(files.rels) if rel not in hits or hits[rel] in gone]
    store.freshen(set(hits.values()) - gone)
    if todo:
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress("storing files", done, len(todo))

        oids = store.put_files([files.fulls[i] for i in todo], callback=tick)
        hits.update({files.rels[i]: o for i, o in zip(todo, oids, strict=True)})
    blobs = [hits[r] for r in files.rels]
    if cache and todo:
        cache.remember(root, files, blobs)
    digest = _source_digest(pa.array(files.rels, pa.string()), pa.array(blobs, pa.string()), labels)
    return _files_source(root, files, blobs, extra, digest)


def _source_digest(paths: pa.Array, blobs: pa.Array, labels: Path | None) -> str:
    labels_digest = hash_bytes(labels.read_bytes()) if labels else ""
    return f"files:{_listing_digest(paths, blobs)}:{labels_digest}"


def _files_source(root: Path, files: Listing, blobs: list[str], extra: pa.Table | None, digest: str) -> Source:
    """The folder's files as a table (path, blob, size, media type, label; the labels file's columns joined),
    built when first read (its schema is known before, unless a labels file adds columns)."""

    @functools.cache
    def table() -> pa.Table:
        paths = pa.array(files.rels, pa.string())
        rows = pa.table({
            "path": paths,
            "blob": pa.array(blobs, pa.string()),
            "size": pa.array(np.array(files.sizes, np.int64)),
            "media_type": _media_types(paths),
            "label": pc.struct_field(pc.extract_regex(paths, r"^(?P<top>[^/]+)/"), "top"),
        }, schema=FILE_SCHEMA)
        return rows if extra is None else _join_labels(rows, extra)

    schema = FILE_SCHEMA if extra is None else table().schema
    return Source(str(root), schema, lambda: iter(table().to_batches()), digest=digest)


@functools.lru_cache(maxsize=1024)
def _suffix_type(suffix: str) -> str:
    return mimetypes.guess_type(f"x{suffix}")[0] or "application/octet-stream"


def _media_types(paths: pa.Array) -> pa.Array:
    """Media type of each path from its suffix, looked up once per distinct suffix."""
    suffix = pc.struct_field(pc.extract_regex(paths, r"(?P<s>\.[^./]*)$"), "s")
    coded = pc.utf8_lower(suffix.fill_null("")).dictionary_encode()
    names = pa.array([_suffix_type(x) for x in coded.dictionary.to_pylist()], pa.string())
    return names.take(coded.indices)


def _listing_digest(paths: pa.Array, blobs: pa.Array) -> str:
    """BLAKE3 over the paths and blob addresses in order (their Arrow offsets and bytes)."""
    parts = [b for col in (paths, blobs) for b in col.buffers()[1:] if b is not None]
    return hash_bytes(b"".join(memoryview(b) for b in parts))


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
