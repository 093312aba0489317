"""A folder of files (images, audio, any bytes) as a dataset: one sample per file, bytes stored as blobs.

Each sample has its relative path (the key), the blob address of its bytes, size, media type and a
label: the name of its first sub-folder, or a value joined from a labels file on the path. The stat
cache (``assay.table.listing``) remembers the address of every file by (size, mtime, inode), so that a
re-add reads only the files that changed, and one that changed nothing reads none.
"""

from __future__ import annotations

import contextlib
import functools
import mimetypes
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay._types import Progress
from assay.errors import InputError
from assay.store import ObjectStore
from assay.table.listing import Listing, StatCache, listing_digest, scan_folder, source_digest
from assay.table.sources import Source, load_source

FILE_SCHEMA = pa.schema([("path", pa.string()), ("blob", pa.string()), ("size", pa.int64()),
                         ("media_type", pa.string()), ("label", pa.string())])


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
                  known: Callable[[str], bool] | None = None, files: Listing | None = None) -> Source:
    """Store the folder's files (only those not already known) and describe them as a table.

    ``known(digest)`` says whether an input of that digest is what the version it is added to holds already:
    when the stat cache's summary knows the folder as it is and it does, nothing is looked up, stored or
    recorded as reused (that version, staged or committed, keeps its blobs), and the table is built only if it
    is read. ``files``: a scan of ``root`` just taken (``scan_folder``), not taken again.
    """
    files = files if files is not None else scan_folder(root)
    if not files:
        raise InputError(f"{root} holds no files; nothing to add")
    extra = _read_labels(labels, set(files.rels)) if labels is not None else None  # before storing
    if known is not None and cache is not None:
        whole = cache.whole(root, files)
        if whole is not None and known(digest := source_digest(whole, labels)):
            return _files_source(root, files, functools.partial(_cached_blobs, cache, root, files), extra, digest)
    hits = cache.lookup(root, files) if cache else {}
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
    listing = listing_digest(pa.array(files.rels, pa.string()), pa.array(blobs, pa.string()))
    if cache:
        with contextlib.suppress(OSError):  # a read-only repository: the cache only saves time
            if todo:
                cache.remember(root, files, blobs)
            elif cache.whole(root, files) != listing:  # e.g. a cache written before summaries
                cache.note_whole(root, files, listing)
    return _files_source(root, files, lambda: blobs, extra, source_digest(listing, labels))


def _cached_blobs(cache: StatCache, root: Path, files: Listing) -> list[str]:
    hits = cache.lookup(root, files)
    if len(hits) != len(files):  # the snapshot replaced after its summary was read
        raise InputError(f"the files of {root} changed while it was added; add it again")
    return [hits[r] for r in files.rels]


def _files_source(root: Path, files: Listing, blobs: Callable[[], list[str]], extra: pa.Table | None,
                  digest: str) -> Source:
    """The folder's files as a table (path, blob, size, media type, label; the labels file's columns joined),
    built when first read (its schema is known before, unless a labels file adds columns)."""

    @functools.cache
    def table() -> pa.Table:
        paths = pa.array(files.rels, pa.string())
        rows = pa.table({
            "path": paths,
            "blob": pa.array(blobs(), pa.string()),
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
