"""Working folders: the folder each folder dataset was added from (or last restored into), writing a version's
files back into it (only what changed), and what changed in it since (``assay status``).

The folders are local state, like HEAD: a small JSON file in ``.assay``, replaced atomically. Comparing a
folder reads the stat cache that adding it filled (size, mtime, inode), so only files that changed are hashed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay._types import Progress
from assay.errors import InputError
from assay.repo import revisions
from assay.store.fs import atomic_write

if TYPE_CHECKING:  # the table layer (Arrow) is imported where a folder is compared or written: a status with
    # no working folder needs none of it
    from assay.repo.export import FolderSync
    from assay.repo.repository import Repository as Repo
    from assay.table.listing import Listing, StatCache

FOLDERS_FILE = "workdirs.json"


@dataclass(frozen=True)
class FolderChanges:
    """How a dataset's working folder differs from the dataset's working version (staged, else HEAD)."""

    dataset: str
    folder: str
    added: tuple[str, ...] = ()  # in the folder, not in the version
    modified: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()  # in the version, not in the folder
    missing: bool = False  # the folder itself is gone
    problem: str | None = None  # why the folder could not be compared (e.g. a link out of it)

    @property
    def clean(self) -> bool:
        return not (self.added or self.modified or self.deleted or self.missing or self.problem)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "folder": self.folder, "added": list(self.added),
                "modified": list(self.modified), "deleted": list(self.deleted), "missing": self.missing,
                "problem": self.problem}


def working_folders(repo: Repo) -> dict[str, str]:
    """Dataset -> the absolute path of its working folder."""
    path = repo.dir / FOLDERS_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_bytes())
    except ValueError:
        return {}  # local state only: a damaged file forgets the folders, nothing stored is lost
    return {str(k): str(v) for k, v in data.get("folders", {}).items()}


def record_folder(repo: Repo, dataset: str, folder: str | os.PathLike[str]) -> None:
    """Remember ``folder`` as the working folder of ``dataset``."""
    with repo.work.locked():
        folders = working_folders(repo)
        folders[dataset] = str(Path(folder).resolve())
        body = {"format": 1, "folders": dict(sorted(folders.items()))}
        atomic_write(repo.dir / FOLDERS_FILE, json.dumps(body, indent=1).encode(), durable=False)


@dataclass(frozen=True)
class QuickAdd:
    """What ``quick_add`` found: the dataset's sample count when adding the folder changed nothing (None when
    that could not be told from the stat cache alone), and the scan of the folder, for ``Repo.add`` to reuse."""

    rows: int | None
    files: Listing


def quick_add(repo: Repo, name: str, folder: str | os.PathLike[str], *, key: Sequence[str] | str | None = None,
              mode: str = "replace", labels: str | os.PathLike[str] | None = None) -> QuickAdd:
    """Add ``folder`` as dataset ``name`` if the stat cache's summary shows, without reading a file or importing
    Arrow, that it is what the dataset's working version (staged, else HEAD) holds: then nothing is staged and
    the folder is recorded as the dataset's working folder, as ``add`` does. Otherwise nothing is done, and
    ``Repo.add(..., files=result.files)`` adds it without scanning it again."""
    from assay.table.listing import scan_folder, source_digest

    revisions.check_dataset_name(name)
    root = Path(folder)
    files = scan_folder(root)
    keys = ([key] if isinstance(key, str) else list(key or ())) or ["path"]
    with repo.work.locked():
        staged = repo.work.read_staging().datasets.get(name)
        head = repo.head()
        base = staged.manifest if staged else (repo.read_commit(head).datasets.get(name) if head else None)
        whole = _cache(repo).whole(root, files) if base and len(files) else None
        digest = source_digest(whole, Path(labels) if labels is not None else None) if whole else None
        if base is None or digest is None or repo._memo.get(base, digest, keys, mode) != base:
            return QuickAdd(None, files)
        fragments = json.loads(repo._read_small(base))["fragments"]
    if mode == "replace":
        record_folder(repo, name, root)
    return QuickAdd(sum(f["rows"] - f.get("deleted_rows", 0) for f in fragments), files)


def restore(repo: Repo, spec: str, to: str | os.PathLike[str] | None = None, *, force: bool = False,
            progress: Progress | None = None) -> FolderSync:
    """Write the files of ``DATASET[@REV]`` into ``to`` (default: the dataset's working folder), changing only
    the files that differ; files the version lacks are removed from that folder. ``to`` then becomes the
    dataset's working folder. Files whose bytes the repository lacks are kept unless ``force`` (see sync_folder).
    """
    from assay.repo.export import sync_folder

    name = revisions.parse_dataset_spec(spec).name
    if to is None:
        known = working_folders(repo).get(name)
        if known is None:
            raise InputError(f"dataset {name!r} has no working folder yet; give one: --to DIR")
        to = known
    version = repo.dataset(spec)
    result = sync_folder(version, Path(to), repo.store, _cache(repo), force=force, progress=progress)
    record_folder(repo, name, result.folder)
    return result


def folder_changes(repo: Repo) -> list[FolderChanges]:
    """For each folder dataset of the working version that has a working folder: what changed in that folder."""
    folders = working_folders(repo)
    if not folders:
        return []
    from assay.repo.export import version_files

    working = repo.datasets()
    out = []
    for name, folder in sorted(folders.items()):
        if name not in working:
            continue
        version = repo.dataset(name)
        if version.manifest.kind != "files":
            continue
        out.append(compare_folder(repo, name, Path(folder), version_files(version)))
    return out


def compare_folder(repo: Repo, name: str, folder: Path, want: dict[str, str]) -> FolderChanges:
    """How ``folder`` differs from the files ``want`` (path -> blob address); only changed files are hashed."""
    from assay.table.folders import folder_oids

    if not folder.is_dir():
        return FolderChanges(name, str(folder), missing=True)
    try:
        files, oids = folder_oids(folder, _cache(repo))
    except InputError as e:  # e.g. a link out of the folder: said in the status rather than failing it
        return FolderChanges(name, str(folder), problem=str(e))
    have = dict(zip(files.rels, oids, strict=True))
    return FolderChanges(
        name, str(folder),
        added=tuple(sorted(set(have) - set(want))),
        modified=tuple(sorted(r for r in have if r in want and have[r] != want[r])),
        deleted=tuple(sorted(set(want) - set(have))),
    )


def _cache(repo: Repo) -> StatCache:
    from assay.table.listing import StatCache

    return StatCache(repo.dir / "statcache")


__all__ = [
    "FolderChanges", "QuickAdd", "quick_add", "compare_folder", "folder_changes", "record_folder", "restore",
    "working_folders",
]
