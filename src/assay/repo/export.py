"""Export a dataset version: a Parquet/CSV/JSONL file, or the files of a folder dataset."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from assay._types import Progress
from assay.errors import InputError
from assay.store.fs import atomic_write
from assay.table import DatasetVersion


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


def _safe_relative(path: str) -> PurePosixPath:
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts:
        raise InputError(f"refusing to export {path!r}: the path leaves the target folder")
    return p


__all__ = ["export_dataset"]
