"""Export a dataset version: a Parquet/CSV/JSONL file, or the files of a folder dataset."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from assay._types import Progress
from assay.errors import InputError
from assay.store import ObjectStore
from assay.store.fs import atomic_write
from assay.table import DatasetVersion
from assay.table.folders import folder_oids
from assay.table.listing import StatCache


def export_dataset(version: DatasetVersion, to: Path, *, force: bool = False,
                   progress: Progress | None = None) -> Path:
    """Write ``version`` to ``to``: a file by its suffix, or a folder (files of a folder dataset).

    An existing file is replaced only with ``force``; a folder must be new or empty. What is written gets the
    usual permissions (``0o666 & ~umask``, folders ``0o777 & ~umask``).
    """
    suffix = to.suffix.lower()
    if suffix in (".parquet", ".pq", ".csv", ".jsonl"):
        return _export_file(version, to, suffix, force)
    if version.manifest.kind != "files":
        raise InputError(f"export {version.name} to a .parquet, .csv or .jsonl file; only folder datasets export "
                         "to a folder")
    return _export_folder(version, to, progress)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _export_file(version: DatasetVersion, to: Path, suffix: str, force: bool) -> Path:
    if to.is_dir():
        raise InputError(f"{to} is a folder; export {version.name} to a file name (ending in {suffix})")
    if to.exists() and not force:
        raise InputError(f"{to} already exists; give --force (force=True) to replace it, or export to another "
                         "file; nothing was written")
    to.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=to.parent, prefix=".tmp-export-")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it 0600
    finally:
        os.close(fd)
    try:
        if suffix in (".parquet", ".pq"):
            with pq.ParquetWriter(tmp, version.schema, compression="zstd") as w:
                for batch in version.scan():
                    w.write_batch(batch)
        elif suffix == ".csv":
            with pacsv.CSVWriter(tmp, version.schema) as w:
                for batch in version.scan():
                    w.write_batch(batch)
        else:
            _write_jsonl(version, Path(tmp))
        os.replace(tmp, to)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return to


def _write_jsonl(version: DatasetVersion, path: Path) -> None:
    import json

    with open(path, "w", encoding="utf-8") as f:
        for batch in version.scan():
            for row in batch.to_pylist():
                f.write(json.dumps(row, default=str, ensure_ascii=False) + "\n")


def _export_folder(version: DatasetVersion, to: Path, progress: Progress | None) -> Path:
    if to.exists() and not to.is_dir():
        raise InputError(f"{to} is a file; export the files of {version.name} into a new or empty folder")
    if to.exists() and any(to.iterdir()):
        raise InputError(f"{to} exists and is not empty; export into a new or empty folder")
    staging = Path(tempfile.mkdtemp(prefix=".tmp-export-", dir=to.parent if to.parent.exists() else None))
    umask = _umask()
    try:
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it 0700
        done, total = 0, version.num_rows
        for batch in version.scan(["path", "blob"]):
            for path, blob in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                target = staging / _safe_relative(path)
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(target, version.read_blob(blob), durable=False)
                os.chmod(target, 0o666 & ~umask)  # the temporary file's 0600 otherwise
                done += 1
            if progress:
                progress("writing files", done, total)
        extra = [c for c in version.schema.names if c not in ("path", "blob", "size", "media_type")]
        if extra:
            pacsv.write_csv(version.to_arrow(["path", *extra]), staging / "_labels.csv")
        if to.exists():
            to.rmdir()
        to.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, to)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return to


@dataclass(frozen=True)
class FolderSync:
    """What ``sync_folder`` did to a folder: files written (new or changed), files removed, files left as they were."""

    folder: Path
    written: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: int

    def to_dict(self) -> dict[str, object]:
        return {"folder": str(self.folder), "written": list(self.written), "removed": list(self.removed),
                "unchanged": self.unchanged}


def version_files(version: DatasetVersion) -> dict[str, str]:
    """Relative path -> blob address of each file of a folder dataset (every path checked to stay inside)."""
    out: dict[str, str] = {}
    for batch in version.scan(["path", "blob"]):
        for path, blob in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
            _safe_relative(path)
            out[path] = blob
    return out


def sync_folder(version: DatasetVersion, to: Path, store: ObjectStore, cache: StatCache, *, force: bool = False,
                progress: Progress | None = None) -> FolderSync:
    """Make folder ``to`` hold exactly the files of ``version``, writing only those that differ.

    Files the version lacks are removed, inside ``to`` only (hidden files are left alone, as on add). A file
    whose bytes the repository does not hold (a change never added) is neither replaced nor removed without
    ``force``: nothing that is stored only in the folder is lost.
    """
    if version.manifest.kind != "files":
        raise InputError(f"{version.name} is a table, not a folder dataset; write it to a file with "
                         f"`assay export {version.name} --to FILE.parquet`")
    if to.exists() and not to.is_dir():
        raise InputError(f"{to} is a file; give a folder to write the files of {version.name} into")
    want = version_files(version)
    to.mkdir(parents=True, exist_ok=True)
    root = to.resolve()
    files, oids = folder_oids(root, cache)
    have = dict(zip(files.rels, oids, strict=True))
    gone = sorted(r for r in have if r not in want)
    todo = sorted(r for r, b in want.items() if have.get(r) != b)
    _refuse_unsaved(version.name, store, root, [r for r in [*gone, *todo] if r in have], have, force)
    for rel in gone:
        (root / rel).unlink()
    _prune_empty(root, gone)
    umask = _umask()
    for done, rel in enumerate(todo, start=1):
        target = _inside(root, rel)
        atomic_write(target, version.read_blob(want[rel]), durable=False)
        os.chmod(target, 0o666 & ~umask)
        if progress:
            progress("writing files", done, len(todo))
    folder_oids(root, cache)  # remember what is there now: a status or re-add right after hashes nothing
    return FolderSync(root, tuple(todo), tuple(gone), len(want) - len(todo))


def _refuse_unsaved(name: str, store: ObjectStore, root: Path, touched: list[str], have: dict[str, str],
                    force: bool) -> None:
    if force or not touched:
        return
    unsaved = store.missing({have[r] for r in touched})
    lost = [r for r in touched if have[r] in unsaved]
    if lost:
        raise InputError(f"{len(lost)} file(s) in {root} hold changes the repository does not have, e.g. "
                         f"{lost[0]!r}; writing {name} would lose them. Add them first "
                         f"(`assay add {name} {root}`), or give --force to overwrite; nothing was written")


def _prune_empty(root: Path, removed: list[str]) -> None:
    """Remove the folders (inside ``root``) that removing files left empty."""
    for folder in sorted({p for r in removed for p in PurePosixPath(r).parents if p.parts},
                         key=lambda p: len(p.parts), reverse=True):
        path = root / folder
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
                path.rmdir()


def _inside(root: Path, rel: str) -> Path:
    """``root / rel``, its folders made, refusing a folder (or a link) that leads outside ``root``."""
    target = root / _safe_relative(rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    real = Path(os.path.realpath(target.parent))
    if real != root and root not in real.parents:
        raise InputError(f"refusing to write {rel!r}: {target.parent} leads outside {root} (a link?); nothing "
                         "outside the folder is written")
    if target.is_dir() and not target.is_symlink():
        raise InputError(f"cannot write {rel!r}: {target} is a folder holding other files; move them away")
    if target.is_symlink():
        target.unlink()  # replace the link itself, never what it points to
    return target


def _safe_relative(path: str) -> PurePosixPath:
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts:
        raise InputError(f"refusing to export {path!r}: the path leaves the target folder")
    return p


__all__ = ["FolderSync", "export_dataset", "sync_folder", "version_files"]
